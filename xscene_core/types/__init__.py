"""Dataclasses that cross module boundaries. No nn.Module and no file formats beyond their own
save/load; every constructor validates shapes, dtypes and finiteness and raises ValueError."""

from .cameras import CAMERA_NAMES, Camera, CameraRig
from .gaussians import GaussianScene
from .images import MultiViewImages, RenderedViews
from .layout import Box, Lane, Layout, MapLine, MapPolygon
from .occupancy import GridSpec, Occupancy, Triplane
from .scene import AreaNode, DescribedScene, LaneNode, ObjectNode, Relation, SceneDescription, SceneGraph
from .world import DIRECTIONS, Chunk, ChunkIndex, WorldMap

__all__ = [
    "AreaNode", "Box", "DescribedScene", "CAMERA_NAMES", "Camera", "CameraRig", "Chunk", "ChunkIndex", "DIRECTIONS",
    "GaussianScene", "GridSpec", "Lane", "LaneNode", "Layout", "MapLine", "MapPolygon", "MultiViewImages",
    "ObjectNode", "Occupancy", "Relation", "RenderedViews", "SceneDescription", "SceneGraph", "Triplane",
    "WorldMap",
]
