"""World extension: outpaint the chunk next to existing ones (X-Scene Sec. 3.3, eq. 3).

The new cell's triplane is sampled with RePaint (ops.masked_sampling, 5 resamplings, jump 20): the latent
cells the neighbours cover (world.overlap) are held to their forward-diffused values at every step, the
rest is generated for the new chunk's layout (world.layout.continuation_layout unless one is given) and
caption. The decoded voxels of the new chunk are its own; stitching keeps the older chunk's voxels where
they overlap (world.stitch).

    extender = WorldExtender(OccupancyStage.from_pretrained())
    index, chunk = extender.extend(world, ChunkIndex(0, 0), "east", caption="...", seed=1)
    world.add(index, chunk)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..types.layout import Layout
from ..types.scene import SceneDescription
from ..types.world import Chunk, ChunkIndex, WorldMap
from .layout import continuation_layout
from .overlap import ChunkOverlap, chunk_overlap


@dataclass
class Extension:
    """An outpainted chunk and what it was made from: the new cell, the chunk (occupancy, triplane, layout,
    description filled) and the overlap it inherited."""

    index: ChunkIndex
    chunk: Chunk
    overlap: ChunkOverlap


class WorldExtender:
    """Outpaints new chunks of a WorldMap with an OccupancyStage (its diffusion model and VAE)."""

    def __init__(self, occupancy) -> None:
        self.occupancy = occupancy

    def interrupt(self) -> None:
        self.occupancy.interrupt()

    def check_inputs(self, world: WorldMap, index: ChunkIndex) -> None:
        if not isinstance(world, WorldMap):
            raise ValueError(f"WorldExtender: world must be a WorldMap, got {type(world).__name__}")
        if index in world:
            raise ValueError(f"WorldExtender: the world already has a chunk at {index}")
        if not world.chunks:
            raise ValueError("WorldExtender: the world is empty; generate a first chunk before extending")
        extent = self.occupancy.grid.extent[0]
        if world.stride >= extent:
            raise ValueError(f"WorldExtender: the world stride {world.stride:g} m leaves no overlap between "
                             f"{extent:g} m chunks; outpainting needs a stride below the chunk size")

    def overlap(self, world: WorldMap, index: ChunkIndex) -> ChunkOverlap:
        stage = self.occupancy
        return chunk_overlap(world, index, stage.grid, stage.diffusion.plane_shape,
                             stage.diffusion.config["latent_channels"], encode=stage.encode)

    def __call__(self, world: WorldMap, index: ChunkIndex, layout: Layout | None = None,
                 description: SceneDescription | None = None, seed: int = 0,
                 step_callback: Callable[[int, int], object] | None = None) -> Extension:
        """Outpaint the cell `index` (not in the world yet, overlapping at least one chunk). layout: the new
        chunk's layout in its frame (None: the continuation of the neighbours'); description: the scene's
        words (caption and environment; None: the first neighbour's). The world is not modified."""
        # 1. Validate and gather what the neighbours hold over the new cell.
        self.check_inputs(world, index)
        overlap = self.overlap(world, index)
        if overlap.empty:
            raise ValueError(f"WorldExtender: {index} does not overlap any chunk of the world")
        if description is None:
            description = next((world[k].description for k in overlap.sources if world[k].description), None)
        environment = description.environment if description is not None else "suburban"
        # 2. The new chunk's layout.
        if layout is None:
            layout = continuation_layout(world, index, self.occupancy.grid, overlap.known_voxels, environment, seed)
        # 3. RePaint the triplane with the inherited cells held, then decode.
        from ..stages.occupancy import TriplaneMask

        mask = TriplaneMask(overlap.mask_xy, overlap.mask_xz, overlap.mask_yz)
        caption = description.caption() if description is not None else None
        out = self.occupancy.inpaint(overlap.triplane, mask, layout, caption, seed=seed, environment=environment,
                                     step_callback=step_callback)
        chunk = Chunk(world.pose_of(index), out.occupancy, layout, None, description, out.triplane)
        return Extension(index, chunk, overlap)

    def extend(self, world: WorldMap, origin: ChunkIndex, direction: str, **kwargs) -> Extension:
        """Outpaint the neighbour of `origin` in `direction` (types.world.DIRECTIONS: east, northwest, ...)."""
        return self(world, origin.neighbour(direction), **kwargs)


def overlap_agreement(labels: np.ndarray, overlap: ChunkOverlap, occupied_only: bool = False) -> tuple[int, int]:
    """(agreeing voxels, counted voxels) of a new chunk's labels uint8 [X, Y, Z] against the neighbours'
    voxels in the columns they cover; occupied_only counts only voxels occupied in either."""
    from ..semantics import FREE

    cols = overlap.known_voxels
    a, b = labels[cols], overlap.known_labels[cols]
    if occupied_only:
        keep = (a != FREE) | (b != FREE)
        a, b = a[keep], b[keep]
    return int((a == b).sum()), int(a.size)
