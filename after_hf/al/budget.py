"""Labelling budgets: exact cumulative label counts per round, from counts or fractions of the pool.

A fraction is a share of the pool and sizes are *cumulative*: ``seed_size 0.05, step_size 0.05, budget 0.20``
on a 667-clip pool gives 33 / 67 / 100 / 133 labels (5 / 10 / 15 / 20 % of the pool, each rounded), not
33 / 66 / 99 / 132 / 133 (rounded steps added up, then a 1-label round to reach the budget).
"""

from __future__ import annotations

import math

from ..config import ConfigError


class BudgetError(ConfigError):
    """A seed / step / budget size that cannot be met; the message names the option and the fix."""


def check_size(value: float, option: str) -> None:
    """The checks a seed / step / budget value needs before any pool exists: a finite number > 0 that is a
    fraction of the pool (< 1) or a whole count (1.5 is neither: 100 % is not 1, and 1.5 clips do not exist)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BudgetError(f"{option} must be a finite number: a count (>= 1) or a fraction of the pool (< 1), "
                          f"e.g. 0.05; got {value!r}.")
    if value <= 0:
        raise BudgetError(f"{option} must be > 0 (a count, or a fraction of the pool below 1), got {value}.")
    if value >= 1 and value != int(value):
        raise BudgetError(f"{option} {value:g} is neither a fraction nor a count: a share of the pool is a fraction "
                          f"below 1 (e.g. 0.2 = 20 %), a count is a whole number (e.g. {int(value)} or "
                          f"{int(value) + 1}); give one or the other.")


def _exact(value: float, pool_size: int, what: str) -> float:
    """``value`` as a (fractional) number of samples: < 1 is a fraction of the pool, >= 1 a count."""
    check_size(value, f"--{what}")
    return value * pool_size if value < 1 else float(value)


def _rounded(exact: float) -> int:
    """Half up (not Python's half to even), with a tolerance for 0.05 * 3 != 0.15 in binary floating point."""
    return math.floor(exact + 0.5 + 1e-9)


def resolve_size(value: float, pool_size: int, what: str, capacity: float | None = None) -> int:
    """``value`` < 1 is a fraction of the pool (rounded half up), >= 1 an absolute count, at most ``capacity``
    (default: the pool size; rater answers: the pool's clips x raters per clip; ``math.inf``: no cap)."""
    n = _rounded(_exact(value, pool_size, what))
    capacity = pool_size if capacity is None else capacity
    if n < 1:
        raise BudgetError(f"{what}={value} is less than one sample of a pool of {pool_size}; raise it.")
    if n > capacity:
        unit = "samples" if capacity == pool_size else "rater answers (clips x raters per clip)"
        raise BudgetError(f"{what}={value} asks for {n} labels but the pool has only {capacity} {unit}; lower it.")
    return n


def budget_schedule(pool_size: int, seed_size: float, step_size: float, budget: float,
                    capacity: int | None = None) -> list[int]:
    """Cumulative labelled-set sizes, one per round: seed, seed+step, ..., ending exactly at ``budget``.

    Round ``r`` reaches ``round(seed + r * step)`` with seed and step as exact (fractional) sample counts, so
    fractions give the fractions of the pool they name, and the last round ends at ``budget`` without overshoot.
    The same schedule counts rater answers under a rater policy (``capacity``: the most answers the pool holds).

    >>> budget_schedule(1000, 0.05, 0.05, 0.20)
    [50, 100, 150, 200]
    >>> budget_schedule(667, 0.05, 0.05, 0.20)
    [33, 67, 100, 133]
    """
    seed = resolve_size(seed_size, pool_size, "seed_size", capacity)
    resolve_size(step_size, pool_size, "step_size", capacity)
    total = resolve_size(budget, pool_size, "budget", capacity)
    if total < seed:
        counted = f"{total} {'clip' if capacity is None else 'rater answer'}{'s' * (total != 1)}"
        read = (f"--budget {budget:g} is read as {counted} (a share of the pool is a fraction below 1, e.g. 0.2)"
                if budget >= 1 else f"--budget {budget:g} is {counted}")
        raise BudgetError(f"{read}, fewer than the seed set's {seed} (--seed_size {seed_size:g}); raise --budget or "
                          "lower --seed_size.")
    seed_exact, step_exact = _exact(seed_size, pool_size, "seed_size"), _exact(step_size, pool_size, "step_size")
    sizes = [seed]
    while sizes[-1] < total:
        target = _rounded(seed_exact + len(sizes) * step_exact)
        sizes.append(min(max(target, sizes[-1] + 1), total))
    return sizes
