"""IEMOCAP: labels from ``Session{n}/dialog/EmoEvaluation/<dialog>.txt``, audio in ``Session{n}/sentences/wav/<dialog>/``.

A label line reads ``[start - end]<TAB><utterance id><TAB><category><TAB>[v, a, d]``. The speaker is the
session + the gender letter before the utterance number (``Ses01F_impro01_M003`` -> ``iemocap/Ses01M``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .base import CorpusError, Skipped, Utterance, audio_files, sample_id, strip_to

NAME = "iemocap"
LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses(\d\d)[FM]_\S+)\s+(\w+)\s+\[")
UTTERANCE_END = re.compile(r"_([FM])\d{3}$")


def _sessions(root: Path) -> list[Path]:
    sessions = sorted(p for p in root.glob("Session*") if p.is_dir() and re.fullmatch(r"Session\d+", p.name))
    if not sessions:
        hint = f" You gave a session folder: pass its parent {root.parent}." if re.fullmatch(r"Session\d+", root.name) else ""
        raise CorpusError(
            f"{root} is not an IEMOCAP folder: expected {root / 'Session1' / 'dialog' / 'EmoEvaluation'}/ "
            f"(the IEMOCAP_full_release folder holds Session1..Session5).{hint}"
        )
    for session in sessions:
        if not (session / "dialog" / "EmoEvaluation").is_dir():
            raise CorpusError(f"IEMOCAP {session} has no dialog/EmoEvaluation/ folder: the labels live there; restore it.")
    return sessions


def labels(session: Path) -> Iterator[tuple[str, str]]:
    """(utterance id, category) from every EmoEvaluation/*.txt of one session (hidden ._ files skipped)."""
    for txt in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
        if txt.name.startswith("."):
            continue
        for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
            m = LABEL_LINE.match(line)
            if m:
                yield m.group(1), m.group(3)


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root)
    if not any(root.glob("Session*")) and (root / "IEMOCAP_full_release").is_dir():  # the folder the archive unpacks to
        root = root / "IEMOCAP_full_release"
    for session in _sessions(root):
        wav_root = session / "sentences" / "wav"
        files = {}
        for path in audio_files(wav_root) if wav_root.is_dir() else ():
            if isinstance(path, Skipped):
                yield path
            else:
                files[path.stem] = path
        labelled = set()
        for utt, category in labels(session):
            labelled.add(utt)
            m = UTTERANCE_END.search(utt)
            path = files.get(utt)
            if path is None:
                expected = wav_root / utt.rsplit("_", 1)[0] / f"{utt}.wav"
                yield Skipped(str(expected), "labelled in EmoEvaluation but the wav file is missing", "missing")
            elif not m:
                yield Skipped(str(path), f"utterance id {utt} does not end in _F### or _M###")
            else:
                speaker = f"{NAME}/Ses{utt[3:5]}{m.group(1)}"
                yield Utterance(sample_id(NAME, root, path), str(path), category, speaker, NAME, session.name)
        for stem, path in sorted(files.items()):
            if stem not in labelled:
                yield Skipped(str(path), "no label line for it in dialog/EmoEvaluation/*.txt")
