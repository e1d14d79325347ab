"""EmoV-DB: one folder per speaker x emotion, ``<speaker>_<emotion>/<emotion>_<a>-<b>_<nnnn>.wav``
(speakers bea, jenie, josh, sam; emotions amused, angry, disgusted, neutral, sleepy). Nested
``<speaker>/<emotion>/`` folders are read too, and so are the release's own file names in a speaker folder
(``bea/anger_1-28_0001.wav``: the emotion is the name's first word)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..labels import CORPUS_EMOTIONS
from .base import Skipped, Utterance, read_layout, sample_id, strip_to

NAME = "emovdb"
EMOTIONS = set(CORPUS_EMOTIONS[NAME])
ALIASES = {"anger": "angry", "disgust": "disgusted", "sleepiness": "sleepy", "amusement": "amused"}  # file-name words


def _emotion(word: str) -> str | None:
    word = ALIASES.get(word.lower(), word.lower())
    return word if word in EMOTIONS else None


def _speaker_emotion(path: Path, root: Path) -> tuple[str, str] | None:
    parent = path.parent.name.lower()
    if "_" in parent and _emotion(parent.split("_", 1)[1]):
        return parent.split("_", 1)[0], _emotion(parent.split("_", 1)[1])
    if _emotion(parent):
        return path.parent.parent.name.lower(), _emotion(parent)
    if _emotion(path.stem.split("_", 1)[0]) and path.parent != root:  # a speaker folder holding the release's names
        return parent, _emotion(path.stem.split("_", 1)[0])
    return None


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root)

    def parse(path: Path) -> Utterance | Skipped:
        se = _speaker_emotion(path, root)
        if se is None:
            return Skipped(str(path), f"folder '{path.parent.name}' is not <speaker>_<emotion> with emotion in "
                                      f"{sorted(EMOTIONS)}")
        return Utterance(sample_id(NAME, root, path), str(path), se[1], f"{NAME}/{se[0]}", NAME)

    yield from read_layout(root, parse, "<speaker>_<emotion>/ (EmoV-DB layout)",
                           f"{root} is not an EmoV-DB folder: expected <speaker>_<emotion>/ folders such as "
                           "bea_amused/ under it.")
