"""Dataset builder, splits, chunk folders and the preview and launch commands."""

import json

import numpy as np
import pytest
from PIL import Image

from xscene_core.data import build, preview
from xscene_core.data.chunk_io import load_chunk, load_world
from xscene_core.data.splits import split_of, world_seeds
from xscene_core.data.world import SyntheticWorld


def test_splits_are_disjoint_and_stable():
    train = [s for s, _ in zip(world_seeds("train"), range(200))]
    val = [s for s, _ in zip(world_seeds("val"), range(20))]
    test = [s for s, _ in zip(world_seeds("test"), range(20))]
    assert not (set(train) & set(val)) and not (set(train) & set(test)) and not (set(val) & set(test))
    assert all(split_of(s) == "train" for s in train)
    with pytest.raises(ValueError, match="unknown split"):
        next(world_seeds("holdout"))


def test_build_writes_resumable_split_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    build.main(["--out", str(out), "--chunks", "5", "--seed", "3", "--val-fraction", "0.4"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 3, "val": 2}
    assert not set(manifest["worlds"]["train"]) & set(manifest["worlds"]["val"])
    folders = sorted(out.glob("*/w*"))
    assert len(folders) == 5
    chunk, meta = load_chunk(folders[0])
    assert chunk.occupancy.labels.shape == (200, 200, 16) and chunk.layout is not None
    world = SyntheticWorld(meta["world_seed"])
    again = world.chunk(*chunk.T_world_chunk[:2, 3])
    assert np.array_equal(again.occupancy.labels, chunk.occupancy.labels)
    assert again.graph == chunk.graph and again.description == chunk.description
    # a second run finds everything complete and writes nothing new
    capsys.readouterr()
    build.main(["--out", str(out), "--chunks", "5", "--seed", "3", "--val-fraction", "0.4"])
    assert "wrote 0 new chunks" in capsys.readouterr().out


def test_build_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="--chunks"):
        build.plan(0, 0, 0.1)
    with pytest.raises(ValueError, match="--val-fraction"):
        build.plan(10, 0, 1.5)


def test_preview_pngs(tmp_path):
    preview.main(["--seed", "4", "--environment", "suburban", "--out", str(tmp_path)])
    one = Image.open(tmp_path / "chunk_seed4.png")
    nine = Image.open(tmp_path / "neighbourhood_seed4.png")
    assert one.size == (600, 600) and nine.size == (600, 600)
    assert len(np.unique(np.asarray(one).reshape(-1, 3), axis=0)) > 8  # not a blank image


def test_launch_generate_world(tmp_path):
    import launch

    out = tmp_path / "world"
    launch.main(["generate-world", "--seed", "2", "--size", "2", "--out", str(out), "--time", "night", "--weather", "rainy"])
    world, info = load_world(out)
    assert len(world.chunks) == 4 and info["style"] == {"time_of_day": "night", "weather": "rainy"}
    assert (out / "overview.png").exists()
    # neighbouring chunks of the block continue each other: the shared edge columns are neighbours
    from xscene_core.types.world import ChunkIndex

    a, b = world[ChunkIndex(-1, -1)].occupancy.labels, world[ChunkIndex(0, -1)].occupancy.labels
    assert (a[-1] == b[0]).mean() > 0.7
