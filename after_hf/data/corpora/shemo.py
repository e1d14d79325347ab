"""ShEMO: ``female/F01A01.wav``, ``male/M12N05.wav`` (gender, 2-digit speaker, emotion letter, 2-digit index)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .base import CorpusError, Skipped, Utterance, audio_files, sample_id, strip_to

NAME = "shemo"
PATTERN = re.compile(r"^([FM])(\d\d)([AHNSFW])(\d\d)$")


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root)
    if not (root / "female").is_dir() and not (root / "male").is_dir():
        raise CorpusError(f"{root} is not a ShEMO folder: expected {root / 'female'}/ and {root / 'male'}/ holding "
                          "F01A01.wav-style files.")
    for path in audio_files(root):
        if isinstance(path, Skipped):
            yield path
            continue
        m = PATTERN.match(path.stem)
        if not m:
            yield Skipped(str(path), "name is not <F|M><speaker 2 digits><emotion letter><index 2 digits> "
                                     "(ShEMO layout)")
            continue
        gender, speaker, emotion, _ = m.groups()
        yield Utterance(sample_id(NAME, root, path), str(path), emotion, f"{NAME}/{gender}{speaker}", NAME)
