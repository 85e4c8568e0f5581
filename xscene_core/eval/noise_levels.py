"""The image denoiser's loss per noise level, beside the floor its top levels cannot go below.

    python -m xscene_core.eval.noise_levels [--checkpoint checkpoints/image_diffusion] [--scenes 12] [--json F]

For the first `scenes` files (sorted) of the `train` and the `val` cache of the model's image and condition
size: the training loss (MSE on the model's target, v for the shipped models) at fixed timesteps, each
scene once with look (scene index mod 2), no reference view and one fixed noise per scene, the same for
every timestep and every model. Beside it, looks_variance: half the mean squared difference between the
two cached looks of each scene in the model space, which estimates what the condition leaves open (the
looks differ only in sun azimuth, facades and lit windows); at the top noise levels the loss cannot go
below it, so the gap between the two is what more training can still take there.

The low levels decide fine detail, the high ones colour and layout. `train` beside `val` tells under- from
over-fitting. Both are training-distribution figures (the val worlds are held out from training, not
from model selection: the trainer keeps its best checkpoint by a val loss).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

TIMESTEPS = (50, 200, 400, 600, 800, 950)


@dataclass
class NoiseLevelLosses:
    """Per split: {timestep: mean loss}, their mean, and the looks' variance (see the module docstring)."""

    checkpoint: str
    scenes: int
    loss: dict[str, dict[int, float]]
    mean: dict[str, float]
    looks_variance: dict[str, float]

    def table(self) -> str:
        head = "| split | " + " | ".join(f"t={t}" for t in TIMESTEPS) + " | mean | looks' variance |"
        rows = [head, "|" + "---|" * (len(TIMESTEPS) + 3)]
        for split, by_t in self.loss.items():
            rows.append(f"| {split} | " + " | ".join(f"{by_t[t]:.4f}" for t in TIMESTEPS) +
                        f" | {self.mean[split]:.4f} | {self.looks_variance[split]:.4f} |")
        return "\n".join(rows)


@torch.no_grad()
def measure_noise_levels(checkpoint: str | Path, cache: str | Path = "runs/image_cache", scenes: int = 12,
                         device: str = "cpu", styles: str | None = None) -> NoiseLevelLosses:
    """The figures of the module docstring for the ImageDiffusion folder `checkpoint`. Raises ValueError
    when a split's cache holds fewer than `scenes` files."""
    from ..data.image_dataset import DEFAULT_STYLES, LOOKS, ImageDataset, cache_dir, cache_files
    from ..models.image_diffusion import ImageCodec, ImageDiffusion, diffusion_loss

    model = ImageDiffusion.from_pretrained(checkpoint).to(device).eval()
    codec = ImageCodec(model)
    stride = model.config["geometry_stride"]
    sched = model.scheduler("ddpm")
    loss, mean, looks = {}, {}, {}
    for split in ("train", "val"):
        folder = cache_dir(Path(cache), codec.image_size, split, model.condition_size, styles or DEFAULT_STYLES)
        paths = cache_files(folder)[:scenes]
        if len(paths) < scenes:
            raise ValueError(f"{folder}: {len(paths)} cached scenes, {scenes} asked for (build the cache with "
                             "python -m xscene_core.data.image_dataset)")
        data = ImageDataset.load(paths).in_model_space(codec, folder, device)
        if model.config["first_guess_condition"]:
            data = data.guided(codec, device)
        gen = torch.Generator().manual_seed(0)
        per_t = {t: 0.0 for t in TIMESTEPS}
        spread = []
        for i, sample in enumerate(data.samples):
            x0, cond = data.batch(np.array([i]), np.array([i % LOOKS]), np.array([False]), model.config["max_boxes"],
                                  channels=model.image_channels, geometry_stride=stride)
            noise = torch.randn(x0.shape, generator=gen)
            x0, cond, noise = x0.to(device), cond.to(device), noise.to(device)
            for t in TIMESTEPS:
                per_t[t] += float(diffusion_loss(model, sched, x0, cond, torch.tensor([t], device=device), noise))
            z = torch.as_tensor(np.asarray(sample.preview)).float()           # [LOOKS, V, C, h, w]
            spread.append(float(((z[0] - z[1]) ** 2).mean() / 2))
        loss[split] = {t: round(v / len(paths), 4) for t, v in per_t.items()}
        mean[split] = round(float(np.mean(list(loss[split].values()))), 4)
        looks[split] = round(float(np.mean(spread)), 4)
    return NoiseLevelLosses(str(checkpoint), scenes, loss, mean, looks)


def main(argv: list[str] | None = None) -> None:
    from ..stages.multiview import DEFAULT_CHECKPOINT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="ImageDiffusion folder")
    ap.add_argument("--cache", type=Path, default=Path("runs/image_cache"), help="xscene_core.data.image_dataset cache")
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure_noise_levels(args.checkpoint, args.cache, args.scenes, args.device)
    print(f"{result.checkpoint}, {result.scenes} scenes per split:\n{result.table()}")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(result), indent=1))


if __name__ == "__main__":
    main()
