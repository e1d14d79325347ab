"""RAVDESS: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.wav`` (modality, vocal channel, emotion, intensity, statement,
repetition, actor). Speech only: vocal channel 02 (song) is listed as excluded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .base import CorpusError, Skipped, Utterance, read_layout, sample_id, strip_to

NAME = "ravdess"
PATTERN = re.compile(r"^(\d\d)-(\d\d)-(0[1-8])-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root)
    if not any(root.glob("**/Actor_*")) and not any(root.glob("**/??-??-??-??-??-??-??.wav")):
        raise CorpusError(f"{root} is not a RAVDESS folder: expected Actor_01/03-01-01-01-01-01-01.wav-style files "
                          "under it.")

    def parse(path: Path) -> Utterance | Skipped | None:
        m = PATTERN.match(path.stem)
        if not m:
            return None
        _modality, channel, emotion, *_rest, actor = m.groups()
        if channel != "01":
            return Skipped(str(path), "song (vocal channel 02): RAVDESS speech only", "excluded")
        return Utterance(sample_id(NAME, root, path), str(path), emotion, f"{NAME}/Actor_{actor}", NAME)

    yield from read_layout(root, parse, "MM-VV-EE-II-SS-RR-AA (RAVDESS layout)")
