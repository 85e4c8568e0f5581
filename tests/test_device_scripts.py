"""The GPU-run scripts (scripts/device_*.sh) on a CPU: the one-command run builds its cache, trains and
exports a loadable float16 model (slow: it renders and trains), and both scripts parse."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = ("scripts/device_prepare.sh", "scripts/device_image_diffusion.sh")


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_scripts_parse(script):
    subprocess.run(["bash", "-n", str(REPO / script)], check=True)


@pytest.mark.slow
def test_the_device_run_builds_trains_and_exports_on_a_cpu(tmp_path):
    from xscene_core.data.image_dataset import read_text_table, write_text_table
    from xscene_core.models.image_diffusion import ImageDiffusion
    from xscene_core.train.export import export_half

    prep, out = tmp_path / "prep", tmp_path / "out"
    write_text_table(prep / "captions.npz", "val", 2, log=lambda m: None)
    write_text_table(prep / "captions.npz", "train", 1, log=lambda m: None)
    assert len(read_text_table(prep / "captions.npz")) >= 12
    export_half(REPO / "checkpoints" / "image_diffusion", prep / "init")
    (prep / "worlds").write_text("1\n")  # what device_prepare.sh writes: the train worlds of the table
    env = {**os.environ, "PREP": str(prep), "OUT": str(out), "CACHE": str(tmp_path / "cache"),
           "RUN": str(tmp_path / "run"), "DEVICE": "cpu", "DEADLINE": "300", "RESERVE": "60", "SHARDS": "1",
           "BATCH": "1", "NL_SCENES": "2", "PRESET": "tiny_latent", "PY": sys.executable}
    done = subprocess.run(["bash", str(REPO / "scripts" / "device_image_diffusion.sh")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    model = ImageDiffusion.from_pretrained(out / "model")
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["geometry_decoder"] is True and config["vae_path"] == "checkpoints/image_autoencoder"
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in ImageDiffusion.from_pretrained(prep / "init").parameters())
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "done" for e in events) and any("val_loss" in e for e in events)
    assert "train samples at the end" in done.stdout and "looks' variance" in done.stdout
    assert "training for" in done.stdout and "done in" in done.stdout
    assert sorted(f.name for f in out.rglob("*") if f.is_file()) == sorted(
        ["cache.log", "config.json", "log.jsonl", "model.safetensors", "noise_levels_init.json",
         "noise_levels_model.json", "train.log"])  # within the device tool's 8 files
