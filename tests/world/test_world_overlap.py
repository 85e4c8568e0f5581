"""What a new chunk inherits from its neighbours, stitching, and the continuation layout."""

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.data.world import SyntheticWorld
from xscene_core.types.occupancy import GridSpec, Occupancy, Triplane
from xscene_core.types.world import Chunk, ChunkIndex, WorldMap
from xscene_core.world import chunk_overlap, continuation_layout, stitch_occupancy, voxel_shift
from xscene_core.world.layout import carried_layout, continued_lanes

GRID = GridSpec((32, 32, 8), 2.5, (-40.0, -40.0, -1.0))  # 80 m chunks, a stride of 40 m = 16 voxels
PLANES = (16, 16, 4)  # 2 x 2 voxels per latent cell: a stride = 8 cells


def coded_chunk(world: WorldMap, index: ChunkIndex, value: int) -> Chunk:
    """A chunk whose voxels and latent cells encode their world position (and `value` in z)."""
    i, j = index.i, index.j
    X, Y, Z = GRID.shape
    gx = np.arange(X)[:, None] + 16 * i
    gy = np.arange(Y)[None] + 16 * j
    labels = np.broadcast_to(((gx * 7 + gy * 3) % 16)[..., None], GRID.shape).astype(np.uint8).copy()
    labels[..., -1] = value
    cx = torch.arange(16)[:, None] + 8 * i
    cy = torch.arange(16)[None] + 8 * j
    xy = (cx * 100 + cy).float()[None].repeat(2, 1, 1)
    xz = (cx * 100 + value).float().expand(16, 4)[None].repeat(2, 1, 1)
    yz = (cy.T * 100 + value).float().expand(16, 4)[None].repeat(2, 1, 1)
    return Chunk(world.pose_of(index), Occupancy(labels, GRID), triplane=Triplane(xy, xz, yz.contiguous()))


def test_overlap_shifts_voxels_and_latents_exactly():
    world = WorldMap(40.0)
    world.add(ChunkIndex(0, 0), coded_chunk(world, ChunkIndex(0, 0), 1))
    ov = chunk_overlap(world, ChunkIndex(1, 0), GRID, PLANES, 2)
    truth = coded_chunk(world, ChunkIndex(1, 0), 1)
    assert ov.sources == (ChunkIndex(0, 0),)
    assert ov.known_voxels[:16].all() and not ov.known_voxels[16:].any()
    assert np.array_equal(ov.known_labels[:16], truth.occupancy.labels[:16])
    assert (ov.known_labels[16:] == semantics.FREE).all()
    assert ov.mask_xy[:8].all() and not ov.mask_xy[8:].any()
    assert torch.equal(ov.triplane.xy[:, :8], truth.triplane.xy[:, :8])
    assert ov.mask_xz[:8].all() and not ov.mask_xz[8:].any() and torch.equal(ov.triplane.xz[:, :8], truth.triplane.xz[:, :8])
    assert not ov.mask_yz.any()  # the yz plane sums over x, half of which is new


def test_overlap_first_chunk_wins_and_diagonals():
    world = WorldMap(40.0)
    world.add(ChunkIndex(0, 0), coded_chunk(world, ChunkIndex(0, 0), 1))
    world.add(ChunkIndex(1, 1), coded_chunk(world, ChunkIndex(1, 1), 2))
    ov = chunk_overlap(world, ChunkIndex(1, 0), GRID, PLANES, 2)
    assert set(ov.sources) == {ChunkIndex(0, 0), ChunkIndex(1, 1)}
    assert ov.known_voxels[:16].all() and ov.known_voxels[:, 16:].all() and not ov.known_voxels[16:, :16].any()
    assert (ov.known_labels[:16, :, -1] == 1).all() and (ov.known_labels[16:, 16:, -1] == 2).all()
    assert ov.mask_yz[8:].all() and not ov.mask_yz[:8].any() and torch.equal(ov.triplane.yz[:, 8:], coded_chunk(world, ChunkIndex(1, 0), 2).triplane.yz[:, 8:])
    diag = chunk_overlap(world, ChunkIndex(-1, -1), GRID, PLANES, 2)
    assert diag.known_voxels.sum() == 16 * 16 and not diag.mask_xz.any() and not diag.mask_yz.any()
    assert chunk_overlap(world, ChunkIndex(5, 5), GRID, PLANES, 2).empty


def test_overlap_encodes_chunks_without_latents_once():
    world = WorldMap(40.0)
    c = coded_chunk(world, ChunkIndex(0, 0), 1)
    tri, c.triplane = c.triplane, None
    world.add(ChunkIndex(0, 0), c)
    calls = []
    ov = chunk_overlap(world, ChunkIndex(0, 1), GRID, PLANES, 2, encode=lambda occ: calls.append(1) or tri)
    assert calls == [1] and world[ChunkIndex(0, 0)].triplane is tri and ov.mask_xy[:, :8].all()


def test_stitch_keeps_the_first_chunk_and_covers_the_world():
    world = WorldMap(40.0)
    for k, idx in enumerate([ChunkIndex(0, 0), ChunkIndex(1, 0), ChunkIndex(0, -1)]):
        world.add(idx, coded_chunk(world, idx, k + 1))
    occ = stitch_occupancy(world)
    assert occ.labels.shape == (48, 48, 8)
    assert occ.grid.lower == (-40.0, -80.0, -1.0) and occ.grid.voxel_size == 2.5
    top = occ.labels[..., -1]
    assert (top[:32, 16:48] == 1).all()           # chunk (0, 0) everywhere it lies
    assert (top[32:, 16:48] == 2).all()           # chunk (1, 0) only where (0, 0) is not
    assert (top[:32, :16] == 3).all() and (top[32:, :16] == semantics.FREE).all()
    # the position code agrees wherever a chunk lies: every chunk was put at its own world place
    code = (np.arange(48)[:, None] * 7 + (np.arange(48)[None] - 16) * 3) % 16
    covered = top != semantics.FREE
    assert np.array_equal(occ.labels[..., 0][covered], code[covered])


def test_stride_must_be_whole_cells():
    assert voxel_shift(40.0, 0.4) == 100
    with pytest.raises(ValueError, match="whole number"):
        voxel_shift(40.1, 0.4)


def test_continuation_layout_carries_continues_and_populates():
    syn = SyntheticWorld(11)
    x, y = syn.find_location("suburban")
    world = WorldMap(40.0)
    origin = syn.chunk(x, y)
    origin.T_world_chunk = world.pose_of(ChunkIndex(0, 0))
    world.add(ChunkIndex(0, 0), origin)
    grid = GridSpec()
    carried = carried_layout(world, ChunkIndex(1, 0), grid)
    # carried boxes: the origin's boxes (some straddle its edge) whose centre lies in the new square
    want = sorted(b.track_id for b in origin.layout.boxes if 0.0 <= b.center[0] < 80.0 and -40 <= b.center[1] < 40)
    assert sorted(b.track_id for b in carried.boxes) == want
    for lane in carried.lanes:
        assert (lane.points[:, 0] <= 1e-6).all()
    known = np.zeros((200, 200), bool)
    known[:100] = True
    pieces = continued_lanes(carried.lanes, known, grid)
    crossing = [l for l in origin.layout.lanes if not l.connector and (np.abs(l.points[:, 0] - 40.0) < 0.01).any()]
    assert len(pieces) == len(crossing) > 0
    for p in pieces:
        assert p.points[:, 0].min() >= -1e-6 and p.points[:, 0].max() > 36.0
    layout = continuation_layout(world, ChunkIndex(1, 0), grid, known, "suburban", seed=0)
    again = continuation_layout(world, ChunkIndex(1, 0), grid, known, "suburban", seed=0)
    assert layout == again
    new = layout.boxes[len(carried.boxes):]
    assert all(b.center[0] >= -2.0 for b in new)
    assert any(p.kind == "drivable" and p.points[:, 0].max() > 36 for p in layout.polygons)
