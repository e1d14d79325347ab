"""ShEMO: ``female/F01A01.wav``, ``male/M12N05.wav`` (gender, 2-digit speaker, emotion letter, 2-digit index)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .base import CorpusError, Skipped, Utterance, read_layout, sample_id, strip_to

NAME = "shemo"
PATTERN = re.compile(r"^([FM])(\d\d)([AHNSFW])(\d\d)$")


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root)
    if not (root / "female").is_dir() and not (root / "male").is_dir():
        raise CorpusError(f"{root} is not a ShEMO folder: expected {root / 'female'}/ and {root / 'male'}/ holding "
                          "F01A01.wav-style files.")

    def parse(path: Path) -> Utterance | None:
        m = PATTERN.match(path.stem)
        if not m:
            return None
        gender, speaker, emotion, _ = m.groups()
        return Utterance(sample_id(NAME, root, path), str(path), emotion, f"{NAME}/{gender}{speaker}", NAME)

    yield from read_layout(root, parse, "<F|M><speaker 2 digits><emotion letter><index 2 digits> (ShEMO layout)")
