"""The contract between the active-learning loop and its query strategies.

A strategy is a pure function of arrays the scorer computed for the *unlabelled* pool:

    ids = strategy.select(pool: PoolView, labelled: LabelledView, k, rng)   # k distinct pool ids

* ``PoolView`` has no label field at all (passing ``labels=`` raises), so no strategy can read the
  label of an unlabelled item. Labels exist only in ``LabelledView``.
* Items are named by immutable sample ids from the manifest, never by positions in a shrinking pool.
* ``select`` returns ids in the order the strategy chose them (most preferred first).
* ``strategy.needs`` names the arrays the scorer must fill in: any of ``probs`` (softmax [N, C]),
  ``mc_probs`` (MC-dropout softmax samples [T, N, C]), ``embeddings`` (pooled penultimate features
  [N, D], the input of the last linear layer) and ``speakers`` ([N] speaker/session ids).
* ``strategy.scores(pool)`` gives one score per pool item (higher = more wanted) for strategies that
  rank items by a score, and ``None`` for set-based ones (CoreSet, BADGE, clustering cold starts).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from ...errors import AfterHFError

PENDING = -1
"""Label of an item chosen earlier in the same batch but not annotated yet (see ``with_pending``)."""

_PROB_TOLERANCE = 1e-3


class StrategyError(AfterHFError, ValueError):
    """A strategy name or option that does not exist, or a value a strategy refuses (named, with the fix)."""


class StrategyOptionError(StrategyError, TypeError):
    """An option that no part of the strategy takes, or parts that cannot be combined."""


def _as_ids(ids, what: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{what}.ids must be 1-D (one sample id per item), got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "UO":
        raise TypeError(f"{what}.ids must be string sample ids from the manifest, got dtype {arr.dtype}; "
                        "pass ids.astype(str)")
    if arr.dtype.kind == "O" and not all(isinstance(i, str) for i in arr):
        raise TypeError(f"{what}.ids must all be str (immutable sample ids from the manifest)")
    if arr.size == 0:
        arr = arr.astype(str)
    unique, counts = np.unique(arr, return_counts=True)
    if unique.size != arr.size:
        raise ValueError(f"{what}.ids has duplicates, e.g. {list(unique[counts > 1][:5])}; "
                         "each sample must appear once")
    return _frozen(arr)


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, copy=True)
    arr.setflags(write=False)
    return arr


def _as_probs(x, ndim: int, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        shape = "[N, C]" if ndim == 2 else "[T, N, C]"
        raise ValueError(f"{what} must have shape {shape}, got {arr.shape}")
    if arr.shape[-1] < 2:
        raise ValueError(f"{what} needs at least 2 classes on its last axis, got {arr.shape[-1]}")
    if not np.isfinite(arr).all() or (arr < 0).any() or \
            np.abs(arr.sum(-1) - 1).max(initial=0) > _PROB_TOLERANCE:
        raise ValueError(f"{what} must hold softmax probabilities (non-negative, rows summing to 1), "
                         "not logits: pass torch.softmax(logits, dim=-1)")
    return _frozen(arr)


def _as_embeddings(x, n: int, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{what} must have shape [N={n}, D], got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} has NaN or inf values; check the scorer's pooled features")
    return _frozen(arr)


def _as_speakers(x, n: int, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != (n,):
        raise ValueError(f"{what} must have shape [N={n}] (one speaker/session id per item), got {arr.shape}")
    return _frozen(arr)


@dataclass(frozen=True, init=False, eq=False, slots=True)
class PoolView:
    """The unlabelled pool as a strategy sees it. It cannot carry labels: there is no field for them."""

    ids: np.ndarray
    probs: np.ndarray | None
    mc_probs: np.ndarray | None
    embeddings: np.ndarray | None
    speakers: np.ndarray | None

    def __init__(self, ids, probs=None, mc_probs=None, embeddings=None, speakers=None, **unexpected):
        if unexpected:
            raise TypeError(f"PoolView takes no {sorted(unexpected)}: a query strategy must never see labels "
                            "of unlabelled items. Put labelled items in LabelledView instead.")
        ids = _as_ids(ids, "pool")
        n = ids.size
        if probs is not None:
            probs = _as_probs(probs, 2, "pool.probs")
            if probs.shape[0] != n:
                raise ValueError(f"pool.probs has {probs.shape[0]} rows for {n} ids")
        if mc_probs is not None:
            mc_probs = _as_probs(mc_probs, 3, "pool.mc_probs")
            if mc_probs.shape[1] != n:
                raise ValueError(f"pool.mc_probs has {mc_probs.shape[1]} items (axis 1) for {n} ids")
            if probs is not None and probs.shape[1] != mc_probs.shape[2]:
                raise ValueError(f"pool.probs has {probs.shape[1]} classes but pool.mc_probs has {mc_probs.shape[2]}")
        if embeddings is not None:
            embeddings = _as_embeddings(embeddings, n, "pool.embeddings")
        if speakers is not None:
            speakers = _as_speakers(speakers, n, "pool.speakers")
        for name, value in zip(self.__slots__, (ids, probs, mc_probs, embeddings, speakers)):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return self.ids.size

    def subset(self, positions) -> PoolView:
        """The pool restricted to ``positions`` (in that order)."""
        positions = np.asarray(positions, dtype=np.intp)
        return PoolView(
            ids=self.ids[positions],
            probs=None if self.probs is None else self.probs[positions],
            mc_probs=None if self.mc_probs is None else self.mc_probs[:, positions],
            embeddings=None if self.embeddings is None else self.embeddings[positions],
            speakers=None if self.speakers is None else self.speakers[positions],
        )


@dataclass(frozen=True, init=False, eq=False, slots=True)
class LabelledView:
    """What is already labelled: ids, integer class labels (or ``PENDING``), optional features."""

    ids: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray | None
    speakers: np.ndarray | None

    def __init__(self, ids, labels, embeddings=None, speakers=None):
        ids = _as_ids(ids, "labelled")
        labels = np.asarray(labels)
        if labels.shape != ids.shape:
            raise ValueError(f"labelled.labels has shape {labels.shape} for {ids.size} ids")
        if labels.size and (labels.dtype.kind not in "iu" or labels.min() < PENDING):
            raise ValueError("labelled.labels must be integer class indices (ClassLabel ids), "
                             f"or {PENDING} for chosen-but-unannotated items; got {labels.dtype} {labels[:5]}")
        labels = _frozen(labels.astype(np.int64))
        if embeddings is not None:
            embeddings = _as_embeddings(embeddings, ids.size, "labelled.embeddings")
        if speakers is not None:
            speakers = _as_speakers(speakers, ids.size, "labelled.speakers")
        for name, value in zip(self.__slots__, (ids, labels, embeddings, speakers)):
            object.__setattr__(self, name, value)

    @classmethod
    def empty(cls) -> LabelledView:
        return cls(ids=np.array([], dtype=str), labels=np.array([], dtype=np.int64))

    def __len__(self) -> int:
        return self.ids.size

    def class_counts(self, num_classes: int) -> np.ndarray:
        """Number of labelled items per class (``PENDING`` items not counted)."""
        known = self.labels[self.labels != PENDING]
        if known.size and known.max() >= num_classes:
            raise ValueError(f"labelled set has label {known.max()} but the model predicts {num_classes} classes")
        return np.bincount(known, minlength=num_classes)

    def with_pending(self, pool: PoolView, positions) -> LabelledView:
        """This set plus pool items chosen earlier in the same batch, labelled ``PENDING``.

        Wrappers pass it to their inner strategy so that set-based strategies (CoreSet, TypiClust)
        treat those items as covered. Features are kept only where both sides have them.
        """
        positions = np.asarray(positions, dtype=np.intp)
        extra = pool.subset(positions)

        def joined(mine, theirs):
            if theirs is None or (mine is None and len(self)):
                return None
            return theirs if mine is None else np.concatenate([mine, theirs])

        return LabelledView(
            ids=np.concatenate([self.ids, extra.ids]),
            labels=np.concatenate([self.labels, np.full(len(extra), PENDING)]),
            embeddings=joined(self.embeddings, extra.embeddings),
            speakers=joined(self.speakers, extra.speakers),
        )


@runtime_checkable
class QueryStrategy(Protocol):
    """What the loop relies on. ``Strategy`` below implements it with the input checks."""

    name: str
    needs: frozenset[str]

    def select(self, pool: PoolView, labelled: LabelledView, k: int, rng: np.random.Generator) -> np.ndarray: ...

    def scores(self, pool: PoolView) -> np.ndarray | None: ...


class Strategy(ABC):
    """Base class: validates the inputs once, then asks ``_select`` for ``k`` pool positions."""

    name: ClassVar[str] = "strategy"
    needs: frozenset[str] = frozenset()

    def select(self, pool: PoolView, labelled: LabelledView, k: int, rng: np.random.Generator) -> np.ndarray:
        """``k`` distinct ids from ``pool.ids``, in the order chosen (most preferred first)."""
        check_inputs(self, pool, labelled, k, rng)
        if k == 0:
            return pool.ids[:0]
        positions = np.asarray(self._select(pool, labelled, int(k), rng), dtype=np.intp)
        if positions.shape != (k,) or np.unique(positions).size != k:
            raise RuntimeError(f"{self!r} returned {positions.size} positions ({np.unique(positions).size} "
                               f"distinct) instead of {k}: this is a bug in the strategy")
        return pool.ids[positions]

    def scores(self, pool: PoolView) -> np.ndarray | None:
        """Per-item scores (higher = more wanted), or ``None`` for set-based strategies."""
        return None

    @abstractmethod
    def _select(self, pool: PoolView, labelled: LabelledView, k: int, rng: np.random.Generator) -> np.ndarray:
        """``k`` distinct positions into ``pool``; inputs are already validated and ``k >= 1``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class ScoreStrategy(Strategy):
    """A strategy that ranks items by a per-item score and takes the top ``k`` (random tie-breaks)."""

    def scores(self, pool: PoolView) -> np.ndarray:
        check_needs(self, pool)
        return self._scores(pool)

    @abstractmethod
    def _scores(self, pool: PoolView) -> np.ndarray:
        """One finite score per pool item, higher = more wanted."""

    def _select(self, pool, labelled, k, rng):
        return top_k(self._scores(pool), k, rng)


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first; equal scores are ordered at random."""
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; check the probabilities given to the strategy")
    shuffled = rng.permutation(scores.size)
    return shuffled[np.argsort(-scores[shuffled], kind="stable")[:k]]


def check_needs(strategy: Strategy, pool: PoolView) -> None:
    missing = [name for name in sorted(strategy.needs) if getattr(pool, name) is None]
    if missing:
        raise ValueError(f"strategy {strategy.name!r} needs pool.{', pool.'.join(missing)}; have the scorer "
                         f"compute {sorted(strategy.needs)} (see the strategy's `needs`)")


def check_inputs(strategy: Strategy, pool: PoolView, labelled: LabelledView, k, rng) -> None:
    if not isinstance(pool, PoolView):
        raise TypeError(f"pool must be a PoolView, got {type(pool).__name__}")
    if not isinstance(labelled, LabelledView):
        raise TypeError(f"labelled must be a LabelledView (LabelledView.empty() if nothing is labelled), "
                        f"got {type(labelled).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}; pass np.random.default_rng(seed)")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(pool):
        raise ValueError(f"k must be an integer in [0, {len(pool)}] (the pool size), got {k!r}")
    check_needs(strategy, pool)
    overlap = np.intersect1d(pool.ids, labelled.ids)
    if overlap.size:
        raise ValueError(f"{overlap.size} ids are both in the pool and labelled (e.g. {list(overlap[:5])}); "
                         "remove labelled ids from the pool before selecting")
