"""Soft-label training: learners fit the raters' vote distribution when asked, and the loop hands them the votes."""

import json

import numpy as np
import pytest

from after_hf.al import oracle
from after_hf.al.head import HeadClassifier, HeadTrainingArgs
from after_hf.al.loop import ALArguments, run_al
from after_hf.data.manifest import ManifestError, label_names, load_manifest, save_manifest
from after_hf.data.ratings import RATING_COLUMNS
from after_hf.finetune import class_weights, soft_class_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def two_clusters(n=200, seed=0):
    """Two well-separated clusters whose raters split 80/20 and 20/80: the majority label is the cluster."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 2, 8)).astype(np.float32)
    cluster = np.arange(n) % 2
    x[:, :, 0] += np.where(cluster == 1, 3.0, -3.0)[:, None]
    targets = np.where(cluster[:, None] == 0, [0.8, 0.2], [0.2, 0.8])
    return x, cluster, targets


def test_soft_class_weights_of_one_hot_targets_are_the_class_weights():
    labels = np.array([0, 0, 0, 1, 2, 2])
    np.testing.assert_allclose(soft_class_weights(np.eye(4)[labels], 4), class_weights(labels, 4))
    np.testing.assert_allclose(soft_class_weights([[0.5, 0.5], [0.5, 0.5]], 2), [1.0, 1.0])


def test_the_head_fits_the_vote_distribution_not_the_majority():
    x, cluster, targets = two_clusters()
    args = HeadTrainingArgs(epochs=40, learning_rate=1e-2, dropout=0.0)
    soft = HeadClassifier(2, args, x.mean(0), x.std(0))
    soft.fit(x, cluster, seed=0, targets=targets)
    hard = HeadClassifier(2, args, x.mean(0), x.std(0))
    hard.fit(x, cluster, seed=0)
    p_soft, p_hard = soft.predict(x)["probs"], hard.predict(x)["probs"]
    assert np.abs(p_soft - targets).max() < 0.08  # the raters' split, clip by clip
    assert p_hard[np.arange(len(x)), cluster].min() > 0.95  # one label per clip: (nearly) certain


def _args(manifest, out, cache, **kw):
    base = dict(manifest=str(manifest), out=str(out), backbone="tiny", strategy="entropy", cold_start="random",
                seed_size=10, step_size=8, budget=18, head_epochs=3, cache_dir=str(cache))
    return ALArguments(**{**base, **kw})


@pytest.fixture()
def fit_spy(monkeypatch):
    calls, real_fit = [], HeadClassifier.fit

    def spy(self, feats, labels, seed, *a, targets=None, **kw):
        calls.append((np.asarray(labels).copy(), None if targets is None else np.asarray(targets).copy()))
        return real_fit(self, feats, labels, seed, *a, targets=targets, **kw)

    monkeypatch.setattr(HeadClassifier, "fit", spy)
    return calls


def test_the_loop_trains_on_the_manifests_votes(synth_manifest, tmp_path, fit_spy):
    run = tmp_path / "soft"
    run_al(_args(synth_manifest, run, tmp_path / "cache", soft_labels=True))
    train = load_manifest(synth_manifest, split="train")
    votes = dict(zip(train["id"], np.asarray(train["vote_dist"])))
    state = json.loads((run / "state.json").read_text())
    for (labels, targets), rec in zip(fit_spy, state["rounds"]):
        labelled = {i: v for r in state["rounds"][: rec["round"] + 1] for i, v in r["labels"].items()}
        ids = sorted(labelled)
        np.testing.assert_allclose(targets, [votes[i] for i in ids], atol=1e-6)
        assert list(labels) == [labelled[i] for i in ids]
    assert len(fit_spy) == 2 and (fit_spy[-1][1].max(1) < 1).any()  # the raters disagree on some clips
    summary = json.loads((run / "summary.json").read_text())
    assert all(r["test_kl"] >= 0 and 0 <= r["test_brier"] <= 2 for r in summary["rounds"])  # scored on the votes too
    assert "soft_labels" in state["rounds"][-1]["metrics"]["test"]
    fit_spy.clear()
    run_al(_args(synth_manifest, tmp_path / "hard", tmp_path / "cache"))
    assert [t for _, t in fit_spy] == [None, None]


def test_soft_labels_need_votes(synth_manifest, tmp_path):
    ds = load_manifest(synth_manifest)
    bare = save_manifest(ds.remove_columns(list(RATING_COLUMNS)), tmp_path / "bare")
    with pytest.raises(ManifestError, match="--soft_labels.*no rater votes"):
        run_al(_args(bare, tmp_path / "run", tmp_path / "cache", soft_labels=True))
    assert not (tmp_path / "run").exists()


def test_a_human_round_trains_on_its_annotators_answers(synth_manifest, tmp_path, fit_spy):
    args = _args(synth_manifest, tmp_path / "run", tmp_path / "cache", oracle="human", budget=10, soft_labels=True)
    run_al(args)
    names = label_names(load_manifest(synth_manifest))
    items = oracle.read_queue(tmp_path / "run")["items"]
    for n, item in enumerate(items):  # two people; they disagree on the even clips
        oracle.save_annotation(tmp_path / "run", item["id"], names[0], names, annotator="a")
        oracle.save_annotation(tmp_path / "run", item["id"], names[0 if n % 2 else 2], names, annotator="b")
    args.resume = True
    run_al(args)
    (_, targets), = fit_spy
    order = sorted(range(len(items)), key=lambda n: items[n]["id"])
    expected = [[1, 0, 0, 0] if n % 2 else [0.5, 0, 0.5, 0] for n in order]
    np.testing.assert_allclose(targets, expected)
