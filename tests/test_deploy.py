"""`after-hf deploy`: an AL run's labels -> a deployable model with metrics.json and provenance.

The head export is exact: the exported Wav2Vec2ForSequenceClassification predicts what the linear head predicts on
the cached features, utterance by utterance. A deploy trains on exactly the run's labels, is skipped when nothing
changed and retrains when the run collected more; lora / full read the fine-tuning recipe's `finetune:` section.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from after_hf.al.features import encode_layers, load_backbone
from after_hf.al.head import HeadTrainingArgs
from after_hf.al.learners import HeadLearner, SplitArrays
from after_hf.al.loop import ALArguments, run_al
from after_hf.cli import main as cli
from after_hf.data.audio import load_audio
from after_hf.data.manifest import label_names, load_manifest
from after_hf.deploy import export_linear_head, train_linear_head
from after_hf.evaluation import evaluate_dataset, load_model_for_eval
from after_hf.inference import predict
from after_hf.metrics import compute_ser_metrics
from after_hf.model_info import read_metrics, read_provenance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("backbone", ["tiny"])
def test_exported_linear_head_equals_the_head(synth_manifest, tmp_path, backbone):
    manifest = load_manifest(synth_manifest)
    names = label_names(manifest)
    splits = SplitArrays.from_manifest(manifest)
    learner = HeadLearner(backbone, splits, names, tmp_path / "cache", HeadTrainingArgs(), init_seed=3)
    train = splits["train"]
    ids = list(train.ids[:40])
    head = train_linear_head(learner, ids, train.labels[:40], seed=0, epochs=30)
    out = export_linear_head(head, backbone, names, tmp_path / "model", init_seed=3)

    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    model, fe, model_names = load_model_for_eval(str(out))
    assert model_names == names and model.config.use_weighted_layer_sum

    # utterance by utterance (no padding anywhere): the exported model's probabilities = the head's
    test = splits["test"]
    encoder = load_backbone(backbone, 3).eval()
    waves = [load_audio(p) for p in test.paths[:12]]
    feats = np.concatenate([encode_layers(encoder, [w]) for w in waves])
    expected = head.predict(feats)["probs"]
    got = predict(model, fe, list(test.paths[:12]), batch_seconds=0.1, progress=False)["probs"]
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # and the head learned something the export keeps: not a constant prediction
    assert len(set(expected.argmax(1))) > 1


def test_exported_speaker_centred_head_equals_the_head(synth_manifest, tmp_path):
    """A head trained on speaker-centred features exports exactly too: the model centres each speaker's pooled
    vectors on the stored population mean (scored per speaker), and a single clip passes as it is."""
    manifest = load_manifest(synth_manifest)
    names = label_names(manifest)
    splits = SplitArrays.from_manifest(manifest)
    learner = HeadLearner("tiny", splits, names, tmp_path / "cache", HeadTrainingArgs(), init_seed=3,
                          speaker_norm=True)
    train = splits["train"]
    head = train_linear_head(learner, list(train.ids), train.labels, seed=0, epochs=30)
    out = export_linear_head(head, "tiny", names, tmp_path / "model", init_seed=3, population=learner.population)
    model, fe, _ = load_model_for_eval(str(out))
    test = manifest.filter(lambda s: s == "test", input_columns="split")
    assert min(np.unique(test["speaker"], return_counts=True)[1]) >= 5  # every test speaker gets its statistics
    expected = head.predict(learner.features["test"])["probs"]  # test split, centred per speaker
    got = predict(model, fe, test, progress=False)["probs"]  # speakers from the manifest column
    np.testing.assert_allclose(got, expected, atol=1e-4)
    alone = predict(model, fe, list(test["path"][:1]), progress=False)["probs"]  # unknown speaker: no centring
    raw = learner.cache.get(list(splits["test"].ids[:1]), splits["test"].paths[:1], splits["test"].durations[:1])
    np.testing.assert_allclose(alone, head.predict(np.asarray(raw))["probs"], atol=1e-4)
    # evaluate's single-clip score (one encoder pass, the same pooled vectors without speaker statistics) equals
    # the head on every test clip's raw features
    scores, _ = evaluate_dataset(model, fe, test, names, batch_seconds=160.0)
    t = splits["test"]
    raw_all = np.asarray(learner.cache.get(list(t.ids), t.paths, t.durations))
    single = compute_ser_metrics(head.predict(raw_all)["probs"].argmax(1), t.labels, names)
    assert scores["single_clip"]["ua"] == pytest.approx(single["ua"]) and scores["ua"] != scores["single_clip"]["ua"]


def _al(manifest, run, cache, **kw):
    options = dict(manifest=str(manifest), out=str(run), backbone="tiny", strategy="entropy", cold_start="kmeans",
                   seed_size=10, step_size=10, budget=20, head_epochs=5, cache_dir=str(cache), seed=1)
    return run_al(ALArguments(**{**options, **kw}))


@pytest.fixture(scope="module")
def simulated_run(synth_manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    _al(synth_manifest, root / "run", root / "cache")
    return root


def _local_paths_in(folder: Path, root: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.suffix in (".json", ".md") and str(root) in p.read_text()]


def test_deploy_trains_on_the_runs_labels_and_writes_metrics_and_provenance(simulated_run, capsys):
    run, out = simulated_run / "run", simulated_run / "deployed"
    assert cli(["deploy", "--run", str(run), "--out", str(out)]) == 0
    model_dir = out / "model"
    metrics, provenance = read_metrics(model_dir), read_provenance(model_dir)
    state = json.loads((run / "state.json").read_text())
    labelled = {i: v for rec in state["rounds"] for i, v in rec["labels"].items()}
    assert metrics.kind == "head" and metrics.num_labelled == len(labelled) == 20 and metrics.num_classes == 4
    assert set(metrics.splits) == {"validation", "test"} and 0 <= metrics.score("test") <= 1
    assert sum(metrics.class_counts("test").values()) == len(load_manifest(json.loads(
        (run / "config.json").read_text())["manifest"], split="test"))
    assert provenance.labels.oracle == "simulated" and provenance.labels.labelled_clips == 20
    assert provenance.labels.strategy == "entropy" and provenance.labels.rounds == 2
    assert provenance.training_data.generated and provenance.base_model == "tiny" and provenance.tapt is None
    assert (model_dir / "eval_test" / "confusion_matrix.png").is_file()
    model, fe, names = load_model_for_eval(str(model_dir))  # loads like any classifier, scores what it recorded
    test = load_manifest(json.loads((run / "config.json").read_text())["manifest"], split="test")
    ua = compute_ser_metrics(predict(model, fe, test, progress=False)["probs"].argmax(1), test["label"], names)["ua"]
    assert ua == pytest.approx(metrics.score("test"), abs=1e-9)
    assert _local_paths_in(model_dir, simulated_run) == []  # portable: nothing names this machine's folders
    printed = capsys.readouterr().out
    assert "test: UA" in printed and "chance: UA 0.250" in printed and "after-hf push --model" in printed

    # the same labels again: nothing is trained
    weights = (model_dir / "model.safetensors").read_bytes()
    assert cli(["deploy", "--run", str(run), "--out", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (model_dir / "model.safetensors").read_bytes() == weights

    # the run goes on and collects 10 more labels: deploy trains again, on all 30
    _al(json.loads((run / "config.json").read_text())["manifest"], run, simulated_run / "cache", budget=30, resume=True)
    assert cli(["deploy", "--run", str(run), "--out", str(out)]) == 0
    assert read_metrics(model_dir).num_labelled == 30 and read_provenance(model_dir).labels.rounds == 3


def test_deploy_lora_from_a_finetune_recipe(simulated_run, tmp_path):
    recipe = tmp_path / "finetune.yaml"
    recipe.write_text(yaml.safe_dump({"finetune": {"num_train_epochs": 1, "per_device_train_batch_size": 8,
                                                   "learning_rate": 1e-3, "mask_time_prob": 0.0,
                                                   "mask_feature_prob": 0.0, "freeze_feature_encoder": False}}))
    out = tmp_path / "lora"
    assert cli(["deploy", "--run", str(simulated_run / "run"), "--out", str(out), "--kind", "lora",
                "--config", str(recipe)]) == 0
    metrics, provenance = read_metrics(out / "model"), read_provenance(out / "model")
    assert metrics.kind == provenance.kind == "lora" and metrics.training["best_step"] is not None
    assert set(metrics.splits) == {"validation", "test"}
    training = json.loads((out / "model" / "training_config.json").read_text())
    assert training["lora"] is True and training["num_train_epochs"] == 1 and training["num_train"] >= 20
    model, _, _ = load_model_for_eval(str(out / "model"))  # merged: a plain transformers classifier, no peft
    assert type(model).__module__.startswith("transformers.") and not any("lora" in k for k in model.state_dict())
    assert not (out / "checkpoints").exists()


def test_deploy_best_keeps_the_kind_with_the_best_validation_ua(simulated_run, tmp_path):
    """--kind best trains each candidate kind on the run's labels and keeps the best on validation UA (never test):
    OUT/model is a copy of that candidate, OUT/candidates.json lists them all."""
    recipe = tmp_path / "finetune.yaml"
    recipe.write_text(yaml.safe_dump({"finetune": {"num_train_epochs": 1, "per_device_train_batch_size": 8,
                                                   "learning_rate": 1e-3, "mask_time_prob": 0.0,
                                                   "mask_feature_prob": 0.0}}))
    out = tmp_path / "best"
    assert cli(["deploy", "--run", str(simulated_run / "run"), "--out", str(out), "--kind", "best",
                "--config", str(recipe)]) == 0
    record = json.loads((out / "candidates.json").read_text())
    assert set(record["candidates"]) == {"head", "lora", "full"} and record["selected_on"] == "validation UA"
    by_validation = {k: read_metrics(out / "candidates" / k / "model").splits["validation"]["ua"]
                     for k in record["candidates"]}
    assert record["selected"] == max(by_validation, key=by_validation.get)
    chosen = out / "candidates" / record["selected"] / "model"
    assert (out / "model" / "model.safetensors").read_bytes() == (chosen / "model.safetensors").read_bytes()
    assert read_provenance(out / "model").kind == record["selected"]


def test_a_run_without_labels_is_refused_with_what_to_do(synth_manifest, tmp_path, capsys):
    run = tmp_path / "human"
    _al(synth_manifest, run, tmp_path / "cache", oracle="human", seed_size=8, budget=8)
    assert cli(["deploy", "--run", str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no labels yet" in err[0] and "Annotate" in err[0] and "--resume" in err[0]
    assert cli(["deploy", "--run", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "not an active-learning run directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_model_directory_passed_as_the_run_is_named_as_such(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "architectures": ["X"]}))
    (model / "model.safetensors").write_bytes(b"")
    assert cli(["deploy", "--run", str(model), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a model directory" in err[0] and f"after-hf push --model {model}" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_run_started_with_relative_paths_deploys_from_anywhere(synth_manifest, tmp_path, monkeypatch):
    """The run's config keeps the paths as given and the directory they were given from; the default feature cache
    sits beside the manifest, not in the working directory."""
    import shutil

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    shutil.copytree(synth_manifest, work / "data" / "manifest")
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    run_al(ALArguments(manifest="data/manifest", out="run", backbone="tiny", strategy="random", cold_start="random",
                       seed_size=10, step_size=10, budget=10, head_epochs=2, seed=0))
    assert (work / "data" / "cache" / "features").is_dir() and not (work / "runs").exists()
    monkeypatch.chdir(elsewhere)
    assert cli(["deploy", "--run", str(work / "run"), "--out", "out", "--head_epochs", "2"]) == 0
    assert read_metrics(elsewhere / "out" / "model").num_labelled == 10


def test_deploy_help_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, after_hf.deploy; "
            "print(sorted(m for m in ('torch', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_deploy_of_a_soft_label_run_trains_on_its_vote_distributions(synth_manifest, simulated_run, tmp_path,
                                                                     monkeypatch):
    """A run with --soft_labels (here: 3 simulated raters a clip) deploys on the split of the answers it paid for,
    for the head and for lora / full (row by row), and the card says so; a hard-label run deploys on its labels."""
    import after_hf.finetune
    from after_hf.al.head import HeadClassifier
    from after_hf.deploy import deploy
    from after_hf.hub import build_card

    run = tmp_path / "soft_run"
    _al(synth_manifest, run, tmp_path / "cache", rater_policy="fixed", raters_per_clip=3, seed_size=15, step_size=15,
        budget=30, soft_labels=True)
    state = json.loads((run / "state.json").read_text())
    answers = {i: [a["labels"][0] for a in given] for rec in state["rounds"] for i, given in rec["answers"].items()}
    names = label_names(load_manifest(synth_manifest))
    expected = {i: [a.count(name) / len(a) for name in names] for i, a in answers.items()
                if i in {k for rec in state["rounds"] for k in rec["labels"]}}
    assert any(max(t) < 1 for t in expected.values())  # the raters split on some clips
    seen, real_fit = [], HeadClassifier.fit

    def spy(self, feats, labels, seed, *a, targets=None, **kw):
        seen.append(None if targets is None else np.asarray(targets).copy())
        return real_fit(self, feats, labels, seed, *a, targets=targets, **kw)

    monkeypatch.setattr(HeadClassifier, "fit", spy)
    result = deploy(run, tmp_path / "deployed", head_epochs=20)
    np.testing.assert_allclose(seen[-1], [expected[i] for i in sorted(expected)], atol=1e-6)
    labels = result.provenance.labels
    assert labels.soft_labels and (labels.rater_policy, labels.rater_answers) == ("fixed", 30)
    assert result.metrics.training["soft_labels"] is True
    card = build_card(result.model_dir, "someone/soft").text
    assert "vote distribution" in card and "fixed rater policy, 30 rater answers" in card
    assert "the corpus' own, revealed" not in card  # the labels were the raters' majority, not the corpus label

    deploy(simulated_run / "run", tmp_path / "hard", head_epochs=20)  # a hard-label run: its labels
    assert seen[-1] is None
    assert "vote distribution" not in build_card(tmp_path / "hard" / "model", "someone/hard").text

    class Stop(Exception):
        pass

    def finetune_spy(args, train, val, label_names, out_dir, stats_ds=None, targets=None):
        finetune_spy.rows = (list(train["id"]), targets)
        raise Stop

    monkeypatch.setattr(after_hf.finetune, "finetune", finetune_spy)
    with pytest.raises(Stop):
        deploy(run, tmp_path / "full", kind="full")
    ids, targets = finetune_spy.rows
    assert sorted(ids) == sorted(expected)
    np.testing.assert_allclose(targets, [expected[i] for i in ids], atol=1e-6)  # aligned with the training rows
