"""A small semantic segmenter of camera images: the judge of the image model's geometry alignment.

RGB float [N, 3, h, w] in [-1, 1] -> logits float [N, 18, h, w] over the Occ3D ids (17 classes + free = sky).
A three-level ConvNet (stride 1, 2, 4, dilated context at the bottom) with a U-Net style decoder; it is
trained on preview renders of held-out worlds (xscene_core.train.segmenter), never on generated images,
so it measures whether a generated view looks like the class the condition asked for.

    seg = Segmenter.from_pretrained("checkpoints/segmenter")
    ids = seg.predict(images_uint8)              # uint8 [N, h, w]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import semantics
from .pretrained import Pretrained


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                         nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class Segmenter(Pretrained, nn.Module):
    """widths: channels of the three levels; num_classes: output classes (Occ3D ids 0..17)."""

    def __init__(self, widths: Sequence[int] = (24, 48, 64), num_classes: int = semantics.NUM_CLASSES) -> None:
        super().__init__()
        a, b, c = (int(v) for v in widths)
        self.config = dict(widths=[a, b, c], num_classes=int(num_classes))
        self.enc1 = nn.Sequential(_block(3, a), _block(a, a))
        self.enc2 = nn.Sequential(_block(a, b, stride=2), _block(b, b))
        self.enc3 = nn.Sequential(_block(b, c, stride=2), _block(c, c, dilation=2), _block(c, c, dilation=4))
        self.dec2 = _block(c + b, b)
        self.dec1 = _block(b + a, a)
        self.head = nn.Conv2d(a, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.enc1(x)
        f2 = self.enc2(f1)
        f3 = self.enc3(f2)
        up = lambda t, ref: F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=False)  # noqa: E731
        d2 = self.dec2(torch.cat([up(f3, f2), f2], 1))
        d1 = self.dec1(torch.cat([up(d2, f1), f1], 1))
        return self.head(d1)

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch: int = 32) -> np.ndarray:
        """uint8 [N, h, w] Occ3D ids of RGB images uint8 [N, h, w, 3]."""
        self.eval()
        out = []
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).float().permute(0, 3, 1, 2) / 127.5 - 1
            out.append(self(x).argmax(1).to(torch.uint8).numpy())
        return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), np.uint8)


def confusion(pred: np.ndarray, target: np.ndarray, num_classes: int = semantics.NUM_CLASSES) -> np.ndarray:
    """int64 [C, C] confusion counts (rows: target, columns: prediction) of id maps of one shape."""
    idx = target.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def miou(conf: np.ndarray) -> float:
    """Mean IoU over the classes present in the targets of a confusion matrix."""
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    present = conf.sum(1) > 0
    return float((inter[present] / np.maximum(union[present], 1)).mean()) if present.any() else float("nan")
