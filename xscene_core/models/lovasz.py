"""Lovasz-softmax loss (Berman, Triki, Blaschko, CVPR 2018): a convex surrogate of the per-class
Jaccard (IoU) loss, computed on class probabilities of a flat set of points.

For class c with ground-truth indicator g and errors e = |g - p_c|, sort the errors in decreasing order;
the loss is the dot product of the sorted errors with the gradient of the Lovasz extension of the
Jaccard loss, i.e. the discrete differences of 1 - IoU over growing prefixes of the sorted points.
The per-class losses are averaged over the classes present in the labels (or over all classes).
"""

from __future__ import annotations

import torch


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors.

    gt_sorted: float [P] or [P, K] ground-truth indicators (0/1) in the order of decreasing error (each
    column its own class). Returns the same shape.
    """
    gts = gt_sorted.sum(0)
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.shape[0] > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def lovasz_softmax(probs: torch.Tensor, labels: torch.Tensor, classes: str = "present",
                   ignore_index: int | None = None) -> torch.Tensor:
    """Lovasz-softmax loss of flat predictions.

    probs: float [P, C] class probabilities (softmax of the logits); labels: int [P] in 0..C-1;
    classes: "present" averages over classes that occur in `labels`, "all" over every class;
    ignore_index: label value to drop. Returns a scalar (0 for an empty input).
    """
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"lovasz_softmax: expected probs [P, C] and labels [P], got {list(probs.shape)} and {list(labels.shape)}")
    if classes not in ("present", "all"):
        raise ValueError(f"lovasz_softmax: classes must be 'present' or 'all', got {classes!r}")
    if ignore_index is not None:
        keep = labels != ignore_index
        probs, labels = probs[keep], labels[keep]
    if probs.numel() == 0:
        return probs.sum() * 0.0
    n_classes = probs.shape[1]
    fg_all = torch.nn.functional.one_hot(labels.long(), n_classes).to(probs.dtype)  # [P, C]
    if classes == "present":
        cls = torch.nonzero(fg_all.sum(0) > 0).flatten()
    else:
        cls = torch.arange(n_classes, device=probs.device)
    fg = fg_all[:, cls]                      # [P, K]
    errors = (fg - probs[:, cls]).abs()      # [P, K]
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    fg_sorted = torch.gather(fg, 0, perm)
    return (errors_sorted * lovasz_grad(fg_sorted)).sum(0).mean()
