"""Labelling budgets: exact cumulative label counts per round, from counts or fractions of the pool."""

from __future__ import annotations


def resolve_size(value: float, pool_size: int, what: str) -> int:
    """``value`` < 1 is a fraction of the pool (rounded), >= 1 an absolute count."""
    if value <= 0:
        raise ValueError(f"{what} must be > 0 (a count, or a fraction of the pool below 1), got {value}")
    n = round(value * pool_size) if value < 1 else int(value)
    if n < 1:
        raise ValueError(f"{what}={value} is less than one sample of a pool of {pool_size}; raise it.")
    if n > pool_size:
        raise ValueError(f"{what}={value} asks for {n} labels but the pool has only {pool_size} samples.")
    return n


def budget_schedule(pool_size: int, seed_size: float, step_size: float, budget: float) -> list[int]:
    """Cumulative labelled-set sizes, one per round: seed, seed+step, ..., ending exactly at ``budget``.

    >>> budget_schedule(1000, 0.05, 0.05, 0.20)
    [50, 100, 150, 200]
    """
    seed = resolve_size(seed_size, pool_size, "seed_size")
    step = resolve_size(step_size, pool_size, "step_size")
    total = resolve_size(budget, pool_size, "budget")
    if total < seed:
        raise ValueError(f"budget ({total}) is smaller than the seed set ({seed}); raise budget or lower seed_size.")
    sizes = [seed]
    while sizes[-1] < total:
        sizes.append(min(sizes[-1] + step, total))
    return sizes
