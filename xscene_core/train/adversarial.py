"""The adversary of an adversarial training run (train.geometry_decoder --adv-weight, train.image_diffusion
--adv-weight): a conditional PatchGAN (models.patch_discriminator) with its optimizer, trained with the hinge
loss on real and generated views; the generator's losses against it; the LDM-autoencoder balance of the
adversarial gradient against the reconstruction's; and the EmaTraining that checkpoints the adversary with
the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from .common import optimizer_state, optimizer_tensors
from .ema_training import EmaTraining


class Adversary:
    """The discriminator of an adversarial run and its optimizer (Adam, betas 0.5 / 0.9), saved and loaded
    as one safetensors file (in the run's checkpoint folder: AdversarialTraining)."""

    def __init__(self, cfg, device: torch.device) -> None:
        """cfg: a trainer's config with disc_width and disc_lr."""
        from ..models.patch_discriminator import PatchDiscriminator

        self.disc = PatchDiscriminator(cfg.disc_width).to(device).train()
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tensors, meta = optimizer_tensors(self.opt, prefix="opt.")
        tensors.update({f"disc.{k}": v.detach().cpu().contiguous() for k, v in self.disc.state_dict().items()})
        save_file(tensors, str(path), metadata={"optimizer": json.dumps(meta)})

    def load(self, path: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = json.loads(f.metadata()["optimizer"])
        self.disc.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("disc.")})
        self.opt.load_state_dict(optimizer_state(tensors, meta, prefix="opt."))

    def _scores(self, real: torch.Tensor, fake: torch.Tensor, semantic: torch.Tensor, style: torch.Tensor):
        """(real logits, fake logits, real features, fake features) from one pass over both sets: the
        batch norm then normalises real and generated views together, so a difference in their contrast
        or fine detail (a blur) survives it (scored apart, each set's own statistics would hide it)."""
        n = len(real)
        logits, feats = self.disc(torch.cat([real, fake]), torch.cat([semantic, semantic]), torch.cat([style, style]))
        return logits[:n], logits[n:], [x[:n] for x in feats], [x[n:] for x in feats]

    def step(self, real: torch.Tensor, fake: torch.Tensor, semantic: torch.Tensor, style: torch.Tensor) -> float:
        """One hinge-loss update on real / decoded views float [N, 3, H, W] (fake detached); the loss."""
        r, f, _, _ = self._scores(real, fake.detach(), semantic, style)
        loss = F.relu(1 - r).mean() + F.relu(1 + f).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def generator_losses(self, real: torch.Tensor, fake: torch.Tensor, semantic: torch.Tensor, style: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """(hinge generator loss, feature-matching L1) of decoded views `fake` (with their graph)."""
        self.disc.requires_grad_(False)
        try:
            _, f, rfeat, ffeat = self._scores(real.detach(), fake, semantic, style)
        finally:
            self.disc.requires_grad_(True)
        return -f.mean(), sum((a.detach() - b).abs().mean() for a, b in zip(rfeat, ffeat)) / len(ffeat)


DISCRIMINATOR = "discriminator.safetensors"  # in OUT/checkpoint, beside the decoder of the same step


class AdversarialTraining(EmaTraining):
    """EmaTraining whose checkpoints also hold the adversary (when there is one), with the adversarial
    part of a trainer's loss: attach_adversary once, then adversarial_loss in each step's loss and
    adversarial_figures in the validation figures."""

    adversary: Adversary | None = None
    _adv_joins: int = 0
    """the step from which the generator trains against the adversary"""
    _adv_stats: list[tuple[float, float]] | None = None

    def save_more(self, folder: Path) -> None:
        if self.adversary is not None:
            self.adversary.save(folder / DISCRIMINATOR)

    def attach_adversary(self, cfg, device: torch.device, resume: bool, init: Path | None = None) -> None:
        """A new adversary (cfg: disc_width, disc_lr), or with `resume` the one saved in OUT/checkpoint,
        else with `init` the one in that file (another run's DISCRIMINATOR, optimizer state included).
        A new one learns alone for cfg.disc_start steps from the current step."""
        self.adversary = Adversary(cfg, device)
        self._adv_joins = self.step + cfg.disc_start
        self._adv_stats = []
        saved = self.out / "checkpoint" / DISCRIMINATOR
        start = saved if resume and saved.exists() else init
        if start is not None:
            if not Path(start).is_file():
                raise FileNotFoundError(f"discriminator weights {start}: no such file")
            self.adversary.load(Path(start))
            self._adv_joins = 0  # it has learned already
            self.log(f"discriminator {'resumed' if start == saved else 'initialised'} from {start}")

    def adversarial_loss(self, rec: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, semantic: torch.Tensor,
                         style: torch.Tensor, step: int, last: torch.Tensor, cfg, fm_weight: float = 0.0
                         ) -> torch.Tensor:
        """rec (the trainer's own loss) plus, once the discriminator has learned alone for cfg.disc_start
        steps, cfg.adv_weight x the hinge generator loss balanced against rec at parameter `last` (and
        fm_weight x feature matching); the discriminator takes one step on (real, fake) first. real / fake
        float [N, 3, H, W] (fake with its graph), semantic long [N, h, w], style float [N, STYLE_FEATURES]."""
        d_loss = self.adversary.step(real, fake, semantic, style)
        if step < self._adv_joins:
            self._adv_stats.append((d_loss, 0.0))
            return rec
        g_adv, fm = self.adversary.generator_losses(real, fake, semantic, style)
        weight = balanced(rec, g_adv, last)
        self._adv_stats.append((d_loss, float(weight)))
        return rec + fm_weight * fm + cfg.adv_weight * weight * g_adv

    def adversarial_figures(self) -> dict:
        """{"disc_loss", "adv_balance"}: the discriminator's mean loss and the mean balance weight since the
        last call ({} without an adversary or steps)."""
        stats = self._adv_stats or []
        if self._adv_stats is not None:
            self._adv_stats = []
        if not stats:
            return {}
        return {"disc_loss": float(sum(d for d, _ in stats) / len(stats)),
                "adv_balance": float(sum(w for _, w in stats) / len(stats))}


def balanced(rec: torch.Tensor, adv: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """The weight that gives adv the gradient norm of rec at parameter `last` (detached, at most 1e4)."""
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv, last, retain_graph=True)[0]
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0, 1e4).detach()
