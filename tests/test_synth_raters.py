"""Simulated raters of the generated corpus: disagreement follows ambiguity, a separate random stream, and the answers
reach the manifest through the CREMA-D reader unchanged."""

import csv
from collections import Counter, defaultdict

import numpy as np
import pytest

from after_hf.data.manifest import load_manifest
from after_hf.data.synth import CUES, SynthError, load_profile, plan, synthesize
from after_hf.data.synth_raters import RESPONSE_LETTERS, RESPONSES_FILE, rate

FOUR = ["neutral", "happy", "angry", "sad"]


def agreement(answers) -> np.ndarray:
    return np.array([Counter(e for _, e in clip).most_common(1)[0][1] / len(clip) for clip in answers])


def test_disagreement_grows_as_the_turn_nears_neutral():
    profile = load_profile()
    jobs = plan(1200, 0, 32, profile=profile)
    answers = rate(jobs, profile, FOUR, 0, CUES)
    assert all(len(clip) == profile["raters"]["per_clip"] == len({r for r, _ in clip}) for clip in answers)
    agree = agreement(answers)
    emotional = np.array([j.true_emotion != "neutral" for j in jobs])
    strength = np.array([j.intensity * j.voice.expressiveness for j in jobs])[emotional]
    weak, strong = strength <= np.quantile(strength, 0.25), strength >= np.quantile(strength, 0.75)
    assert agree[emotional][strong].mean() - agree[emotional][weak].mean() > 0.1
    level = {lv: agree[[j.level == lv for j in jobs]].mean() for lv in ("LO", "MD", "HI")}
    assert level["LO"] < level["MD"] < level["HI"], level
    # raters hear the emotion more often than chance, far from always (CREMA-D voice-only: 41 % of 6 classes)
    right = np.mean([e == j.true_emotion for j, clip in zip(jobs, answers) for _, e in clip])
    assert 0.45 < right < 0.7
    # weak emotional turns are mostly mistaken for neutral, not for another emotion
    wrong = Counter(e for j, clip, w in zip([j for j in jobs if j.true_emotion != "neutral"],
                                            [a for a, m in zip(answers, emotional) if m], weak)
                    if w for _, e in clip if e != j.true_emotion)
    assert wrong.most_common(1)[0][0] == "neutral"


def test_raters_are_seeded_and_leave_the_corpus_plan_alone():
    profile = load_profile()
    without = {k: v for k, v in profile.items() if k != "raters"}
    a, b = plan(300, 2, 12, profile=profile), plan(300, 2, 12, profile=without)
    assert [(j.file, j.prosody, j.breaks, j.lead_ms) for j in a] == [
        (j.file, j.prosody, j.breaks, j.lead_ms) for j in b]
    assert rate(a, profile, FOUR, 2, CUES) == rate(a, profile, FOUR, 2, CUES)
    assert rate(a, profile, FOUR, 2, CUES) != rate(a, profile, FOUR, 3, CUES)
    noisier = {**profile, "raters": {**profile["raters"], "noise_sd": 4.0}}
    assert agreement(rate(a, noisier, FOUR, 2, CUES)).mean() < agreement(rate(a, profile, FOUR, 2, CUES)).mean()


def test_bad_rater_settings_are_named():
    profile = load_profile()
    with pytest.raises(SynthError, match="per_clip"):
        plan(10, 0, 2, profile={**profile, "raters": {**profile["raters"], "per_clip": 99}})
    with pytest.raises(SynthError, match="lacks.*lapse"):
        plan(10, 0, 2, profile={**profile, "raters": {"panel": 3, "per_clip": 2}})


def test_prepare_puts_every_answer_into_the_manifest(synth_corpus, synth_manifest):
    with open(synth_corpus / RESPONSES_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    written = defaultdict(list)
    for row in rows:
        assert row["queryType"] == "1"
        written[row["clipName"]].append((f"cremad/{row['localid']}", row["respEmo"]))
    truth = {r["file"].split("/")[-1][:-4]: r for r in csv.DictReader(open(synth_corpus / "synth_truth.csv"))}
    ds = load_manifest(synth_manifest)
    assert len(ds) == len(written) == len(truth)
    letters = {v: k for k, v in RESPONSE_LETTERS.items()}
    names = ds.features["label"].names
    for row in ds.remove_columns("audio"):
        stem = row["id"].rsplit("/", 1)[1]
        assert [(r["rater"], r["labels"]) for r in row["ratings"]] == [(r, [letters[e]]) for r, e in written[stem]]
        assert names[row["label"]] == truth[stem]["written_emotion"]  # the file's label stays the intended emotion
        assert sum(row["votes"]) == row["n_raters"] == 5
    agree = np.array(ds["vote_agreement"])
    assert 0.4 < agree.mean() < 0.95 and (agree < 1).any()


def test_changing_only_the_raters_rewrites_only_their_answers(tmp_path):
    profile = load_profile(None, lengths={"median_s": 1.0, "sigma": 0.1, "max_s": 2.0})
    out = synthesize(tmp_path / "c", num_utterances=6, seed=1, voices=2, profile=profile, progress=False)
    audio = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "AudioWAV").glob("*.wav")}
    truth = (out / "synth_truth.csv").read_text()
    first = (out / RESPONSES_FILE).read_text()
    other = {**profile, "raters": {**profile["raters"], "per_clip": 3}}
    synthesize(out, num_utterances=6, seed=1, voices=2, profile=other, progress=False)
    assert audio == {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "AudioWAV").glob("*.wav")}
    assert (out / "synth_truth.csv").read_text() == truth
    assert len((out / RESPONSES_FILE).read_text().splitlines()) == 1 + 6 * 3 != len(first.splitlines())
    synthesize(out, num_utterances=6, seed=1, voices=2, profile={k: v for k, v in profile.items() if k != "raters"},
               progress=False)
    assert not (out / RESPONSES_FILE).exists()
