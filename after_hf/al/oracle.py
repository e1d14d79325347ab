"""Oracles: who answers "what is the emotion of this sample?".

* ``SimulatedOracle`` reveals a dataset label only when the loop selects that sample.
* The human oracle is a set of files in the run directory that people answer in the Space's Annotate tab:

  ``queue.json``        ``{"round": r, "closed": bool, "resume": "after-hf al ... --resume", "items": [{"id", "path",
                        "guess", "probs", "uncertainty"}]}`` written by the loop; ``closed`` once the loop has taken
                        the round's answers. An item may ask for ``"raters": n`` answers (default 1).
  ``annotations.json``  ``{"format": 2, "answers": [{"id", "label" (null = skipped), "annotator", "session",
                        "round", "time"}, ...]}``: every answer ever given, in order. Several people answering one
                        clip are all kept; ``resolve`` turns a clip's answers into its label (majority, ties to the
                        earliest answer), and the loop stores every answer in the run state.
  ``leases.json``       ``{"<id>": {"holder", "annotator", "expires"}}``: who is labelling which clip now, so two
                        browser tabs or two people are never given the same clip at once. A lease lasts a few
                        minutes (a closed tab gives its clip back then); answering or undoing renews the picture.

  Each change is a read-modify-write under a file lock (``.annotations.lock``), replaced atomically, so a crash
  while saving leaves the previous file intact and no answer is lost or duplicated. Pure Python: the Space
  bundles this module, so the page and the loop can never disagree on the format.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..io import StateError, atomic_write_json, read_json

QUEUE_FILE = "queue.json"
ANNOTATIONS_FILE = "annotations.json"
LEASES_FILE = "leases.json"
ANNOTATIONS_FORMAT = 2
LEASE_MINUTES = 5.0


class SimulatedOracle:
    """Holds the true labels (and the raters' vote distributions, where the manifest has them) privately;
    ``label(ids)`` / ``votes(ids)`` reveal only the asked-for ones."""

    def __init__(self, labels_by_id: Mapping[str, int], votes_by_id: Mapping[str, Sequence[float]] | None = None,
                 panels_by_id: Mapping[str, Sequence[Sequence[str]]] | None = None):
        self._labels = dict(labels_by_id)
        self._votes = dict(votes_by_id or {})
        self._panels = dict(panels_by_id or {})  # each clip's rater answers in order (al.raters asks them)
        self.revealed: set[str] = set()

    def panels(self, ids: Iterable[str]) -> dict:
        """Each asked-for clip's raters, in order (their answers: label lists); a rater policy reads only as many
        as it asks for."""
        out = {}
        for sample_id in ids:
            if sample_id not in self._labels:
                raise KeyError(f"oracle asked for unknown sample id {sample_id!r}")
            out[sample_id] = self._panels.get(sample_id, [])
            self.revealed.add(sample_id)
        return out

    def votes(self, ids: Iterable[str]) -> dict:
        """The vote distribution of each asked-for clip that has one (clips without votes are left out)."""
        out = {}
        for sample_id in ids:
            if sample_id not in self._labels:
                raise KeyError(f"oracle asked for unknown sample id {sample_id!r}")
            if sample_id in self._votes:
                out[sample_id] = self._votes[sample_id]
                self.revealed.add(sample_id)
        return out

    def label(self, ids: Iterable[str]) -> dict[str, int]:
        out = {}
        for sample_id in ids:
            if sample_id not in self._labels:
                raise KeyError(f"oracle asked for unknown sample id {sample_id!r}")
            out[sample_id] = self._labels[sample_id]
            self.revealed.add(sample_id)
        return out


class QueueClosed(KeyError):
    """The clip is not (or no longer) open for answers: another round's queue, or the loop took the answers."""


@contextmanager
def _locked(run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".annotations.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- the queue (written by the loop) --------------------------------------------------------------------------------

def write_queue(run_dir: str | Path, round_index: int, items: Sequence[dict], resume: str = "") -> None:
    """``resume``: the exact `after-hf al ... --resume` command that continues the run (shown by the page)."""
    atomic_write_json(Path(run_dir) / QUEUE_FILE, {"round": round_index, "closed": False, "items": list(items),
                                                   "resume": resume})


def read_queue(run_dir: str | Path) -> dict:
    path = Path(run_dir) / QUEUE_FILE
    if not path.is_file():
        return {"round": None, "closed": False, "items": []}
    queue = read_json(path, "annotation queue", fix=(
        "Delete it and run the same `after-hf al ... --resume` command: the queue is rebuilt from state.json "
        "(answers already saved in annotations.json are kept)"))
    queue.setdefault("closed", False)
    return queue


def close_queue(run_dir: str | Path) -> None:
    """The loop has recorded the round's answers: the page takes no more answers (or undos) for it."""
    with _locked(Path(run_dir)):
        queue = read_queue(run_dir)
        if queue["items"] and not queue["closed"]:
            atomic_write_json(Path(run_dir) / QUEUE_FILE, {**queue, "closed": True})


# -- answers --------------------------------------------------------------------------------------------------------

ANSWERS_FIX = ('Repair it by hand: {"format": 2, "answers": [{"id": "<sample id>", "label": "<name>" or null, '
               '"annotator": "<name>", "time": <float>}, ...]}; the run keeps waiting for the labels in it')


def read_answers(run_dir: str | Path) -> list[dict]:
    """Every answer, in the order given. A format-1 file (one ``{"label": ...}`` object per sample id) is read too."""
    path = Path(run_dir) / ANNOTATIONS_FILE
    if not path.is_file():
        return []
    data = read_json(path, "annotations file", fix=ANSWERS_FIX)
    if isinstance(data, dict) and data.get("format") == ANNOTATIONS_FORMAT and isinstance(data.get("answers"), list):
        answers = data["answers"]
    elif isinstance(data, dict) and "format" not in data and all(isinstance(a, dict) for a in data.values()):
        answers = [{"id": k, **a} for k, a in data.items()]  # format 1 (one answer per clip, no annotator)
    else:
        answers = None
    if answers is None or not all(isinstance(a, dict) and "id" in a and "label" in a for a in answers):
        raise StateError(f"annotations file {path} does not hold a list of answers, each an object with an \"id\" "
                         f"and a \"label\". {ANSWERS_FIX}.")
    return answers


def answers_by_id(run_dir: str | Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for answer in read_answers(run_dir):
        out.setdefault(answer["id"], []).append(answer)
    return out


def resolve(answers: Sequence[dict]) -> str | None:
    """One clip's label from its answers: the most frequent label (ties: the earliest answer's); None = all skipped."""
    labels = [a["label"] for a in answers if a.get("label") is not None]
    if not labels:
        return None
    counts = Counter(labels)
    top = max(counts.values())
    return next(label for label in labels if counts[label] == top)


def _write_answers(run_dir: Path, answers: list[dict]) -> None:
    atomic_write_json(run_dir / ANNOTATIONS_FILE, {"format": ANNOTATIONS_FORMAT, "answers": answers})


def _open_ids(run_dir: Path) -> tuple[dict, set[str]]:
    queue = read_queue(run_dir)
    return queue, (set() if queue["closed"] else {item["id"] for item in queue["items"]})


def save_annotation(run_dir: str | Path, sample_id: str, label: str | None, label_names: Sequence[str] | None = None,
                    annotator: str = "", session: str = "") -> list[dict]:
    """Record one answer (``label=None`` = skip) by ``annotator`` from browser ``session``; returns every answer.
    Another person's earlier answer to the same clip is kept beside it."""
    run_dir = Path(run_dir)
    if label is not None and label_names is not None and label not in label_names:
        raise ValueError(f"label '{label}' is not one of {list(label_names)}")
    with _locked(run_dir):
        queue, open_ids = _open_ids(run_dir)
        if sample_id not in open_ids:
            raise QueueClosed(f"sample {sample_id!r} is not open for answers in the current queue of {run_dir}")
        answers = read_answers(run_dir)
        answers.append({"id": sample_id, "label": label, "skipped": label is None, "annotator": annotator,
                        "session": session, "round": queue["round"], "time": time.time()})
        _write_answers(run_dir, answers)
        if session:
            _release(run_dir, session, only=sample_id)
    return answers


def undo_last(run_dir: str | Path, session: str) -> dict | None:
    """Withdraw ``session``'s most recent answer while its round is still open; the clip is leased back to it."""
    run_dir = Path(run_dir)
    with _locked(run_dir):
        _, open_ids = _open_ids(run_dir)
        answers = read_answers(run_dir)
        mine = [i for i, a in enumerate(answers) if a.get("session") == session and a["id"] in open_ids]
        if not session or not mine:
            return None
        undone = answers.pop(mine[-1])
        _write_answers(run_dir, answers)
        leases = {k: v for k, v in _read_leases(run_dir).items() if v["holder"] != session}  # back to the undone clip
        leases[undone["id"]] = {"holder": session, "annotator": undone.get("annotator", ""),
                                "expires": time.time() + 60 * LEASE_MINUTES}
        atomic_write_json(run_dir / LEASES_FILE, leases)
    return undone


def pending(run_dir: str | Path) -> list[dict]:
    """Queue items that still need an answer (``raters`` answers, default 1), in queue order."""
    given = answers_by_id(run_dir)
    return [item for item in read_queue(run_dir)["items"] if len(given.get(item["id"], [])) < item.get("raters", 1)]


# -- leases ---------------------------------------------------------------------------------------------------------

def _read_leases(run_dir: Path) -> dict[str, dict]:
    """Live leases; a missing or unreadable file means none (leases hold no labels: nothing is lost)."""
    try:
        leases = json.loads((run_dir / LEASES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    now = time.time()
    return {k: v for k, v in leases.items() if isinstance(v, dict) and v.get("expires", 0) > now} \
        if isinstance(leases, dict) else {}


def _release(run_dir: Path, holder: str, only: str | None = None) -> None:
    leases = _read_leases(run_dir)
    kept = {k: v for k, v in leases.items() if v["holder"] != holder or (only is not None and k != only)}
    if kept != leases:
        atomic_write_json(run_dir / LEASES_FILE, kept)


def release(run_dir: str | Path, holder: str) -> None:
    """Give back every clip ``holder`` (a browser session) is labelling, e.g. when its tab closes."""
    with _locked(Path(run_dir)):
        _release(Path(run_dir), holder)


def claim_next(run_dir: str | Path, holder: str, annotator: str = "", minutes: float = LEASE_MINUTES) -> dict | None:
    """The clip ``holder`` should label now, leased to it for ``minutes``: the one it already holds if still needed,
    else the first item that needs an answer, that nobody else holds, and that ``annotator`` has not answered."""
    run_dir = Path(run_dir)
    with _locked(run_dir):
        leases = _read_leases(run_dir)
        given = answers_by_id(run_dir)
        queue = read_queue(run_dir)
        todo = [] if queue["closed"] else [
            item for item in queue["items"] if len(given.get(item["id"], [])) < item.get("raters", 1)
            and not any(annotator and a.get("annotator") == annotator for a in given.get(item["id"], []))]
        held = [item for item in todo if leases.get(item["id"], {}).get("holder") == holder]
        free = [item for item in todo if item["id"] not in leases]
        item = (held or free or [None])[0]
        leases = {k: v for k, v in leases.items() if v["holder"] != holder}
        if item is not None:
            leases[item["id"]] = {"holder": holder, "annotator": annotator, "expires": time.time() + 60 * minutes}
        atomic_write_json(run_dir / LEASES_FILE, leases)
    return item


def rename_holder(run_dir: str | Path, holder: str, annotator: str) -> None:
    """The annotator typed (or changed) their name: the clips ``holder`` holds are now theirs."""
    run_dir = Path(run_dir)
    with _locked(run_dir):
        leases = _read_leases(run_dir)
        if any(v["holder"] == holder for v in leases.values()):
            atomic_write_json(run_dir / LEASES_FILE, {k: {**v, "annotator": annotator} if v["holder"] == holder else v
                                                      for k, v in leases.items()})


def leased_by_others(run_dir: str | Path, holder: str) -> int:
    """How many clips other people (or tabs) are labelling right now."""
    return sum(1 for lease in _read_leases(Path(run_dir)).values() if lease["holder"] != holder)
