"""Reference rows: the prosodic features measure what they name; the ceiling and the acoustic baseline score a split."""

from collections import Counter

import numpy as np
import pytest

from after_hf import SAMPLING_RATE
from after_hf.data.manifest import load_manifest
from after_hf.data.normalise import speaker_normalise
from after_hf.reference import FEATURE_NAMES, acoustic_baseline, acoustic_baseline_on_labels, ceiling, prosodic_features

SR = SAMPLING_RATE


def harmonic(f0: float, seconds: float, bright: float = 0.3, seed: int = 0) -> np.ndarray:
    """A voiced-like tone: harmonics of f0 with amplitude ``bright ** k`` (higher = more high-frequency energy)."""
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(bright ** k * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(20) if f0 * (k + 1) < SR / 2)
    noise = 1e-4 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.1 * wave / np.abs(wave).max() + noise).astype(np.float32)


def feature(wave, name):
    return prosodic_features(wave)[FEATURE_NAMES.index(name)]


@pytest.mark.parametrize("f0", [110.0, 220.0])
def test_f0_duration_and_tilt_are_measured(f0):
    wave = harmonic(f0, 1.5)
    assert feature(wave, "duration_s") == pytest.approx(1.5, abs=1e-3)
    assert feature(wave, "f0_median_st") == pytest.approx(12 * np.log2(f0 / 100), abs=0.3)
    assert feature(wave, "f0_range_st") < 0.5 and feature(wave, "voiced_share") > 0.9
    assert feature(harmonic(f0, 1.5, bright=0.8), "alpha_ratio_db") > feature(wave, "alpha_ratio_db") + 3


def test_pauses_inside_a_turn_are_counted():
    gap = np.zeros(int(0.4 * SR), np.float32)
    tone = harmonic(150, 0.6)
    one, three = np.concatenate([tone, tone]), np.concatenate([tone, gap, tone, gap, tone, gap, tone])
    assert feature(one, "pauses_per_s") == 0 and feature(one, "pause_share") < 0.05
    assert feature(three, "pauses_per_s") == pytest.approx(3 / (len(three) / SR), rel=0.1)
    assert feature(three, "mean_pause_s") == pytest.approx(0.4, abs=0.05)


def test_speaker_normalise_centres_each_speaker():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)) + np.repeat([[0, 0, 0], [5, -3, 10], [1, 1, 1]], 20, axis=0)
    speakers = np.repeat(["a", "b", "c"], 20)
    z = speaker_normalise(x, speakers)
    for s in "abc":
        assert np.allclose(z[speakers == s].mean(0), 0, atol=1e-6)
        assert np.allclose(z[speakers == s].std(0), 1, atol=1e-3)


def test_ceiling_and_acoustic_baseline_on_the_generated_corpus(synth_corpus, synth_manifest, tmp_path, monkeypatch):
    c = ceiling(synth_manifest, synth_corpus / "synth_truth.csv")
    # the generative values separate the emotions far better than chance (0.25) on unseen speakers
    assert 0.5 < c["test"]["ua"] <= 1 and 0 <= c["validation"]["ua"] <= 1 and c["num_features"] == 7
    cache = tmp_path / "prosodic.npz"
    a = acoustic_baseline(synth_manifest, cache=cache, progress=False)
    assert 0 <= a["test_ua"] <= 1 and a["num_features"] == len(FEATURE_NAMES) and cache.is_file()
    test = load_manifest(synth_manifest, "test")  # UA per held-out voice, each test clip counted once
    for per_speaker in (a["test"]["per_speaker"], c["test"]["per_speaker"]):
        assert {k: v["num_samples"] for k, v in per_speaker.items()} == dict(Counter(test["speaker"]))
        assert all(0 <= v["ua"] <= 1 for v in per_speaker.values())
    import after_hf.reference as reference

    monkeypatch.setattr(reference, "prosodic_features", lambda *_: pytest.fail("features recomputed despite the cache"))
    assert acoustic_baseline(synth_manifest, cache=cache, progress=False)["test_ua"] == a["test_ua"]


def test_ceiling_refuses_a_manifest_of_another_corpus(synth_manifest, tmp_path):
    truth = tmp_path / "synth_truth.csv"
    truth.write_text("file,true_emotion\nAudioWAV/other.wav,angry\n")
    with pytest.raises(ValueError, match="not prepared from this generated corpus"):
        ceiling(synth_manifest, truth)


def test_the_acoustic_baseline_learns_the_labels_a_run_received(synth_manifest, tmp_path):
    cache = tmp_path / "prosodic.npz"
    row = acoustic_baseline(synth_manifest, cache=cache, progress=False)
    train, test = load_manifest(synth_manifest, "train"), load_manifest(synth_manifest, "test")
    every = dict(zip(train["id"], train["label"]))
    flipped = {clip: (label + 2) % 4 for clip, label in every.items()}  # every answer two classes off
    some = dict(list(every.items())[::3])
    runs = {"every": every, "flipped": flipped, "some": some,
            "one class": {clip: 0 for clip in list(every)[:6]},  # nothing to separate: left out
            "a test clip": {test["id"][0]: 0, **some}}  # a label outside the train split: left out
    scores = acoustic_baseline_on_labels(synth_manifest, cache, runs)
    assert set(scores) == {"every", "flipped", "some"}
    # every training label, as the manifest has them: exactly the reference row
    assert scores["every"]["test_ua"] == pytest.approx(row["test_ua"])
    assert scores["every"]["validation"]["ua"] == pytest.approx(row["validation"]["ua"])
    # the run's answers are what is learnt, not the manifest's labels
    assert scores["flipped"]["test_ua"] < row["test_ua"] - 0.2
    assert 0 <= scores["some"]["test_ua"] <= 1
    assert acoustic_baseline_on_labels(synth_manifest, tmp_path / "no_cache.npz", runs) == {}
