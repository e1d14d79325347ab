"""CREMA-D: ``AudioWAV/AAAA_SSS_EMO_LVL.wav`` (actor 1001-1091, sentence, emotion, intensity). Also the synth layout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .base import CorpusError, Skipped, Utterance, audio_files, sample_id, strip_to

NAME = "cremad"
PATTERN = re.compile(r"^(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX|X)$")


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root, "AudioWAV")
    if not (root / "AudioWAV").is_dir():
        raise CorpusError(f"{root} is not a CREMA-D folder: expected {root / 'AudioWAV'}/ holding 1001_DFA_ANG_XX.wav-style files.")
    for path in audio_files(root / "AudioWAV"):
        if isinstance(path, Skipped):
            yield path
            continue
        m = PATTERN.match(path.stem)
        if not m:
            yield Skipped(str(path), "name is not AAAA_SSS_EMO_LVL (CREMA-D layout)")
            continue
        actor, _sentence, emotion, _level = m.groups()
        yield Utterance(sample_id(NAME, root, path), str(path), emotion, f"{NAME}/{actor}", NAME)
