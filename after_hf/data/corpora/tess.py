"""TESS: ``OAF_angry/OAF_back_angry.wav`` (speaker OAF or YAF, the word, the emotion; ``ps`` = pleasant surprise).
The speaker and emotion come from the file name, whose case varies in the distributed archive."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .base import Skipped, Utterance, read_layout, sample_id, strip_to

NAME = "tess"
PATTERN = re.compile(r"^([A-Za-z]+)_(.+)_(angry|disgust|fear|happy|neutral|ps|sad)$", re.IGNORECASE)


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root)

    def parse(path: Path) -> Utterance | None:
        m = PATTERN.match(path.stem)
        if not m:
            return None
        return Utterance(sample_id(NAME, root, path), str(path), m.group(3).lower(), f"{NAME}/{m.group(1).upper()}",
                         NAME)

    yield from read_layout(root, parse, "<SPEAKER>_<word>_<emotion> (TESS layout)",
                           f"{root} is not a TESS folder: expected OAF_angry/OAF_back_angry.wav-style files under it.")
