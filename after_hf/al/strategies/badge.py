"""BADGE (Ash, Zhang, Krishnamurthy, Langford & Agarwal 2020, "Deep Batch Active Learning by Diverse,
Uncertain Gradient Lower Bounds", ICLR).

Gradient embedding of the last linear layer W [C, D] under the model's own hypothetical label
ŷ = argmax p, cross-entropy loss (paper §3, Eq. 1):

    g_x = ∂ℓ_CE(x, ŷ)/∂W = (p − onehot(ŷ)) ⊗ h_x        (row block c = (p_c − 1[c = ŷ]) · h_x)

Checked: d(−log softmax(Wh)_ŷ)/dW_c = (p_c − 1[c = ŷ]) h, so ||g_x|| = ||p − e_ŷ|| · ||h_x|| shrinks to 0
as the model grows confident — the uncertainty half of BADGE. No extra factor (the authors' code
stores −g; the sign is irrelevant to distances). small-text (webis-de/small-text,
``BADGE.get_badge_embeddings``, as stored at commits 00633b7 and dd58929; later releases not checked)
gets it wrong: ``scale = -proba; scale[proba_argmax] = -proba[proba_argmax]`` indexes *rows* by the
predicted classes, so the one-hot term is lost, every block is −p_c·h, ||g|| = ||p||·||h|| and the most
confident items get the *largest* norms (its k-means++ call also gets ||g|| as ``x_squared_norms``).
``tests/test_strategies.py`` pins the correct scaling against autograd.

k-means++ seeding (Arthur & Vassilvitskii 2007) in gradient space, D² sampling, first centre the item
with the largest gradient norm (as in the authors' reference code). The C·D-dimensional vectors are
never built: with u = p − onehot(ŷ),

    ||g_a − g_b||² = ||u_a||²||h_a||² + ||u_b||²||h_b||² − 2 (u_a·u_b)(h_a·h_b).
"""

from __future__ import annotations

import numpy as np

from .base import Strategy


def gradient_factors(probs: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, h) with g = u ⊗ h: u = p − onehot(argmax p) [N, C], h = embeddings [N, D]."""
    residual = np.array(probs, dtype=np.float64, copy=True)
    residual[np.arange(len(residual)), residual.argmax(axis=1)] -= 1.0
    return residual, np.asarray(embeddings, dtype=np.float64)


def materialise_gradient_embeddings(probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """The explicit [N, C·D] gradient embeddings (class-major blocks, like W.flatten()); for checks only."""
    residual, hidden = gradient_factors(probs, embeddings)
    return (residual[:, :, None] * hidden[:, None, :]).reshape(len(residual), -1)


def gradient_sq_distances(residual, hidden, sq_norms, index: int) -> np.ndarray:
    """||g_i − g_index||² for all i, from the factors only (O(N·(C + D)))."""
    cross = (residual @ residual[index]) * (hidden @ hidden[index])
    return np.maximum(sq_norms + sq_norms[index] - 2.0 * cross, 0.0)


class BADGE(Strategy):
    """Gradient embeddings + k-means++ seeding: uncertain (large ||g||) and diverse (spread) items."""

    name = "badge"
    needs = frozenset({"probs", "embeddings"})

    def _select(self, pool, labelled, k, rng):
        residual, hidden = gradient_factors(pool.probs, pool.embeddings)
        sq_norms = np.einsum("nc,nc->n", residual, residual) * np.einsum("nd,nd->n", hidden, hidden)
        hidden = hidden.astype(np.float32)  # each step streams [N, D]: halve the memory traffic
        first = int(np.argmax(sq_norms))
        chosen = [first]
        nearest_sq = gradient_sq_distances(residual, hidden, sq_norms, first)
        nearest_sq[first] = 0.0
        while len(chosen) < k:
            cumulative = np.cumsum(nearest_sq)
            if cumulative[-1] > 0:  # D² sampling; chosen items have weight 0
                pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
                pick = min(pick, int(np.flatnonzero(nearest_sq)[-1]))  # guards a round-up to the total
            else:  # every remaining item coincides with a centre: uniform among the rest
                rest = np.setdiff1d(np.arange(len(pool)), chosen)
                pick = int(rng.choice(rest))
            chosen.append(pick)
            nearest_sq = np.minimum(nearest_sq, gradient_sq_distances(residual, hidden, sq_norms, pick))
            nearest_sq[chosen] = 0.0
        return np.array(chosen)
