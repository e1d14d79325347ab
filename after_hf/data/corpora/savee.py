"""SAVEE: ``AudioData/DC/a01.wav`` (original) or flattened ``DC_a01.wav``; speakers DC, JE, JK, KL;
codes a, d, f, h, n, sa, su + a 2-digit index."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .base import CorpusError, Skipped, Utterance, audio_files, sample_id, strip_to

NAME = "savee"
FLAT = re.compile(r"^([A-Z]{2})_(sa|su|a|d|f|h|n)(\d\d)$")
NESTED = re.compile(r"^(sa|su|a|d|f|h|n)(\d\d)$")


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root)
    found = False
    for path in audio_files(root):
        if isinstance(path, Skipped):
            yield path
            continue
        flat, nested = FLAT.match(path.stem), NESTED.match(path.stem)
        if flat:
            speaker, code = flat.group(1), flat.group(2)
        elif nested and re.fullmatch(r"[A-Z]{2}", path.parent.name):
            speaker, code = path.parent.name, nested.group(1)
        else:
            yield Skipped(str(path), "name is not <SPK>_<code><nn>.wav or <SPK>/<code><nn>.wav (SAVEE layout)")
            continue
        found = True
        yield Utterance(sample_id(NAME, root, path), str(path), code, f"{NAME}/{speaker}", NAME)
    if not found:
        raise CorpusError(f"{root} is not a SAVEE folder: expected DC_a01.wav (or AudioData/DC/a01.wav)-style files "
                          "under it.")
