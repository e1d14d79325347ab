"""Honest SER metrics (UA, WA, macro-F1, per-class recall, confusion matrix) through a local `evaluate` module,
and soft-label scores against the raters' vote distribution (``soft_labels``: KL, cross-entropy, Brier)."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from .soft_labels import compute_soft_label_metrics

__all__ = ["SER_METRICS_PATH", "compute_ser_metrics", "compute_soft_label_metrics", "load_ser_metrics",
           "per_speaker_scores"]

SER_METRICS_PATH = str(Path(__file__).resolve().parent / "ser_metrics")  # evaluate.load(SER_METRICS_PATH)


@lru_cache(maxsize=1)
def load_ser_metrics():
    """The local `ser_metrics` evaluate module (no Hub access: it is loaded from the package directory)."""
    import evaluate

    return evaluate.load(SER_METRICS_PATH)


def compute_ser_metrics(predictions: Sequence[int], references: Sequence[int], label_names: Sequence[str]) -> dict:
    """UA / WA / macro-F1 plus ``per_class_recall`` as {label: recall or None} and the confusion matrix.

    None (not NaN) marks a class with no reference sample so the result is valid JSON.
    """
    out = load_ser_metrics().compute(
        predictions=list(map(int, predictions)), references=list(map(int, references)), num_classes=len(label_names)
    )
    out["per_class_recall"] = {
        name: (None if math.isnan(r) else r) for name, r in zip(label_names, out["per_class_recall"])
    }
    out["label_names"] = list(label_names)
    return out


def per_speaker_scores(predictions: Sequence[int], references: Sequence[int], speakers: Sequence[str]) -> dict:
    """{speaker: {ua, accuracy, num_samples}} for speaker-independent evaluation: how the held-out voices differ.

    A speaker's UA is the mean recall over the classes that speaker has clips of (a voice with no sad clip is not
    scored 0 on sad), so it is comparable between speakers with different class mixes.
    """
    import numpy as np

    predictions, references, speakers = map(np.asarray, (predictions, references, speakers))
    out = {}
    for speaker in sorted(set(speakers.tolist())):
        rows = speakers == speaker
        pred, ref = predictions[rows], references[rows]
        recalls = [float(np.mean(pred[ref == c] == c)) for c in np.unique(ref)]
        out[str(speaker)] = {"ua": float(np.mean(recalls)), "accuracy": float(np.mean(pred == ref)),
                             "num_samples": int(rows.sum())}
    return out
