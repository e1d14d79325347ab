"""`after-hf evaluate` and batched inference: full-length utterances, input order, embeddings, MC dropout."""

import csv
import json

import numpy as np
import pytest
import torch

from after_hf.cli import run as cli
from after_hf.data.audio import load_audio
from after_hf.data.manifest import load_manifest
from after_hf.inference import length_batches, pooled_forward, predict
from after_hf.metrics import compute_soft_label_metrics
from after_hf.models import feature_extractor_for, load_classifier
from tones import make_tone_manifest


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    # 3 + 3 test tones and one 12-s utterance: longer than the 10-s training crop
    return make_tone_manifest(tmp_path_factory.mktemp("tones"), {"train": 1, "validation": 1, "test": 3},
                              extra=[("test", "high", 12.0)])


def test_evaluate_cli_writes_json_png_and_table(manifest, tiny_model_dir, tmp_path, capsys):
    assert cli(["evaluate", "--model", str(tiny_model_dir), "--manifest", str(manifest), "--split", "test",
                "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "UA" in table and "WA" in table and "macro-F1" in table and "high" in table
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["format"] == "after-hf-metrics/1" and list(saved["splits"]) == ["test"]  # model_info's one schema
    metrics = saved["splits"]["test"]
    assert metrics["num_samples"] == 7 and metrics["label_names"] == ["high", "low"]
    assert np.asarray(metrics["confusion_matrix"]).sum(axis=1).tolist() == [4, 3]  # references mapped by name
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    ds = load_manifest(manifest, "test")
    names = ds.features["label"].names
    assert [r["id"] for r in rows] == ds["id"]
    assert [r["reference"] for r in rows] == [names[i] for i in ds["label"]]
    predicted = [r["predicted"] for r in rows]
    refs = [r["reference"] for r in rows]
    assert metrics["wa"] == pytest.approx(np.mean([p == r for p, r in zip(predicted, refs)]))
    # per held-out speaker: the same predictions, grouped by the manifest's speaker column
    speaker_of = dict(zip(ds["id"], ds["speaker"]))
    per_speaker = metrics["per_speaker"]
    assert set(per_speaker) == set(ds["speaker"]) and len(per_speaker) >= 2
    for speaker, s in per_speaker.items():
        mine = [r for r in rows if speaker_of[r["id"]] == speaker]
        assert s["num_samples"] == len(mine)
        assert s["accuracy"] == pytest.approx(np.mean([r["predicted"] == r["reference"] for r in mine]))
    assert "per speaker: UA" in table


def tone_votes(i: int, split: str, label: str) -> list[dict]:
    """Even test rows: 2 raters say the label, 1 the other class; odd rows: no raters."""
    other = "low" if label == "high" else "high"
    return [{"labels": [label]}, {"labels": [label]}, {"labels": [other]}] if split == "test" and i % 2 == 0 else []


def test_evaluate_scores_against_the_vote_distribution(tiny_model_dir, tmp_path, capsys):
    rated = make_tone_manifest(tmp_path / "rated", {"train": 1, "validation": 1, "test": 3}, ratings=tone_votes)
    out = tmp_path / "eval"
    assert cli(["evaluate", "--model", str(tiny_model_dir), "--manifest", str(rated), "--split", "test",
                "--out", str(out)]) == 0
    table = capsys.readouterr().out
    soft = json.loads((out / "metrics.json").read_text())["splits"]["test"]["soft_labels"]
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    # the model's classes are [high, low], the manifest's [low, high]: votes are matched by name
    probs = np.array([[float(r["p_high"]), float(r["p_low"])] for r in rows])
    votes = np.array([[float(r["votes_high"]), float(r["votes_low"])] for r in rows])
    ds = load_manifest(rated, "test")
    for r, row in zip(rows, ds):
        names = ds.features["label"].names
        if row["n_raters"]:
            assert r[f"votes_{names[row['label']]}"] == "0.6667"
    expected = compute_soft_label_metrics(probs, votes)
    assert soft["num_rated"] == sum(n > 0 for n in ds["n_raters"]) == 3
    for key in ("kl", "brier", "vote_accuracy", "cross_entropy"):
        assert soft[key] == pytest.approx(expected[key], abs=1e-4)
    assert f"{soft['num_rated']} of 6 clips rated" in table and "KL" in table and "Brier" in table


def test_evaluate_without_votes_reports_hard_labels_only(manifest, tiny_model_dir, tmp_path):
    assert cli(["evaluate", "--model", str(tiny_model_dir), "--manifest", str(manifest), "--out", str(tmp_path)]) == 0
    assert "soft_labels" not in json.loads((tmp_path / "metrics.json").read_text())["splits"]["test"]
    with open(tmp_path / "predictions.csv") as fh:
        assert not any(c.startswith("votes_") for c in next(csv.reader(fh)))


def test_evaluate_refuses_a_named_config(manifest):
    with pytest.raises(ValueError, match="finetune"):
        cli(["evaluate", "--model", "tiny", "--manifest", str(manifest)])


def test_predict_scores_full_length_utterances(manifest, tiny_model_dir):
    model = load_classifier(str(tiny_model_dir), ["high", "low"]).eval()
    fe = feature_extractor_for(model.config)
    ds = load_manifest(manifest, "test")
    long_path = ds.filter(lambda d: d > 11, input_columns="duration")["path"][0]
    got = predict(model, fe, [long_path], progress=False, return_embeddings=True)

    def score(wave):
        x = fe(wave, sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
        with torch.no_grad():
            logits, pooled = pooled_forward(model, x["input_values"], x["attention_mask"])
        return logits.softmax(-1).numpy()[0], pooled.numpy()[0]

    wave = load_audio(long_path)
    assert wave.size == 12 * 16000
    full_probs, full_emb = score(wave)
    crop_probs, crop_emb = score(wave[: 10 * 16000])
    np.testing.assert_allclose(got["probs"][0], full_probs, atol=1e-5)
    np.testing.assert_allclose(got["embeddings"][0], full_emb, atol=1e-5)
    assert not np.allclose(got["embeddings"][0], crop_emb, atol=1e-5)  # a 10-s truncation would differ


def _short(manifest):
    return load_manifest(manifest, "test").filter(lambda d: d < 5, input_columns="duration")


def test_predict_keeps_input_order(manifest, tiny_model_dir):
    model = load_classifier(str(tiny_model_dir), ["high", "low"]).eval()
    fe = feature_extractor_for(model.config)
    ds = _short(manifest)
    one_by_one = predict(model, fe, ds, batch_seconds=0.0, progress=False)  # every utterance alone: no padding
    as_paths = predict(model, fe, list(ds["path"]), batch_seconds=0.0, progress=False)
    np.testing.assert_allclose(as_paths["probs"], one_by_one["probs"], atol=1e-6)
    arrays = predict(model, fe, [load_audio(p) for p in ds["path"][::-1]], batch_seconds=0.0, progress=False)
    np.testing.assert_allclose(arrays["probs"], one_by_one["probs"][::-1], atol=1e-6)
    # equal-length copies batched together: padding-free, so identical to one-by-one
    wave = load_audio(ds["path"][0])
    batched = predict(model, fe, [wave, wave, wave], batch_seconds=100.0, progress=False)
    np.testing.assert_allclose(batched["probs"], np.repeat(one_by_one["probs"][:1], 3, 0), atol=1e-5)


def test_padding_does_not_leak_into_a_layer_norm_model(manifest):
    """Layer-norm encoders get the attention mask and the pooling is masked: batched == one at a time."""
    torch.manual_seed(0)
    model = load_classifier("tiny", ["high", "low"], feat_extract_norm="layer", do_stable_layer_norm=True).eval()
    fe = feature_extractor_for(model.config)
    assert fe.return_attention_mask
    ds = _short(manifest)
    assert len(set(np.round(ds["duration"], 2))) == len(ds)  # all lengths differ: batches are padded
    alone = predict(model, fe, ds, batch_seconds=0.0, progress=False, return_embeddings=True)
    padded = predict(model, fe, ds, batch_seconds=100.0, progress=False, return_embeddings=True)
    np.testing.assert_allclose(padded["embeddings"], alone["embeddings"], atol=1e-4)
    np.testing.assert_allclose(padded["probs"], alone["probs"], atol=1e-5)


def test_length_batches_respect_the_padded_budget():
    durations = [1.0, 5.0, 2.0, 2.0, 9.0, 0.5]
    batches = length_batches(durations, batch_seconds=6.0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * max(durations[i] for i in b) <= 6.0
    assert [durations[b[0]] for b in batches] == sorted((durations[b[0]] for b in batches), reverse=True)


def test_mc_dropout_samples_vary_and_are_seeded(manifest, tiny_model_dir):
    model = load_classifier(str(tiny_model_dir), ["high", "low"], hidden_dropout=0.3).eval()
    fe = feature_extractor_for(model.config)
    ds = _short(manifest)
    out = predict(model, fe, ds, mc_dropout_passes=4, seed=1, progress=False)
    assert out["mc_probs"].shape == (4, len(ds), 2) and out["probs"].shape == (len(ds), 2)
    np.testing.assert_allclose(out["mc_probs"].sum(-1), 1.0, atol=1e-5)
    assert not np.allclose(out["mc_probs"][0], out["mc_probs"][1])  # dropout is active in the passes
    again = predict(model, fe, ds, mc_dropout_passes=4, seed=1, progress=False)
    np.testing.assert_allclose(again["mc_probs"], out["mc_probs"])  # same seed, same samples
    deterministic = predict(model, fe, ds, progress=False)
    np.testing.assert_allclose(deterministic["probs"], out["probs"], atol=1e-6)  # the main pass has no dropout
    assert not model.training  # modes restored


def test_a_clip_gets_the_same_prediction_alone_in_a_batch_and_from_the_model_itself(manifest, tiny_model_dir):
    """Group-norm CNN (no attention mask): the CNN runs per clip, so padding in a batch changes nothing, and the
    result equals transformers' own forward on the clip alone (what the Space and pipeline() do)."""
    model = load_classifier(str(tiny_model_dir), ["high", "low"]).eval()
    assert model.config.feat_extract_norm == "group"
    fe = feature_extractor_for(model.config)
    paths = list(load_manifest(manifest, "test")["path"])[:6]
    batched = predict(model, fe, paths, batch_seconds=1000.0, progress=False)["probs"]
    alone = np.concatenate([predict(model, fe, [p], progress=False)["probs"] for p in paths])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    with torch.no_grad():
        own = np.concatenate([model(**fe(load_audio(p), sampling_rate=16000, return_tensors="pt"))
                              .logits.softmax(-1).numpy() for p in paths])
    np.testing.assert_allclose(alone, own, atol=1e-5)


def test_the_table_gives_the_single_clip_ua_of_a_speaker_normalised_model():
    """A speaker-normalised model's report says what one upload alone gets, beside the speaker-centred UA."""
    from after_hf.evaluation import format_table
    from after_hf.metrics import compute_ser_metrics

    scores = compute_ser_metrics([0, 1, 1, 0], [0, 1, 0, 0], ["neutral", "sad"])
    assert "UA alone" not in format_table(scores)
    scores["single_clip"] = {"ua": 0.4321, "wa": 0.5, "macro_f1": 0.4}
    line = next(x for x in format_table(scores).splitlines() if x.startswith("UA alone"))
    assert "0.4321" in line and "one upload" in line
