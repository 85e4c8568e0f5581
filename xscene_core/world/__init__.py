"""World-level operations on a WorldMap of chunks: which latent cells a new chunk inherits from its
neighbours (overlap), the layout of a new chunk (continuation), outpainting a neighbour (extend) and
stitching all chunks into one occupancy (stitch). The grid types live in types.world."""

from .extend import Extension, WorldExtender, overlap_agreement
from .layout import continuation_layout
from .overlap import ChunkOverlap, chunk_overlap, voxel_shift
from .stitch import stitch_occupancy

__all__ = ["ChunkOverlap", "Extension", "WorldExtender", "chunk_overlap", "continuation_layout", "overlap_agreement",
           "stitch_occupancy", "voxel_shift"]
