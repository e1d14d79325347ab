"""Stochastic batch acquisition (Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron & Gal 2023,
"Stochastic Batch Acquisition: A Simple Baseline for Deep Active Learning", TMLR).

Instead of the top-k of a score, sample k items without replacement with probability ∝ a transform of
the score, using the Gumbel-top-k trick (Kool, van Hoof & Welling 2019): perturb each log-weight with
Gumbel(0, 1) noise and keep the k largest.

    power:    p_i ∝ s_i^β            log-weight β·log s_i          (PowerBALD, power-entropy)
    softmax:  p_i ∝ exp(β·s_i)       log-weight β·s_i
    softrank: p_i ∝ rank_i^(−β)      log-weight −β·log rank_i      (rank 1 = highest score)

β → ∞ recovers top-k; β = 0 is uniform random. The paper's default is β = 1.
"""

from __future__ import annotations

import numpy as np

from .base import ScoreStrategy, Strategy, top_k

MODES = ("power", "softmax", "softrank")


class StochasticBatch(Strategy):
    """Sample ``k`` items ∝ transform(score of ``base``) instead of taking its top ``k``."""

    def __init__(self, base: ScoreStrategy, mode: str = "power", beta: float = 1.0):
        if not isinstance(base, ScoreStrategy):
            raise TypeError(f"{mode} sampling needs a per-item score, and {base!r} has none; wrap one of "
                            "entropy, least_confidence, margin or bald")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.base, self.mode, self.beta = base, mode, float(beta)
        self.name = f"{mode}_{base.name}"
        self.needs = base.needs

    def scores(self, pool):
        return self.base.scores(pool)

    def log_weights(self, scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unnormalised log sampling probabilities for the chosen ``mode``."""
        if self.mode == "power":
            if (scores < 0).any():
                raise ValueError(f"power sampling needs non-negative scores; {self.base.name} gave {scores.min()}")
            return self.beta * np.log(np.maximum(scores, np.finfo(float).tiny))
        if self.mode == "softmax":
            return self.beta * scores
        ranks = np.empty(scores.size)
        ranks[top_k(scores, scores.size, rng)] = np.arange(1, scores.size + 1)
        return -self.beta * np.log(ranks)

    def _select(self, pool, labelled, k, rng):
        keys = self.log_weights(self.base._scores(pool), rng) + rng.gumbel(size=len(pool))
        return np.argsort(-keys, kind="stable")[:k]

    def __repr__(self):
        return f"StochasticBatch({self.base!r}, mode={self.mode!r}, beta={self.beta})"
