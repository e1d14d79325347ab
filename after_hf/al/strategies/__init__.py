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

import difflib
import inspect
from typing import Callable


from .badge import BADGE
from .base import (PENDING, LabelledView, PoolView, QueryStrategy, ScoreStrategy, Strategy, StrategyError,
                   StrategyOptionError)
from .bayesian import BALD, BatchBALD
from .cold_start import KMeansColdStart, TypiClust
from .disagreement import PredictedDisagreement
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
    "disagreement": PredictedDisagreement,
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


def _unknown(kind: str, name: str, spelling: str, known) -> StrategyError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f" in {spelling!r}" if spelling.strip() != name else ""
    return StrategyError(f"unknown {kind} {name!r}{where}{hint}; choose one of {sorted(known)}")


def _build(spelling: str, bases: dict, kwargs: dict) -> Strategy:
    *wrappers, base_name = spelling.strip().split(":")
    if base_name not in bases:
        raise _unknown("cold start" if bases is _COLD_STARTS else "strategy", base_name, spelling, bases)
    for wrapper in wrappers:
        if wrapper not in _WRAPPERS:
            raise _unknown("wrapper", wrapper, spelling, _WRAPPERS)
    unused = dict(kwargs)

    def take(factory):
        return {name: unused.pop(name) for name in _options(factory) if name in unused}

    accepted = {o for f in [bases[base_name], *(_WRAPPERS[w] for w in wrappers)] for o in _options(f)}
    if set(unused) - accepted:
        raise StrategyOptionError(f"{spelling!r} takes no {sorted(set(unused) - accepted)}; its options are "
                                  f"{sorted(accepted) or 'none'}")
    try:
        strategy = bases[base_name](**take(bases[base_name]))
        for wrapper in reversed(wrappers):
            strategy = _WRAPPERS[wrapper](strategy, **take(_WRAPPERS[wrapper]))
    except (TypeError, ValueError) as err:  # a combination or value the strategy refuses (its message names it)
        kind = StrategyOptionError if isinstance(err, TypeError) else StrategyError
        raise kind(f"{spelling!r}" + (f" with options {kwargs}" if kwargs else "") + f": {err}") from err
    return strategy


def options_of(name: str, cold_start: bool = False) -> list[str]:
    """The options ``name`` (any spelling, wrappers included) takes, e.g. ``['beta']`` for ``power_bald``."""
    *wrappers, base_name = name.strip().split(":")
    bases = _COLD_STARTS if cold_start else _BASES
    factories = [bases[base_name]] if base_name in bases else []
    factories += [_WRAPPERS[w] for w in wrappers if w in _WRAPPERS]
    return sorted({o for f in factories for o in _options(f)})


def describe(cold_start: bool = False) -> str:
    """Help text generated from the registry: every name with the options it takes."""
    def listed(registry: dict) -> str:
        return ", ".join(f"{n} ({', '.join(_options(f))})" if _options(f) else n for n, f in registry.items())

    if cold_start:
        return f"Seed-set strategy: {listed(_COLD_STARTS)}. Options in parentheses are set with --cold_start_options."
    return (f"Query strategy: {listed(_BASES)}; wrapped as WRAPPER:NAME (right to left) with {listed(_WRAPPERS)}. "
            f"Options in parentheses are set with --strategy_options.")


def get_strategy(name: str, **kwargs) -> Strategy:
    """A query strategy from its recipe name, e.g. ``"bald"`` or ``"class_balanced:badge"``."""
    return _build(name, _BASES, kwargs)


def get_cold_start(name: str, **kwargs) -> Strategy:
    """A cold-start (seed set) strategy: ``random``, ``kmeans`` or ``typiclust`` (wrappers allowed)."""
    return _build(name, _COLD_STARTS, kwargs)


__all__ = [
    "PENDING", "LabelledView", "PoolView", "QueryStrategy", "ScoreStrategy", "Strategy",
    "STRATEGIES", "WRAPPERS", "COLD_STARTS", "get_strategy", "get_cold_start", "options_of", "describe",
    "StrategyError", "StrategyOptionError",
    "RandomSampling", "EntropySampling", "LeastConfidence", "MarginSampling", "BALD", "BatchBALD",
    "CoreSet", "BADGE", "PredictedDisagreement", "StochasticBatch", "ClassBalanced", "SpeakerDiverse",
    "KMeansColdStart", "TypiClust",
]
