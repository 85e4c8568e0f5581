"""Facade windows in the condition: the window grid follows from the wall and the environment (not a look
seed), the condition marks it on the building walls, and the preview draws its glazing on those marks."""

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.models.image_condition import AREA_KINDS, view_condition_arrays
from xscene_core.ops.facade_windows import WINDOW_GRIDS, WINDOW_MIN_HEIGHT, window_grid
from xscene_core.stages.render import default_rig

WINDOW = AREA_KINDS.index("window")
MANMADE = semantics.ID["manmade"]


def _wall(environment: str, n: int = 4000) -> torch.Tensor:
    """Window flags of n points on a 40 m x 15 m wall facing -y (the plane y = 0), ground at z = 0."""
    g = torch.Generator().manual_seed(0)
    P = torch.stack([torch.rand(n, generator=g) * 40, torch.zeros(n), torch.rand(n, generator=g) * 15], -1)
    normal = torch.tensor([[0.0, -1.0, 0.0]]).expand(n, 3)
    return P, window_grid(P, normal, 0.0, environment)


def test_the_window_grid_repeats_by_floor_and_column_and_keeps_off_the_ground():
    P, grid = _wall("suburban")
    floor_h, col_w, share = WINDOW_GRIDS["suburban"]
    assert not grid.window[P[:, 2] < WINDOW_MIN_HEIGHT].any()
    # shifting a point by one floor and one column lands on the same place of the grid
    shifted = window_grid(P + torch.tensor([col_w, 0.0, floor_h]), torch.tensor([[0.0, -1.0, 0.0]]).expand(len(P), 3),
                          0.0, "suburban")
    above = P[:, 2] > WINDOW_MIN_HEIGHT
    assert torch.equal(shifted.window[above], grid.window[above])
    assert torch.equal(shifted.floor, grid.floor + 1)
    # about the share of a floor's height times the glazed share of a column
    assert abs(grid.window[above].float().mean().item() - share * 0.64) < 0.06


def test_highway_walls_have_no_windows_and_an_unknown_environment_is_refused():
    assert not _wall("highway")[1].window.any()
    with pytest.raises(ValueError, match="environment must be one of"):
        _wall("moon")


def location_looks(world_seed: int, k: int, environment: str, seeds=(1, 2)):
    """(chunk, size, semantic [V, 2h, 2w], depth, looks uint8 [L, V, h, w, 3]) of location k of a world on a
    sunny noon, checked to be of `environment`, at the cache's condition size; one look per seed."""
    from xscene_core.data.image_dataset import location_chunk, render_looks
    from xscene_core.data.world import Style, SyntheticWorld

    _, chunk = location_chunk(SyntheticWorld(world_seed), k, Style("noon", "sunny"))
    assert chunk.description.environment == environment
    size = (64, 112)
    sem, depth, looks = render_looks(chunk, size, list(seeds))
    return chunk, size, sem, depth, looks


@pytest.fixture(scope="module")
def downtown():
    return location_looks(5, 0, "downtown")


def test_the_condition_marks_windows_on_the_walls_only_and_needs_the_environment(downtown):
    chunk, size, sem, depth, _ = downtown
    rig = default_rig((2 * size[0], 2 * size[1]))
    arrays = view_condition_arrays(sem, depth, chunk.layout, rig, size, "downtown")
    marks = arrays.areas[:, WINDOW]
    assert (marks > 127).sum() > 50, "a downtown street shows many windows"
    assert (arrays.semantic[marks > 0] == MANMADE).mean() > 0.9, "windows lie on man-made surfaces"
    unknown = view_condition_arrays(sem, depth, chunk.layout, rig, size)
    assert not unknown.areas[:, WINDOW].any(), "no environment: the windows are unknown, not guessed"
    np.testing.assert_array_equal(unknown.areas[:, :WINDOW], arrays.areas[:, :WINDOW])
    suburban = view_condition_arrays(sem, depth, chunk.layout, rig, size, "suburban")
    assert not np.array_equal(suburban.areas[:, WINDOW], marks), "the grid follows the environment"


def test_the_preview_draws_its_glazing_on_the_marks_whatever_its_seed(downtown):
    """The glass differs from the wall beside it (darker than a pale wall, brighter than a dark one) on the
    marks of the scene's own grid, far more than on another environment's grid, in every look, although
    each look seed paints its walls differently: the marks say where the preview's windows are."""
    from xscene_core.eval.image_metrics import window_tile_contrast

    chunk, size, sem, depth, looks = downtown
    rig = default_rig((2 * size[0], 2 * size[1]))
    own = view_condition_arrays(sem, depth, chunk.layout, rig, size, chunk.description.environment)
    other = view_condition_arrays(sem, depth, chunk.layout, rig, size, "industrial")
    assert not np.array_equal(looks[0], looks[1])
    for look in looks:
        (s_own, n_own), (s_other, n_other) = window_tile_contrast(look, own), window_tile_contrast(look, other)
        assert n_own > 10 and n_other > 0
        assert s_own / n_own > 1.5 * s_other / n_other
    flat = np.full_like(looks[0], 120)
    assert window_tile_contrast(flat, own)[0] < 1e-9, "a bare wall shows no windows"
