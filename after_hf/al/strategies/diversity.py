"""Diversity sampling on pooled embeddings: CoreSet (greedy k-centre)."""

from __future__ import annotations

import numpy as np

from .base import Strategy


def squared_distances_to(points: np.ndarray, sq_norms: np.ndarray, index: int) -> np.ndarray:
    """||points − points[index]||² for every row, via ||a||² + ||b||² − 2a·b (clipped at 0)."""
    return np.maximum(sq_norms + sq_norms[index] - 2.0 * (points @ points[index]), 0.0)


class CoreSet(Strategy):
    """Greedy k-centre (Sener & Savarese 2018, "Active Learning for Convolutional Neural Networks: A
    Core-Set Approach", Alg. 1): repeatedly take the pool item farthest from its nearest centre, where
    the centres are the labelled items plus those already chosen. Euclidean distance on ``embeddings``.

    With nothing labelled yet, the first centre is a random pool item (the paper assumes a seed set).
    """

    name = "coreset"
    needs = frozenset({"embeddings"})

    def _select(self, pool, labelled, k, rng):
        # float32 halves the memory each step streams over [N, D]; centring first keeps the
        # ||a||² + ||b||² − 2a·b cancellation small (distances do not change under a shift)
        centred = pool.embeddings - pool.embeddings.mean(axis=0)
        sq_norms = np.einsum("nd,nd->n", centred, centred)
        points = centred.astype(np.float32)
        chosen = []
        if len(labelled):
            if labelled.embeddings is None:
                raise ValueError("coreset needs labelled.embeddings (the labelled items are the first centres); "
                                 "have the scorer embed the labelled set too")
            from sklearn.metrics import pairwise_distances_argmin_min

            _, nearest = pairwise_distances_argmin_min(pool.embeddings, labelled.embeddings)
            nearest_sq = nearest ** 2
        else:
            first = int(rng.integers(len(pool)))
            chosen.append(first)
            nearest_sq = squared_distances_to(points, sq_norms, first)
        nearest_sq = nearest_sq.copy()
        nearest_sq[chosen] = -np.inf
        while len(chosen) < k:
            far = int(np.argmax(nearest_sq))
            chosen.append(far)
            nearest_sq = np.minimum(nearest_sq, squared_distances_to(points, sq_norms, far))
            nearest_sq[far] = -np.inf
        return np.array(chosen)
