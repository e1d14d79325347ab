"""IEMOCAP: labels from ``Session{n}/dialog/EmoEvaluation/<dialog>.txt``, audio in
``Session{n}/sentences/wav/<dialog>/``.

A turn's header line reads ``[start - end]<TAB><utterance id><TAB><category><TAB>[v, a, d]``: the category is the
evaluators' majority (``xxx``: none), [v, a, d] the averaged valence / activation / dominance (kept as ``vad``).
The lines after it, up to the next header, hold one categorical answer per evaluator and line,
``C-E2:<TAB>Frustration; Anger;<TAB>(comment)``: evaluators ``C-E1``..``C-E6``, and the actors' self-evaluations
``C-F1`` / ``C-M1`` (flagged ``self_eval``; their rater id is that actor's speaker id, e.g. ``iemocap/Ses01F``).
Every ``C-`` line becomes one Rating with all its categories (``Neutral state`` -> ``neu``, ``Frustration`` ->
``fru``, ..., ``Other`` or ``Other:text`` -> ``oth``); a word outside IEMOCAP's ten categories is kept as written
(and counts as outside the label set). ``A-`` lines (per-evaluator dimensions) are not read.
The speaker is the session + the gender letter before the utterance number (``Ses01F_impro01_M003`` ->
``iemocap/Ses01M``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, NamedTuple

from .base import CorpusError, Rating, Skipped, Utterance, audio_files, sample_id, strip_to

NAME = "iemocap"
LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses(\d\d)[FM]_\S+)\s+(\w+)\s+\[([^\]]*)\]")
RATER_LINE = re.compile(r"^C-([EFM])(\d+)\s*:\s*([^(]*)")
UTTERANCE_END = re.compile(r"_([FM])\d{3}$")
# an evaluator's category word (lower case) -> IEMOCAP's code (the codes of the header line)
CATEGORY_CODES = {
    "neutral": "neu", "neutral state": "neu", "happiness": "hap", "happy": "hap", "excited": "exc",
    "excitement": "exc", "anger": "ang", "angry": "ang", "sadness": "sad", "sad": "sad", "frustration": "fru",
    "frustrated": "fru", "surprise": "sur", "surprised": "sur", "fear": "fea", "disgust": "dis", "other": "oth",
}


class Turn(NamedTuple):
    utt: str
    category: str  # the header's majority code
    vad: tuple[float, ...]
    ratings: tuple[Rating, ...]


def _sessions(root: Path) -> list[Path]:
    sessions = sorted(p for p in root.glob("Session*") if p.is_dir() and re.fullmatch(r"Session\d+", p.name))
    if not sessions:
        given_a_session = re.fullmatch(r"Session\d+", root.name)
        hint = f" You gave a session folder: pass its parent {root.parent}." if given_a_session else ""
        raise CorpusError(
            f"{root} is not an IEMOCAP folder: expected {root / 'Session1' / 'dialog' / 'EmoEvaluation'}/ "
            f"(the IEMOCAP_full_release folder holds Session1..Session5).{hint}"
        )
    for session in sessions:
        if not (session / "dialog" / "EmoEvaluation").is_dir():
            raise CorpusError(f"IEMOCAP {session} has no dialog/EmoEvaluation/ folder: the labels live there; "
                              "restore it.")
    return sessions


def _vad(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        return ()
    return values if len(values) == 3 else ()


def _rating(m: re.Match, session_code: str) -> Rating | None:
    """One ``C-`` line -> a Rating (None when it names no category)."""
    letter, number, text = m.groups()
    emotions = []
    for word in text.split(";"):
        word = word.split(":", 1)[0].strip()  # "Other:sarcastic" -> "Other"
        if word:
            emotions.append(CATEGORY_CODES.get(word.lower(), word))
    if not emotions:
        return None
    if letter == "E":
        return Rating(f"{NAME}/E{number}", tuple(emotions))
    rater = f"{NAME}/Ses{session_code}{letter}" + ("" if number == "1" else number)  # the actor's speaker id
    return Rating(rater, tuple(emotions), self_eval=True)


def turns(txt: Path) -> Iterator[Turn]:
    """Every turn of one EmoEvaluation/<dialog>.txt: header + the C- lines that follow it."""
    current = None
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        m = LABEL_LINE.match(line)
        if m:
            if current is not None:
                yield current
            current = Turn(m.group(1), m.group(3), _vad(m.group(4)), ())
            continue
        r = RATER_LINE.match(line.strip())
        if r and current is not None:
            rating = _rating(r, current.utt[3:5])
            if rating is not None:
                current = current._replace(ratings=current.ratings + (rating,))
    if current is not None:
        yield current


def labels(session: Path) -> Iterator[Turn]:
    """Every turn from every EmoEvaluation/*.txt of one session (hidden ._ files skipped)."""
    for txt in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
        if not txt.name.startswith("."):
            yield from turns(txt)


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
        for utt, category, vad, ratings in labels(session):
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
                yield Utterance(sample_id(NAME, root, path), str(path), category, speaker, NAME, session.name,
                                ratings, vad)
        for stem, path in sorted(files.items()):
            if stem not in labelled:
                yield Skipped(str(path), "no label line for it in dialog/EmoEvaluation/*.txt")
