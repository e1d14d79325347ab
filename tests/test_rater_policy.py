"""Rater policies of the simulated oracle: one / fixed / dynamic raters per clip, budgets in rater answers."""

import json

import numpy as np
import pytest

from after_hf.al.head import HeadClassifier
from after_hf.al.loop import ALArguments, run_al
from after_hf.al.raters import annotate, answers_used, ask, majority
from after_hf.config import ConfigError
from after_hf.data.manifest import ManifestError, load_manifest, save_manifest
from after_hf.data.ratings import OTHER, RATING_COLUMNS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FOUR = ["neutral", "happy", "angry", "sad"]
A, S, H, N = ["angry"], ["sad"], ["happy"], ["neutral"]


def test_dynamic_asks_more_only_while_raters_or_the_model_disagree():
    angry = FOUR.index("angry")
    assert ask("dynamic", [A, A, S], FOUR, angry, 5, 99) == [A]  # the model agrees with the first rater
    assert ask("dynamic", [A, A, S], FOUR, None, 5, 99) == [A]  # seed round: no model, one answer stands
    assert ask("dynamic", [A, A, S], FOUR, FOUR.index("sad"), 5, 99) == [A, A]  # 2 of 2 agree
    assert ask("dynamic", [A, S, S, H], FOUR, 0, 5, 99) == [A, S, S]  # sad holds 2 of 3
    assert ask("dynamic", [A, S, H, N, A], FOUR, 0, 4, 99) == [A, S, H, N]  # the cap
    assert ask("dynamic", [A, S, S], FOUR, 0, 5, 2) == [A, S]  # the round's budget
    assert ask("fixed", [A, A, S, S], FOUR, angry, 3, 99) == [A, A, S]  # fixed: the panel, whatever they say
    assert ask("fixed", [A], FOUR, angry, 3, 99) == [A]  # a clip with fewer raters gives what it has


def test_majority_ties_go_to_the_earliest_answer_and_outside_answers_do_not_count():
    assert majority([S, A], FOUR) == FOUR.index("sad")
    assert majority([A, S, S], FOUR) == FOUR.index("sad")
    assert majority([[OTHER], [OTHER], A], FOUR) == FOUR.index("angry")
    assert majority([[OTHER]], FOUR) is None


def test_a_round_walks_its_ranking_until_the_answers_are_spent():
    selected = [{"id": "c1", "probs": None}, {"id": "c2", "probs": None}, {"id": "c3", "probs": None},
                {"id": "c4", "probs": None}]
    panels = {"c1": [A, S, S], "c2": [[OTHER], [OTHER], [OTHER]], "c3": [H, H, N], "c4": [N]}
    labels, skipped, answers = annotate("fixed", selected, panels, FOUR, 3, budget=7)
    assert labels == {"c1": FOUR.index("sad"), "c3": FOUR.index("happy")} and skipped == ["c2"]
    assert [len(answers[c]) for c in ("c1", "c2", "c3")] == [3, 3, 1] and "c4" not in answers
    assert answers_used([{"phase": "labelled", "answers": answers, "labels": labels}]) == 7


def _args(manifest, out, cache, **kw):
    base = dict(manifest=str(manifest), out=str(out), backbone="tiny", strategy="entropy", cold_start="random",
                seed_size=12, step_size=10, budget=32, head_epochs=3, cache_dir=str(cache), rater_policy="dynamic",
                raters_per_clip=3)
    return ALArguments(**{**base, **kw})


def _panels(manifest):
    train = load_manifest(manifest, split="train")
    return {i: [r["labels"] for r in rs if not r["self_eval"]] for i, rs in zip(train["id"], train["ratings"])}


def test_dynamic_run_spends_its_budget_in_rater_answers(synth_manifest, tmp_path):
    run = tmp_path / "run"
    run_al(_args(synth_manifest, run, tmp_path / "cache"))
    state = json.loads((run / "state.json").read_text())
    panels = _panels(synth_manifest)
    assert [r["metrics"]["num_answers"] for r in state["rounds"]] == [12, 22, 32]  # the schedule, in answers
    seen = set()
    for rec in state["rounds"]:
        ids = [s["id"] for s in rec["selected"]]
        assert set(ids) == set(rec["labels"]) | set(rec["skipped"]) and not seen & set(ids)  # unreached ids left
        seen |= set(ids)
        for sample_id, given in rec["answers"].items():
            asked = [a["labels"] for a in given]
            assert asked == panels[sample_id][: len(asked)]  # the clip's raters, in order
            if rec["round"] == 0:
                assert len(asked) == 1
            if sample_id in rec["labels"]:
                assert rec["labels"][sample_id] == majority(asked, FOUR)
    later = [len(a) for rec in state["rounds"][1:] for a in rec["answers"].values()]
    assert max(later) > 1 and min(later) == 1  # more raters only where asked for
    summary = json.loads((run / "summary.json").read_text())
    assert [r["num_answers"] for r in summary["rounds"]] == [12, 22, 32]
    from after_hf.deploy import label_info

    labelled, info = label_info(run, json.loads((run / "config.json").read_text()), 100)
    assert (info.oracle, info.answers, info.annotators) == ("simulated", 0, 0)  # simulated raters are not people
    assert info.labelled_clips == len(labelled) == sum(len(r["labels"]) for r in state["rounds"])


def test_a_killed_dynamic_run_resumes_to_the_same_answers(synth_manifest, tmp_path, monkeypatch):
    import after_hf.al.loop as loop

    run_al(_args(synth_manifest, tmp_path / "straight", tmp_path / "cache"))
    real, calls = loop.train_round, {"n": 0}

    def crash_on_second(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed after round 1 was answered")
        return real(*a, **kw)

    monkeypatch.setattr(loop, "train_round", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_al(_args(synth_manifest, tmp_path / "killed", tmp_path / "cache"))
    monkeypatch.setattr(loop, "train_round", real)
    run_al(_args(synth_manifest, tmp_path / "killed", tmp_path / "cache", resume=True))
    keep = ("selected", "labels", "skipped", "answers")
    rounds = [[{k: r[k] for k in keep} for r in json.loads((tmp_path / d / "state.json").read_text())["rounds"]]
              for d in ("straight", "killed")]
    assert rounds[0] == rounds[1]


def test_fixed_panels_and_soft_labels_from_the_answers_asked(synth_manifest, tmp_path, monkeypatch):
    targets, real_fit = [], HeadClassifier.fit

    def spy(self, feats, labels, seed, *a, targets=None, **kw):
        spy.targets.append(np.asarray(targets).copy())
        return real_fit(self, feats, labels, seed, *a, targets=targets, **kw)

    spy.targets = targets
    monkeypatch.setattr(HeadClassifier, "fit", spy)
    run = tmp_path / "run"
    run_al(_args(synth_manifest, run, tmp_path / "cache", rater_policy="fixed", seed_size=9, step_size=9, budget=18,
                 soft_labels=True))
    state = json.loads((run / "state.json").read_text())
    answers = {i: [a["labels"][0] for a in given] for rec in state["rounds"] for i, given in rec["answers"].items()}
    assert all(len(a) == 3 for a in answers.values()) and len(answers) == 6
    ids = sorted(state["rounds"][0]["labels"] | state["rounds"][1]["labels"])
    expected = [[answers[i].count(name) / 3 for name in FOUR] for i in ids]
    np.testing.assert_allclose(targets[-1], expected)  # the answers paid for, not the clip's other raters


def test_rater_policy_needs_ratings_and_the_simulated_oracle(synth_manifest, tmp_path):
    with pytest.raises(ConfigError, match="--oracle human"):
        run_al(_args(synth_manifest, tmp_path / "h", tmp_path / "cache", oracle="human"))
    bare = save_manifest(load_manifest(synth_manifest).remove_columns(list(RATING_COLUMNS)), tmp_path / "bare")
    with pytest.raises(ManifestError, match="no rater answers"):
        run_al(_args(bare, tmp_path / "b", tmp_path / "cache"))
    assert not (tmp_path / "h").exists() and not (tmp_path / "b").exists()
