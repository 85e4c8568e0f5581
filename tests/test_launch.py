"""Headless CLI: `launch.py generate` writes a world folder, `launch.py extend` grows it, bad input exits
with a message."""

import json

import numpy as np
import pytest

import launch
from xscene_core.types.world import Chunk, ChunkIndex, WorldMap


def test_extend_origin_walks_to_the_edge():
    w = WorldMap(40.0)
    for i in (0, 1, 2):
        w.add(ChunkIndex(i, 0), Chunk(w.pose_of(ChunkIndex(i, 0))))
    assert launch.extend_origin(w, "east") == ChunkIndex(2, 0)
    assert launch.extend_origin(w, "west") == ChunkIndex(0, 0)


def test_bad_arguments_exit_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="not an xscene world"):
        launch.main(["extend", "--world", str(tmp_path), "--direction", "east"])
    with pytest.raises(SystemExit, match="--direction must be one of"):
        launch.main(["extend", "--world", str(tmp_path), "--direction", "up"])
    with pytest.raises(SystemExit, match="must not be empty"):
        launch.main(["generate", "--prompt", " ", "--out", str(tmp_path / "w")])


def test_generate_then_extend_twice(tmp_path, capsys):
    out = tmp_path / "world"
    launch.main(["generate", "--prompt", "a quiet suburban street with two parked cars", "--out", str(out),
                 "--seed", "1", "--images", "none"])
    assert (out / "chunk_0_0" / "labels.npz").exists() and (out / "chunk_0_0" / "scene_graph.txt").exists()
    with pytest.raises(SystemExit, match="already holds a world"):
        launch.main(["generate", "--prompt", "x", "--out", str(out)])
    launch.main(["extend", "--world", str(out), "--direction", "east"])
    launch.main(["extend", "--world", str(out), "--direction", "east"])
    info = json.loads((out / "world.json").read_text())
    assert info["chunks"] == [[0, 0], [1, 0], [2, 0]] and info["prompt"].startswith("a quiet")
    world = WorldMap.load(out)
    np.testing.assert_allclose(world[ChunkIndex(2, 0)].T_world_chunk[:2, 3], (80.0, 0.0))
    assert "chunk_2_0 added east of chunk_1_0" in capsys.readouterr().out
