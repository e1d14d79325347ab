"""Scores of predicted class probabilities against the raters' vote distribution (soft labels).

UA / WA score the prediction against one label per clip; when several raters disagree (IEMOCAP, CREMA-D), a model
that says "60 % angry, 40 % sad" on a clip its raters split 3/2 is right, and these scores say so. With P the
predicted probabilities and Q the vote distribution of a clip (both over the same K classes), averaged over the
clips that have votes:

* ``kl``: KL(Q || P) = sum_k Q_k ln(Q_k / P_k), in nats; 0 when the prediction equals the votes. P is clipped at
  the float64 machine epsilon, as scikit-learn's ``log_loss`` does, so a confident miss costs ~36 nats, not inf.
* ``cross_entropy``: -sum_k Q_k ln P_k = KL + H(Q): the soft-label training loss; with one rater per clip it is
  scikit-learn's ``log_loss``.
* ``votes_entropy``: H(Q), the floor of ``cross_entropy`` (how much the raters themselves disagree).
* ``brier``: sum_k (P_k - Q_k)^2, the multi-class Brier score against the distribution (0..2); with one-hot Q it
  is scikit-learn's multi-class ``brier_score_loss``.
* ``vote_accuracy``: Q at the predicted class: the chance that a randomly drawn rater chose what the model
  predicts (WA against a random rater instead of the majority).
"""

from __future__ import annotations

import numpy as np
from scipy.special import entr, rel_entr

SUM_TOLERANCE = 1e-3


def compute_soft_label_metrics(probs, votes) -> dict:
    """Mean soft-label scores of ``probs`` [N, K] against vote distributions ``votes`` [N, K].

    Rows of ``votes`` that sum to 0 (clips without votes) are left out; the others must sum to 1, as must every
    row of ``probs``. Returns kl, cross_entropy, votes_entropy, brier, vote_accuracy and num_rated.
    """
    probs = np.asarray(probs, dtype=np.float64)
    votes = np.asarray(votes, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != votes.shape:
        raise ValueError(f"soft-label metrics: probs {probs.shape} and votes {votes.shape} must both be [N, K].")
    totals = votes.sum(axis=1)
    rated = totals > 0
    if not rated.any():
        raise ValueError("soft-label metrics: no clip has votes (every row of votes sums to 0).")
    if (votes < 0).any() or not np.allclose(totals[rated], 1.0, atol=SUM_TOLERANCE):
        raise ValueError("soft-label metrics: each rated row of votes must be a distribution (non-negative, "
                         "summing to 1).")
    if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=SUM_TOLERANCE):
        raise ValueError("soft-label metrics: each row of probs must be a distribution (softmax output).")
    p, q = probs[rated], votes[rated]
    clipped = np.clip(p, np.finfo(np.float64).eps, 1.0)
    entropy = entr(q).sum(axis=1)  # -sum q ln q, with 0 ln 0 = 0
    kl = rel_entr(q, clipped).sum(axis=1)
    return {
        "kl": float(kl.mean()),
        "cross_entropy": float((kl + entropy).mean()),
        "votes_entropy": float(entropy.mean()),
        "brier": float(((p - q) ** 2).sum(axis=1).mean()),
        "vote_accuracy": float(q[np.arange(len(q)), p.argmax(axis=1)].mean()),
        "num_rated": int(rated.sum()),
    }
