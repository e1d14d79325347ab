"""The generated corpus: the profile is what is drawn, speakers and emotions are independent, the cues are audible."""

from collections import Counter

import numpy as np
import pytest

from after_hf.data.corpora import cremad
from after_hf.data.synth import (CUES, SynthError, load_profile, plan, sentence_bank, synthesize)
from after_hf.reference import prosodic_features


def test_plan_follows_the_profile_class_shares_per_speaker():
    profile = load_profile()
    jobs = plan(400, seed=3, voices=10, profile=profile)
    per_speaker = Counter(j.voice.actor for j in jobs)
    assert set(per_speaker.values()) == {40}
    shares = profile["emotions"]
    for actor in per_speaker:  # each speaker gets the pool's shares (up to one clip): no voice predicts an emotion
        counts = Counter(j.true_emotion for j in jobs if j.voice.actor == actor)
        for emotion, share in shares.items():
            assert abs(counts[emotion] - 40 * share / sum(shares.values())) <= 1
    total = Counter(j.true_emotion for j in jobs)
    assert total["neutral"] > total["happy"] > total["angry"] > total["sad"]  # IEMOCAP-like imbalance


def test_plan_is_seeded_and_file_names_are_unique_and_readable():
    a, b, c = plan(300, 0, 12), plan(300, 0, 12), plan(300, 1, 12)
    assert [(j.file, j.prosody, j.breaks) for j in a] == [(j.file, j.prosody, j.breaks) for j in b]
    assert [j.file for j in a] != [j.file for j in c]
    assert len({j.file for j in a}) == len(a)
    assert all(cremad.PATTERN.match(j.file[:-4]) for j in a)


def test_emotion_means_follow_the_effects_and_speakers_differ_in_expressiveness():
    profile = load_profile()
    jobs = plan(2000, 0, 40, profile=profile)
    for cue in ("pitch_st", "rate_pct", "tilt_db"):
        mean = {e: np.mean([j.prosody[cue] for j in jobs if j.true_emotion == e]) for e in profile["emotions"]}
        order = sorted(mean, key=mean.get)
        assert order == sorted(profile["emotions"], key=lambda e: profile["effects"][e][cue]), (cue, mean)
    assert np.std([j.voice.expressiveness for j in jobs]) > 0.1
    sexes = Counter(j.voice.sex for j in {j.voice.actor: j for j in jobs}.values())
    assert sexes == {"female": 20, "male": 20}


def test_label_noise_changes_only_the_written_label():
    jobs = plan(1000, 0, 20, label_noise=0.2)
    wrong = [j for j in jobs if j.written_emotion != j.true_emotion]
    assert 0.15 < len(wrong) / len(jobs) < 0.25
    clean = plan(1000, 0, 20)
    assert [j.true_emotion for j in clean] == [j.true_emotion for j in jobs]
    with pytest.raises(SynthError, match="label_noise"):
        plan(10, 0, 2, label_noise=1.5)


def test_turn_lengths_are_iemocap_like():
    jobs = plan(1500, 0, 30)
    sentences = np.array([len(j.codes) for j in jobs])
    assert 1 <= sentences.min() and sentences.max() >= 5 and 1.5 < sentences.mean() < 2.5


def test_generated_sentence_bank_for_a_generic_corpus():
    bank = sentence_bank({"sentences": {"generated": 500, "seed": 4}})
    assert len(bank) == 500 and len(set(bank.values())) == 500
    assert bank == sentence_bank({"sentences": {"generated": 500, "seed": 4}})
    generic = load_profile("recipes/demo/base_corpus.yaml")
    jobs = plan(50, 0, 10, profile=generic)
    assert {j.true_emotion for j in jobs} == {"neutral"} and all(j.text.endswith(".") for j in jobs)


def test_unknown_emotion_and_missing_profile_are_named():
    with pytest.raises(SynthError, match="bored"):
        plan(10, 0, 2, emotions=["neutral", "bored"])
    with pytest.raises(SynthError, match="--profile"):
        load_profile("no/such/profile.yaml")


def test_synthesized_audio_carries_the_pitch_cue_and_is_reproducible(tmp_path):
    profile = load_profile(None, lengths={"median_s": 1.4, "sigma": 0.2, "max_s": 3.0})
    out = synthesize(tmp_path / "c", num_utterances=40, seed=5, voices=2, profile=profile, progress=False)
    truth = (out / "synth_truth.csv").read_text()
    header = truth.splitlines()[0].split(",")
    assert set(CUES) <= set(header) and "true_emotion" in header
    files = sorted((out / "AudioWAV").glob("*.wav"))
    assert len(files) == 40
    before = {p.name: p.read_bytes() for p in files}
    synthesize(tmp_path / "c", num_utterances=40, seed=5, voices=2, profile=profile, progress=False, overwrite=True)
    assert before == {p.name: p.read_bytes() for p in (out / "AudioWAV").glob("*.wav")}
    # realised pitch follows the drawn pitch level within each speaker
    import csv

    import soundfile as sf

    rows = list(csv.DictReader(open(out / "synth_truth.csv")))
    drawn, heard = [], []
    for actor in {r["actor"] for r in rows}:  # relative to each speaker's own mean
        mine = [r for r in rows if r["actor"] == actor]
        d = np.array([float(r["pitch_st"]) for r in mine])
        h = np.array([prosodic_features(sf.read(out / r["file"], dtype="float32")[0])[1] for r in mine])
        drawn += list(d - d.mean())
        heard += list(h - h.mean())
    assert np.corrcoef(drawn, heard)[0, 1] > 0.6
