"""The local `ser_metrics` evaluate module: equal to scikit-learn, honest on absent classes, loads offline; the
soft-label scores against vote distributions: by hand and equal to scikit-learn where it has them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, brier_score_loss, confusion_matrix, f1_score,
                             log_loss, recall_score)

from after_hf.metrics import (SER_METRICS_PATH, compute_ser_metrics, compute_soft_label_metrics, load_ser_metrics,
                              per_speaker_scores)


@pytest.fixture(scope="module")
def metric():
    return load_ser_metrics()


def test_equals_sklearn_on_fixed_arrays(metric):
    rng = np.random.default_rng(7)
    refs = rng.choice(4, size=200, p=[0.5, 0.25, 0.15, 0.1])  # imbalanced, as IEMOCAP
    preds = np.where(rng.random(200) < 0.6, refs, rng.integers(0, 4, 200))
    out = metric.compute(predictions=preds, references=refs, num_classes=4)
    assert out["ua"] == pytest.approx(balanced_accuracy_score(refs, preds), abs=1e-12)
    assert out["wa"] == pytest.approx(accuracy_score(refs, preds), abs=1e-12)
    assert out["macro_f1"] == pytest.approx(f1_score(refs, preds, average="macro"), abs=1e-12)
    np.testing.assert_allclose(out["per_class_recall"], recall_score(refs, preds, average=None), atol=1e-12)
    assert out["confusion_matrix"] == confusion_matrix(refs, preds).tolist()
    assert out["num_samples"] == 200
    assert out["ua"] != pytest.approx(out["wa"])  # the imbalance makes them differ: both are reported


def test_hand_computed_example():
    # 4 neutral (3 right), 2 happy (1 right), 2 angry (2 right), 2 sad (0 right)
    refs = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    preds = [0, 0, 0, 1, 1, 0, 2, 2, 0, 2]
    out = compute_ser_metrics(preds, refs, ["neutral", "happy", "angry", "sad"])
    assert out["wa"] == pytest.approx(6 / 10)
    assert out["ua"] == pytest.approx((3 / 4 + 1 / 2 + 1 + 0) / 4)
    assert out["per_class_recall"] == {"neutral": 0.75, "happy": 0.5, "angry": 1.0, "sad": 0.0}
    assert out["confusion_matrix"][3] == [1, 0, 1, 0]


def test_per_speaker_scores_by_hand():
    # speaker a: neutral 2/2, happy 0/1 -> UA 0.5, accuracy 2/3; speaker b has no neutral clip: UA over happy, sad
    refs = [0, 0, 1, 1, 3, 3]
    preds = [0, 0, 0, 1, 3, 0]
    out = per_speaker_scores(preds, refs, ["a", "a", "a", "b", "b", "b"])
    assert out == {"a": {"ua": pytest.approx(0.5), "accuracy": pytest.approx(2 / 3), "num_samples": 3},
                   "b": {"ua": pytest.approx((1 + 0.5) / 2), "accuracy": pytest.approx(2 / 3), "num_samples": 3}}


def test_absent_class_is_not_counted_as_zero_recall():
    refs, preds = [0, 0, 1, 1], [0, 1, 1, 1]  # class 2 ("sad") has no reference sample
    out = compute_ser_metrics(preds, refs, ["neutral", "happy", "sad"])
    assert out["per_class_recall"]["sad"] is None  # JSON-safe "undefined", not NaN and not 0
    assert out["ua"] == pytest.approx(balanced_accuracy_score(refs, preds)) == pytest.approx(0.75)
    assert len(out["confusion_matrix"]) == 3  # the class keeps its row/column
    json.dumps(out, allow_nan=False)


def test_index_beyond_label_set_fails(metric):
    with pytest.raises(ValueError, match="num_classes"):
        metric.compute(predictions=[0, 3], references=[0, 1], num_classes=2)


def test_loads_offline_from_a_fresh_cache(tmp_path):
    """evaluate.load(<local dir>) with HF_HUB_OFFLINE=1 and an empty HF cache: no Hub access needed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    code = (
        "import evaluate, sys; m = evaluate.load(sys.argv[1]); "
        "print(m.compute(predictions=[0, 1, 1], references=[0, 1, 0], num_classes=2)['ua'])"
    )
    done = subprocess.run([sys.executable, "-c", code, SER_METRICS_PATH], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) == pytest.approx(0.75)


# ---------------------------------------------------------------- soft labels: scores against the vote distribution

def test_soft_label_scores_by_hand():
    # raters split 1/1 between neutral and happy; the model says 0.4 / 0.3 / 0.2 / 0.1; a second clip has no votes
    probs = [[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]]
    votes = [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    out = compute_soft_label_metrics(probs, votes)
    assert out["num_rated"] == 1
    assert out["kl"] == pytest.approx(0.5 * np.log(0.5 / 0.4) + 0.5 * np.log(0.5 / 0.3))
    assert out["votes_entropy"] == pytest.approx(np.log(2))
    assert out["cross_entropy"] == pytest.approx(-(0.5 * np.log(0.4) + 0.5 * np.log(0.3)))
    assert out["brier"] == pytest.approx(0.1**2 + 0.2**2 + 0.2**2 + 0.1**2)
    assert out["vote_accuracy"] == 0.5  # predicted neutral; half the raters chose it
    perfect = compute_soft_label_metrics([[0.5, 0.5, 0, 0]], [[0.5, 0.5, 0, 0]])
    assert perfect["kl"] == pytest.approx(0, abs=1e-12) and perfect["brier"] == 0
    confident_miss = compute_soft_label_metrics([[1.0, 0, 0, 0]], [[0, 1.0, 0, 0]])
    assert np.isfinite(confident_miss["kl"]) and confident_miss["kl"] == pytest.approx(-np.log(np.finfo(float).eps))


def test_soft_label_scores_equal_sklearn():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=50)
    # one rater per clip: the soft scores are sklearn's log_loss and multi-class Brier score
    y = rng.integers(0, 4, size=50)
    out = compute_soft_label_metrics(probs, np.eye(4)[y])
    assert out["cross_entropy"] == pytest.approx(log_loss(y, probs, labels=range(4)), rel=1e-12)
    assert out["kl"] == pytest.approx(out["cross_entropy"], rel=1e-12) and out["votes_entropy"] == 0
    assert out["brier"] == pytest.approx(brier_score_loss(y, probs, labels=range(4)), rel=1e-12)
    # several raters: each answer is a sample weighted by its share of the clip's votes
    counts = rng.integers(0, 4, size=(50, 4))
    counts[counts.sum(axis=1) == 0, 0] = 1
    votes = counts / counts.sum(axis=1, keepdims=True)
    clip, label = np.nonzero(votes)
    out = compute_soft_label_metrics(probs, votes)
    weighted = dict(sample_weight=votes[clip, label], labels=range(4))
    assert out["cross_entropy"] == pytest.approx(log_loss(label, probs[clip], **weighted), rel=1e-10)
    # the expected Brier score of one rater's answer = Brier against the distribution + the raters' own spread
    assert out["brier"] + np.mean(1 - (votes**2).sum(axis=1)) == pytest.approx(
        brier_score_loss(label, probs[clip], **weighted), rel=1e-10)


def test_soft_label_scores_refuse_what_is_not_a_distribution():
    with pytest.raises(ValueError, match="no clip has votes"):
        compute_soft_label_metrics([[0.5, 0.5]], [[0, 0]])
    with pytest.raises(ValueError, match="votes must be a distribution"):
        compute_soft_label_metrics([[0.5, 0.5]], [[2, 1]])  # counts, not a distribution
    with pytest.raises(ValueError, match="probs must be a distribution"):
        compute_soft_label_metrics([[2.0, -1.0]], [[1, 0]])  # logits, not probabilities
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        compute_soft_label_metrics([[0.5, 0.5]], [[1, 0, 0]])
