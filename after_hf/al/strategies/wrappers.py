"""Wrappers that constrain the batch of ANY strategy: class balance and speaker spread.

Both split the pool into parts, ask the wrapped strategy for a quota from each part, and hand later
calls the items chosen so far as ``PENDING`` labelled items (so CoreSet / TypiClust see them as covered).
"""

from __future__ import annotations

import math

import numpy as np

from .base import LabelledView, PoolView, Strategy, StrategyError


def _select_from(inner: Strategy, pool: PoolView, members: np.ndarray, context: LabelledView, k: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Run ``inner`` on the sub-pool ``members`` (pool positions); return the chosen pool positions in order."""
    sub = pool.subset(members)
    ids = inner.select(sub, context, k, rng)
    return members[_positions_of(sub.ids, ids)]


def _positions_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of ``wanted`` in ``ids`` (all present, ids unique)."""
    order = np.argsort(ids)
    return order[np.searchsorted(ids, wanted, sorter=order)]


def balanced_quota(counts: np.ndarray, available: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` slots over classes to even out ``counts`` (water-filling: each slot goes to the class
    with the fewest labelled + already-assigned items that still has pool items predicted as it)."""
    quota = np.zeros_like(counts)
    for _ in range(k):
        level = np.where(quota < available, counts + quota, np.iinfo(np.int64).max)
        quota[np.argmin(level)] += 1
    return quota


class ClassBalanced(Strategy):
    """Target a class-balanced labelled set around any strategy.

    Pool items are grouped by the model's PREDICTED class (argmax ``probs``; pool labels are never
    available); the labelled set's true class counts decide how many items each predicted class gets
    (rarest class first, water-filling); the wrapped strategy picks within each group. Same aim as
    Bengar et al. 2022 ("Class-Balanced Active Learning for Image Classification", WACV), which balances
    with predicted classes inside an optimisation; here a simple quota, so that it wraps any strategy.
    """

    def __init__(self, inner: Strategy):
        self.inner = inner
        self.name = f"class_balanced:{inner.name}"
        self.needs = inner.needs | {"probs"}

    def scores(self, pool):
        return self.inner.scores(pool)

    def _select(self, pool, labelled, k, rng):
        num_classes = pool.probs.shape[1]
        predicted = pool.probs.argmax(axis=1)
        counts = labelled.class_counts(num_classes)
        quota = balanced_quota(counts, np.bincount(predicted, minlength=num_classes), k)
        chosen, context = [], labelled
        for cls in np.argsort(counts, kind="stable"):  # rarest labelled class first
            if quota[cls]:
                picked = _select_from(self.inner, pool, np.flatnonzero(predicted == cls), context, quota[cls], rng)
                chosen.extend(picked)
                context = labelled.with_pending(pool, chosen)
        return np.array(chosen)

    def __repr__(self):
        return f"ClassBalanced({self.inner!r})"


class SpeakerDiverse(Strategy):
    """Spread a batch over speakers (or sessions) around any strategy — SER pools are dominated by a few
    speakers, and a batch of one speaker's utterances teaches the model that speaker, not the emotion.

    At most ``max_per_speaker`` items per speaker in one batch; by default the smallest cap that can fill
    the batch, ``≥ ceil(k / number of speakers)``. The wrapped strategy's order decides which items of a
    speaker are taken; when a speaker is full it is removed and the strategy is asked again for the rest.
    """

    def __init__(self, inner: Strategy, max_per_speaker: int | None = None):
        if max_per_speaker is not None and max_per_speaker < 1:
            raise ValueError(f"max_per_speaker must be >= 1 or None, got {max_per_speaker}")
        self.inner, self.max_per_speaker = inner, max_per_speaker
        self.name = f"speaker_diverse:{inner.name}"
        self.needs = inner.needs | {"speakers"}

    def scores(self, pool):
        return self.inner.scores(pool)

    def _cap(self, sizes: np.ndarray, k: int) -> int:
        if self.max_per_speaker is not None:
            if np.minimum(sizes, self.max_per_speaker).sum() < k:
                raise StrategyError(f"max_per_speaker={self.max_per_speaker} cannot fill a batch of {k} from "
                                    f"{sizes.size} speakers; raise max_per_speaker or lower the batch size")
            return self.max_per_speaker
        cap = math.ceil(k / sizes.size)
        while np.minimum(sizes, cap).sum() < k:
            cap += 1
        return cap

    def _select(self, pool, labelled, k, rng):
        _, speaker = np.unique(pool.speakers, return_inverse=True)
        sizes = np.bincount(speaker)
        cap = self._cap(sizes, k)
        taken = np.zeros_like(sizes)
        is_chosen = np.zeros(len(pool), dtype=bool)
        chosen, context = [], labelled
        while len(chosen) < k:
            eligible = np.flatnonzero(~is_chosen & (taken[speaker] < cap))
            for position in _select_from(self.inner, pool, eligible, context, k - len(chosen), rng):
                if taken[speaker[position]] < cap:
                    taken[speaker[position]] += 1
                    is_chosen[position] = True
                    chosen.append(position)
            context = labelled.with_pending(pool, chosen)
        return np.array(chosen)

    def __repr__(self):
        return f"SpeakerDiverse({self.inner!r}, max_per_speaker={self.max_per_speaker})"
