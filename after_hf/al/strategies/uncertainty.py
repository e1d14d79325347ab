"""Uncertainty sampling from one softmax per item (Lewis & Gale 1994; Settles 2009, "Active Learning
Literature Survey", §3.1): entropy, least confidence and margin. Higher score = more uncertain."""

from __future__ import annotations

import numpy as np

from .base import ScoreStrategy


def entropy(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis`` (0 log 0 = 0)."""
    from scipy.special import entr  # scipy is imported when a strategy scores, not when the CLI starts

    return entr(probs).sum(axis=axis)


class EntropySampling(ScoreStrategy):
    """Predictive entropy H[p(y|x)] (Shannon 1948; Settles 2009)."""

    name = "entropy"
    needs = frozenset({"probs"})

    def _scores(self, pool):
        return entropy(pool.probs)


class LeastConfidence(ScoreStrategy):
    """1 − max_c p(c|x) (Lewis & Gale 1994; Culotta & McCallum 2005)."""

    name = "least_confidence"
    needs = frozenset({"probs"})

    def _scores(self, pool):
        return 1.0 - pool.probs.max(axis=1)


class MarginSampling(ScoreStrategy):
    """1 − (p_top1 − p_top2): a small gap between the two likeliest classes (Scheffer et al. 2001)."""

    name = "margin"
    needs = frozenset({"probs"})

    def _scores(self, pool):
        top_two = np.sort(pool.probs, axis=1)[:, -2:]
        return 1.0 - (top_two[:, 1] - top_two[:, 0])
