"""The AL loop end to end (head-only mode, tiny backbone): exact budgets, resume == uninterrupted,
a human oracle that exits cleanly and resumes when labels arrive."""

import json

import numpy as np
import pytest

from after_hf.al import oracle
from after_hf.al.loop import ALArguments, run_al
from after_hf.config import ConfigError
from after_hf.data.manifest import label_names, load_manifest


def _args(manifest, out, cache, **kw):
    base = dict(manifest=str(manifest), out=str(out), backbone="tiny", strategy="entropy", cold_start="kmeans",
                seed_size=10, step_size=8, budget=34, head_epochs=15, cache_dir=str(cache))
    return ALArguments(**{**base, **kw})


def _selected(run_dir):
    state = json.loads((run_dir / "state.json").read_text())
    return [[s["id"] for s in r["selected"]] for r in state["rounds"]], state


def test_budgets_are_exact_and_nothing_is_asked_twice(synth_manifest, tmp_path):
    run_al(_args(synth_manifest, tmp_path / "run", tmp_path / "cache"))
    rounds, state = _selected(tmp_path / "run")
    assert [len(r) for r in rounds] == [10, 8, 8, 8]
    flat = [i for r in rounds for i in r]
    assert len(flat) == len(set(flat)) == 34
    train_ids = set(load_manifest(synth_manifest, split="train")["id"])
    assert set(flat) <= train_ids  # never a validation / test utterance
    assert [r["metrics"]["num_labelled"] for r in state["rounds"]] == [10, 18, 26, 34]
    assert all(0.0 <= r["metrics"]["test"]["ua"] <= 1.0 for r in state["rounds"])


@pytest.mark.parametrize("strategy", ["random", "coreset", "bald"])
def test_score_less_and_set_based_strategies_run_past_the_seed_round(synth_manifest, tmp_path, strategy):
    """random returns no per-item scores, CoreSet only a set: selections are stored with score None, nothing crashes."""
    run_al(_args(synth_manifest, tmp_path / "run", tmp_path / "cache", strategy=strategy, budget=18, mc_passes=4))
    rounds, state = _selected(tmp_path / "run")
    assert [len(r) for r in rounds] == [10, 8]
    scores = [s["score"] for s in state["rounds"][1]["selected"]]
    assert all(x is None for x in scores) if strategy != "bald" else all(isinstance(x, float) for x in scores)


def test_resume_after_a_crash_equals_an_uninterrupted_run(synth_manifest, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    run_al(_args(synth_manifest, tmp_path / "straight", cache, strategy="margin"))

    import after_hf.al.loop as loop

    real_train_round, calls = loop.train_round, {"n": 0}

    def crash_on_third_training(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash after round 2 was selected and labelled")
        return real_train_round(*a, **kw)

    monkeypatch.setattr(loop, "train_round", crash_on_third_training)
    with pytest.raises(KeyboardInterrupt):
        run_al(_args(synth_manifest, tmp_path / "crashed", cache, strategy="margin"))
    monkeypatch.setattr(loop, "train_round", real_train_round)
    run_al(_args(synth_manifest, tmp_path / "crashed", cache, strategy="margin", resume=True))

    straight, s_state = _selected(tmp_path / "straight")
    resumed, r_state = _selected(tmp_path / "crashed")
    assert straight == resumed  # same ids, same order, every round
    ua = lambda st: [r["metrics"]["test"]["ua"] for r in st["rounds"]]  # noqa: E731
    np.testing.assert_allclose(ua(s_state), ua(r_state), atol=1e-12)


def test_human_oracle_waits_then_resumes_with_the_answers(synth_manifest, tmp_path):
    args = _args(synth_manifest, tmp_path / "run", tmp_path / "cache", oracle="human", budget=10)
    run_al(args)  # writes the queue and exits: nobody answered yet
    queue = oracle.read_queue(tmp_path / "run")
    assert queue["round"] == 0 and len(queue["items"]) == 10
    assert not (tmp_path / "run" / "summary.json").exists()
    names = label_names(load_manifest(synth_manifest))
    for n, item in enumerate(queue["items"]):
        oracle.save_annotation(tmp_path / "run", item["id"], None if n == 0 else names[n % 4], names)
    args.resume = True
    state = run_al(args)
    rec = state.rounds[0]
    assert rec["phase"] == "trained"
    assert rec["skipped"] == [queue["items"][0]["id"]]
    assert len(rec["labels"]) == 9 and all(rec["labels"][it["id"]] == n % 4 for n, it in enumerate(queue["items"]) if n)


def test_warm_start_continues_from_the_previous_rounds_head(synth_manifest, tmp_path, monkeypatch):
    """--warm_start: round r's training starts from the head saved in round r-1 (AFTER's default retrains from
    scratch)."""
    import torch
    from safetensors.torch import load_file

    from after_hf.al.head import HeadClassifier

    starts, real_fit = [], HeadClassifier.fit

    def spy(self, *a, warm_start=False, **kw):
        starts.append((warm_start, {k: v.clone() for k, v in self.model.state_dict().items()} if warm_start else None))
        return real_fit(self, *a, warm_start=warm_start, **kw)

    monkeypatch.setattr(HeadClassifier, "fit", spy)
    run = tmp_path / "warm"
    run_al(_args(synth_manifest, run, tmp_path / "cache", strategy="random", budget=26, head_epochs=3, warm_start=True))
    assert [w for w, _ in starts] == [False, True, True]
    for r in (1, 2):
        saved = load_file(str(run / "models" / f"round_{r - 1}" / "head.safetensors"))
        for name, value in starts[r][1].items():
            assert torch.equal(value, saved[f"head.{name}"]), (r, name)
    final = load_file(str(run / "models" / "round_2" / "head.safetensors"))
    assert not torch.equal(final["head.out.weight"], starts[2][1]["out.weight"])  # and then it trained further

    starts.clear()
    run_al(_args(synth_manifest, tmp_path / "cold", tmp_path / "cache", strategy="random", budget=26, head_epochs=3))
    assert [w for w, _ in starts] == [False, False, False]


def test_strategy_and_cold_start_options_reach_the_strategies(synth_manifest, tmp_path):
    """--strategy_options / --cold_start_options from the command line: max_per_speaker=1 spreads round 1 over
    every train speaker; an option the strategy does not take fails before the run directory exists."""
    from after_hf.cli import run as cli
    from after_hf.al.strategies import StrategyError

    out = tmp_path / "run"
    base = ["al", "--manifest", str(synth_manifest), "--backbone", "tiny", "--cache_dir", str(tmp_path / "cache"),
            "--seed_size", "6", "--step_size", "5", "--budget", "11", "--head_epochs", "3", "--cold_start", "kmeans",
            "--cold_start_options", "num_clusters=2", "--strategy", "speaker_diverse:random"]
    with pytest.raises(StrategyError, match="takes no \\['beta'\\]"):
        cli([*base, "--out", str(out), "--strategy_options", "beta=2"])
    assert not out.exists()
    assert cli([*base, "--out", str(out), "--strategy_options", "max_per_speaker=1"]) == 0
    rounds, state = _selected(out)
    train = load_manifest(synth_manifest, split="train")
    speaker = dict(zip(train["id"], train["speaker"]))
    assert len(set(speaker.values())) == 5  # so 5 picks from 5 speakers: by chance alone, 5! / 5**5 = 4 %
    assert len(rounds[1]) == 5 and len({speaker[i] for i in rounds[1]}) == 5
    config = json.loads((out / "config.json").read_text())
    assert config["strategy_options"] == {"max_per_speaker": 1} and config["cold_start_options"] == {"num_clusters": 2}


def test_the_loop_uses_only_the_learner_interface():
    """Both learners implement every method of `Learner`, and the loop touches nothing else of a learner."""
    import ast
    import inspect

    import after_hf.al.loop as loop
    from after_hf.al.full_learner import FullLearner
    from after_hf.al.learners import HeadLearner, Learner

    for cls in (HeadLearner, FullLearner):
        assert issubclass(cls, Learner) and not cls.__abstractmethods__, cls
    interface = {name for name, _ in inspect.getmembers(Learner) if not name.startswith("_")}
    interface |= set(Learner.__annotations__)
    used = {node.attr for node in ast.walk(ast.parse(inspect.getsource(loop)))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "learner"}
    assert used and used <= interface, used - interface


def test_full_mode_warm_start_scales_epochs_to_the_new_labels_and_reuses_the_cnn_frames(synth_manifest, tmp_path,
                                                                                         monkeypatch):
    """--mode full --warm_start --warm_start_epochs scaled: round r fine-tunes round r-1's saved model for the recipe's
    epochs x (new labels / labelled), the frozen CNN's outputs are computed once (round 0) and reused by every later
    round's training and pool scoring, and each round records its phases (load, score, select, train, save,
    evaluate; inside training: CNN frames, speaker statistics, evaluation)."""
    from after_hf import finetune as ft
    from after_hf.al import features
    from after_hf.al.full_learner import warm_epochs

    recipe = tmp_path / "ft.yaml"
    recipe.write_text("finetune:\n  num_train_epochs: 6\n  per_device_train_batch_size: 8\n  max_train_seconds: 2.0\n"
                      "  mask_time_prob: 0.0\n  mask_feature_prob: 0.0\n  speaker_norm: true\n"
                      "  early_stopping_patience: 0\n  learning_rate: 1.0e-3\n")
    seen = []
    real = ft.finetune

    def spy(args, train_ds, *a, **kw):
        seen.append((args.model, args.num_train_epochs, len(train_ds), features.ENCODER_STATS["utterances"],
                     args.speaker_stats_clips))
        return real(args, train_ds, *a, **kw)

    monkeypatch.setattr("after_hf.al.full_learner.finetune", spy)
    run = tmp_path / "run"
    state = run_al(_args(synth_manifest, run, tmp_path / "cache", mode="full", finetune_config=str(recipe),
                         cold_start="random", seed_size=12, step_size=12, budget=36, warm_start=True,
                         warm_start_epochs="scaled", finetune_options={"speaker_stats_clips": 6}))
    assert [n for _, _, n, _, _ in seen] == [12, 24, 36]
    assert {clips for *_, clips in seen} == {6}  # al's finetune_options over the recipe, every round
    assert seen[0][:2] == ("tiny", 6.0)  # round 0 from the backbone, the recipe's epochs
    for r in (1, 2):  # later rounds from the round before, epochs scaled to the new labels
        assert seen[r][0] == str(run / "models" / f"round_{r - 1}")
        assert seen[r][1] == warm_epochs(6, 12 * (r + 1), 12 * r) == round(6 / (r + 1))
    encoded_after_round_0 = seen[1][3]
    assert features.ENCODER_STATS["utterances"] == encoded_after_round_0  # no CNN pass after round 0's caching
    for rec in state.rounds:
        assert {"select", "train", "save", "evaluate"} <= set(rec["seconds"])
        assert set(rec["metrics"]["fit"]["phase_seconds"]) == {"frames", "speaker_stats", "evaluate", "save"}
        assert rec["metrics"]["fit"]["phase_seconds"]["speaker_stats"] > 0
    assert {"load", "score"} <= set(state.rounds[1]["seconds"])
    # round r >= 1 continues round r-1's saved model, which just scored the pool (entropy): the first speaker
    # statistics come from that scoring, one pass over the statistics clips fewer than round 0's schedule needs
    passes = [rec["metrics"]["fit"]["speaker_stats_passes"] for rec in state.rounds]
    refreshes = [rec["metrics"]["fit"]["speaker_stats_refreshes"] for rec in state.rounds]
    assert passes[0] == refreshes[0] >= 1 and all(p == n - 1 for p, n in zip(passes[1:], refreshes[1:]))
    assert warm_epochs(12, 86, 43) == 6 and warm_epochs(12, 173, 130) == 3 and warm_epochs(2, 100, 99) == 1
    with pytest.raises(ConfigError, match="speaker_stats_clip"):  # a misspelt fine-tuning option: before any work
        run_al(_args(synth_manifest, tmp_path / "other", tmp_path / "cache", mode="full", finetune_config=str(recipe),
                     finetune_options={"speaker_stats_clip": 6}))
    assert not (tmp_path / "other").exists()


def test_a_loaded_round_goes_to_the_device_training_uses(monkeypatch, tmp_path):
    """Full mode scores the pool with the saved round it loads: on a CUDA machine that model goes to the GPU (it
    stayed on the CPU, so every round's pool scoring ran there)."""
    from after_hf.al import full_learner

    moved = []

    class Stub:
        def to(self, device):
            moved.append(str(device))
            return self

        def eval(self):
            return self

    monkeypatch.setattr(full_learner, "load_classifier", lambda *a, **k: Stub())
    monkeypatch.setattr(full_learner, "load_feature_extractor", lambda *a, **k: None)
    learner = full_learner.FullLearner.__new__(full_learner.FullLearner)
    learner.label_names = ["a", "b"]
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    learner.load(tmp_path)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    learner.load(tmp_path)
    assert moved == ["cuda", "cpu"]


def test_full_mode_embeddings_of_a_just_scored_pool_cost_no_second_pass(synth_manifest, tmp_path, monkeypatch):
    """CoreSet asks for the labelled clips' embeddings after scoring the pool: with the same loaded weights they come
    from that scoring (equal to a fresh pass), not from a second pass over the whole pool."""
    from after_hf.al.full_learner import FullLearner
    from after_hf.al.learners import SplitArrays
    from after_hf.data.manifest import label_names, load_manifest
    from after_hf.finetune import FinetuneArguments, finetune

    manifest = load_manifest(synth_manifest)
    splits, names = SplitArrays.from_manifest(manifest), label_names(manifest)
    recipe = tmp_path / "ft.yaml"
    recipe.write_text("finetune:\n  max_steps: 1\n  per_device_train_batch_size: 4\n  max_train_seconds: 1.0\n"
                      "  mask_time_prob: 0.0\n  mask_feature_prob: 0.0\n  early_stopping_patience: 0\n")
    saved = finetune(FinetuneArguments(model="tiny", max_steps=1, per_device_train_batch_size=4, max_train_seconds=1.0,
                                       mask_time_prob=0.0, mask_feature_prob=0.0, early_stopping_patience=0),
                     splits["train"].ds, None, names, tmp_path / "round").model_dir
    learner = FullLearner("tiny", splits, names, tmp_path / "models", str(recipe), tmp_path / "cache")
    learner.load(saved)
    pool = list(splits["train"].ids)
    probes = []
    real = learner._probe
    monkeypatch.setattr(learner, "_probe", lambda *a, **k: probes.append(1) or real(*a, **k))
    scored = learner.score(pool, frozenset({"probs", "embeddings"}), 0, seed=0)
    again = learner.score(pool[:5], frozenset({"embeddings"}), 0, seed=0)
    assert len(probes) == 1
    np.testing.assert_allclose(again["embeddings"], scored["embeddings"][:5])
    learner.load(saved)  # loaded again: nothing is assumed about the weights
    learner.score(pool[:5], frozenset({"embeddings"}), 0, seed=0)
    assert len(probes) == 2
