"""Session: undo/redo of world snapshots, incremental atomic autosave and restore, named saves, export."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from xscene_core.data.world import SyntheticWorld
from xscene_core.ops.ply import read_ply
from xscene_core.session import Session
from xscene_core.stages.render import default_rig
from xscene_core.types.gaussians import GaussianScene
from xscene_core.types.images import MultiViewImages
from xscene_core.types.world import ChunkIndex, WorldMap


@pytest.fixture(scope="module")
def chunks():
    """Two neighbouring synthetic chunks (stride 40 m), the first with small preview images."""
    sw = SyntheticWorld(3)
    x, y = sw.find_location("downtown")
    wm = WorldMap(40.0)
    a, b = sw.chunk(x, y), sw.chunk(x + 40.0, y)
    assert a.layout.boxes
    a.T_world_chunk, b.T_world_chunk = wm.pose_of(ChunkIndex(0, 0)), wm.pose_of(ChunkIndex(1, 0))
    rig = default_rig((8, 16))
    a.preview = MultiViewImages(np.random.default_rng(0).integers(0, 255, (6, 8, 16, 3), dtype=np.uint8), rig)
    return a, b


def world_of(*items) -> WorldMap:
    w = WorldMap(40.0)
    for index, chunk in items:
        w.add(index, chunk)
    return w


def test_undo_redo_walks_the_history(tmp_path, chunks):
    a, b = chunks
    s = Session.create(tmp_path, autosave=False)
    assert s.undo() is None and not s.can_undo
    s.record("generate")
    s.set_world(world_of((ChunkIndex(0, 0), a)))
    s.record("extend east")
    s.set_world(world_of((ChunkIndex(0, 0), a), (ChunkIndex(1, 0), b)))
    assert s.history() == (["generate", "extend east"], [])
    assert s.undo() == "extend east" and list(s.world.chunks) == [ChunkIndex(0, 0)]
    assert s.world.chunks[ChunkIndex(0, 0)] is a  # snapshots share chunks, no copies
    assert s.undo() == "generate" and s.world is None
    assert s.redo() == "generate" and s.redo() == "extend east"
    assert set(s.world.chunks) == {ChunkIndex(0, 0), ChunkIndex(1, 0)}
    s.undo()
    s.record("edit")  # a new operation clears redo
    assert not s.can_redo


def test_autosave_restores_after_a_crash_and_writes_only_changes(tmp_path, chunks):
    a, b = chunks
    s = Session.create(tmp_path, "abc-1")
    s.info.prompt = "a quiet suburban street"
    s.record("generate")
    s.set_world(world_of((ChunkIndex(0, 0), a)))
    first = s.folder / "world" / "chunk_0_0" / "meta.json"
    stamp = first.stat().st_mtime_ns
    s.record("extend east")
    s.set_world(world_of((ChunkIndex(0, 0), a), (ChunkIndex(1, 0), b)))
    assert first.stat().st_mtime_ns == stamp  # the unchanged chunk was not rewritten
    restored = Session.restore(tmp_path / "abc-1")
    assert restored.info.prompt == "a quiet suburban street"
    assert set(restored.world.chunks) == {ChunkIndex(0, 0), ChunkIndex(1, 0)}
    np.testing.assert_array_equal(restored.world[ChunkIndex(1, 0)].occupancy.labels, b.occupancy.labels)
    np.testing.assert_array_equal(restored.world[ChunkIndex(0, 0)].preview.images, a.preview.images)
    # undo of the extension removes the chunk from the autosave as well
    s.undo()
    assert not (s.folder / "world" / "chunk_1_0").exists()
    assert set(Session.restore(s.folder).world.chunks) == {ChunkIndex(0, 0)}
    # an edited chunk (a new object at the same index) is rewritten, with no stale parts left behind
    edited = replace(a, preview=None, layout=replace(a.layout, boxes=a.layout.boxes[1:]))
    s.record("edit")
    s.set_world(world_of((ChunkIndex(0, 0), edited)))
    back = Session.restore(s.folder).world[ChunkIndex(0, 0)]
    assert back.preview is None and len(back.layout.boxes) == len(a.layout.boxes) - 1
    assert [info.chunks for _, info in Session.list_autosaves(tmp_path)] == [1]


def test_restore_recovers_a_swap_interrupted_by_a_crash(tmp_path, chunks):
    a, _ = chunks
    s = Session.create(tmp_path, "crash")
    s.set_world(world_of((ChunkIndex(0, 0), a)))
    wdir = s.folder / "world"
    (wdir / "chunk_0_0").rename(wdir / "chunk_0_0.old")  # the moment between the two renames
    assert ChunkIndex(0, 0) in Session.restore(s.folder).world


def test_restore_rejects_a_folder_without_a_session(tmp_path):
    with pytest.raises(ValueError, match="no autosaved session"):
        Session.restore(tmp_path)
    with pytest.raises(ValueError, match="letters, digits"):
        Session.create(tmp_path, "../escape")


def test_named_save_and_load_are_undoable(tmp_path, chunks):
    a, b = chunks
    s = Session.create(tmp_path / "sessions")
    with pytest.raises(ValueError, match="no world to save"):
        s.save_world_as(tmp_path / "saved")
    s.set_world(world_of((ChunkIndex(0, 0), a), (ChunkIndex(1, 0), b)))
    s.save_world_as(tmp_path / "saved")
    other = Session.create(tmp_path / "sessions")
    other.load_world(tmp_path / "saved")
    assert set(other.world.chunks) == {ChunkIndex(0, 0), ChunkIndex(1, 0)}
    assert other.undo() == "load world" and other.world is None
    with pytest.raises(ValueError, match="not an xscene world"):
        other.load_world(tmp_path)


def test_export_writes_occ3d_cameras_scene_json_and_ply(tmp_path, chunks):
    a, b = chunks
    s = Session.create(tmp_path / "s", autosave=False)
    with pytest.raises(ValueError, match="nothing to export"):
        s.export(tmp_path / "out")
    s.set_world(world_of((ChunkIndex(0, 0), a), (ChunkIndex(1, 0), b)))
    n = 5
    g = GaussianScene(np.random.rand(n, 3), np.full((n, 3), 0.2), np.tile([1.0, 0, 0, 0], (n, 1)),
                      np.full(n, 0.5), np.random.rand(n, 3), np.full(n, 4, np.uint8))
    report = s.export(tmp_path / "out", gaussians=g)
    out = tmp_path / "out"
    with np.load(out / "chunk_0_0" / "labels.npz") as d:
        np.testing.assert_array_equal(d["semantics"], a.occupancy.labels)
    assert len(list((out / "chunk_0_0" / "cameras").glob("CAM_*.png"))) == 6
    assert (out / "chunk_0_0" / "cameras" / "rig.json").exists()
    assert not (out / "chunk_1_0" / "cameras").exists()  # no images there: nothing invented
    import json

    scene = json.loads((out / "scene.json").read_text())
    assert [c["name"] for c in scene["chunks"]] == ["chunk_0_0", "chunk_1_0"]
    assert scene["chunks"][0]["images"] == "preview" and scene["chunks"][1]["layout"]["format"] == "xscene.layout/1"
    assert len(read_ply(report.ply)) == n and report.ply in report.files
