"""Bayesian acquisition from MC-dropout samples ``mc_probs`` [T, N, C] (dropout active, T passes;
Gal & Ghahramani 2016): BALD and BatchBALD."""

from __future__ import annotations

import numpy as np

from .base import ScoreStrategy, Strategy, top_k
from .uncertainty import entropy

_CHUNK_ELEMENTS = 2_000_000  # float64 entries per temporary block in BatchBALD (~16 MB)


def bald_scores(mc_probs: np.ndarray) -> np.ndarray:
    """Mutual information I[y; ω | x] = H[mean_t p_t] − mean_t H[p_t] (Houlsby et al. 2011), ≥ 0."""
    return np.maximum(entropy(mc_probs.mean(axis=0)) - entropy(mc_probs).mean(axis=0), 0.0)


class BALD(ScoreStrategy):
    """Top-k BALD: items whose MC-dropout samples disagree most (Houlsby et al. 2011, "Bayesian Active
    Learning for Classification and Preference Learning"; Gal et al. 2017). Zero when all samples agree."""

    name = "bald"
    needs = frozenset({"mc_probs"})

    def _scores(self, pool):
        return bald_scores(pool.mc_probs)


class BatchBALD(Strategy):
    """Greedy BatchBALD (Kirsch, van Amersfoort & Gal 2019, "BatchBALD: Efficient and Diverse Batch
    Acquisition for Deep Bayesian Active Learning").

    Maximises the joint mutual information I[y_1..y_b; ω] greedily. Adding x to the batch gains
    ``I[y_x; ω | y_batch] = H[y_x | y_batch] − E_ω H[y_x | ω]``. The batch's label configurations are
    kept as rows of posterior weights over the T MC samples, ``W[m, t] ∝ Π_i p_t(ŷ_i^m)``, with
    probabilities ``π_m``; then ``p(y_x | ŷ^m) = W[m] @ p(y_x | ω_t)``.

    * Exact while the batch has at most ``num_samples`` configurations (C^b).
    * Beyond that, ``num_samples`` configurations are drawn from the exact joint once and then extended
      by ancestral sampling (ŷ_x^m ~ p(y_x | ŷ^m)) — the sampled estimator of the paper, §3.2.
    * ``max_candidates``: if set, only the top-BALD ``max(max_candidates, k)`` items are candidates
      (a speed knob for large pools; ``None`` scores every pool item at every step).

    A duplicate of a chosen item gains ~0 once its twin is in the batch, which top-k BALD cannot see.
    """

    name = "batchbald"
    needs = frozenset({"mc_probs"})

    def __init__(self, num_samples: int = 1000, max_candidates: int | None = None):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if max_candidates is not None and max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1 or None, got {max_candidates}")
        self.num_samples = int(num_samples)
        self.max_candidates = max_candidates

    def scores(self, pool):
        """BALD per item: the gain of each item as the first pick of the greedy batch."""
        return bald_scores(pool.mc_probs) if pool.mc_probs is not None else super().scores(pool)

    def _select(self, pool, labelled, k, rng):
        mc = pool.mc_probs
        num_mc, n, num_classes = mc.shape
        candidates = np.arange(n)
        if self.max_candidates is not None and n > max(self.max_candidates, k):
            candidates = np.sort(top_k(bald_scores(mc), max(self.max_candidates, k), rng))
        cand_probs = np.ascontiguousarray(mc[:, candidates].transpose(1, 0, 2))  # [n', T, C]
        expected_entropy = entropy(cand_probs).mean(axis=1)  # E_ω H[y_x | ω], [n']

        weights = np.full((1, num_mc), 1.0 / num_mc)  # W: posterior over MC samples per configuration
        config_probs = np.ones(1)  # π; uniform once configurations are sampled
        sampled = False
        available = np.ones(candidates.size, dtype=bool)
        chosen = []
        for _ in range(k):
            gains = self._conditional_entropy(weights, config_probs, cand_probs) - expected_entropy
            gains[~available] = -np.inf
            best = int(np.argmax(gains))
            available[best] = False
            chosen.append(candidates[best])
            weights, config_probs, sampled = self._extend(weights, config_probs, sampled, cand_probs[best], rng)
        return np.array(chosen)

    @staticmethod
    def _conditional_entropy(weights, config_probs, cand_probs):
        """H[y_x | y_batch] = Σ_m π_m H[W[m] @ p_x] for every candidate x."""
        n, num_mc, num_classes = cand_probs.shape
        flat = cand_probs.transpose(1, 0, 2).reshape(num_mc, n * num_classes)
        out = np.empty(n)
        step = max(1, _CHUNK_ELEMENTS // (weights.shape[0] * num_classes))
        for start in range(0, n, step):
            stop = min(n, start + step)
            predictive = (weights @ flat[:, start * num_classes:stop * num_classes])  # [M, n'·C]
            out[start:stop] = config_probs @ entropy(predictive.reshape(-1, stop - start, num_classes))
        return out

    def _extend(self, weights, config_probs, sampled, item_probs, rng):
        """Add one chosen item (its p_t(y), [T, C]) to the batch's configurations."""
        joint = weights[:, :, None] * item_probs[None]  # [M, T, C]
        label_probs = joint.sum(axis=1)  # p(y_x | ŷ^m), [M, C]
        safe = np.where(label_probs > 0, label_probs, 1.0)
        if sampled:  # ancestral sampling: one label per sampled configuration
            cdf = np.cumsum(label_probs, axis=1)
            labels = np.minimum((cdf < rng.random((len(cdf), 1)) * cdf[:, -1:]).sum(axis=1), cdf.shape[1] - 1)
            rows = np.arange(len(labels))
            return joint[rows, :, labels] / safe[rows, labels][:, None], config_probs, True
        weights = (joint / safe[:, None, :]).transpose(0, 2, 1).reshape(-1, joint.shape[1])
        config_probs = (config_probs[:, None] * label_probs).ravel()
        if config_probs.size <= self.num_samples:
            keep = config_probs > 0
            return weights[keep], config_probs[keep], False
        draws = rng.choice(config_probs.size, size=self.num_samples, p=config_probs / config_probs.sum())
        return weights[draws], np.full(self.num_samples, 1.0 / self.num_samples), True
