"""Oracles: who answers "what is the emotion of this sample?".

* ``SimulatedOracle`` reveals a dataset label only when the loop selects that sample.
* The human oracle is a queue in the run directory that a person answers in the Space's Annotate tab:

  ``<run>/queue.json``        ``{"round": r, "items": [{"id", "path", "guess", "probs", "uncertainty"}]}``
  ``<run>/annotations.json``  ``{"<sample id>": {"label": "<name>" | null, "skipped": bool, "time": float}}``

  Each answer is a read-modify-write of ``annotations.json`` under a file lock, replaced atomically,
  so a crash while saving leaves the previous file intact and no label is lost or duplicated.
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..io import StateError, atomic_write_json, read_json

QUEUE_FILE = "queue.json"
ANNOTATIONS_FILE = "annotations.json"


class SimulatedOracle:
    """Holds the true labels privately; ``label(ids)`` reveals only the asked-for ones."""

    def __init__(self, labels_by_id: Mapping[str, int]):
        self._labels = dict(labels_by_id)
        self.revealed: set[str] = set()

    def label(self, ids: Iterable[str]) -> dict[str, int]:
        out = {}
        for sample_id in ids:
            if sample_id not in self._labels:
                raise KeyError(f"oracle asked for unknown sample id {sample_id!r}")
            out[sample_id] = self._labels[sample_id]
            self.revealed.add(sample_id)
        return out


@contextmanager
def _locked(run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".annotations.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_queue(run_dir: str | Path, round_index: int, items: Sequence[dict]) -> None:
    atomic_write_json(Path(run_dir) / QUEUE_FILE, {"round": round_index, "items": list(items)})


def read_queue(run_dir: str | Path) -> dict:
    path = Path(run_dir) / QUEUE_FILE
    if not path.is_file():
        return {"round": None, "items": []}
    return read_json(path, "annotation queue", fix=(
        "Delete it and run the same `after-hf al ... --resume` command: the queue is rebuilt from state.json "
        "(answers already saved in annotations.json are kept)"))


def read_annotations(run_dir: str | Path) -> dict[str, dict]:
    path = Path(run_dir) / ANNOTATIONS_FILE
    if not path.is_file():
        return {}
    fix = ('Repair it by hand (an object of "<sample id>": {"label": "<name>" or null, "skipped": bool, '
           '"time": float}); the run keeps waiting for the labels in it')
    answers = read_json(path, "annotations file", fix=fix)
    if not isinstance(answers, dict) or not all(isinstance(a, dict) and "label" in a for a in answers.values()):
        raise StateError(f"annotations file {path} does not hold one {{\"label\": ...}} object per sample id. {fix}.")
    return answers


def save_annotation(
    run_dir: str | Path, sample_id: str, label: str | None, label_names: Sequence[str] | None = None
) -> dict[str, dict]:
    """Record one answer (``label=None`` = skip); returns the updated annotations."""
    run_dir = Path(run_dir)
    if label is not None and label_names is not None and label not in label_names:
        raise ValueError(f"label '{label}' is not one of {list(label_names)}")
    queued = {item["id"] for item in read_queue(run_dir)["items"]}
    if sample_id not in queued:
        raise KeyError(f"sample {sample_id!r} is not in the current queue of {run_dir}")
    with _locked(run_dir):
        annotations = read_annotations(run_dir)
        annotations[sample_id] = {"label": label, "skipped": label is None, "time": time.time()}
        atomic_write_json(run_dir / ANNOTATIONS_FILE, annotations)
    return annotations


def pending(run_dir: str | Path) -> list[dict]:
    """Queue items that have no answer yet, in queue order."""
    done = read_annotations(run_dir)
    return [item for item in read_queue(run_dir)["items"] if item["id"] not in done]


