"""The preview look: deterministic, styled by the description, textured like a street (not a label
map), painted from the layout, shadowed from the occupancy."""

from dataclasses import replace

import numpy as np
import pytest

from xscene_core import semantics
from xscene_core.data.world import Style as WorldStyle, SyntheticWorld
from xscene_core.ops.condition_maps import PERSPECTIVE_LINE_KINDS, perspective_maps
from xscene_core.ops.preview_look import Style, preview_look
from xscene_core.stages.render import RenderStage, default_rig
from xscene_core.types import Layout, SceneDescription

ID = semantics.ID


@pytest.fixture(scope="module")
def street():
    """A suburban chunk of the synthetic world rendered small (six 64 x 112 views)."""
    world = SyntheticWorld(2, WorldStyle("noon", "sunny"))
    chunk = world.chunk(*world.find_location("suburban"))
    rig = default_rig((64, 112))
    views = RenderStage(rig, backend="torch")(chunk.occupancy)
    return chunk, views


def look(street, time="noon", weather="sunny", env="suburban", seed=0, layout="chunk", occupancy=None):
    chunk, views = street
    lay = chunk.layout if layout == "chunk" else layout
    return preview_look(views, SceneDescription(time, weather, env), lay, seed, occupancy).images.astype(np.float64)


def luminance(img):
    return img @ np.array([0.2126, 0.7152, 0.0722])


def test_preview_is_deterministic_and_the_seed_matters(street):
    a, b = look(street, seed=4), look(street, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, look(street, seed=5))
    assert a.shape == (6, 64, 112, 3)


def test_sunny_noon_reads_as_a_street_not_a_label_map(street):
    _, views = street
    img = look(street)
    sem = views.semantic
    near = views.depth < 25  # far away everything takes the blue of the haze
    sky, road = img[sem == semantics.FREE], img[sem == ID["driveable_surface"]]
    veg = img[(sem == ID["vegetation"]) & near]
    assert (sky[:, 2] > sky[:, 0] + 20).mean() > 0.8  # a blue sky
    road_mean = road.mean(0)
    assert np.ptp(road_mean) < 30 and luminance(road_mean) < luminance(sky.mean(0)) - 20  # grey asphalt, darker than the sky
    assert np.abs(road_mean - semantics.COLORS[ID["driveable_surface"]]).max() > 100  # not the palette magenta
    assert (veg[:, 1] >= veg[:, 0]).mean() > 0.8 and (veg[:, 1] >= veg[:, 2]).mean() > 0.8  # green foliage
    assert luminance(road).std() > 2.0  # textured, not flat colour


def test_time_of_day_and_weather_change_the_look(street):
    _, views = street
    ground = np.isin(views.semantic, semantics.GROUND_IDS)
    noon, night = look(street), look(street, time="night")
    assert luminance(night).mean() < 0.45 * luminance(noon).mean()
    foggy = look(street, weather="foggy")
    far = views.depth > 30
    assert luminance(foggy[far]).std() < luminance(noon[far]).std()
    snowy = look(street, weather="snowy")
    assert luminance(snowy[ground]).mean() > luminance(noon[ground]).mean() + 30
    rainy = look(street, weather="rainy")
    assert luminance(rainy).mean() < luminance(noon).mean()
    dusk = look(street, time="dusk")
    assert dusk[..., 0].mean() - dusk[..., 2].mean() > noon[..., 0].mean() - noon[..., 2].mean()  # warmer light


def test_layout_paints_lane_lines_and_car_colours(street):
    chunk, views = street
    lines = perspective_maps(chunk.layout, views.rig).lines
    painted = lines[:, [PERSPECTIVE_LINE_KINDS.index(k) for k in ("lane_divider", "road_divider")]].any(1)
    painted &= views.semantic == ID["driveable_surface"]
    assert painted.sum() > 20
    with_paint, without = look(street), look(street, layout=None)
    assert luminance(with_paint[painted]).mean() > luminance(without[painted]).mean() + 10
    cars = views.semantic == ID["car"]
    assert cars.sum() > 20
    recolour = lambda c: Layout(tuple(replace(b, color=c) for b in chunk.layout.boxes), chunk.layout.lanes,  # noqa: E731
                                chunk.layout.lines, chunk.layout.polygons)
    red, blue = look(street, layout=recolour("red"))[cars], look(street, layout=recolour("blue"))[cars]
    assert red[:, 0].mean() > blue[:, 0].mean() + 15 and blue[:, 2].mean() > red[:, 2].mean() + 10


def test_occupancy_casts_sun_shadows(street):
    chunk, views = street
    lit = look(street, time="afternoon")
    shadowed = look(street, time="afternoon", occupancy=chunk.occupancy)
    hit = views.semantic != semantics.FREE
    darker = luminance(shadowed[hit]) < luminance(lit[hit]) - 15
    assert darker.mean() > 0.02
    assert (luminance(shadowed[hit]) <= luminance(lit[hit]) + 1e-6).all()


def test_style_from_description_falls_back_on_unknown_words():
    s = Style.from_description(SceneDescription("evening", "drizzle", "downtown"))
    assert (s.time_of_day, s.weather, s.environment) == (Style().time_of_day, Style().weather, "downtown")
    assert Style.from_description(None) == Style()
    with pytest.raises(ValueError, match="time_of_day"):
        Style("midnight", "sunny", "downtown")
