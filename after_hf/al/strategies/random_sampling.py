"""Random acquisition: the baseline every strategy must beat (and on noisy emotion labels often doesn't)."""

from __future__ import annotations

from .base import Strategy


class RandomSampling(Strategy):
    """``k`` pool items uniformly at random, without replacement. Needs nothing from the model."""

    name = "random"
    needs = frozenset()

    def _select(self, pool, labelled, k, rng):
        return rng.choice(len(pool), size=k, replace=False)
