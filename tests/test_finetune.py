"""Fine-tuning: learns, selects the best validation-UA checkpoint, is seeded, weights classes by formula, LoRA."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from after_hf.data.audio import load_audio
from after_hf.data.batching import CropCollator
from after_hf.data.manifest import label_names, load_manifest
from after_hf.finetune import FinetuneArguments, build_model, class_weights, finetune
from after_hf.inference import PooledClassifier, predict
from after_hf.models import load_classifier
from tones import make_tone_manifest

# tiny model, fast settings: crops of 1 s, feature masks sized for hidden_size 32, no early stop
FAST = dict(model="tiny", per_device_train_batch_size=8, learning_rate=3e-3, max_train_seconds=1.0,
            mask_feature_length=16, logging_steps=1, early_stopping_patience=0, seed=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    path = make_tone_manifest(tmp_path_factory.mktemp("tones"))
    return {split: load_manifest(path, split) for split in ("train", "validation", "test")}


@pytest.fixture(scope="module")
def trained(tones, tmp_path_factory):
    args = FinetuneArguments(num_train_epochs=8, **FAST)  # 24 train utterances / 8 = 3 steps per epoch, 24 steps
    out = tmp_path_factory.mktemp("ft")
    return finetune(args, tones["train"], tones["validation"], label_names(tones["train"]), out)


def test_class_weights_formula_on_known_counts():
    labels = [0] * 6 + [1] * 3 + [2] * 1  # n = 10, C = 4, class 3 unlabelled
    w = class_weights(labels, 4)
    np.testing.assert_allclose(w, [10 / (4 * 6), 10 / (4 * 3), 10 / (4 * 1), 0.0], rtol=1e-6)
    np.testing.assert_allclose(class_weights([0, 1, 2, 3] * 5, 4), np.ones(4))  # balanced -> all 1


def test_weighted_loss_is_the_weighted_mean_cross_entropy():
    model, _ = build_model(FinetuneArguments(**FAST), ["a", "b", "c"])
    weights = torch.tensor([0.5, 1.0, 4.0])
    module = PooledClassifier(model, weights).eval()
    torch.manual_seed(0)
    values, mask, labels = torch.randn(3, 8000), torch.ones(3, 8000, dtype=torch.long), torch.tensor([0, 2, 2])
    out = module(values, mask, labels)
    per_sample = F.cross_entropy(out["logits"], labels, reduction="none")
    expected = (weights[labels] * per_sample).sum() / weights[labels].sum()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_learns_tones_well_above_chance(trained, tones):
    losses = [h["loss"] for h in trained.history if "loss" in h]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1  # the loss goes down
    assert trained.metrics["ua"] >= 0.9  # chance is 0.5 on the balanced 2-class validation set
    test = predict(trained.model, trained.feature_extractor, tones["test"], progress=False)
    ua = np.mean([(test["probs"].argmax(1)[np.array(tones["test"]["label"]) == c] == c).mean() for c in (0, 1)])
    assert ua >= 0.8  # held-out test: margin 0.3 over chance


def test_best_checkpoint_is_the_best_validation_ua(trained, tones):
    evals = [h["eval_ua"] for h in trained.history if "eval_ua" in h]
    assert len(evals) == 8  # one per epoch
    assert trained.metrics["ua"] == pytest.approx(max(evals))
    # the returned model really is that checkpoint: re-scoring it on validation gives the recorded UA
    val = predict(trained.model, trained.feature_extractor, tones["validation"], progress=False)
    refs = np.array(tones["validation"]["label"])
    ua = np.mean([(val["probs"].argmax(1)[refs == c] == c).mean() for c in (0, 1)])
    assert ua == pytest.approx(trained.metrics["ua"])


def test_saved_model_is_complete_and_reloads(trained, tones):
    d = trained.model_dir
    assert (d / "model.safetensors").is_file() and not list(d.glob("*.bin")) and not list(d.glob("*.pt*"))
    config = json.loads((d / "config.json").read_text())
    assert config["id2label"] == {"0": "low", "1": "high"} and config["label2id"] == {"low": "0", "high": "1"}
    assert json.loads((d / "preprocessor_config.json").read_text())["sampling_rate"] == 16000
    training = json.loads((d / "training_config.json").read_text())
    assert training["learning_rate"] == FAST["learning_rate"]
    assert training["train_label_counts"] == {"low": 12, "high": 12}
    assert training["class_weights"] == [1.0, 1.0]
    assert json.loads((d / "metrics.json").read_text())["splits"]["validation"]["ua"] == trained.metrics["ua"]
    assert not (d.parent / "checkpoints").exists()  # Trainer checkpoints removed unless keep_checkpoints
    reloaded = load_classifier(str(d), ["low", "high"])
    a = predict(trained.model, trained.feature_extractor, tones["test"], progress=False)["probs"]
    b = predict(reloaded, trained.feature_extractor, tones["test"], progress=False)["probs"]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_same_seed_same_model(tones, tmp_path):
    args = FinetuneArguments(max_steps=4, **FAST)
    runs = [finetune(args, tones["train"], None, ["low", "high"], tmp_path / f"run{i}") for i in range(2)]
    first, second = (r.model.state_dict() for r in runs)
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = finetune(FinetuneArguments(max_steps=4, **{**FAST, "seed": 4}), tones["train"], None, ["low", "high"],
                     tmp_path / "run2")
    assert not torch.equal(other.model.classifier.weight, runs[0].model.classifier.weight)


def test_console_shows_no_log_dicts_while_the_history_keeps_them(tones, tmp_path, capfd):
    """The stock Trainer prints {'loss': ..., 'grad_norm': ...} on a console line per log: a flood during a demo."""
    capfd.readouterr()
    run = finetune(FinetuneArguments(max_steps=4, eval_steps=2, **FAST), tones["train"], tones["validation"],
                   ["low", "high"], tmp_path / "run")
    console = "".join(capfd.readouterr())
    assert "'loss'" not in console and "'eval_ua'" not in console and "grad_norm" not in console, console
    assert [h["step"] for h in run.history if "loss" in h] == [1, 2, 3, 4]  # logging_steps=1: all still recorded
    assert [h["step"] for h in run.history if "eval_ua" in h] == [2, 4]


def test_crops_are_random_windows_of_at_most_max_seconds(tmp_path):
    import soundfile as sf

    from after_hf.models import feature_extractor_for, load_config

    long, short = tmp_path / "long.wav", tmp_path / "short.wav"
    sf.write(long, np.random.default_rng(0).standard_normal(48000).astype(np.float32), 16000)  # 3 s
    sf.write(short, np.random.default_rng(1).standard_normal(8000).astype(np.float32), 16000)  # 0.5 s
    collate = CropCollator(feature_extractor_for(load_config("tiny")), max_seconds=1.0)
    rows = [{"path": str(long), "duration": 3.0, "label": 1}, {"path": str(short), "duration": 0.5, "label": 0}]
    torch.manual_seed(0)
    first, second = collate(rows), collate(rows)
    assert first["input_values"].shape == (2, 16000)  # padded to the 1-s crop, not to 3 s
    assert first["attention_mask"].sum(1).tolist() == [16000, 8000]  # the short one is whole, not cropped
    assert first["labels"].tolist() == [1, 0]
    assert not torch.equal(first["input_values"][0], second["input_values"][0])  # a fresh window each draw


def test_lora_trains_only_adapters_and_head_and_merges_exactly(tones):
    args = FinetuneArguments(lora=True, **FAST,
                             lora_target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "intermediate_dense"])
    model, fe = build_model(args, ["low", "high"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(("lora_" in n) or ("modules_to_save" in n) for n in trainable)
    assert any("projector" in n for n in trainable) and any("classifier" in n for n in trainable)
    assert any("intermediate_dense.lora_A" in n for n in trainable)
    with torch.no_grad():  # LoRA B starts at zero; give the adapters a non-trivial update before merging
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    adapter = predict(model, fe, tones["test"], progress=False, return_embeddings=True)
    merged = model.merge_and_unload()
    assert not any("lora" in n for n, _ in merged.named_parameters())
    plain = predict(merged, fe, tones["test"], progress=False, return_embeddings=True)
    np.testing.assert_allclose(plain["probs"], adapter["probs"], atol=1e-5)
    np.testing.assert_allclose(plain["embeddings"], adapter["embeddings"], atol=1e-4)


def test_lora_finetune_exports_a_plain_merged_model(tones, tmp_path):
    args = FinetuneArguments(lora=True, num_train_epochs=2, **FAST)
    before, _ = build_model(FinetuneArguments(**FAST), ["low", "high"])  # same seed -> same initial weights
    result = finetune(args, tones["train"], tones["validation"], ["low", "high"], tmp_path)
    after = load_classifier(str(result.model_dir), ["low", "high"]).state_dict()
    start = before.state_dict()
    frozen = [k for k in start if "feed_forward" in k or "feature_projection" in k or "feature_extractor" in k]
    adapted = [k for k in start if "attention.q_proj.weight" in k]
    assert frozen and all(torch.equal(start[k], after[k]) for k in frozen)  # untouched by LoRA
    assert all(not torch.equal(start[k], after[k]) for k in adapted)  # the merged adapter changed them
    assert not torch.equal(start["classifier.weight"], after["classifier.weight"])  # the head trained
    assert not any("lora" in k or "modules_to_save" in k for k in after)


def test_bad_feature_mask_is_named():
    from after_hf.config import ConfigError

    with pytest.raises(ConfigError, match="mask_feature_length"):
        build_model(FinetuneArguments(**{**FAST, "mask_feature_length": 64}), ["a", "b"])  # tiny hidden size is 32


def test_a_pretraining_checkpoint_becomes_a_classifier_in_one_line(tmp_path, capfd, caplog):
    """No LOAD REPORT table for the expected head swap; a real mismatch (an encoder weight missing) is named."""
    from safetensors.torch import load_file, save_file

    from after_hf.models import load_pretraining_model

    torch.manual_seed(0)
    tapt = tmp_path / "tapt"
    load_pretraining_model("tiny").save_pretrained(tapt)
    assert "Writing model shards" not in capfd.readouterr().err  # transformers' per-save bar is off
    load_classifier(str(tapt), ["high", "low"])
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]  # and its per-load bar too: only our line
    assert lines == [f"{tapt}: encoder loaded into Wav2Vec2ForSequenceClassification; new head (classifier, projector) "
                     f"initialised, the checkpoint's project_hid, project_q, quantizer not used"], err
    assert "LOAD REPORT" not in err and "UNEXPECTED" not in err and "not sharded" not in err

    weights = load_file(tapt / "model.safetensors")
    gone = "wav2vec2.encoder.layer_norm.weight"
    save_file({k: v for k, v in weights.items() if k != gone}, tapt / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level("WARNING", logger="after_hf.models"):
        load_classifier(str(tapt), ["high", "low"])
    assert any(gone in r.getMessage() and "do not match" in r.getMessage() for r in caplog.records), caplog.text


def test_a_frozen_cnn_trains_on_its_cached_frames(trained, tones, tmp_path):
    """The frozen CNN's outputs are computed once (cached) and the pooled forward on them equals the one on audio."""
    from after_hf.al.features import FrameCache
    from after_hf.inference import pooled_forward, pooled_from_frames

    assert any((trained.model_dir.parent / "cache" / "cnn_frames").rglob("shard_*.npy"))
    model = trained.model.eval()
    ds = tones["test"]
    frames = FrameCache(tmp_path, model).get(list(ds["id"]), list(ds["path"]), list(ds["duration"]))
    fe = trained.feature_extractor
    for i in range(3):
        x = fe(load_audio(ds[i]["path"]), sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
        with torch.no_grad():
            live, _ = pooled_forward(model, x["input_values"], x["attention_mask"])
            cached, _ = pooled_from_frames(model, torch.from_numpy(frames[i])[None], torch.ones(1, len(frames[i])))
        np.testing.assert_allclose(cached.numpy(), live.numpy(), atol=2e-2)  # frames are stored as float16


def test_speaker_statistics_centre_each_speaker_on_the_population():
    from after_hf.inference import speaker_statistics, to_population

    rng = np.random.default_rng(0)
    speakers = np.repeat(["a", "b", "c", "d"], [30, 30, 30, 3])  # d: too few clips for statistics
    pooled = torch.from_numpy(rng.normal(size=(93, 4)) + np.repeat([[0.0], [5.0], [-2.0], [9.0]], [30, 30, 30, 3], 0)
                              ).float()
    stats, g_mean = speaker_statistics(pooled, speakers)
    torch.testing.assert_close(g_mean, torch.stack([pooled[:30].mean(0), pooled[30:60].mean(0),
                                                    pooled[60:90].mean(0)]).mean(0), atol=1e-5, rtol=1e-5)
    mapped = to_population(pooled, torch.stack([stats[s] for s in speakers]), g_mean)
    for s in "abc":
        rows = torch.from_numpy(speakers == s)
        torch.testing.assert_close(mapped[rows].mean(0), g_mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mapped[rows] - pooled[rows], (g_mean - pooled[rows].mean(0)).expand(30, 4))
    torch.testing.assert_close(mapped[90:], pooled[90:])  # speaker d passes unchanged


def test_speaker_norm_is_learned_stored_and_applied(tmp_path):
    from after_hf.inference import SPEAKER_NORM_KEY

    path = make_tone_manifest(tmp_path / "tones", {"train": 12, "validation": 12, "test": 12}, seed=1)
    tones = {split: load_manifest(path, split) for split in ("train", "validation", "test")}  # ~6 clips per speaker
    args = FinetuneArguments(num_train_epochs=8, speaker_norm=True, **FAST)
    result = finetune(args, tones["train"], tones["validation"], label_names(tones["train"]), tmp_path / "ft")
    assert result.metrics["ua"] >= 0.75
    reloaded = load_classifier(str(result.model_dir), label_names(tones["train"]))
    norm = getattr(reloaded.config, SPEAKER_NORM_KEY)
    assert len(norm["mean"]) == reloaded.config.classifier_proj_size
    fe = result.feature_extractor
    by_speaker = predict(reloaded, fe, tones["test"], progress=False)["probs"]  # speakers from the manifest column
    alone = predict(reloaded, fe, list(tones["test"]["path"]), progress=False)["probs"]  # no speakers: as they are
    assert not np.allclose(by_speaker, alone)
    one = predict(reloaded, fe, [tones["test"][0]["path"]], progress=False)["probs"]
    np.testing.assert_allclose(one[0], alone[0], atol=1e-5)  # an unknown speaker's single clip passes unchanged


def test_first_speaker_statistics_from_the_callers_pooled_vectors_equal_a_pass_of_its_own(tmp_path):
    """stats_pooled (an AL round's pool scoring of the model training continues) replaces the first statistics pass:
    one pass fewer, and the model trained equals the one whose first statistics came from its own pass."""
    from after_hf.inference import SPEAKER_NORM_KEY

    path = make_tone_manifest(tmp_path / "tones", {"train": 12, "validation": 12, "test": 12}, seed=1)
    tones = {split: load_manifest(path, split) for split in ("train", "validation")}
    names = label_names(tones["train"])
    args = FinetuneArguments(num_train_epochs=2, speaker_norm=True, **FAST)
    start = finetune(args, tones["train"], tones["validation"], names, tmp_path / "start")  # a saved model to continue
    pooled = predict(start.model, start.feature_extractor, tones["train"], progress=False,
                     return_embeddings=True)["embeddings"]
    again = FinetuneArguments(**{**vars(args), "model": str(start.model_dir)})
    own = finetune(again, tones["train"], tones["validation"], names, tmp_path / "own")
    shared = finetune(again, tones["train"], tones["validation"], names, tmp_path / "shared",
                      stats_pooled=dict(zip(tones["train"]["id"], pooled)))
    assert shared.speaker_stats_passes == own.speaker_stats_passes - 1 >= 0
    norms = [getattr(load_classifier(str(r.model_dir), names).config, SPEAKER_NORM_KEY)["mean"] for r in (own, shared)]
    np.testing.assert_allclose(norms[0], norms[1], atol=1e-5)
    assert shared.metrics["ua"] == pytest.approx(own.metrics["ua"])
    partial = finetune(again, tones["train"], tones["validation"], names, tmp_path / "partial",
                       stats_pooled={tones["train"]["id"][0]: pooled[0]})  # not every statistics clip: a pass
    assert partial.speaker_stats_passes == own.speaker_stats_passes


def test_speaker_statistics_subset_keeps_every_speaker_and_does_not_depend_on_row_order():
    """speaker_stats_clips: at most K clips per speaker, every speaker kept (all its clips when it has fewer), the
    same clips whatever the row order (so every epoch, round and seed centres a speaker on the same clips)."""
    from datasets import Dataset

    from after_hf.finetune import per_speaker_subset

    speakers = ["a"] * 12 + ["b"] * 3 + ["c"] * 7
    ds = Dataset.from_dict({"id": [f"{s}{i}" for i, s in enumerate(speakers)], "speaker": speakers})
    subset = per_speaker_subset(ds, 5)
    counts = {s: subset["speaker"].count(s) for s in "abc"}
    assert counts == {"a": 5, "b": 3, "c": 5}
    shuffled = per_speaker_subset(ds.shuffle(seed=1), 5)
    assert sorted(shuffled["id"]) == sorted(subset["id"])
    assert per_speaker_subset(ds, 100)["id"] == ds["id"]


def test_min_eval_samples_evaluates_small_sets_every_few_epochs_and_refreshes_statistics_with_them(tmp_path):
    """min_eval_samples: a training set smaller than it is evaluated every k epochs (the fewest holding that many
    clips; the epochs rounded up to a multiple of k so the last one is evaluated), and the speaker statistics are
    refreshed at the start and after each evaluation only; a large set still evaluates every epoch."""
    from after_hf.finetune import evaluation_schedule

    args = FinetuneArguments(num_train_epochs=12, per_device_train_batch_size=16, min_eval_samples=256)
    assert evaluation_schedule(args, 43) == (6 * 3, 12.0)  # every 6 epochs of 3 steps
    assert evaluation_schedule(FinetuneArguments(**{**vars(args), "num_train_epochs": 3}), 173) == (2 * 11, 4.0)
    assert evaluation_schedule(args, 864) == (0, 12) and evaluation_schedule(FinetuneArguments(), 43) == (0, 30.0)
    # a tiny set: evaluated once, at the end of its own epochs (not 43 epochs rounded up from every 43)
    assert evaluation_schedule(FinetuneArguments(**{**vars(args), "num_train_epochs": 3}), 6) == (3 * 1, 3.0)

    path = make_tone_manifest(tmp_path / "tones", {"train": 12, "validation": 12, "test": 12}, seed=1)
    tones = {split: load_manifest(path, split) for split in ("train", "validation")}  # 24 training clips
    refreshes = []
    real = PooledClassifier.set_speakers
    PooledClassifier.set_speakers = lambda self, *a: refreshes.append(1) or real(self, *a)
    try:
        result = finetune(FinetuneArguments(num_train_epochs=5, speaker_norm=True, min_eval_samples=48, **FAST),
                          tones["train"], tones["validation"], label_names(tones["train"]), tmp_path / "ft")
    finally:
        PooledClassifier.set_speakers = real
    evaluations = [h for h in result.history if "eval_ua" in h]
    assert [h["epoch"] for h in evaluations] == [2.0, 4.0, 6.0]  # 5 epochs rounded up to 6, every 2 epochs
    assert len(refreshes) == 3  # at the start, after the evaluations at epochs 2 and 4 (not after the last)
