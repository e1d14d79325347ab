"""Budgets are exact, state is atomic and id-keyed, corruption is reported, stopping works."""

import json

import numpy as np
import pytest

from after_hf.al.budget import budget_schedule, resolve_size
from after_hf.al.state import RunState
from after_hf.al.stopping import StabilisingPredictions
from after_hf.io import StateError


def test_budget_schedule_is_exact_and_ends_at_budget():
    assert budget_schedule(1000, 0.05, 0.05, 0.20) == [50, 100, 150, 200]
    assert budget_schedule(1000, 200, 50, 0.33) == [200, 250, 300, 330]  # last step clipped, never overshoots
    assert budget_schedule(37, 5, 5, 5) == [5]
    for n in (97, 1000, 15531):
        sizes = budget_schedule(n, 0.05, 0.05, 0.2)
        assert sizes[-1] == round(0.2 * n) and all(b > a for a, b in zip(sizes, sizes[1:]))


def test_fractions_are_cumulative_fractions_of_the_pool_without_a_one_label_round():
    # 5 / 10 / 15 / 20 % of 667 clips; adding rounded 5 % steps gave 33/66/99/132 and then a 1-label round to 133
    assert budget_schedule(667, 0.05, 0.05, 0.20) == [33, 67, 100, 133]
    for n in range(40, 2000, 7):
        sizes = budget_schedule(n, 0.05, 0.05, 0.20)
        assert len(sizes) == 4 and all(abs(size - k * 0.05 * n) <= 0.5 + 1e-6 for k, size in enumerate(sizes, 1)), n
    assert budget_schedule(1000, 0.05, 0.1, 0.3) == [50, 150, 250, 300]  # a last partial round only when asked


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_budgets_name_the_option(value):
    for what, args in (("budget", (0.05, 0.05, value)), ("seed_size", (value, 0.05, 0.2)),
                       ("step_size", (0.05, value, 0.2))):
        with pytest.raises(ValueError, match=f"--{what} must be a finite number"):
            budget_schedule(100, *args)


def test_budget_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"--budget 10 is read as 10 clips .*seed set's 20.*raise --budget"):
        budget_schedule(100, 20, 5, 10)
    with pytest.raises(ValueError, match=r"--budget 0.1 is 10 clips, fewer than the seed set's 20"):
        budget_schedule(100, 20, 5, 0.1)
    with pytest.raises(ValueError, match="only 10 samples"):
        resolve_size(11, 10, "budget")


@pytest.mark.parametrize("what", ["seed_size", "step_size", "budget"])
def test_a_size_above_one_that_is_not_whole_is_refused_not_truncated(what):
    # 1.5 was read as 1 clip (truncated); a share of the pool is a fraction below 1, a count a whole number
    sizes = {"seed_size": 3, "step_size": 2, "budget": 10, what: 1.5}
    with pytest.raises(ValueError, match=f"--{what} 1.5 is neither a fraction nor a count: a share of the pool is a "
                                         r"fraction below 1 \(e.g. 0.2 = 20 %\), a count is a whole number"):
        budget_schedule(100, sizes["seed_size"], sizes["step_size"], sizes["budget"])


def test_a_whole_budget_is_a_count_and_the_message_says_how_it_was_read():
    # --budget 1.0 (someone meaning 100 %) is one clip: the refusal says so and how to write a share of the pool
    with pytest.raises(ValueError, match=r"^--budget 1 is read as 1 clip \(a share of the pool is a fraction below 1, "
                                         r"e.g. 0.2\), fewer than the seed set's 3 \(--seed_size 3\)"):
        budget_schedule(100, 3, 1, 1.0)
    with pytest.raises(ValueError, match="--budget 2 is read as 2 rater answers"):
        budget_schedule(100, 3, 1, 2.0, capacity=300)
    assert budget_schedule(100, 3.0, 2.0, 7.0) == budget_schedule(100, 3, 2, 7) == [3, 5, 7]  # whole floats: counts
    assert budget_schedule(100, 1 - 1e-9, 1 - 1e-9, 1 - 1e-9) == [100]  # the experiment's "all of the pool"


def _select(state, index, ids):
    return state.record_selection(index, len(state.labels()) + len(ids), [{"id": i, "score": 0.5} for i in ids],
                                  "entropy", {})


def test_state_round_trip_and_resume(tmp_path):
    config = {"strategy": "entropy", "seed": 0, "out": str(tmp_path)}
    state = RunState.open(tmp_path, config, resume=False)
    _select(state, 0, ["c/a", "c/b"])
    state.record_labels(0, {"c/a": 1, "c/b": 0}, [], 0.1)
    with pytest.raises(StateError, match="--resume"):
        RunState.open(tmp_path, config, resume=False)
    again = RunState.open(tmp_path, config, resume=True)
    assert again.labels() == {"c/a": 1, "c/b": 0}
    assert again.rounds[0]["phase"] == "labelled"
    with pytest.raises(StateError, match="changed: \\['seed'\\]"):
        RunState.open(tmp_path, {**config, "seed": 1}, resume=True)
    # an option added in a later version resumes an older run at its default value, and only then
    newer = {**config, "warm_start": False}
    assert RunState.open(tmp_path, newer, resume=True, defaults={"warm_start": False}).labels() == {"c/a": 1, "c/b": 0}
    with pytest.raises(StateError, match="changed: \\['warm_start'\\]"):
        RunState.open(tmp_path, {**config, "warm_start": True}, resume=True, defaults={"warm_start": False})


def test_state_never_repeats_an_id_or_accepts_foreign_labels(tmp_path):
    state = RunState.open(tmp_path, {"x": 1}, resume=False)
    _select(state, 0, ["c/a"])
    state.record_labels(0, {"c/a": 2}, [], 0.0)
    with pytest.raises(StateError, match="already asked"):
        _select(state, 1, ["c/a"])
    _select(state, 1, ["c/b"])
    with pytest.raises(StateError, match="not asked for"):
        state.record_labels(1, {"c/z": 0}, [], 0.0)


def test_corrupt_state_is_reported_not_reset(tmp_path):
    state = RunState.open(tmp_path, {"x": 1}, resume=False)
    _select(state, 0, ["c/a"])
    (tmp_path / "state.json").write_text('{"format": 1, "rounds": [')  # half-written by hand
    with pytest.raises(StateError, match="state.prev.json|previous round"):
        RunState.open(tmp_path, {"x": 1}, resume=True)
    prev = json.loads((tmp_path / "state.prev.json").read_text())
    assert prev["format"] == 1  # the previous good copy is there to restore


def test_stabilising_predictions_stops_after_patience():
    stop = StabilisingPredictions(threshold=0.99, patience=2)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 200)
    assert not stop.update(0, a)
    assert not stop.update(1, rng.integers(0, 4, 200))  # disagreement: streak 0
    assert not stop.update(2, a)  # differs from round 1: streak stays 0
    assert not stop.update(3, a)  # streak 1
    assert stop.update(4, a)  # streak 2 -> stop
