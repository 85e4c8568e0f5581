"""A chunk on disk: one folder with the Occ3D labels.npz, layout.json, scene_graph.txt,
description.json, triplane.safetensors (the occupancy's latent), views.npz (semantic / depth renders),
preview/ and images/ (one PNG per camera + rig.json) and meta.json (pose and provenance; written last, so
its presence marks a complete chunk)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..scene_graph_text import emit, parse
from ..types.layout import Layout
from ..types.images import MultiViewImages, RenderedViews
from ..types.occupancy import GridSpec, Triplane
from ..types.scene import SceneDescription
from ..types.world import Chunk
from .occ3d import read_labels_npz, write_labels_npz

FILES = ("labels.npz", "layout.json", "scene_graph.txt", "description.json", "triplane.safetensors", "views.npz",
         "meta.json")
IMAGE_FOLDERS = ("preview", "images")


def save_chunk(directory: str | Path, chunk: Chunk, meta: dict | None = None) -> Path:
    """Write a chunk; parts that are None are skipped. Files are written to temporary names and renamed,
    so a crash never leaves a half-written file under a real name."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def put(name: str, write) -> None:
        tmp = d / (name + ".tmp" + Path(name).suffix)
        write(tmp)
        tmp.replace(d / name)

    if chunk.occupancy is not None:
        put("labels.npz", lambda p: write_labels_npz(p, chunk.occupancy))
    if chunk.layout is not None:
        put("layout.json", chunk.layout.save)
    if chunk.graph is not None:
        put("scene_graph.txt", lambda p: p.write_text(emit(chunk.graph)))
    if chunk.description is not None:
        put("description.json", chunk.description.save)
    if chunk.triplane is not None:
        put("triplane.safetensors", chunk.triplane.save)
    if chunk.views is not None:
        put("views.npz", chunk.views.save)
    for name in IMAGE_FOLDERS:
        images = getattr(chunk, name)
        if images is not None:
            tmp = d / (name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            images.save(tmp)
            shutil.rmtree(d / name, ignore_errors=True)
            tmp.rename(d / name)
    full_meta = {"T_world_chunk": chunk.T_world_chunk.tolist(),
                 "grid": (chunk.occupancy.grid if chunk.occupancy is not None else GridSpec()).to_dict(), **(meta or {})}
    put("meta.json", lambda p: p.write_text(json.dumps(full_meta, indent=1)))
    return d


def is_complete(directory: str | Path) -> bool:
    return (Path(directory) / "meta.json").exists()


def load_chunk(directory: str | Path) -> tuple[Chunk, dict]:
    """Read a chunk folder written by save_chunk; returns (chunk, meta)."""
    d = Path(directory)
    if not is_complete(d):
        raise ValueError(f"{d}: not a complete chunk folder (meta.json missing)")
    meta = json.loads((d / "meta.json").read_text())
    grid = GridSpec.from_dict(meta["grid"])
    chunk = Chunk(np.asarray(meta["T_world_chunk"]))
    if (d / "labels.npz").exists():
        chunk.occupancy = read_labels_npz(d / "labels.npz", grid)
    if (d / "layout.json").exists():
        chunk.layout = Layout.load(d / "layout.json")
    if (d / "scene_graph.txt").exists():
        chunk.graph = parse((d / "scene_graph.txt").read_text())
    if (d / "description.json").exists():
        chunk.description = SceneDescription.load(d / "description.json")
    if (d / "triplane.safetensors").exists():
        chunk.triplane = Triplane.load(d / "triplane.safetensors")
    if (d / "views.npz").exists():
        chunk.views = RenderedViews.load(d / "views.npz")
    for name in IMAGE_FOLDERS:
        if (d / name / "rig.json").exists():
            setattr(chunk, name, MultiViewImages.load(d / name))
    return chunk, meta


def save_world(directory: str | Path, world: "WorldMap", meta: dict | None = None) -> Path:
    """Write a WorldMap: world.json (stride, chunk list, meta) and one chunk folder per chunk."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for index, chunk in world.chunks.items():
        save_chunk(d / str(index), chunk)
    info = {"format": "xscene.world/1", "stride": world.stride,
            "chunks": [[i.i, i.j] for i in sorted(world.chunks)], **(meta or {})}
    tmp = d / "world.json.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(d / "world.json")
    return d


def load_world(directory: str | Path) -> tuple["WorldMap", dict]:
    """Read a world folder written by save_world; returns (world, meta from world.json)."""
    from ..types.world import ChunkIndex, WorldMap

    d = Path(directory)
    if not (d / "world.json").exists():
        raise ValueError(f"{d}: not an xscene world folder (world.json missing)")
    info = json.loads((d / "world.json").read_text())
    world = WorldMap(stride=float(info["stride"]))
    for i, j in info["chunks"]:
        index = ChunkIndex(i, j)
        world.add(index, load_chunk(d / str(index))[0])
    return world, info
