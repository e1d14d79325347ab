"""What every corpus reader yields: an Utterance per usable file, a Skipped (with its reason) per other file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".sph"}


class CorpusError(ValueError):
    """A corpus path that does not look like the corpus; the message says which folder was expected."""


@dataclass(frozen=True)
class Utterance:
    id: str  # <corpus>/<path relative to the corpus root, without extension>
    path: str
    emotion_raw: str  # the corpus' own code (e.g. "exc", "05", "ANG")
    speaker: str  # globally unique: prefixed with the corpus
    corpus: str
    session: str = ""  # IEMOCAP "Session1".."Session5"; empty where a corpus has no sessions


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


def strip_to(root: str | Path, inner: str | None = None) -> Path:
    """The corpus root as an absolute path; given its ``inner`` folder (e.g. CREMA-D's AudioWAV), its parent,
    so that ids are the same whichever of the two the user passes."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CorpusError(f"corpus path {root} does not exist or is not a folder: pass the folder the corpus was unpacked to.")
    return root.parent if inner and root.name == inner else root
