"""Active-learning query strategies and cold starts, by name (the names used in YAML recipes).

    get_strategy("entropy")
    get_strategy("batchbald", num_samples=1000)
    get_strategy("power_bald", beta=2.0)
    get_strategy("class_balanced:badge")
    get_strategy("speaker_diverse:class_balanced:entropy", max_per_speaker=3)
    get_strategy("softrank:margin", beta=1.0)
    get_cold_start("kmeans", num_clusters="silhouette")

Spelling: ``wrapper:…:base``. Wrappers apply right to left (the rightmost is closest to the base):
``class_balanced``, ``speaker_diverse`` (around any strategy) and ``power`` / ``softmax`` / ``softrank``
(stochastic sampling around a scored strategy). Keyword arguments go to whichever part accepts them
(e.g. ``num_samples`` → BatchBALD, ``max_per_speaker`` → speaker_diverse, ``beta`` → power);
an argument no part accepts is an error. See ``base.py`` for the interface.
"""

from __future__ import annotations

import inspect
from typing import Callable

from .badge import BADGE
from .base import PENDING, LabelledView, PoolView, QueryStrategy, ScoreStrategy, Strategy
from .bayesian import BALD, BatchBALD
from .cold_start import KMeansColdStart, TypiClust
from .diversity import CoreSet
from .random_sampling import RandomSampling
from .stochastic import StochasticBatch
from .uncertainty import EntropySampling, LeastConfidence, MarginSampling
from .wrappers import ClassBalanced, SpeakerDiverse


def _power(base_cls):
    def make(beta: float = 1.0):
        return StochasticBatch(base_cls(), mode="power", beta=beta)
    return make


_BASES: dict[str, Callable[..., Strategy]] = {
    "random": RandomSampling,
    "entropy": EntropySampling,
    "least_confidence": LeastConfidence,
    "margin": MarginSampling,
    "bald": BALD,
    "batchbald": BatchBALD,
    "coreset": CoreSet,
    "badge": BADGE,
    "power_entropy": _power(EntropySampling),
    "power_bald": _power(BALD),
}


def _stochastic(mode):
    def wrap(base: Strategy, beta: float = 1.0):
        return StochasticBatch(base, mode=mode, beta=beta)
    return wrap


_WRAPPERS: dict[str, Callable[..., Strategy]] = {
    "class_balanced": ClassBalanced,
    "speaker_diverse": SpeakerDiverse,
    "power": _stochastic("power"),
    "softmax": _stochastic("softmax"),
    "softrank": _stochastic("softrank"),
}

_COLD_STARTS: dict[str, Callable[..., Strategy]] = {
    "random": RandomSampling,
    "kmeans": KMeansColdStart,
    "typiclust": TypiClust,
}

STRATEGIES: tuple[str, ...] = tuple(_BASES)
WRAPPERS: tuple[str, ...] = tuple(_WRAPPERS)
COLD_STARTS: tuple[str, ...] = tuple(_COLD_STARTS)


def _options(factory) -> list[str]:
    params = inspect.signature(factory).parameters
    return [name for name in params if name not in ("self", "base", "inner")]


def _build(spelling: str, bases: dict, kwargs: dict) -> Strategy:
    *wrappers, base_name = spelling.strip().split(":")
    if base_name not in bases:
        raise ValueError(f"unknown strategy {base_name!r} in {spelling!r}; choose one of {sorted(bases)}")
    for wrapper in wrappers:
        if wrapper not in _WRAPPERS:
            raise ValueError(f"unknown wrapper {wrapper!r} in {spelling!r}; choose from {list(_WRAPPERS)}")
    unused = dict(kwargs)

    def take(factory):
        return {name: unused.pop(name) for name in _options(factory) if name in unused}

    strategy = bases[base_name](**take(bases[base_name]))
    for wrapper in reversed(wrappers):
        strategy = _WRAPPERS[wrapper](strategy, **take(_WRAPPERS[wrapper]))
    if unused:
        accepted = sorted({o for f in [bases[base_name], *(_WRAPPERS[w] for w in wrappers)] for o in _options(f)})
        raise TypeError(f"{spelling!r} takes no {sorted(unused)}; its options are {accepted}")
    return strategy


def get_strategy(name: str, **kwargs) -> Strategy:
    """A query strategy from its recipe name, e.g. ``"bald"`` or ``"class_balanced:badge"``."""
    return _build(name, _BASES, kwargs)


def get_cold_start(name: str, **kwargs) -> Strategy:
    """A cold-start (seed set) strategy: ``random``, ``kmeans`` or ``typiclust`` (wrappers allowed)."""
    return _build(name, _COLD_STARTS, kwargs)


__all__ = [
    "PENDING", "LabelledView", "PoolView", "QueryStrategy", "ScoreStrategy", "Strategy",
    "STRATEGIES", "WRAPPERS", "COLD_STARTS", "get_strategy", "get_cold_start",
    "RandomSampling", "EntropySampling", "LeastConfidence", "MarginSampling", "BALD", "BatchBALD",
    "CoreSet", "BADGE", "StochasticBatch", "ClassBalanced", "SpeakerDiverse", "KMeansColdStart", "TypiClust",
]
