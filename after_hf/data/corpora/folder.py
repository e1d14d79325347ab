"""A folder of audio with the label in the folder name (``<root>/<label>/x.wav``) or in ``<root>/metadata.csv``
(columns ``file_name`` relative to the root, ``label`` or ``emotion``, optional ``speaker``, ``session`` and
``ratings``), the way ``datasets``' audiofolder reads it. Without a speaker column every file counts as its own
speaker (prepare then warns that the split is per utterance, not speaker-independent).

The optional ``ratings`` column holds the raters' answers about the clip, one per rater, separated by ``;``:
``angry;angry;neutral`` (anonymous raters), ``r1=angry;r2=angry;r3=sad+neutral`` (rater ids, and a rater who named
two emotions). Emotions are written like the label column; an empty cell means the clip has no ratings."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from .base import CorpusError, Skipped, Utterance, audio_files, parse_ratings_text, sample_id, strip_to

NAME = "folder"


def _metadata(root: Path, corpus: str = NAME) -> dict[str, dict]:
    path = root / "metadata.csv"
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        label_column = "label" if "label" in columns else "emotion" if "emotion" in columns else None
        if "file_name" not in columns or label_column is None:
            raise CorpusError(f"{path} needs the columns file_name and label (or emotion); it has {sorted(columns)}.")
        rows = {}
        for line, row in enumerate(reader, start=2):
            rows[Path(row["file_name"]).as_posix()] = {
                "label": row[label_column].strip(),
                "speaker": (row.get("speaker") or "").strip(),
                "session": (row.get("session") or "").strip(),
                "ratings": parse_ratings_text(row.get("ratings") or "", f"{path} line {line} (ratings)", corpus),
            }
        return rows


def read(root: str | Path, corpus: str = NAME) -> Iterator[Utterance | Skipped]:
    root = strip_to(root)
    meta = _metadata(root, corpus) if (root / "metadata.csv").is_file() else None
    found = False
    seen = set()
    for path in audio_files(root):
        if isinstance(path, Skipped):
            yield path
            continue
        rel = path.relative_to(root).as_posix()
        uid = sample_id(corpus, root, path)
        if meta is not None:
            row = meta.get(rel)
            if row is None:
                yield Skipped(str(path), "not listed in metadata.csv")
                continue
            seen.add(rel)
            label, speaker, session, ratings = row["label"], row["speaker"], row["session"], row["ratings"]
        else:
            if path.parent == root:
                yield Skipped(str(path), "directly in the corpus root: put it in a <label>/ folder or list it in "
                                         "metadata.csv")
                continue
            label, speaker, session, ratings = path.parent.name, "", "", ()
        if not label:
            yield Skipped(str(path), "empty label in metadata.csv")
            continue
        found = True
        yield Utterance(uid, str(path), label, f"{corpus}/{speaker or uid.split('/', 1)[1]}", corpus, session, ratings)
    for rel in sorted(set(meta or ()) - seen):
        yield Skipped(str(root / rel), "listed in metadata.csv but the file is missing", "missing")
    if not found:
        raise CorpusError(f"{root} holds no labelled audio: expected <label>/x.wav folders or a metadata.csv "
                          "(file_name,label[,speaker]).")
