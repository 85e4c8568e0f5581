"""The sky dome of a lifted scene: cells by direction, colours from the pixels that see no geometry, the
unseen cells filled, flat Gaussians that close the dome, and the Gaussian stage that adds it."""

import math

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.ops.geometry import quaternion_to_matrix
from xscene_core.ops.lifting.sky import (SKY_CELL_DEG, SKY_LOWEST_DEG, SKY_OVERLAP, SKY_RADIUS, fill_sky, lift_sky,
                                         sky_cells, sky_dome, sky_grid_shape, sky_radius, sky_sums)
from xscene_core.ops.rasterize import BOX_SIGMAS
from xscene_core.stages.render import default_rig
from xscene_core.types.images import MultiViewImages


def test_directions_fall_in_their_cells():
    rows, cols = sky_grid_shape()
    d = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, -1], [1, -1e-3, 0]], float)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    row, col = sky_cells(d)
    horizon = int(-SKY_LOWEST_DEG / SKY_CELL_DEG)
    assert row.tolist() == [horizon, horizon, rows - 1, -1, horizon]  # the nadir is below the dome
    assert col[:2].tolist() == [0, int(90 / SKY_CELL_DEG)] and col[4] == cols - 1  # azimuth wraps below 360


def test_pixels_that_see_nothing_colour_the_cells_their_rays_point_into():
    rig = default_rig((24, 40))
    images = np.zeros((6, 24, 40, 3), np.uint8)
    images[..., 2] = 200                      # blue everywhere ...
    semantic = np.full((6, 24, 40), semantics.FREE, np.uint8)
    semantic[:, 12:] = 11                     # ... but only the upper half of each view sees no geometry
    images[1, :12] = (250, 100, 0)            # the front camera's sky is orange
    sums, counts = sky_sums(MultiViewImages(images, rig), semantic)
    assert counts.sum() == 6 * 12 * 40 and sums.shape == counts.shape + (3,)
    mean = sums / np.maximum(counts, 1)[..., None]
    row, col = sky_cells(np.array([[1.0, 0.0, 0.05]]) / np.linalg.norm([1.0, 0.0, 0.05]))
    assert counts[row[0], col[0]] > 0 and np.allclose(mean[row[0], col[0]], np.array([250, 100, 0]) / 255)
    # a rig turned by 180 degrees in the scene puts the orange sky behind +x
    T = np.eye(4)
    T[:2, :2] = [[-1, 0], [0, -1]]
    sums2, counts2 = sky_sums(MultiViewImages(images, rig), semantic, T)
    row2, col2 = sky_cells(np.array([[-1.0, 0.0, 0.05]]) / np.linalg.norm([1.0, 0.0, 0.05]))
    assert np.allclose(sums2[row2[0], col2[0]] / counts2[row2[0], col2[0]], np.array([250, 100, 0]) / 255)
    with pytest.raises(ValueError, match="does not match"):
        sky_sums(MultiViewImages(images, rig), semantic[:, :10])


def test_unseen_cells_take_the_nearest_seen_cell_of_their_column_then_the_nearest_column():
    rows, cols = 6, 8
    sums, counts = np.zeros((rows, cols, 3)), np.zeros((rows, cols), np.int64)
    counts[2, 1], sums[2, 1] = 2, (1.0, 0.0, 0.0)        # column 1: red at row 2
    counts[4, 1], sums[4, 1] = 1, (0.0, 1.0, 0.0)        # ... and green at row 4
    counts[0, 6], sums[0, 6] = 1, (0.0, 0.0, 1.0)        # column 6: blue at row 0
    out = fill_sky(sums, counts)
    assert np.allclose(out[2, 1], (0.5, 0, 0)) and np.allclose(out[5, 1], (0, 1, 0)) and np.allclose(out[0, 1], (0.5, 0, 0))
    assert np.allclose(out[:, 6], (0, 0, 1))
    assert np.allclose(out[:, 0], out[:, 1]) and np.allclose(out[:, 7], out[:, 6])  # 7 is next to 6, 0 to 1 (wrap)
    assert fill_sky(sums * 0, counts * 0) is None


def test_the_dome_is_closed_flat_facing_the_centre_and_labelled_free():
    rows, cols = sky_grid_shape()
    colours = np.random.default_rng(0).random((rows, cols, 3))
    centre = np.array([10.0, -5.0, 1.0])
    dome = sky_dome(colours, centre)
    assert len(dome) == rows * cols and (dome.labels == semantics.FREE).all() and (dome.opacities == 1).all()
    r = (dome.means.double().numpy() - centre)
    assert np.allclose(np.linalg.norm(r, axis=1), SKY_RADIUS, rtol=1e-5)
    R = np.stack([quaternion_to_matrix(q) for q in dome.quats.double().numpy()])
    normal = R[:, :, 2]                                  # the thin axis points to the centre's sphere normal
    assert np.allclose(np.abs((normal * r / SKY_RADIUS).sum(1)), 1.0, atol=1e-4)
    spacing = SKY_RADIUS * math.radians(SKY_CELL_DEG)
    half = dome.scales.double().numpy() * BOX_SIGMAS
    assert (half[:, 1] * 2 >= spacing).all()                           # no gap between rows
    horizon = int(-SKY_LOWEST_DEG / SKY_CELL_DEG)
    assert half[horizon * cols, 0] * 2 >= spacing and SKY_OVERLAP > 1  # nor along the horizon
    assert (half[:, 2] < half[:, 1] / 10).all()                         # flat
    assert torch.allclose(dome.colors, torch.tensor(colours.reshape(-1, 3), dtype=torch.float32))


def test_the_dome_grows_with_the_scene():
    assert sky_radius(10.0) == SKY_RADIUS and sky_radius(400.0) == 1200.0
    colours = np.full(sky_grid_shape() + (3,), 0.5)
    big = sky_dome(colours, radius=1200.0)
    assert np.allclose(big.means.norm(dim=1).numpy(), 1200.0, rtol=1e-5)
    assert torch.allclose(big.scales, sky_dome(colours).scales * 1200.0 / SKY_RADIUS, rtol=1e-5)


@pytest.fixture(scope="module")
def lifted():
    from xscene_core.stages.gaussians import GaussianStage, synthetic_world

    world = synthetic_world(0, 1, (48, 80), environment="suburban")
    return world, GaussianStage(sky=False)(world, refine_steps=1), GaussianStage()(world, refine_steps=1)


def test_the_stage_adds_the_dome_after_the_refined_surfaces(lifted):
    from xscene_core.stages.gaussians import GaussianStage

    world, plain, with_sky = lifted
    chunk = next(iter(world.chunks.values()))
    expected = lift_sky([(chunk.preview, chunk.views.semantic, chunk.T_world_chunk)], chunk.T_world_chunk[:3, 3])
    assert len(with_sky) == len(plain) + len(expected)
    for f in ("means", "colors", "opacities"):                  # the surfaces are refined as without a sky
        assert torch.allclose(getattr(with_sky, f)[:len(plain)], getattr(plain, f), atol=1e-5)  # (thread sums)
    assert torch.allclose(with_sky.colors[len(plain):], expected.colors)
    centre = chunk.T_world_chunk[:3, 3]                          # one chunk reaches less than 500 / 3 m
    assert np.allclose(np.linalg.norm(with_sky.means[len(plain):].numpy() - centre, axis=1), SKY_RADIUS, rtol=1e-5)
    one = GaussianStage().chunk(chunk)
    assert len(one) == len(GaussianStage(sky=False).chunk(chunk)) + len(expected)


def test_novel_views_draw_the_sky_behind_the_surfaces_in_colour_only(lifted):
    from xscene_core.stages.gaussians import GaussianStage, look_camera, street_camera

    world, plain, with_sky = lifted
    chunk = next(iter(world.chunks.values()))
    up = look_camera(np.array([0.0, 0.0, 2.0]), np.array([1.0, 0.0]), (32, 48), pitch_deg=20.0)
    street = street_camera(chunk, (32, 48))
    stage = GaussianStage()
    for mode in ("box", "splat"):
        for cam in (up, street):
            a, b = stage.render(plain, cam, mode), stage.render(with_sky, cam, mode)
            # depth, classes and coverage are the surfaces' alone, also where a splat's edge is half transparent
            assert np.array_equal(a.depth, b.depth) and np.array_equal(a.semantic, b.semantic)
            assert np.array_equal(a.alpha, b.alpha)
            # the dome shows through a surface only as far as the surface lets it: (1 - alpha) of the sky
            gap = np.abs(a.rgb[0].astype(int) - b.rgb[0]).max(-1)
            assert (gap <= (1 - a.alpha[0]) * 255 + 1).all()
            assert (a.alpha[0] > 0.5).mean() > 0.1 and (gap[a.alpha[0] > 0.98] <= 6).all()
        a, b = stage.render(plain, up, mode), stage.render(with_sky, up, mode)
        sky = a.alpha[0] == 0
        assert sky.mean() > 0.2                                   # the camera looks up into the sky
        assert (a.rgb[0][sky] == 0).all() and b.rgb[0][sky].mean() > 20  # black without the dome, coloured with it
