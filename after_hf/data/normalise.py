"""Per-speaker normalisation (numpy only), shared by the head learner and the reference classifiers."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def speaker_normalise(features: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """z-normalise every feature within each speaker, over all of that speaker's rows (labelled or not).

    SER practice: emotion cues are relative to each voice (a high pitch for one speaker is neutral for another),
    and a pool's speaker ids are known without any label. Works on any trailing shape ([N, D] or [N, L, D])."""
    features = np.asarray(features)
    out = np.empty(features.shape, dtype=np.result_type(features.dtype, np.float32))
    speakers = np.asarray(speakers)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        out[rows] = (features[rows] - features[rows].mean(0)) / (features[rows].std(0) + 1e-5)
    return out
