"""EmoV-DB: one folder per speaker x emotion, ``<speaker>_<emotion>/<emotion>_<a>-<b>_<nnnn>.wav``
(speakers bea, jenie, josh, sam; emotions amused, angry, disgusted, neutral, sleepy). Nested
``<speaker>/<emotion>/`` folders are read too."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..labels import CORPUS_EMOTIONS
from .base import CorpusError, Skipped, Utterance, audio_files, sample_id, strip_to

NAME = "emovdb"
EMOTIONS = set(CORPUS_EMOTIONS[NAME])


def _speaker_emotion(path: Path) -> tuple[str, str] | None:
    parent = path.parent.name.lower()
    if "_" in parent:
        speaker, emotion = parent.split("_", 1)
        if emotion in EMOTIONS:
            return speaker, emotion
    if parent in EMOTIONS:
        return path.parent.parent.name.lower(), parent
    return None


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root)
    found = False
    for path in audio_files(root):
        if isinstance(path, Skipped):
            yield path
            continue
        se = _speaker_emotion(path)
        if se is None:
            yield Skipped(str(path), f"folder '{path.parent.name}' is not <speaker>_<emotion> with emotion in {sorted(EMOTIONS)}")
            continue
        found = True
        yield Utterance(sample_id(NAME, root, path), str(path), se[1], f"{NAME}/{se[0]}", NAME)
    if not found:
        raise CorpusError(f"{root} is not an EmoV-DB folder: expected <speaker>_<emotion>/ folders such as bea_amused/ under it.")
