"""The per-noise-level loss of an image denoiser on a small cache: every level and split, deterministic,
a floor from the looks, a clear error for a cache that is too small."""

import json

import pytest
import torch

from xscene_core.eval.noise_levels import TIMESTEPS, main, measure_noise_levels
from xscene_core.models.image_diffusion import PRESETS, ImageDiffusion

SIZE = (16, 28)
TINY = dict(sample_size=SIZE, block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
            norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4, max_boxes=8)


@pytest.fixture(scope="module")
def model_and_cache(tmp_path_factory):
    from xscene_core.data.image_dataset import build_split

    root = tmp_path_factory.mktemp("noise_levels")
    for split in ("train", "val"):
        build_split(root / "cache", split, 1, SIZE, log=lambda m: None)
    torch.manual_seed(0)
    ImageDiffusion(**{**PRESETS["tiny"], **TINY}).save_pretrained(root / "model")
    return root / "model", root / "cache"


def test_every_level_of_both_splits_deterministically(model_and_cache):
    model, cache = model_and_cache
    a = measure_noise_levels(model, cache, scenes=2)
    assert set(a.loss) == {"train", "val"} and all(list(v) == list(TIMESTEPS) for v in a.loss.values())
    assert all(v > 0 for by_t in a.loss.values() for v in by_t.values())
    assert all(v > 0 for v in a.looks_variance.values())  # two looks of a chunk are two different pictures
    assert a == measure_noise_levels(model, cache, scenes=2)
    assert "| val |" in a.table()
    with pytest.raises(ValueError, match="cached scenes, 99 asked for"):
        measure_noise_levels(model, cache, scenes=99)


def test_the_command_writes_its_json(model_and_cache, tmp_path, capsys):
    model, cache = model_and_cache
    main(["--checkpoint", str(model), "--cache", str(cache), "--scenes", "1", "--json", str(tmp_path / "f.json")])
    saved = json.loads((tmp_path / "f.json").read_text())
    assert saved["scenes"] == 1 and set(saved["loss"]) == {"train", "val"}
    assert "looks' variance" in capsys.readouterr().out
