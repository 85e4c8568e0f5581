"""Memory bank: entries from train worlds and from a nuScenes dataset, FAISS search, growth, save/load,
and the shipped bank."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from xscene_core.data.nuscenes import NuScenesSource
from xscene_core.data.splits import split_of, world_seeds
from xscene_core.data.world.describe import graph_of
from xscene_core.llm.embedder import EMBED_DIM, EMBEDDER_NAME, embed
from xscene_core.llm.memory import DEFAULT_BANK_DIR, MemoryBank, MemoryEntry
from xscene_core.scene_graph_text import emit
from xscene_core.types.occupancy import GridSpec
from xscene_core.types.scene import ENVIRONMENTS

SEEDS = [s for _, s in zip(range(2), world_seeds("train"))]  # two train worlds: 12 chunks, a few seconds


def _nuscenes_writer():
    """write_tiny_nuscenes from tests/data/test_nuscenes.py (test dirs are not packages, so load by path)."""
    path = Path(__file__).resolve().parents[1] / "data" / "test_nuscenes.py"
    spec = importlib.util.spec_from_file_location("_tiny_nuscenes_writer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bank() -> MemoryBank:
    return MemoryBank.from_world(SEEDS)


@pytest.fixture(scope="module")
def nuscenes(tmp_path_factory):
    writer = _nuscenes_writer()
    return writer, NuScenesSource(writer.write_tiny_nuscenes(tmp_path_factory.mktemp("nuscenes")), writer.VERSION)


def test_world_entries_cover_every_environment(bank):
    assert len(bank) == 6 * len(SEEDS) and bank.sources() == {"synthetic": len(bank)}
    assert bank.embeddings.shape == (len(bank), EMBED_DIM)
    np.testing.assert_allclose(np.linalg.norm(bank.embeddings, axis=1), 1.0, atol=1e-5)
    for seed in SEEDS:
        envs = [e.environment for e in bank.entries if e.entry_id.startswith(f"world{seed}_")]
        assert sorted(envs) == sorted(ENVIRONMENTS)
    e = bank.entries[0]
    assert e.style == (e.description.time_of_day, e.description.weather)
    assert e.abstract and e.foreground and e.background
    assert emit(e.graph()) == e.layout and e.graph().objects
    assert e.abstract in e.retrieval_text() and e.foreground[0][0] in e.retrieval_text()


def test_only_train_worlds(bank):
    held_out = next(s for s in range(1000) if split_of(s) == "test")
    with pytest.raises(ValueError, match="not train worlds"):
        MemoryBank.from_world([SEEDS[0], held_out])


@pytest.mark.parametrize("query, environment", [
    ("a downtown street at night", "downtown"),
    ("a quiet rural road between fields", "rural"),
    ("an industrial area with warehouses", "industrial"),
])
def test_search_finds_the_asked_environment(bank, query, environment):
    hits = bank.search(query, k=3)
    assert len(hits) == 3 and hits[0][0].environment == environment
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-6 for s in scores)
    only = bank.search(query, k=5, environment="highway")
    assert len(only) == len(SEEDS) and all(e.environment == "highway" for e, _ in only)


def test_search_arguments(bank):
    with pytest.raises(ValueError, match="non-empty"):
        bank.search("  ")
    with pytest.raises(ValueError, match="positive"):
        bank.search("x", k=0)
    assert MemoryBank().search("anything") == []
    assert len(bank.search("a street", k=100)) == len(bank)


def test_save_load_round_trip(bank, tmp_path):
    folder = bank.save(tmp_path / "bank")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["count"] == len(bank) and manifest["embedder"] == EMBEDDER_NAME and manifest["dim"] == EMBED_DIM
    assert manifest["sources"] == {"synthetic": len(bank)}
    assert len((folder / "entries.jsonl").read_text().splitlines()) == len(bank)
    loaded = MemoryBank.load(folder)
    assert loaded.entries == bank.entries
    np.testing.assert_array_equal(loaded.embeddings, bank.embeddings)
    q = "a snowy suburban street with parked cars"
    assert [(e.entry_id, round(s, 5)) for e, s in loaded.search(q)] == [(e.entry_id, round(s, 5)) for e, s in bank.search(q)]


def test_load_rejects_broken_banks(bank, tmp_path):
    folder = bank.save(tmp_path / "bank")
    np.save(folder / "embeddings.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="embeddings.npy"):  # pickled arrays are refused
        MemoryBank.load(folder)
    bank.save(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "count": len(bank) + 1}))
    with pytest.raises(ValueError, match="disagree"):
        MemoryBank.load(folder)
    (folder / "manifest.json").write_text(json.dumps({**manifest, "embedder": "other-model"}))
    with pytest.raises(ValueError, match="rebuild"):
        MemoryBank.load(folder)
    bank.save(folder)
    with open(folder / "entries.jsonl", "a") as f:
        f.write('{"entry_id": "x"}\n')
    with pytest.raises(ValueError, match="line 13"):
        MemoryBank.load(folder)
    (folder / "embeddings.npy").unlink()
    with pytest.raises(ValueError, match="missing embeddings.npy"):
        MemoryBank.load(folder)


def test_nuscenes_entries(nuscenes):
    writer, source = nuscenes
    nb = MemoryBank.from_nuscenes(source)
    assert len(nb) == 2 and nb.sources() == {"nuscenes": 2}
    e = nb.entries[0]
    assert e.entry_id == "nuscenes_sample-0" and e.source == "nuscenes"
    grid = GridSpec()
    assert e.graph() == graph_of(source.layout("sample-0", within=grid), grid)
    inside = [a for a in writer.KEPT if all(-40 <= v < 40 for v in a[2][:2])]
    assert len(e.graph().objects) == len(inside)
    assert e.environment == "downtown" and "boston-seaport" in e.abstract  # from the log location
    fg = dict(e.foreground)  # grouped by class and state: 2 standing pedestrians, 1 walking
    assert fg["2 pedestrians"].startswith("standing") and fg["1 pedestrian"].startswith("walking")
    assert [t for t, _ in e.foreground].count("1 bus") == 2  # one moving, one stopped


def test_adding_a_dataset_grows_the_index(bank, nuscenes):
    _, source = nuscenes
    grown = MemoryBank(bank.entries, bank.embeddings)
    nb = MemoryBank.from_nuscenes(source)
    assert grown.add(nb.entries) == 2
    assert len(grown) == len(bank) + 2 and grown.embeddings.shape == (len(bank) + 2, EMBED_DIM)
    assert grown.sources() == {"synthetic": len(bank), "nuscenes": 2}
    hits = grown.search("a city street in boston seaport with buses, a trailer and a construction vehicle", k=2)
    assert {e.source for e, _ in hits} == {"nuscenes"}
    with pytest.raises(ValueError, match="duplicate entry ids"):
        grown.add(nb.entries[:1])
    with pytest.raises(ValueError, match="shape"):
        grown.add([MemoryEntry("new", "nuscenes", nb.entries[0].description, nb.entries[0].layout)],
                  np.zeros((2, EMBED_DIM), np.float32))


def test_entry_checks_and_json(bank):
    e = bank.entries[0]
    assert MemoryEntry.from_json(json.loads(json.dumps(e.to_json()))) == e
    with pytest.raises(ValueError, match="source"):
        MemoryEntry("x", "Bad Source", e.description, e.layout)
    with pytest.raises(ValueError, match="entry_id"):
        MemoryEntry("", "synthetic", e.description, e.layout)
    with pytest.raises(ValueError, match="memory entry broken: line"):
        MemoryEntry("broken", "synthetic", e.description, "Scene graph:\n- objects:\n  - what is this\n").graph()


def test_embed_is_unit_length_and_batched():
    v = embed(["a rainy night", "a sunny morning", "a rainy night"])
    assert v.shape == (3, EMBED_DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v[0], v[2], atol=1e-6)
    assert embed([]).shape == (0, EMBED_DIM)
    with pytest.raises(TypeError):
        embed("one string")


def test_shipped_bank():
    files = {p.name: p.stat().st_size for p in DEFAULT_BANK_DIR.iterdir()}
    assert set(files) == {"manifest.json", "entries.jsonl", "embeddings.npy"}
    assert sum(files.values()) < 5e6  # a few MB at most
    shipped = MemoryBank.default()
    assert 300 <= len(shipped) <= 800
    seeds = {int(re.match(r"world(\d+)_", e.entry_id).group(1)) for e in shipped.entries if e.source == "synthetic"}
    assert seeds and all(split_of(s) == "train" for s in seeds)  # never a held-out world
    assert {e.environment for e in shipped.entries} == set(ENVIRONMENTS)
    hits = shipped.search("a downtown street at night", k=4)
    assert all(e.environment == "downtown" for e, _ in hits)
    assert hits[0][0].style[0] == "night"


def test_build_command(nuscenes, tmp_path, capsys):
    from xscene_core.llm.build_memory import main

    writer, source = nuscenes
    main(["--out", str(tmp_path / "bank"), "--worlds", "1", "--chunks-per-world", "2",
          "--nuscenes", str(source.dataroot), "--nuscenes-version", writer.VERSION])
    built = MemoryBank.load(tmp_path / "bank")
    assert built.sources() == {"synthetic": 2, "nuscenes": 2}
    assert [e.environment for e in built.entries[:2]] == list(ENVIRONMENTS[:2])
    assert "wrote 4 entries" in capsys.readouterr().out
