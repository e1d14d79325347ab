"""Agreement-aware acquisition: the clips whose raters are predicted to disagree (issue 15).

A head trained on vote distributions (``after-hf al --soft_labels``) predicts how a clip's raters would split:
its softmax is a predicted vote distribution. Under MC dropout (T passes, ``mc_probs``) the entropy of the mean
prediction splits in two (Houlsby et al. 2011; Depeweg et al. 2018, "Decomposition of uncertainty in Bayesian
deep learning"):

    H[mean_t p_t]  =  mean_t H[p_t]                        +  I[y; w | x]
    (entropy)         predicted rater disagreement             model uncertainty (BALD)
                      (aleatoric: the raters would split)       (epistemic: the model does not know yet)

``disagreement`` ranks by the first term plus ``model_weight`` times the second: ``model_weight=0`` (default) asks
for the clips the model is confident the raters split on, ``1`` is plain ``entropy`` of the mean prediction, and
``bald`` is the second term alone. It reads predictions only, never a label or a vote of the pool. With a
hard-label model the softmax is not a vote distribution (its entropy is then ordinary uncertainty): use it with
``--soft_labels``. Whether it saves rater answers is what the issue's experiment (point 5) measures.
"""

from __future__ import annotations

import math

from .base import ScoreStrategy
from .bayesian import bald_scores
from .uncertainty import entropy


class PredictedDisagreement(ScoreStrategy):
    """mean_t H[p_t] (+ ``model_weight`` x BALD's mutual information) from MC-dropout vote predictions."""

    name = "disagreement"
    needs = frozenset({"mc_probs"})

    def __init__(self, model_weight: float = 0.0):
        if not (isinstance(model_weight, (int, float)) and math.isfinite(model_weight) and model_weight >= 0):
            raise ValueError(f"model_weight must be a finite number >= 0 (0 = predicted rater disagreement only, "
                             f"1 = entropy of the mean prediction), got {model_weight!r}")
        self.model_weight = float(model_weight)

    def _scores(self, pool):
        expected = entropy(pool.mc_probs).mean(axis=0)
        return expected + self.model_weight * bald_scores(pool.mc_probs) if self.model_weight else expected
