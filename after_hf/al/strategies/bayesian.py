"""Bayesian acquisition from MC-dropout samples ``mc_probs`` [T, N, C] (dropout active, T passes;
Gal & Ghahramani 2016): BALD and BatchBALD."""

from __future__ import annotations

import numpy as np

from .base import ScoreStrategy, Strategy, top_k
from .uncertainty import entropy

_CHUNK_ELEMENTS = 2_000_000  # float32 entries per temporary block in BatchBALD (~8 MB)


def bald_scores(mc_probs: np.ndarray) -> np.ndarray:
    """Mutual information I[y; ω | x] = H[mean_t p_t] − mean_t H[p_t] (Houlsby et al. 2011), ≥ 0."""
    return np.maximum(entropy(mc_probs.mean(axis=0)) - entropy(mc_probs).mean(axis=0), 0.0)


def _conditional_entropy(weights, config_probs, cand32):
    """H[y_x | y_batch] = Σ_m π_m H[W[m] @ p_x] for candidates ``cand32`` = p_t(y_x) as [n, T, C] float32.

    float32 on purpose: the step is bound by memory traffic and logs, and its error (< 1e-6 nats at
    T = 20, M = 1000; pinned by a test against float64) is far below the estimator's sampling noise."""
    n, num_mc, num_classes = cand32.shape
    weights32, probs32 = weights.astype(np.float32), config_probs.astype(np.float32)
    out = np.empty(n)
    step = max(1, _CHUNK_ELEMENTS // (len(weights) * num_classes))
    for start in range(0, n, step):
        block = cand32[start:start + step]
        flat = block.transpose(1, 0, 2).reshape(num_mc, -1)  # [T, n''·C]
        predictive = weights32 @ flat  # p(y_x | ŷ^m), [M, n''·C]
        plogp = predictive * np.log(np.maximum(predictive, 1e-30))
        out[start:start + len(block)] = -(probs32 @ plogp).reshape(-1, num_classes).sum(axis=1)  # Σ_m first
    return out


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
      by ancestral sampling (ŷ_x^m ~ p(y_x | ŷ^m)) — the paper's sampled estimator.
    * ``lazy`` (default): lazy greedy (Minoux 1978). The joint MI is submodular (shown in the paper), so an
      item's gain can only shrink as the batch grows; its last computed gain is an upper bound, and each
      step re-scores candidates in order of their bounds only until the best fresh gain beats every
      remaining bound. Same batch as ``lazy=False`` while the gains are exact; with sampled
      configurations the gains are estimates, and lazy is greedy up to that sampling noise. Measured
      at N = 10 000, T = 20, C = 4, k = 100: 0.46 s vs 34 s CPU, and the same 100 items.
    * ``max_candidates``: if set, only the top-BALD ``max(max_candidates, k)`` items are candidates
      (``None``: every pool item).

    A duplicate of a chosen item gains ~0 once its twin is in the batch, which top-k BALD cannot see.
    """

    name = "batchbald"
    needs = frozenset({"mc_probs"})

    def __init__(self, num_samples: int = 1000, max_candidates: int | None = None, lazy: bool = True):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if max_candidates is not None and max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1 or None, got {max_candidates}")
        self.num_samples = int(num_samples)
        self.max_candidates = max_candidates
        self.lazy = bool(lazy)

    def scores(self, pool):
        """BALD per item: the gain of each item as the first pick of the greedy batch."""
        return bald_scores(pool.mc_probs) if pool.mc_probs is not None else super().scores(pool)

    def _select(self, pool, labelled, k, rng):
        mc = pool.mc_probs
        num_mc = mc.shape[0]
        candidates = np.arange(mc.shape[1])
        if self.max_candidates is not None and candidates.size > max(self.max_candidates, k):
            candidates = np.sort(top_k(bald_scores(mc), max(self.max_candidates, k), rng))
        cand_probs = np.ascontiguousarray(mc[:, candidates].transpose(1, 0, 2))  # [n', T, C]
        cand32 = cand_probs.astype(np.float32)
        expected_entropy = entropy(cand_probs).mean(axis=1)  # E_ω H[y_x | ω], [n']

        weights = np.full((1, num_mc), 1.0 / num_mc)  # W: posterior over MC samples per configuration
        config_probs = np.ones(1)  # π; uniform once configurations are sampled
        sampled = False
        bounds = bald_scores(mc[:, candidates])  # gains of the first pick; upper bounds afterwards
        chosen = []
        for _ in range(k):
            def gains_of(rows, weights=weights, config_probs=config_probs):  # this pick's posterior
                return _conditional_entropy(weights, config_probs, cand32[rows]) - expected_entropy[rows]

            best = self._lazy_argmax(bounds, gains_of) if self.lazy else self._full_argmax(bounds, gains_of)
            bounds[best] = -np.inf  # chosen: never again
            chosen.append(candidates[best])
            weights, config_probs, sampled = self._extend(weights, config_probs, sampled, cand_probs[best], rng)
        return np.array(chosen)

    @staticmethod
    def _full_argmax(bounds, gains_of):
        available = np.flatnonzero(bounds > -np.inf)
        gains = gains_of(available)
        bounds[available] = gains
        return int(available[np.argmax(gains)])

    @staticmethod
    def _lazy_argmax(bounds, gains_of, first_chunk: int = 64):
        """Re-score items in decreasing order of their bounds (chunks of growing size) until the best
        fresh gain is at least the next bound; stale bounds of items not re-scored stay as they are."""
        order = np.argsort(-bounds, kind="stable")
        order = order[bounds[order] > -np.inf]
        best, best_gain, done, size = -1, -np.inf, 0, first_chunk
        while done < order.size:
            rows = order[done:done + size]
            gains = gains_of(rows)
            bounds[rows] = gains
            top = int(np.argmax(gains))
            if gains[top] > best_gain:
                best, best_gain = int(rows[top]), gains[top]
            done, size = done + rows.size, size * 2
            if done < order.size and best_gain >= bounds[order[done]]:
                break
        return best

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
