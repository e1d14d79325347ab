"""Soft-label training: learners fit the raters' vote distribution when asked, and the loop hands them the votes."""

import functools
import json

import numpy as np
import pytest

from after_hf.al import oracle
from after_hf.al.head import HeadClassifier, HeadTrainingArgs
from after_hf.al.loop import ALArguments, run_al
from after_hf.data.manifest import ManifestError, label_names, load_manifest, save_manifest
from after_hf.data.ratings import RATING_COLUMNS
from after_hf.finetune import class_weights, soft_class_weights
from after_hf.losses import cross_entropy

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
    run_al(_args(synth_manifest, run, tmp_path / "cache", soft_labels=True, strategy="disagreement", mc_passes=4))
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
    assert all(isinstance(x["score"], float) for x in state["rounds"][1]["selected"])  # disagreement scored round 1
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


# ---------------------------------------------------------------- fine-tuning (full / LoRA): the Trainer's loss

def split_votes(i: int, split: str, label: str) -> list[dict]:
    """Train rows: even ones split 2:1 (label, other), odd ones unanimous; others unrated."""
    other = "low" if label == "high" else "high"
    if split != "train":
        return []
    return [{"labels": [label]}, {"labels": [label]}, {"labels": [other if i % 2 == 0 else label]}]


def test_the_pooled_loss_weights_clips_by_their_expected_class_weight():
    import torch

    from after_hf.finetune import FinetuneArguments, build_model
    from after_hf.inference import PooledClassifier

    model, _ = build_model(FinetuneArguments(model="tiny", mask_feature_length=16), ["a", "b", "c"])
    weights = torch.tensor([0.5, 1.0, 4.0])
    module = PooledClassifier(model, weights).eval()
    torch.manual_seed(0)
    values, mask = torch.randn(2, 8000), torch.ones(2, 8000, dtype=torch.long)
    q = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    out = module(values, mask, q)
    per_clip = -(q * torch.log_softmax(out["logits"], -1)).sum(1)
    clip_weights = torch.tensor([0.5 * 0.5 + 0.5 * 1.0, 0.25 * 1.0 + 0.75 * 4.0])  # q . w by hand
    expected = (clip_weights * per_clip).sum() / clip_weights.sum()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    hard = module(values, mask, torch.tensor([2, 0]))["loss"]  # one-hot targets = the hard-label loss
    assert module(values, mask, torch.eye(3)[[2, 0]])["loss"].item() == pytest.approx(hard.item(), rel=1e-5)


def test_one_hot_targets_give_exactly_the_weighted_hard_label_loss():
    import torch

    torch.manual_seed(0)
    logits, labels = torch.randn(16, 4), torch.tensor([0] * 9 + [1] * 4 + [2, 2, 3])
    weights = torch.from_numpy(class_weights(labels.numpy(), 4))
    hard = torch.nn.functional.cross_entropy(logits, labels, weight=weights)  # sum w_y l / sum w_y
    assert cross_entropy(logits, torch.eye(4)[labels], weights).item() == pytest.approx(hard.item(), rel=1e-6)
    assert cross_entropy(logits, labels, weights).item() == pytest.approx(hard.item(), rel=1e-6)
    assert cross_entropy(logits, torch.eye(4)[labels]).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)


def test_class_weights_do_not_bias_the_predicted_vote_distribution():
    """A frequent class split 80/20 with a rare one: weighting classes inside the sum would pull the head towards
    p ~ w * q (here ~57/43); weighting clips keeps it at the raters' 80/20 while the rare classes still count."""
    rng = np.random.default_rng(0)
    n_a, n_b = 150, 50
    x = rng.normal(0, 1, (n_a + n_b, 2, 8)).astype(np.float32)
    x[:n_a, :, 0] += 3.0
    x[n_a:, :, 0] -= 3.0
    targets = np.array([[0.8, 0.2, 0.0]] * n_a + [[0.0, 0.2, 0.8]] * n_b)
    assert soft_class_weights(targets, 3)[1] > 2.5 * soft_class_weights(targets, 3)[0]  # strongly imbalanced
    head = HeadClassifier(3, HeadTrainingArgs(epochs=60, learning_rate=1e-2, dropout=0.0), x.mean(0), x.std(0))
    head.fit(x, targets.argmax(1), seed=0, targets=targets)
    probs = head.predict(x)["probs"]
    assert np.abs(probs - targets).max() < 0.08


@pytest.mark.parametrize("lora, cache_cnn", [(False, True), (True, False)])  # frame and audio collators
def test_finetune_trains_on_the_vote_distributions(tmp_path, monkeypatch, lora, cache_cnn):
    import torch

    from after_hf.finetune import FinetuneArguments, finetune
    from after_hf.inference import PooledClassifier
    from tones import make_tone_manifest

    path = make_tone_manifest(tmp_path / "rated", {"train": 4, "validation": 2, "test": 1}, ratings=split_votes)
    train, val = load_manifest(path, "train"), load_manifest(path, "validation")
    seen, real = [], PooledClassifier.forward

    @functools.wraps(real)  # the Trainer reads forward's signature: keep the real one
    def spy(self, *a, labels=None, **kw):
        if labels is not None:
            seen.append(labels.detach().clone())
        return real(self, *a, labels=labels, **kw)

    monkeypatch.setattr(PooledClassifier, "forward", spy)
    args = FinetuneArguments(model="tiny", per_device_train_batch_size=8, max_steps=1, max_train_seconds=1.0,
                             mask_feature_length=16, early_stopping_patience=0, soft_labels=True, lora=lora,
                             cache_cnn=cache_cnn)
    result = finetune(args, train, val, ["low", "high"], tmp_path / "ft")
    (batch,) = seen
    assert batch.dtype == torch.float32 and batch.shape == (8, 2)
    votes = np.asarray(train["vote_dist"])
    np.testing.assert_allclose(sorted(batch.numpy().tolist()), sorted(votes.tolist()), atol=1e-6)
    config = json.loads((result.model_dir / "training_config.json").read_text())
    assert config["soft_labels"] and config["class_weights"] == pytest.approx(
        soft_class_weights(votes, 2).tolist())
    seen.clear()
    hard = finetune(FinetuneArguments(**{**vars(args), "soft_labels": False}), train, val, ["low", "high"],
                    tmp_path / "hard")
    assert seen[0].dtype == torch.long  # one label per clip without the option
    assert json.loads((hard.model_dir / "training_config.json").read_text())["soft_labels"] is False
