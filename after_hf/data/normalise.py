"""Per-speaker normalisation (numpy only), shared by the learners, the inference code and the references.

Emotion cues are relative to each voice (a high pitch for one speaker is neutral for another), and a pool's
speaker ids are known without any label. Two forms:

* ``speaker_normalise``: z-normalise each feature within a speaker (the references' hand-made prosodic features,
  the usual practice with eGeMAPS-like features);
* ``speaker_centre``: subtract the speaker's mean and add the population's (the learners). Centring commutes with
  the linear projector and the time-mean of a wav2vec2 classification head, so a head trained on centred cached
  features exports exactly into a model that centres its pooled vectors (``after_hf.inference``). Measured on the
  demo pool (docs/finetune_notes.md): as good as z-normalising for the learned features (test UA 0.62 vs 0.56-0.60
  with 100 % of the labels, linear / non-linear head).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MIN_SPEAKER_CLIPS = 5  # fewer clips of a speaker give no usable statistics: those clips are taken as they are


def speaker_normalise(features: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """z-normalise every feature within each speaker, over all of that speaker's rows (labelled or not).
    Works on any trailing shape ([N, D] or [N, L, D])."""
    features = np.asarray(features)
    out = np.empty(features.shape, dtype=np.result_type(features.dtype, np.float32))
    speakers = np.asarray(speakers)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        out[rows] = (features[rows] - features[rows].mean(0)) / (features[rows].std(0) + 1e-5)
    return out


def speaker_means(features: np.ndarray, speakers: Sequence[str]) -> dict[str, np.ndarray]:
    """speaker -> the mean of its rows, for every speaker with at least ``MIN_SPEAKER_CLIPS`` rows."""
    features, speakers = np.asarray(features), np.asarray(speakers)
    found = {}
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        if rows.sum() >= MIN_SPEAKER_CLIPS:
            found[str(speaker)] = features[rows].astype(np.float64).mean(0)
    return found


def population_mean(features: np.ndarray, speakers: Sequence[str], means: dict | None = None) -> np.ndarray:
    """The mean of the speaker means (an average speaker); all rows' mean when no speaker has enough rows.
    ``means``: ``speaker_means(features, speakers)`` when the caller has it already."""
    means = speaker_means(features, speakers) if means is None else means
    if not means:
        return np.asarray(features, dtype=np.float64).mean(0)
    return np.mean(list(means.values()), axis=0)


def speaker_centre(features: np.ndarray, speakers: Sequence[str], population: np.ndarray) -> np.ndarray:
    """Each row minus its speaker's mean plus ``population`` (a speaker with too few rows is left as it is)."""
    features = np.asarray(features)
    out = np.array(features, dtype=np.result_type(features.dtype, np.float32))
    speakers = np.asarray(speakers)
    for speaker, mean in speaker_means(features, speakers).items():
        rows = speakers == speaker
        out[rows] = features[rows] - mean + population
    return out
