"""SAVEE: ``AudioData/DC/a01.wav`` (original) or flattened ``DC_a01.wav``; speakers DC, JE, JK, KL;
codes a, d, f, h, n, sa, su + a 2-digit index."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .base import Skipped, Utterance, read_layout, sample_id, strip_to

NAME = "savee"
FLAT = re.compile(r"^([A-Z]{2})_(sa|su|a|d|f|h|n)(\d\d)$")
NESTED = re.compile(r"^(sa|su|a|d|f|h|n)(\d\d)$")


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root)

    def parse(path: Path) -> Utterance | None:
        flat, nested = FLAT.match(path.stem), NESTED.match(path.stem)
        if flat:
            speaker, code = flat.group(1), flat.group(2)
        elif nested and re.fullmatch(r"[A-Z]{2}", path.parent.name):
            speaker, code = path.parent.name, nested.group(1)
        else:
            return None
        return Utterance(sample_id(NAME, root, path), str(path), code, f"{NAME}/{speaker}", NAME)

    yield from read_layout(root, parse, "<SPK>_<code><nn>.wav or <SPK>/<code><nn>.wav (SAVEE layout)",
                           f"{root} is not a SAVEE folder: expected DC_a01.wav (or AudioData/DC/a01.wav)-style files "
                           "under it.")
