"""A world of chunks: ChunkIndex (grid position), Chunk (one generated area) and WorldMap."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._checks import as_array, check_positive
from .layout import Layout
from .images import MultiViewImages, RenderedViews
from .occupancy import Occupancy, Triplane
from .scene import SceneDescription, SceneGraph

# World frame: x east, y north, z up. A direction moves the chunk index by (di, dj).
DIRECTIONS: dict[str, tuple[int, int]] = {
    "east": (1, 0), "west": (-1, 0), "north": (0, 1), "south": (0, -1),
    "northeast": (1, 1), "northwest": (-1, 1), "southeast": (1, -1), "southwest": (-1, -1),
}


@dataclass(frozen=True, order=True)
class ChunkIndex:
    """Grid position of a chunk in a WorldMap: its centre is at (i, j) * stride in the world frame."""

    i: int
    j: int

    def __post_init__(self) -> None:
        if int(self.i) != self.i or int(self.j) != self.j:
            raise ValueError(f"ChunkIndex: i and j must be integers, got {self.i}, {self.j}")
        object.__setattr__(self, "i", int(self.i))
        object.__setattr__(self, "j", int(self.j))

    def neighbour(self, direction: str) -> "ChunkIndex":
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; use one of {', '.join(DIRECTIONS)}")
        di, dj = DIRECTIONS[direction]
        return ChunkIndex(self.i + di, self.j + dj)

    def __str__(self) -> str:
        return f"chunk_{self.i}_{self.j}"


@dataclass
class Chunk:
    """One generated area. T_world_chunk: float64 [4, 4] pose of the chunk (ego) frame in the world;
    everything else is in the chunk frame. Stages fill the optional parts: triplane is the occupancy's
    latent (what outpainting and local regeneration keep), views the renders of the occupancy from the
    chunk's rig, preview the preview-look images and images the diffusion-generated ones."""

    T_world_chunk: np.ndarray
    occupancy: Occupancy | None = None
    layout: Layout | None = None
    graph: SceneGraph | None = None
    description: SceneDescription | None = None
    triplane: Triplane | None = None
    views: RenderedViews | None = None
    preview: MultiViewImages | None = None
    images: MultiViewImages | None = None

    def __post_init__(self) -> None:
        self.T_world_chunk = as_array("Chunk.T_world_chunk", self.T_world_chunk, np.float64, (4, 4))


@dataclass
class WorldMap:
    """Chunks on a square grid of `stride` metres in the world frame (x east, y north).

    A stride smaller than the chunk size makes neighbours overlap; outpainting uses that overlap.
    """

    stride: float = 40.0
    chunks: dict[ChunkIndex, Chunk] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positive("WorldMap.stride", self.stride)

    def pose_of(self, index: ChunkIndex) -> np.ndarray:
        """float64 [4, 4]: T_world_chunk of a grid cell (axis-aligned, centred on the cell)."""
        T = np.eye(4)
        T[:2, 3] = (index.i * self.stride, index.j * self.stride)
        return T

    def add(self, index: ChunkIndex, chunk: Chunk) -> None:
        if not np.allclose(chunk.T_world_chunk, self.pose_of(index)):
            raise ValueError(f"WorldMap.add: chunk pose does not match grid cell {index}")
        self.chunks[index] = chunk

    def __contains__(self, index: ChunkIndex) -> bool:
        return index in self.chunks

    def __getitem__(self, index: ChunkIndex) -> Chunk:
        if index not in self.chunks:
            raise KeyError(f"no chunk at {index}")
        return self.chunks[index]

    def save(self, directory, meta: dict | None = None):
        """Write world.json and one chunk folder per chunk (xscene_core.data.chunk_io)."""
        from ..data.chunk_io import save_world

        return save_world(directory, self, meta)

    @classmethod
    def load(cls, directory) -> "WorldMap":
        from ..data.chunk_io import load_world

        return load_world(directory)[0]

    def neighbours(self, index: ChunkIndex) -> dict[str, ChunkIndex]:
        """Existing neighbours of a cell, by direction."""
        return {d: index.neighbour(d) for d in DIRECTIONS if index.neighbour(d) in self.chunks}
