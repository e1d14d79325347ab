"""Reference rows of every report: what a simple, transparent model reaches on the same split.

* ``ceiling``            (generated corpora only) a logistic regression on the *true* generative cue values that
                         `after-hf synth` drew for each turn (synth_truth.csv: pitch level and range, rate, pauses,
                         spectral tilt, loudness), z-normalised per speaker. No model that hears the audio can
                         know more than these values, so it bounds what the demo can show.
* ``acoustic_baseline``  (every corpus) the "eGeMAPS + linear model" a SER researcher tries first: a small set of
                         hand-made prosodic features per utterance (duration; F0 level, range and spread in
                         semitones; voiced share; energy level and dynamics; pauses; a syllable-rate estimate;
                         spectral tilt as alpha ratio and Hammarberg index; spectral centroid), z-normalised per
                         speaker over all of that speaker's clips (speaker ids are known without labels), then
                         logistic regression trained on the train split.

Both are fitted on the manifest's train split and scored (UA / WA / macro-F1) on validation and test.
``acoustic_baseline_on_labels`` fits the acoustic baseline on only the labels an AL run received: the report's
"same labels" column.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from . import SAMPLING_RATE
from .data.normalise import speaker_normalise

REFERENCES_FILE = "references.json"  # written by `after-hf experiment`, read by the report
PROSODIC_CACHE = "prosodic_features.npz"  # under <experiment>/cache/: every clip's FEATURE_NAMES
FRAME, HOP = 640, 160  # 40 ms windows, 10 ms hop
F0_MIN, F0_MAX = 60.0, 500.0
FEATURE_NAMES = (
    "duration_s", "f0_median_st", "f0_p10_st", "f0_p90_st", "f0_range_st", "f0_std_st", "voiced_share",
    "energy_mean_db", "energy_std_db", "energy_range_db", "pause_share", "pauses_per_s", "mean_pause_s",
    "syllable_rate", "alpha_ratio_db", "hammarberg_db", "centroid_hz",
)


def _frames(wave: np.ndarray) -> np.ndarray:
    if wave.size < FRAME:
        wave = np.pad(wave, (0, FRAME - wave.size))
    count = 1 + (wave.size - FRAME) // HOP
    index = np.arange(FRAME)[None, :] + HOP * np.arange(count)[:, None]
    return wave[index]


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def prosodic_features(wave: np.ndarray, sr: int = SAMPLING_RATE) -> np.ndarray:
    """FEATURE_NAMES for one mono waveform (autocorrelation F0, frame energies, FFT band energies)."""
    frames = _frames(np.asarray(wave, dtype=np.float64))
    frames = frames - frames.mean(1, keepdims=True)
    energy_db = 10 * np.log10(np.mean(frames**2, 1) + 1e-10)
    speech = energy_db > energy_db.max() - 35  # frames within 35 dB of the loudest: speech, not pause/noise
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(FRAME), n=2 * FRAME)) ** 2
    autocorr = np.fft.irfft(spectrum, n=2 * FRAME)[:, :FRAME]
    lo, hi = int(sr / F0_MAX), int(sr / F0_MIN)
    lag = lo + np.argmax(autocorr[:, lo:hi], 1)
    strength = autocorr[np.arange(len(lag)), lag] / (autocorr[:, 0] + 1e-12)
    voiced = speech & (strength > 0.45)
    f0_st = 12 * np.log2(sr / lag[voiced] / 100.0) if voiced.any() else np.zeros(1)
    freqs = np.fft.rfftfreq(2 * FRAME, 1 / sr)
    band = lambda a, b: spectrum[:, (freqs >= a) & (freqs < b)].sum(1) + 1e-12  # noqa: E731
    sp = speech if speech.any() else np.ones_like(speech)
    alpha = 10 * np.log10(band(1000, 5000)[sp].sum() / band(50, 1000)[sp].sum())
    low_peak = spectrum[sp][:, freqs < 2000].max(1).mean()
    high_peak = spectrum[sp][:, (freqs >= 2000) & (freqs < 5000)].max(1).mean()
    hammarberg = 10 * np.log10(low_peak / high_peak)
    centroid = float((spectrum[sp] * freqs).sum() / spectrum[sp].sum())
    first, last = np.flatnonzero(speech)[[0, -1]] if speech.any() else (0, len(speech) - 1)
    inner = [n for n in _runs(~speech[first:last + 1]) if n >= 15]  # silences of >= 150 ms inside the turn
    # syllable nuclei: peaks of the smoothed energy contour of voiced frames, at least 100 ms apart
    contour = np.convolve(np.where(voiced, energy_db, energy_db.min()), np.ones(5) / 5, mode="same")
    peaks = np.flatnonzero((contour[1:-1] > contour[:-2]) & (contour[1:-1] >= contour[2:]) & voiced[1:-1]) + 1
    peaks = peaks[np.concatenate([[True], np.diff(peaks) >= 10])] if peaks.size else peaks
    spoken_s = max(speech.sum() * HOP / sr, 1e-3)
    e = energy_db[sp]
    return np.array([
        wave.size / sr, np.median(f0_st), np.percentile(f0_st, 10), np.percentile(f0_st, 90),
        np.percentile(f0_st, 90) - np.percentile(f0_st, 10), np.std(f0_st), voiced.sum() / max(speech.sum(), 1),
        e.mean(), e.std(), np.percentile(e, 95) - np.percentile(e, 5), 1 - speech[first:last + 1].mean(),
        len(inner) / max((last - first + 1) * HOP / sr, 1e-3), np.mean(inner) * HOP / sr if inner else 0.0,
        peaks.size / spoken_s, alpha, hammarberg, centroid,
    ], dtype=np.float64)


def fit_and_score(x: np.ndarray, labels: np.ndarray, splits: np.ndarray, label_names: Sequence[str],
                  speakers: Sequence[str] | None = None) -> dict:
    """Standardise on train, logistic regression on train, UA / WA / macro-F1 on validation and test (and UA per
    held-out speaker when ``speakers`` is given)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from .metrics import compute_ser_metrics, per_speaker_scores

    train = splits == "train"
    scaler = StandardScaler().fit(x[train])
    clf = LogisticRegression(max_iter=5000, class_weight="balanced").fit(scaler.transform(x[train]), labels[train])
    out = {}
    for split in ("validation", "test"):
        rows = splits == split
        if rows.any():
            pred = clf.predict(scaler.transform(x[rows]))
            scores = compute_ser_metrics(pred, labels[rows], list(label_names))
            out[split] = {k: scores[k] for k in ("ua", "wa", "macro_f1")}
            if speakers is not None:
                out[split]["per_speaker"] = per_speaker_scores(pred, labels[rows], np.asarray(speakers)[rows])
    out["test_ua"] = out.get("test", {}).get("ua")
    out["num_features"] = int(x.shape[1])
    return out


def _manifest_arrays(manifest: str | Path) -> tuple:
    from .data.manifest import label_names, load_manifest

    ds = load_manifest(manifest)
    cols = ds.select_columns(["id", "path", "label", "speaker", "split"]).to_dict()
    return (cols["id"], cols["path"], np.asarray(cols["label"]), np.asarray(cols["speaker"]),
            np.asarray(cols["split"]), label_names(ds))


def ceiling(manifest: str | Path, truth_csv: str | Path) -> dict:
    """Logistic regression on the true generative cue values (speaker-normalised), on the manifest's split."""
    from .data.synth import CUES

    ids, paths, labels, speakers, splits, names = _manifest_arrays(manifest)
    with open(truth_csv, newline="", encoding="utf-8") as fh:
        truth = {Path(row["file"]).stem: row for row in csv.DictReader(fh)}
    missing = [p for p in paths if Path(p).stem not in truth]
    if missing:
        raise ValueError(f"{truth_csv} has no generative values for {len(missing)} manifest files (e.g. {missing[0]}): "
                         f"the manifest was not prepared from this generated corpus.")
    x = np.array([[float(truth[Path(p).stem][c]) for c in CUES] for p in paths])
    # score against the true emotion (with --label_noise the file names, hence labels, can be wrong)
    true = np.array([names.index(truth[Path(p).stem]["true_emotion"]) for p in paths])
    result = fit_and_score(speaker_normalise(x, speakers), true, splits, names, speakers)
    result.update(features=list(CUES), what="logistic regression on the generative cue values, speaker-normalised")
    return result


def acoustic_features(paths: Sequence[str], progress: bool = True) -> np.ndarray:
    from tqdm.auto import tqdm

    from .data.audio import load_audio

    return np.stack([prosodic_features(load_audio(p)) for p in tqdm(paths, desc="prosodic features", unit="utt",
                                                                      disable=not progress, leave=False)])


def cached_features(cache: str | Path | None, ids: Sequence[str]) -> np.ndarray | None:
    """The cached prosodic features of ``ids``, in that order; None when the cache is missing, holds another
    feature set, or lacks one of the clips."""
    if cache is None or not Path(cache).is_file():
        return None
    stored = np.load(cache)  # two plain arrays (string ids, float features): no pickle
    if stored["x"].ndim != 2 or stored["x"].shape[1] != len(FEATURE_NAMES):
        return None
    row = {clip: k for k, clip in enumerate(stored["ids"].tolist())}
    if any(clip not in row for clip in ids):
        return None
    return stored["x"][[row[clip] for clip in ids]]


def acoustic_baseline_on_labels(manifest: str | Path, cache: str | Path,
                                runs: dict[str, dict[str, int]]) -> dict[str, dict]:
    """The acoustic baseline trained on only the labels each AL run received (run name -> {id: class index}, as
    the oracle gave them), scored like the reference row on the manifest's validation and test splits: what a
    classical model makes of the same labels. Runs the cached features cannot place are left out (their name is
    missing from the answer); so are runs with fewer than two classes."""
    ids, _, labels, speakers, splits, names = _manifest_arrays(manifest)
    x = cached_features(cache, ids)
    if x is None:
        return {}
    x = speaker_normalise(x, speakers)  # over all of a speaker's clips: no label needed
    index = {clip: k for k, clip in enumerate(ids)}
    out = {}
    for run, labelled in runs.items():
        rows = [index.get(clip) for clip in labelled]
        if any(k is None or splits[k] != "train" for k in rows) or len(set(labelled.values())) < 2:
            continue
        kept, trained_on = np.where(splits == "train", "unused", splits), labels.copy()
        kept[rows], trained_on[rows] = "train", list(labelled.values())
        out[run] = fit_and_score(x, trained_on, kept, names)
    return out


def acoustic_baseline(manifest: str | Path, cache: str | Path | None = None, progress: bool = True) -> dict:
    """Hand-made prosodic features, per-speaker normalised, logistic regression (the first thing SER people try)."""
    ids, paths, labels, speakers, splits, names = _manifest_arrays(manifest)
    x = cached_features(cache, ids)
    if x is None:
        x = acoustic_features(paths, progress)
        if cache is not None:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(cache).with_name(f".{Path(cache).name}.tmp.npz")
            np.savez(tmp, ids=np.array(ids), x=x)
            tmp.replace(cache)
    result = fit_and_score(speaker_normalise(x, speakers), labels, splits, names, speakers)
    raw = fit_and_score(x, labels, splits, names)
    result.update(features=list(FEATURE_NAMES), raw_test_ua=raw["test_ua"],
                  what="17 prosodic features, speaker-normalised, logistic regression")
    return result
