"""The walls' colours in the condition: a look seed picks one palette colour per building block, the preview
paints its walls with it, the condition carries it (ops.facade_paint), and the encoders read it in the
paint map where no box is."""

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.models.image_condition import (AREA_KINDS, PAINT_FEATURES, PERSP_CHANNELS, GeometryEncoder, ImageCondition,
                                                paint_map, view_condition_arrays)
from xscene_core.ops.facade_paint import FACADE_BLOCK, FACADE_PALETTES, facade_colors
from xscene_core.stages.render import default_rig
from test_window_condition import location_looks

MANMADE = semantics.ID["manmade"]
WINDOW = AREA_KINDS.index("window")


def test_one_palette_colour_per_block_drawn_by_the_seed():
    g = torch.Generator().manual_seed(0)
    P = torch.rand(3000, 3, generator=g) * torch.tensor([60.0, 60.0, 12.0])
    a, b = facade_colors(P, "suburban", 1), facade_colors(P, "suburban", 2)
    torch.testing.assert_close(a, facade_colors(P, "suburban", 1))
    palette = torch.tensor(FACADE_PALETTES["suburban"])
    assert ((a[:, None] - palette[None]).abs().sum(-1).min(-1).values < 1e-6).all(), "colours of the palette"
    block = torch.floor(P[:, :2] / FACADE_BLOCK).long()
    same = (block[:, None] == block[None]).all(-1)
    assert torch.equal((a[:, None] == a[None]).all(-1) | ~same, torch.ones_like(same)), "one colour per block"
    assert not torch.equal(a, b), "another seed paints other colours"
    with pytest.raises(ValueError, match="environment must be one of"):
        facade_colors(P, "moon", 1)


@pytest.fixture(scope="module")
def suburban():
    return location_looks(5, 1, "suburban")


def test_the_condition_carries_the_walls_colours_of_its_seed_only_on_walls(suburban):
    chunk, size, sem, depth, _ = suburban
    rig = default_rig((2 * size[0], 2 * size[1]))
    one = view_condition_arrays(sem, depth, chunk.layout, rig, size, "suburban", facade_seed=1)
    assert one.facade_paint.shape == (6, PAINT_FEATURES, *size) and one.facade_paint.dtype == np.uint8
    cover = one.facade_paint[:, 3]
    assert (cover == 255).sum() > 100, "a suburban street shows building walls"
    assert (one.semantic[cover > 0] == MANMADE).mean() > 0.9, "the colours lie on man-made surfaces"
    assert (one.facade_paint[:, :3] <= cover[:, None]).all(), "colour x share never exceeds the share"
    two = view_condition_arrays(sem, depth, chunk.layout, rig, size, "suburban", facade_seed=2)
    np.testing.assert_array_equal(two.facade_paint[:, 3], cover)
    assert not np.array_equal(two.facade_paint, one.facade_paint), "the seed picks the colours"
    np.testing.assert_array_equal(two.areas, one.areas)
    for unknown in (view_condition_arrays(sem, depth, chunk.layout, rig, size, "suburban"),
                    view_condition_arrays(sem, depth, chunk.layout, rig, size, None, facade_seed=1)):
        assert not unknown.facade_paint.any(), "no seed or no environment: colours unknown, not guessed"


def test_the_preview_paints_its_walls_in_its_seeds_colours(suburban):
    """On the bare walls, each look's colour follows the colours its own seed picks far better than those
    of the other look's seed: the condition says what the preview draws."""
    chunk, size, sem, depth, looks = suburban
    rig = default_rig((2 * size[0], 2 * size[1]))
    paints = [view_condition_arrays(sem, depth, chunk.layout, rig, size, "suburban", facade_seed=s) for s in (1, 2)]
    for i, look in enumerate(looks):
        own, other = paints[i], paints[1 - i]
        bare = (own.facade_paint[:, 3] == 255) & (own.areas[:, WINDOW] == 0)
        seen = look[bare].astype(np.float64)                                     # [M, 3]

        def corr(arrays) -> float:
            want = arrays.facade_paint[:, :3].transpose(0, 2, 3, 1)[bare].astype(np.float64)
            return float(np.mean([np.corrcoef(seen[:, c], want[:, c])[0, 1] for c in range(3)]))

        # shading (sun, shadows, grime) varies along a wall; the colour picked is the rest
        assert corr(own) > 0.3 and corr(own) > corr(other) + 0.3


def _condition(facade: torch.Tensor) -> ImageCondition:
    """One scene of 2 views 4 x 6: a wall on the left half, a painted car box on the right (id 4: car)."""
    b, v, h, w = 1, 2, 4, 6
    sem = torch.full((b, v, h, w), MANMADE)
    persp = torch.zeros(b, v, PERSP_CHANNELS, h, w)
    car = semantics.OBJECT_IDS.index(semantics.ID["car"])
    persp[:, :, car, :, 3:] = 1.0
    points = torch.zeros(b, v, 3, h, w)
    points[:, :, 2] = -1.0 / 4.0  # ego z = 0 (SCENE_CENTRE z 1, half 4): inside the car box below
    cond = ImageCondition(
        sem, torch.full((b, v, h, w), 10.0), persp, points, torch.ones(b, dtype=torch.bool), torch.zeros(b, v, 10),
        torch.tensor([[semantics.ID["car"]]]), torch.tensor([[[0.0, 0.0, 0.0, 100.0, 100.0, 4.0, 0.0]]]),
        torch.ones(b, 1, dtype=torch.bool), torch.zeros(b, 384), torch.ones(b, dtype=torch.bool),
        torch.zeros(b, v, 4, h // 2, w // 2), torch.zeros(b, 5), torch.zeros(b, dtype=torch.bool), torch.zeros(b, 12),
        box_paint=torch.tensor([[[0.9, 0.1, 0.1, 1.0]]]), facade_paint=facade)
    return cond


def test_the_paint_map_holds_the_walls_where_no_painted_box_is():
    wall = torch.zeros(1, 2, PAINT_FEATURES, 4, 6)
    wall[:, :, :, :, :] = torch.tensor([0.2, 0.5, 0.7, 1.0])[:, None, None]
    cond = _condition(wall)
    boxes, both = paint_map(cond), paint_map(cond, facades=True)
    torch.testing.assert_close(boxes[:, :, :, :, 3:], both[:, :, :, :, 3:])      # the car keeps its paint
    assert not boxes[:, :, :, :, :3].any()
    torch.testing.assert_close(both[:, :, :, :, :3], wall[:, :, :, :, :3])        # the wall takes its colour
    torch.testing.assert_close(both[0, 0, :, 0, 4], torch.tensor([0.9, 0.1, 0.1, 1.0]))
    half = cond.coarsened(2).facade_paint
    assert half.shape == (1, 2, PAINT_FEATURES, 2, 3)
    torch.testing.assert_close(half, wall[:, :, :, ::2, ::2])


def test_an_encoder_with_facades_reads_the_walls_colours():
    torch.manual_seed(0)
    enc = GeometryEncoder(8, 4, paint=True, areas=True, facades=True)
    torch.nn.init.normal_(enc.paint_in.weight)
    plain = GeometryEncoder(8, 4, paint=True, areas=True)
    plain.load_state_dict(enc.state_dict())  # the same weights: the flag adds none
    red, blue = torch.zeros(1, 2, PAINT_FEATURES, 4, 6), torch.zeros(1, 2, PAINT_FEATURES, 4, 6)
    red[:, :, 0], red[:, :, 3] = 0.8, 1.0
    blue[:, :, 2], blue[:, :, 3] = 0.8, 1.0
    assert not torch.allclose(enc(_condition(red)), enc(_condition(blue)))
    torch.testing.assert_close(plain(_condition(red)), plain(_condition(blue)))
    dropped = _condition(red).without_geometry()
    assert not enc(dropped).any(), "dropped geometry drops the walls' colours too"
    with pytest.raises(ValueError, match="needs paint"):
        GeometryEncoder(8, 4, facades=True)
