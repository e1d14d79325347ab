"""The manifest: one `datasets.Dataset` row per utterance, the object every stage reads.

Columns (see MANIFEST_COLUMNS): ``id`` is the immutable sample id (``<corpus>/<path relative to the
corpus root, without extension>``) that active-learning state is keyed by; ``audio`` is an
``Audio(sampling_rate=16000)`` column holding the path (decoded lazily); ``path`` is the same path
as a plain string; ``label`` is a ``ClassLabel`` of the target label set.

Rater columns (see RATING_COLUMNS and ``after_hf.data.ratings``; written by every ``build_manifest``, not
required by ``check_manifest``, so manifests made before them still load). A writer fills only ``ratings`` (and
``vad`` where known); ``build_manifest`` derives the rest, so a generator (e.g. simulated raters) passes rows like

    {"id": ..., "label": "angry", ..., "ratings": [{"rater": "sim/r1", "labels": ["angry"]},
                                                   {"rater": "sim/r2", "labels": ["angry", "sad"]}]}

* ``ratings``: list of ``{"rater": str, "labels": [str], "raw": [str], "self_eval": bool}``, one per answer:
  ``labels`` in the label set or ``"_other"`` (ratings.OTHER: an emotion outside the label set), several when
  the rater named several; ``raw`` the corpus' own codes (default: ``labels``); ``rater`` an id or "" (default);
  ``self_eval`` a speaker rating their own turn (default false; not counted unless asked).
* derived: ``n_raters`` (int32), ``votes`` (float32 x K, K = number of labels), ``votes_other`` (float32),
  ``vote_dist`` (float32 x K), ``vote_agreement`` (float32, null without answers), ``vote_majority`` (string, ""
  on a tie or without answers), ``vote_top`` (list of strings). Definitions in ``after_hf.data.ratings``.
* ``vad``: IEMOCAP's averaged [valence, activation, dominance] (1-5 scales), [] where the corpus has none.

A clip without ratings has ``ratings`` [], ``n_raters`` 0, zero votes, a null agreement and no majority.
A generator that writes a corpus on disk rather than manifest rows (``after-hf synth``, CREMA-D layout) writes
its raters' answers as CREMA-D's ``finishedResponses.csv`` (columns ``localid``, ``queryType`` = 1, ``clipName``,
``respEmo``; see ``corpora/cremad.py``), and ``prepare`` fills these columns from it.

On disk the ``audio`` column is stored as the path string: ``save_to_disk`` would otherwise copy every
audio file into the manifest (datasets embeds local files of Audio columns), a second copy of the corpus.
``load_manifest`` casts it back to ``Audio``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from .. import SAMPLING_RATE
from ..errors import AfterHFError
from ..io import replace_dir
from .ratings import OTHER, RATING_COLUMNS, counted, tally

if TYPE_CHECKING:  # datasets is imported where it is used: `after-hf <command> --help` stays light
    from datasets import Dataset, Features

DEFAULT_LABELS = ("neutral", "happy", "angry", "sad")  # AFTER / IEMOCAP 4-class
SPLITS = ("train", "validation", "test")

MANIFEST_COLUMNS = (
    "id", "audio", "path", "label", "emotion_raw", "speaker", "corpus", "session", "duration", "split",
)


class ManifestError(AfterHFError, ValueError):
    """A manifest that later stages cannot trust; the message names the manifest and the fix."""


def manifest_features(label_names: Sequence[str]) -> Features:
    from datasets import Audio, ClassLabel, Features, Value

    return Features(
        {
            "id": Value("string"),
            "audio": Audio(sampling_rate=SAMPLING_RATE, num_channels=1),  # mono 16 kHz on decode
            "path": Value("string"),
            "label": ClassLabel(names=list(label_names)),
            "emotion_raw": Value("string"),
            "speaker": Value("string"),
            "corpus": Value("string"),
            "session": Value("string"),
            "duration": Value("float32"),
            "split": Value("string"),
            **rating_features(len(label_names)),
        }
    )


def rating_features(num_labels: int) -> dict:
    from datasets import List, Value

    return {
        "ratings": List({"rater": Value("string"), "labels": List(Value("string")), "raw": List(Value("string")),
                         "self_eval": Value("bool")}),
        "n_raters": Value("int32"),
        "votes": List(Value("float32"), length=num_labels),
        "votes_other": Value("float32"),
        "vote_dist": List(Value("float32"), length=num_labels),
        "vote_agreement": Value("float32"),
        "vote_majority": Value("string"),
        "vote_top": List(Value("string")),
        "vad": List(Value("float32")),
    }


def _ratings(row: dict, label_names: Sequence[str]) -> list[dict]:
    """A row's answers with defaults filled in; a label outside the label set (and not OTHER) is an error."""
    allowed = set(label_names) | {OTHER}
    out = []
    for r in row.get("ratings") or ():
        labels = [str(x) for x in r.get("labels") or ()]
        unknown = sorted(set(labels) - allowed)
        if unknown:
            raise ManifestError(
                f"row {row['id']}: rater answer {unknown} is not in the label set {list(label_names)}; map it to a "
                f"label, or to '{OTHER}' for an emotion outside the label set."
            )
        raw = r.get("raw")
        out.append({"rater": str(r.get("rater") or ""), "labels": labels,
                    "raw": [str(x) for x in (labels if raw is None else raw)],
                    "self_eval": bool(r.get("self_eval", False))})
    return out


def build_manifest(rows: Iterable[dict], label_names: Sequence[str] = DEFAULT_LABELS,
                   count_self_evaluations: bool = False) -> Dataset:
    """Rows (dicts with MANIFEST_COLUMNS; ``label`` as a name or an index; optional ``ratings`` / ``vad``) -> a
    sorted, checked Dataset with the vote columns derived (incoming derived columns are recomputed).

    Rows are sorted by ``id`` so the manifest does not depend on directory-listing order. Self-evaluations count in
    the votes only with ``count_self_evaluations``.
    """
    from datasets import Dataset, Features, Value

    label_names = list(label_names)
    rows = sorted(rows, key=lambda r: r["id"])
    columns: dict[str, list] = {c: [] for c in MANIFEST_COLUMNS + RATING_COLUMNS}
    for row in rows:
        missing = [c for c in MANIFEST_COLUMNS if c not in row and c != "audio"]
        if missing:
            raise ManifestError(f"row {row.get('id', row)} lacks columns {missing}")
        label = row["label"]
        if isinstance(label, str):
            if label not in label_names:
                raise ManifestError(f"row {row['id']}: label '{label}' is not in the label set {label_names}")
            label = label_names.index(label)
        for c in MANIFEST_COLUMNS:
            if c == "audio":
                columns[c].append(str(row["path"]))
            elif c == "label":
                columns[c].append(int(label))
            else:
                columns[c].append(row[c])
        ratings = _ratings(row, label_names)
        derived = tally(counted(ratings, count_self_evaluations), label_names)
        for c, value in {"ratings": ratings, **derived, "vad": [float(v) for v in row.get("vad") or ()]}.items():
            columns[c].append(value)
    features = manifest_features(label_names)
    # paths go in as strings and become Audio by an Arrow cast: Audio.encode_example would import torchcodec (~5 s)
    ds = Dataset.from_dict(columns, features=Features({**features, "audio": Value("string")}))
    ds = ds.cast_column("audio", features["audio"])
    check_manifest(ds, where="new manifest", check_files=False)
    return ds


def check_manifest(ds: Dataset, where: str, check_files: bool = True) -> None:
    """Fail fast on a manifest a later stage would misuse: missing columns, duplicate ids, unknown splits, missing
    files."""
    from datasets import ClassLabel

    missing = [c for c in MANIFEST_COLUMNS if c not in ds.column_names]
    if missing:
        raise ManifestError(
            f"{where}: missing columns {missing}. Re-create it with `after-hf prepare` (or add the columns; "
            f"required: {', '.join(MANIFEST_COLUMNS)})."
        )
    if not isinstance(ds.features["label"], ClassLabel):
        raise ManifestError(f"{where}: column 'label' must be a ClassLabel; re-create it with `after-hf prepare`.")
    partial = [c for c in RATING_COLUMNS if c not in ds.column_names]
    if len(partial) not in (0, len(RATING_COLUMNS)):
        raise ManifestError(f"{where}: has some rater columns but lacks {partial}; re-create it with "
                            "`after-hf prepare`.")
    ids = ds["id"]
    if len(set(ids)) != len(ids):
        seen, dups = set(), []
        for i in ids:
            if i in seen:
                dups.append(i)
            seen.add(i)
        raise ManifestError(f"{where}: duplicated sample ids {sorted(set(dups))[:5]}; ids must be unique (re-run "
                            "prepare).")
    bad_splits = sorted(set(ds["split"]) - set(SPLITS))
    if bad_splits:
        raise ManifestError(f"{where}: unknown split names {bad_splits}; use {SPLITS}.")
    if check_files:
        absent = [p for p in ds["path"] if not os.path.isfile(p)]
        if absent:
            raise ManifestError(
                f"{where}: {len(absent)} audio files are missing, e.g. {absent[0]}. The corpus moved or was "
                f"deleted: restore it or re-run `after-hf prepare` on its new location."
            )


def save_manifest(ds: Dataset, out_dir: str | Path) -> Path:
    """Save with ``save_to_disk`` into a temporary directory, then move it into place (atomic for readers)."""
    from datasets import Audio, Value

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if isinstance(ds.features.get("audio"), Audio):  # paths, not embedded audio bytes (see the module docstring)
        order = ds.column_names
        ds = ds.remove_columns("audio").add_column("audio", list(ds["path"]), feature=Value("string"))
        ds = ds.select_columns(order)
    ds.save_to_disk(str(tmp))
    replace_dir(tmp, out_dir)
    return out_dir


def load_manifest(path: str | Path, split: str | None = None, check_files: bool = True) -> Dataset:
    """Load a saved manifest (optionally one split), checked; errors name the directory and the fix."""
    from datasets import Audio, load_from_disk

    path = Path(path)
    if not (path / "dataset_info.json").is_file() and not (path / "state.json").is_file():
        raise ManifestError(
            f"{path} is not a manifest directory (no dataset_info.json). Create one with "
            f"`after-hf prepare --corpus NAME=PATH --out {path}`."
        )
    ds = load_from_disk(str(path))
    if "audio" in ds.column_names and not isinstance(ds.features["audio"], Audio):
        ds = ds.cast_column("audio", Audio(sampling_rate=SAMPLING_RATE, num_channels=1))
    check_manifest(ds, where=f"manifest {path}", check_files=check_files)
    if split is not None:
        if split not in SPLITS:
            raise ManifestError(f"unknown split '{split}'; choose one of {SPLITS}.")
        ds = ds.select([i for i, s in enumerate(ds["split"]) if s == split])  # no progress bar, no cache file
        if len(ds) == 0:
            raise ManifestError(f"manifest {path} has no '{split}' rows; check the split options used by prepare.")
    return ds


def label_names(ds: Dataset) -> list[str]:
    return list(ds.features["label"].names)
