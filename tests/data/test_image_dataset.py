"""Image-model training data: time of day and weather per location, cache folders."""

from pathlib import Path

import numpy as np
import pytest

from xscene_core.data.image_dataset import cache_dir, location_style
from xscene_core.data.world import SyntheticWorld
from xscene_core.types.scene import ENVIRONMENTS, TIMES_OF_DAY, WEATHERS


def test_cycled_styles_cover_every_pair_and_every_environment():
    n_env = len(ENVIRONMENTS)
    pairs = [(s.time_of_day, s.weather) for w in range(6) for s in (location_style(w, k) for k in range(n_env))]
    assert sorted(pairs) == sorted((t, w) for t in TIMES_OF_DAY for w in WEATHERS)  # all 36, once each
    for k in range(n_env):  # no environment is tied to one time or one weather
        styles = [location_style(w, k) for w in range(6)]
        assert {s.time_of_day for s in styles} == set(TIMES_OF_DAY)
        assert {s.weather for s in styles} == set(WEATHERS)
    assert location_style(3, 2, "world") is None
    with pytest.raises(ValueError, match="styles must be one of"):
        location_style(0, 0, "random")


def test_cache_folders_of_the_two_style_modes():
    root = Path("cache")
    old = cache_dir(root, (64, 112), "train", styles="world")
    assert old.name == "train" and old.parent.name == "64x112"  # the folder caches had before the modes
    assert cache_dir(root, (64, 112), "train").parent.name == "64x112_cycle"
    assert cache_dir(root, (128, 224), "val", (32, 56)).parent.name == "128x224_c32x56_cycle"
    with pytest.raises(ValueError, match="styles must be one of"):
        cache_dir(root, (64, 112), "train", styles="x")


def test_a_chunk_style_changes_its_description_not_its_geometry():
    from xscene_core.data.world.world import Style

    world = SyntheticWorld(5)
    x, y = world.find_location(ENVIRONMENTS[0])
    own = world.chunk(x, y)
    other = Style("night" if world.style.time_of_day != "night" else "noon",
                  "foggy" if world.style.weather != "foggy" else "sunny")
    styled = world.chunk(x, y, style=other)
    assert np.array_equal(own.occupancy.labels, styled.occupancy.labels) and own.layout == styled.layout
    assert (styled.description.time_of_day, styled.description.weather) == (other.time_of_day, other.weather)
    assert styled.description.caption() != own.description.caption()
    assert world.chunk(x, y).description == own.description  # the world's own style is untouched
