"""Occupancy reconstruction metrics, Occ3D style.

- IoU: geometry IoU of occupied (any class but free) against free.
- mIoU: mean over the semantic classes 0..16 present in the ground truth of the per-class IoU
  tp / (tp + fp + fn), with counts accumulated over all volumes before dividing.

Figures are fractions in [0, 1] from the functions here; `measure_vae` reports percent, like the paper.
`measure_vae(model, n_chunks, seed)` measures a triplane VAE on held-out `test` worlds of the synthetic
world and, when present, on the real Occ3D frame in ../shared/data (never used for training).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import semantics

SEMANTIC_IDS = tuple(range(semantics.FREE))  # 0..16
REAL_FRAME = Path(__file__).resolve().parents[3] / "shared" / "data" / "occ3d_nuscenes_sample" / "labels.npz"


class OccupancyConfusion:
    """Accumulates an 18 x 18 confusion matrix (rows: ground truth, columns: prediction)."""

    def __init__(self, num_classes: int = semantics.NUM_CLASSES) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, pred, gt, mask=None) -> "OccupancyConfusion":
        """pred, gt: int arrays of one shape (Occ3D ids); mask: optional bool array of that shape, voxels
        to count."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            pred, gt = pred[mask], gt[mask]
        n = self.num_classes
        idx = gt.astype(np.int64).ravel() * n + pred.astype(np.int64).ravel()
        self.matrix += np.bincount(idx, minlength=n * n).reshape(n, n)
        return self

    def class_iou(self) -> np.ndarray:
        """float [num_classes]: per-class IoU, NaN for classes absent from the ground truth."""
        tp = np.diag(self.matrix).astype(np.float64)
        gt = self.matrix.sum(1)
        union = gt + self.matrix.sum(0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = tp / union
        iou[gt == 0] = np.nan
        return iou

    def miou(self) -> float:
        """Mean IoU over the semantic classes (0..16) present in the ground truth; NaN if none is."""
        iou = self.class_iou()[list(SEMANTIC_IDS)]
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def iou(self) -> float:
        """Geometry IoU: occupied (not free) vs free."""
        f = semantics.FREE
        occ_gt = np.ones(self.num_classes, bool)
        occ_gt[f] = False
        m = self.matrix
        tp = m[np.ix_(occ_gt, occ_gt)].sum()
        fp = m[f, occ_gt].sum()
        fn = m[occ_gt, f].sum()
        denom = tp + fp + fn
        return float(tp / denom) if denom else float("nan")


def miou(pred, gt, mask=None) -> float:
    """mIoU of one prediction (see module docstring)."""
    return OccupancyConfusion().add(pred, gt, mask).miou()


def geometry_iou(pred, gt, mask=None) -> float:
    """Occupied-vs-free IoU of one prediction."""
    return OccupancyConfusion().add(pred, gt, mask).iou()


def test_chunks(n_chunks: int, seed: int = 0, split: str = "test"):
    """Yield `n_chunks` (world seed, labels uint8 [200, 200, 16]) of held-out worlds of `split`, one chunk
    per environment in turn, starting from world seed `seed` (eval.controllability.test_locations)."""
    from .controllability import test_locations

    for world, x, y in test_locations(n_chunks, seed, split):
        yield world.seed, world.chunk(x, y).occupancy.labels


def evaluate_reconstruction(model, volumes, batch: int = 1) -> OccupancyConfusion:
    """Confusion of model.reconstruct over an iterable of label volumes uint8 [X, Y, Z]."""
    import torch

    conf = OccupancyConfusion()
    with torch.no_grad():
        for labels in volumes:
            rec = model.reconstruct(torch.as_tensor(np.asarray(labels))[None])[0].cpu().numpy()
            conf.add(rec, labels)
    return conf


def measure_vae(model, n_chunks: int = 12, seed: int = 0, real_path: str | Path | None = REAL_FRAME,
                confusions: dict | None = None) -> dict:
    """Reconstruction figures of a triplane VAE in percent: vae_miou / vae_iou on `n_chunks` chunks of
    held-out test worlds (from world seed `seed` on); vae_real_miou / vae_real_iou on the real Occ3D frame
    (whole volume) when it exists, with *_camera variants inside its camera-visibility mask.
    `confusions`, when given, receives the OccupancyConfusion objects ("test", "real", "real_camera")."""
    was_training = model.training
    model.eval()
    try:
        conf = evaluate_reconstruction(model, (lab for _, lab in test_chunks(n_chunks, seed)))
        out = {"vae_miou": 100 * conf.miou(), "vae_iou": 100 * conf.iou()}
        confusions = {} if confusions is None else confusions
        confusions["test"] = conf
        if real_path is not None and Path(real_path).exists():
            import torch

            from ..data.occ3d import read_labels_npz

            occ = read_labels_npz(real_path)
            with torch.no_grad():
                rec = model.reconstruct(torch.as_tensor(occ.labels)[None])[0].cpu().numpy()
            full = OccupancyConfusion().add(rec, occ.labels)
            out.update(vae_real_miou=100 * full.miou(), vae_real_iou=100 * full.iou())
            confusions["real"] = full
            if occ.mask_camera is not None:
                cam = OccupancyConfusion().add(rec, occ.labels, occ.mask_camera)
                out.update(vae_real_miou_camera=100 * cam.miou(), vae_real_iou_camera=100 * cam.iou())
                confusions["real_camera"] = cam
        return out
    finally:
        model.train(was_training)


def main(argv: list[str] | None = None) -> None:
    """`python -m xscene_core.eval.occupancy_metrics --model DIR [--chunks N] [--json PATH]`: measure a
    saved TriplaneVAE and print the figures with per-class IoU."""
    import argparse

    import torch

    from ..models.triplane_vae import TriplaneVAE

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model", type=Path, required=True, help="a TriplaneVAE save_pretrained folder")
    ap.add_argument("--chunks", type=int, default=12, help="held-out test chunks")
    ap.add_argument("--seed", type=int, default=0, help="first test world seed")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = TriplaneVAE.from_pretrained(args.model)
    confs: dict = {}
    figures = measure_vae(model, args.chunks, args.seed, confusions=confs)
    for name, conf in confs.items():
        ious = conf.class_iou()
        per = ", ".join(f"{semantics.NAMES[c]} {100 * ious[c]:.1f}" for c in SEMANTIC_IDS if np.isfinite(ious[c]))
        print(f"{name}: mIoU {100 * conf.miou():.2f}  IoU {100 * conf.iou():.2f}  [{per}]")
    from .report import print_figures

    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
