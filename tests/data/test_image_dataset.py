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


def _write_sample(path, caption, style=None):
    V, h, w = 6, 4, 8
    arrays = dict(semantic=np.zeros((V, h, w), np.uint8), depth=np.ones((V, h, w), np.float16),
                  persp=np.zeros((V, 25, h, w), np.uint8), points=np.zeros((V, 3, h, w), np.float16),
                  camera=np.zeros((V, 10), np.float32), boxes=np.zeros((0, 7), np.float32),
                  box_labels=np.zeros(0, np.int64), text=np.zeros(384, np.float32), caption=np.array(caption),
                  preview=np.zeros((2, V, h, w, 3), np.uint8), reference=np.zeros((2, V, h, w, 3), np.uint8),
                  T_ref_new=np.eye(4, dtype=np.float32))
    if style is not None:
        arrays["style"] = style
    np.savez(path, **arrays)


def test_sample_style_stored_or_read_from_an_older_caches_caption(tmp_path):
    from xscene_core.data.image_dataset import load_sample
    from xscene_core.models.image_condition import style_features

    _write_sample(tmp_path / "new.npz", "anything", style_features("dusk", "foggy"))
    _write_sample(tmp_path / "old.npz", "A snowy dawn scene in a rural area, featuring a road.")
    _write_sample(tmp_path / "other.npz", "a street")
    assert np.array_equal(load_sample(tmp_path / "new.npz").style, style_features("dusk", "foggy"))
    assert np.array_equal(load_sample(tmp_path / "old.npz").style, style_features("dawn", "snowy"))
    assert not load_sample(tmp_path / "other.npz").style.any()  # a caption of another form: style unknown


def test_a_text_table_builds_the_cache_without_the_embedder(tmp_path):
    """A machine without the embedder package builds the cache from a caption table written elsewhere,
    with the embedder's own vectors; a caption the table lacks leaves its sample out, with a message."""
    from xscene_core.data.image_dataset import build_split, read_text_table, write_text_table
    from xscene_core.llm.embedder import embed

    table_path = tmp_path / "captions.npz"
    n = write_text_table(table_path, "val", 1, log=lambda m: None)
    table = read_text_table(table_path)
    assert n == len(table) >= 1 and all(t.shape == (384,) for t in table.values())

    size = (16, 28)
    paths = build_split(tmp_path / "a", "val", 1, size, text_table=table, log=lambda m: None)
    assert paths
    captions = []
    for path in paths:
        with np.load(path) as d:
            captions.append(str(d["caption"]))
            np.testing.assert_allclose(d["text"], embed([captions[-1]])[0], atol=1e-5)

    gone = paths[0]
    gone.unlink()
    messages = []
    partial = {c: t for c, t in table.items() if c != captions[0]}
    assert build_split(tmp_path / "a", "val", 1, size, text_table=partial, log=messages.append) == paths[1:]
    assert any("caption not in the text table" in m for m in messages) and not gone.exists()


def test_add_paints_fills_an_older_cache_from_its_worlds(tmp_path):
    """A cache file written before paints were stored gets the paints its chunk's boxes have (regenerated
    from the world seed, not rendered); a file whose boxes do not match its world is refused."""
    from xscene_core.data.image_dataset import add_paints, build_sample, cache_files, load_sample
    from xscene_core.data.splits import world_seeds

    seed = next(world_seeds("val"))
    sample = build_sample(SyntheticWorld(seed), 1, (16, 28), np.random.default_rng(0))
    assert sample is not None and sample["box_paints"].shape == (len(sample["box_labels"]), 4)
    assert sample["box_paints"][:, 3].any(), "the synthetic world paints its cars"
    old = {k: v for k, v in sample.items() if k != "box_paints"}
    np.savez(tmp_path / f"w{seed:06d}_01.npz", **old, text=np.zeros(384, np.float32), world_seed=np.int64(seed))
    assert not load_sample(tmp_path / f"w{seed:06d}_01.npz").arrays.box_paints.any()  # unknown until filled
    assert add_paints(tmp_path, log=lambda m: None) == 1
    np.testing.assert_array_equal(load_sample(cache_files(tmp_path)[0]).arrays.box_paints, sample["box_paints"])
    assert add_paints(tmp_path, log=lambda m: None) == 0  # nothing left to do

    moved = dict(old, boxes=old["boxes"] + 1.0)
    np.savez(tmp_path / f"w{seed:06d}_02.npz", **moved, text=np.zeros(384, np.float32), world_seed=np.int64(seed))
    with pytest.raises(ValueError, match="boxes differ"):
        add_paints(tmp_path, log=lambda m: None)


def test_add_areas_fills_an_older_cache_as_the_builder_draws_them(tmp_path):
    """A cache file written before map areas were stored gets the crossings the builder would have drawn
    (from the regenerated layout at twice the image size, averaged to the condition size)."""
    from xscene_core.data.image_dataset import ImageDataset, add_areas, build_sample, cache_files, load_sample
    from xscene_core.data.splits import world_seeds
    from xscene_core.models.image_condition import AREA_CHANNELS

    seed, size = next(world_seeds("val")), (16, 28)
    world = SyntheticWorld(seed)
    found = [(k, s) for k in range(3) if (s := build_sample(world, k, size, np.random.default_rng(0), (8, 14))) is not None
             and s["areas"][:, 0].any()]
    assert found, "a crossing in one of the first locations"
    k, sample = found[0]
    assert sample["areas"].shape == (6, AREA_CHANNELS, 8, 14)
    old = {n: v for n, v in sample.items() if n != "areas"}
    path = tmp_path / f"w{seed:06d}_{k:02d}.npz"
    np.savez(path, **old, text=np.zeros(384, np.float32), world_seed=np.int64(seed))
    assert not load_sample(path).arrays.areas.any()  # none known until filled
    assert add_areas(tmp_path, log=lambda m: None) == 1
    np.testing.assert_array_equal(load_sample(cache_files(tmp_path)[0]).arrays.areas, sample["areas"])
    assert add_areas(tmp_path, log=lambda m: None) == 0
    # a file from before the road paint holds the crossings only: it loads with the paint unknown, and
    # --add-areas redraws it
    np.savez(path, **old, areas=sample["areas"][:, :1], text=np.zeros(384, np.float32), world_seed=np.int64(seed))
    crossings_only = load_sample(path).arrays.areas
    np.testing.assert_array_equal(crossings_only[:, :1], sample["areas"][:, :1])
    assert crossings_only.shape[1] == AREA_CHANNELS and not crossings_only[:, 1:].any()
    assert add_areas(tmp_path, log=lambda m: None) == 1
    np.testing.assert_array_equal(load_sample(cache_files(tmp_path)[0]).arrays.areas, sample["areas"])
    # a file from before the light marks were widened (no areas_version) is named by the trainers' check
    # and redrawn
    narrow = {n: v for n, v in sample.items() if n != "areas_version"}
    np.savez(path, **narrow, text=np.zeros(384, np.float32), world_seed=np.int64(seed))
    assert "1 of 1 cached samples" in ImageDataset.load([path]).missing_areas(size, (8, 14))
    assert add_areas(tmp_path, log=lambda m: None) == 1
    assert ImageDataset.load([path]).missing_areas(size, (8, 14)) is None


def test_night_looks_drawn_before_the_layout_lamps_are_redrawn_before_marks_are_added(tmp_path):
    """A night file without look_version has lamps where its look seed put them, not where the condition
    marks them: the builder counts it as missing (draws it again) and --add-areas refuses to mark it."""
    from xscene_core.data.image_dataset import LOOK_VERSION, _stale_looks, add_areas, build_sample
    from xscene_core.data.splits import world_seeds
    from xscene_core.data.world import Style

    seed = next(world_seeds("val"))
    world = SyntheticWorld(seed)
    night = build_sample(world, 0, (16, 28), np.random.default_rng(0), (8, 14), Style("night", "sunny"))
    day = build_sample(world, 0, (16, 28), np.random.default_rng(0), (8, 14), Style("noon", "sunny"))
    assert int(night["look_version"]) == LOOK_VERSION
    for name, s in (("night", night), ("day", day)):
        old = {n: v for n, v in s.items() if n != "look_version"}
        np.savez(tmp_path / f"{name}.npz", **old, text=np.zeros(384, np.float32), world_seed=np.int64(seed))
        np.savez(tmp_path / f"{name}_new.npz", **s, text=np.zeros(384, np.float32), world_seed=np.int64(seed))
    assert _stale_looks(tmp_path / "night.npz")
    assert not _stale_looks(tmp_path / "day.npz") and not _stale_looks(tmp_path / "night_new.npz")
    folder = tmp_path / "split"
    folder.mkdir()
    (tmp_path / "night.npz").rename(folder / f"w{seed:06d}_00.npz")
    with pytest.raises(ValueError, match="night looks drawn before"):
        add_areas(folder, log=lambda m: None)


def test_add_facades_fills_each_looks_wall_colours_and_batches_take_their_looks(tmp_path):
    """A cache file written before the walls' colours were stored gets those each of its look seeds picks,
    as the builder draws them; the trainers name it until then; a batch carries the colours of the look it
    draws (the target it is compared with)."""
    from xscene_core.data.image_dataset import ImageDataset, add_facades, build_sample, load_sample

    seed, size = 5, (16, 28)
    sample = build_sample(SyntheticWorld(seed), 0, size, np.random.default_rng(0), (8, 14))  # downtown
    walls = sample["facade_paint"]
    assert walls.shape == (2, 6, 4, 8, 14) and walls.dtype == np.uint8
    assert walls[:, :, 3].any(), "downtown shows building walls"
    np.testing.assert_array_equal(walls[0, :, 3], walls[1, :, 3])  # the same walls ...
    assert not np.array_equal(walls[0], walls[1])                   # ... in each look's colours
    path = tmp_path / f"w{seed:06d}_00.npz"
    old = {n: v for n, v in sample.items() if n != "facade_paint"}
    np.savez(path, **old, text=np.zeros(384, np.float32), world_seed=np.int64(seed))
    assert load_sample(path).facade_paint is None
    assert "1 of 1 cached samples" in ImageDataset.load([path]).missing_facades(size, (8, 14))
    assert add_facades(tmp_path, log=lambda m: None) == 1
    np.testing.assert_array_equal(load_sample(path).facade_paint, walls)
    assert ImageDataset.load([path]).missing_facades(size, (8, 14)) is None
    assert add_facades(tmp_path, log=lambda m: None) == 0
    data = ImageDataset.load([path, path])
    _, cond = data.batch([0, 1], [0, 1], [False, False], 48)
    np.testing.assert_allclose(cond.facade_paint.numpy(), walls.astype(np.float32) / 255.0)
