"""What every corpus reader yields: an Utterance per usable file, a Skipped (with its reason) per other file.

An Utterance may carry its raters' answers (``ratings``, one Rating per answer, in the corpus' own emotion codes)
and dimensional averages (``vad``); ``prepare`` maps the codes to the label set and the manifest derives the vote
columns from them (see ``after_hf.data.ratings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ...errors import AfterHFError

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".sph"}


class CorpusError(AfterHFError, ValueError):
    """A corpus path that does not look like the corpus; the message says which folder was expected."""


class RatingsError(CorpusError):
    """A ratings file or column that cannot be read as rater answers; the message names the file and the fix."""


@dataclass(frozen=True)
class Rating:
    """One rater's answer about one clip.

    ``emotions`` are in the corpus' own codes (IEMOCAP ``fru``, CREMA-D ``ANG``, free text for folder/hub), several
    when the rater named several categories in one answer; ``self_eval`` marks a speaker rating their own turn
    (IEMOCAP's C-F1 / C-M1 lines). ``rater`` is a corpus-prefixed id, or "" when the corpus gives none.
    """

    rater: str
    emotions: tuple[str, ...]
    self_eval: bool = False


@dataclass(frozen=True)
class Utterance:
    id: str  # <corpus>/<path relative to the corpus root, without extension>
    path: str
    emotion_raw: str  # the corpus' own code (e.g. "exc", "05", "ANG")
    speaker: str  # globally unique: prefixed with the corpus
    corpus: str
    session: str = ""  # IEMOCAP "Session1".."Session5"; empty where a corpus has no sessions
    ratings: tuple[Rating, ...] = ()  # every rater answer the corpus ships for this clip (none: the corpus has none)
    vad: tuple[float, ...] = ()  # IEMOCAP's averaged [valence, activation, dominance] (1-5); empty elsewhere


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    kind: str = "unparsed"  # "unparsed": does not fit the layout; "excluded": left out by design (e.g. song);
    # "missing": a label entry whose audio file is absent (reported as bad, but not a file seen)


def sample_id(corpus: str, root: Path, path: Path) -> str:
    return f"{corpus}/{path.relative_to(root).with_suffix('').as_posix()}"


def audio_files(root: Path) -> Iterator[Path | Skipped]:
    """Audio files under ``root`` in sorted order; hidden files (e.g. macOS ``._x.wav``) come back as Skipped."""
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            yield Skipped(str(path), "hidden file (e.g. a macOS ._ resource fork)", "excluded")
        else:
            yield path


def read_layout(files: Path, parse: Callable[[Path], "Utterance | Skipped | None"], layout: str,
                not_the_corpus: str | None = None) -> Iterator[Utterance | Skipped]:
    """The loop every file-name reader shares: each audio file under ``files`` (hidden ones skipped) goes through
    ``parse``, which returns its Utterance, a Skipped with its own reason, or None for a name outside the corpus
    ``layout`` (skipped as "name is not <layout>"). ``not_the_corpus``: the CorpusError when no file fits at all."""
    found = False
    for path in audio_files(files):
        item = path if isinstance(path, Skipped) else parse(path)
        if item is None:
            item = Skipped(str(path), f"name is not {layout}")
        found = found or isinstance(item, Utterance)
        yield item
    if not_the_corpus and not found:
        raise CorpusError(not_the_corpus)


def strip_to(root: str | Path, inner: str | None = None) -> Path:
    """The corpus root as an absolute path; given its ``inner`` folder (e.g. CREMA-D's AudioWAV), its parent,
    so that ids are the same whichever of the two the user passes."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CorpusError(f"corpus path {root} does not exist or is not a folder: pass the folder the corpus was "
                          "unpacked to.")
    return root.parent if inner and root.name == inner else root


def parse_ratings_text(text: str, where: str, prefix: str = "") -> tuple[Rating, ...]:
    """Rater answers written as text (metadata.csv ``ratings`` column, a string Hub ratings column).

    ``angry;angry;neutral``: three answers, one per rater, separated by ``;``. ``r1=angry;r2=sad+neutral``: with
    rater ids (``id=``), and a rater naming two categories (``+``). Labels are free text, mapped like the label
    column. Empty text = no ratings. Rater ids get ``prefix/``; ``where`` names the file/row in errors.
    """
    out, seen = [], set()
    for item in str(text).split(";"):
        item = item.strip()
        if not item:
            continue
        rater, _, answer = item.rpartition("=")
        rater = rater.strip()
        emotions = tuple(e.strip() for e in answer.split("+") if e.strip())
        if not emotions:
            raise RatingsError(f"{where}: rater answer '{item}' names no emotion; write e.g. 'angry;angry;neutral' "
                               "or 'r1=angry;r2=sad+neutral'.")
        if rater:
            if rater in seen:
                raise RatingsError(f"{where}: rater '{rater}' answers twice; give one answer per rater (several "
                                   "emotions joined with '+').")
            seen.add(rater)
        out.append(Rating(f"{prefix}/{rater}" if rater and prefix else rater, emotions))
    return tuple(out)
