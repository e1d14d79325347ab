"""The training loss of every learner (the AL head, `after-hf finetune` full and LoRA): class-weighted
cross-entropy to a label, or to a vote distribution (soft labels).

Class weights ``w_c = n / (C * n_c)`` come from the *current* labelled set (AFTER), so a rare class counts as
much as a frequent one (the model is tuned for UA, the mean per-class recall).

With soft targets (each clip's raters' vote distribution ``q``) the weights weight **clips, not classes**: a clip
counts ``s = sum_c w_c q_c`` (its expected class weight) and the loss is ``sum_i s_i CE(q_i, p_i) / sum_i s_i``.
Weighting inside the sum instead, ``-sum_c w_c q_c log p_c`` (what ``torch.nn.functional.cross_entropy`` does
with ``weight=`` and probability targets), would bias every target: its minimum is at ``p ∝ w * q``, not at
``q``, so a head trained on 80/20 votes of a frequent and a rare class would predict ~50/50, and the predicted
vote distribution (the ``disagreement`` strategy's signal, KL / Brier in the report) would be skewed towards the
rare classes. Clip weights keep each clip's minimum at its own vote distribution while the rare classes still
weigh as much in total; and a one-hot target gives exactly the hard-label loss (torch's weighted mean, which
divides by the summed weights), so one rater per clip trains the same with or without ``--soft_labels``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch


def class_weights(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """``w_c = n / (C * n_c)`` (n labelled samples, C classes, n_c of class c): 1 for every class when balanced.

    A class with no labelled sample gets weight 0: it has no term in the loss anyway.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    n = counts.sum()
    return np.divide(n, num_classes * counts, out=np.zeros(num_classes), where=counts > 0).astype(np.float32)


def soft_class_weights(targets, num_classes: int) -> np.ndarray:
    """``class_weights`` for soft targets [N, C] (vote distributions): ``n_c`` is the expected count
    ``sum_i q_ic``, so one-hot targets give exactly ``class_weights`` of their labels."""
    counts = np.asarray(targets, dtype=np.float64).reshape(-1, num_classes).sum(axis=0)
    n = counts.sum()
    return np.divide(n, num_classes * counts, out=np.zeros(num_classes), where=counts > 1e-9).astype(np.float32)


def cross_entropy(logits: "torch.Tensor", targets: "torch.Tensor",
                  weights: Optional["torch.Tensor"] = None) -> "torch.Tensor":
    """Mean cross-entropy of ``logits`` [B, C] to class indices [B] or to distributions [B, C].

    ``weights`` [C] (class weights): with indices, torch's weighted mean; with distributions, each clip weighted by
    its expected class weight ``q_i . w`` (the module docstring says why), normalised by the summed clip weights."""
    import torch.nn.functional as F

    logits = logits.float()
    if not targets.is_floating_point():
        return F.cross_entropy(logits, targets, weight=weights)
    targets = targets.to(logits.dtype)
    per_clip = -(targets * F.log_softmax(logits, dim=-1)).sum(-1)
    if weights is None:
        return per_clip.mean()
    clip_weights = targets @ weights.to(logits.device, logits.dtype)
    return (clip_weights * per_clip).sum() / clip_weights.sum().clamp_min(1e-12)
