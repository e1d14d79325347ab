"""Stabilising predictions (Bloodgood & Vijay-Shanker, 2009): stop when the model's predictions on a
held-out unlabelled stop set agree across consecutive rounds (Cohen's kappa) for ``patience`` rounds."""

from __future__ import annotations

import numpy as np


class StabilisingPredictions:
    def __init__(self, threshold: float = 0.99, patience: int = 2):
        self.threshold, self.patience = threshold, patience
        self.previous: np.ndarray | None = None
        self.streak = 0
        self.kappas: list[float] = []

    def update(self, round_index: int, predictions: np.ndarray) -> bool:
        """Feed this round's stop-set predictions; True when the run should stop."""
        if self.previous is not None:
            from sklearn.metrics import cohen_kappa_score  # scikit-learn is loaded by a run, not by `--help`

            same = np.array_equal(self.previous, predictions)
            kappa = 1.0 if same else float(cohen_kappa_score(self.previous, predictions))
            self.kappas.append(kappa)
            self.streak = self.streak + 1 if kappa >= self.threshold else 0
        self.previous = np.asarray(predictions).copy()
        return self.streak >= self.patience
