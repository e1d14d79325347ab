"""CREMA-D: ``AudioWAV/AAAA_SSS_EMO_LVL.wav`` (actor 1001-1091, sentence, emotion, intensity). Also the synth layout.

The file name's emotion is the one the actor was asked to portray (the ``label``). The crowd's perception of each
clip, when the corpus' rating files are present, becomes the clip's ``ratings`` (voice-only answers: CREMA-D's
raters also judged the face alone and the audio-visual clip, which is not what a speech model hears):

* ``finishedResponses.csv`` (preferred: one row per answer, with the rater): columns ``localid`` (rater),
  ``queryType`` (1 = voice only, kept; 2 face, 3 audio-visual), ``clipName`` (the file stem), ``respEmo`` (A, D, F,
  H, N or S), among others. With ``finishedEmoResponses.csv`` beside it, answers whose first click came after
  10 s (``ttr`` > 10000) are left out, the filter the corpus' ``processFinishedResponses.R`` applies before
  tabulating (answers matched on ``sessionNums``, ``queryType``, ``questNum``).
* else ``processedResults/tabulatedVotes.csv`` (the corpus' tabulation; vote counts only, raters anonymous):
  the row key is 100000 x queryType + clip number, so voice-only rows have keys 100001..; columns ``A`` .. ``S``
  hold the counts, ``fileName`` the stem.
Both files sit at the corpus root (``processedResults/`` inside it), as in the CheyneyComputerScience/CREMA-D
repository. A clip without any answer gets no ratings. A generator (e.g. simulated raters for a synth corpus in
this layout) need only write ``finishedResponses.csv`` with the columns ``localid``, ``queryType`` (1),
``clipName`` (the file stem) and ``respEmo`` (A, D, F, H, N or S), one row per answer.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from .base import CorpusError, Rating, RatingsError, Skipped, Utterance, read_layout, sample_id, strip_to

NAME = "cremad"
PATTERN = re.compile(r"^(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX|X)$")
# respEmo / vote column -> file code
RESPONSE_CODES = {"A": "ANG", "D": "DIS", "F": "FEA", "H": "HAP", "N": "NEU", "S": "SAD"}
RESPONSES = "finishedResponses.csv"
FIRST_CLICKS = "finishedEmoResponses.csv"
TABULATED = "processedResults/tabulatedVotes.csv"
VOICE_ONLY = "1"
DISTRACTED_MS = 10000


def _rows(path: Path, needed: set[str]) -> Iterator[dict]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = sorted(needed - set(reader.fieldnames or ()))
        if missing:
            raise RatingsError(
                f"{path} lacks the columns {missing} (it has {reader.fieldnames}): restore the file from the CREMA-D "
                f"repository, or move it away to prepare without ratings."
            )
        yield from reader


def _stem(name: str) -> str:
    """The clip's file stem, whether the file names it with an extension (``1001_DFA_ANG_XX.flv``) or without."""
    name = name.strip()
    return name.rsplit(".", 1)[0] if "." in name else name


def _distracted(root: Path) -> set[tuple[str, str, str]]:
    path = root / FIRST_CLICKS
    if not path.is_file():
        return set()
    out = set()
    for row in _rows(path, {"sessionNums", "queryType", "questNum", "ttr"}):
        try:
            slow = float(row["ttr"]) > DISTRACTED_MS
        except ValueError:
            continue
        if slow:
            out.add((row["sessionNums"].strip(), row["queryType"].strip(), row["questNum"].strip()))
    return out


def _from_responses(root: Path) -> dict[str, list[Rating]]:
    distracted = _distracted(root)
    out: dict[str, list[Rating]] = defaultdict(list)
    for row in _rows(root / RESPONSES, {"localid", "queryType", "clipName", "respEmo"}):
        if row["queryType"].strip() != VOICE_ONLY:
            continue
        if (row.get("sessionNums", "").strip(), VOICE_ONLY, row.get("questNum", "").strip()) in distracted:
            continue
        answer = row["respEmo"].strip()
        out[_stem(row["clipName"])].append(Rating(f"{NAME}/{row['localid'].strip()}",
                                                  (RESPONSE_CODES.get(answer, answer),)))
    return out


def _from_tabulated(root: Path) -> dict[str, list[Rating]]:
    out: dict[str, list[Rating]] = {}
    path = root / TABULATED
    for row in _rows(path, {"", "fileName", *RESPONSE_CODES}):
        key = row[""].strip()
        if not key.isdigit() or int(key) // 100000 != int(VOICE_ONLY):
            continue
        try:
            counts = {code: int(float(row[letter])) for letter, code in RESPONSE_CODES.items()}
        except ValueError as err:
            raise RatingsError(f"{path} row {key}: vote counts must be numbers ({err}); restore the file.") from err
        out[_stem(row["fileName"])] = [Rating("", (code,)) for code, n in counts.items() for _ in range(n)]
    return out


def votes(root: Path) -> tuple[dict[str, list[Rating]], str | None]:
    """clip stem -> voice-only rater answers, and the file they came from (None: the corpus has no rating file)."""
    if (root / RESPONSES).is_file():
        return _from_responses(root), RESPONSES
    if (root / TABULATED).is_file():
        return _from_tabulated(root), TABULATED
    return {}, None


def read(root: str | Path) -> Iterator[Utterance | Skipped]:
    root = strip_to(root, "AudioWAV")
    if not (root / "AudioWAV").is_dir():
        raise CorpusError(f"{root} is not a CREMA-D folder: expected {root / 'AudioWAV'}/ holding "
                          "1001_DFA_ANG_XX.wav-style files.")
    ratings, _source = votes(root)

    def parse(path: Path) -> Utterance | None:
        m = PATTERN.match(path.stem)
        if not m:
            return None
        actor, _sentence, emotion, _level = m.groups()
        return Utterance(sample_id(NAME, root, path), str(path), emotion, f"{NAME}/{actor}", NAME,
                         ratings=tuple(ratings.get(path.stem, ())))

    yield from read_layout(root / "AudioWAV", parse, "AAAA_SSS_EMO_LVL (CREMA-D layout)")
