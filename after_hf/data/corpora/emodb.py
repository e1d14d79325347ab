"""EMODB (Berlin): ``wav/03a01Fa.wav`` (speaker, text code, emotion letter, version)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .base import CorpusError, Skipped, Utterance, read_layout, sample_id, strip_to

NAME = "emodb"
PATTERN = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root, "wav")
    if not (root / "wav").is_dir():
        raise CorpusError(f"{root} is not an EMODB folder: expected {root / 'wav'}/ holding 03a01Fa.wav-style files.")

    def parse(path: Path) -> Utterance | None:
        m = PATTERN.match(path.stem)
        if not m:
            return None
        speaker, _text, emotion, _version = m.groups()
        return Utterance(sample_id(NAME, root, path), str(path), emotion, f"{NAME}/{speaker}", NAME)

    yield from read_layout(root / "wav", parse,
                           "<speaker 2 digits><text a01..b10><emotion letter><version> (EMODB layout)")
