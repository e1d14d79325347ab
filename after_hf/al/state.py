"""The run's state on disk: every round's selection (ids + scores), the labels received, metrics, timings.

Keyed by immutable sample ids, never by positions in a shrinking pool. ``state.json`` is replaced
atomically after every phase, and the previous version is kept as ``state.prev.json``, so a crash at
any point leaves a readable state; a corrupted file is reported with the fix, never silently reset.

Round phases: ``selected`` (ids chosen, not yet labelled) -> ``labelled`` -> ``trained`` (metrics in).

One process per run directory: ``RunLock`` (an ``flock`` on ``<run>/.lock``, which names its holder's PID) is taken
before anything of the run is written. The kernel releases it when its process ends, however it ends, so a lock
left by a killed process is simply taken over.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..io import StateError, atomic_write_json, crash_point, read_json

STATE_FILE, PREVIOUS_FILE, CONFIG_FILE, LOCK_FILE = "state.json", "state.prev.json", "config.json", ".lock"
FORMAT = 1
# Options that may change between a run and its resume without changing what the run computes.
RESUMABLE_OPTIONS = {"resume", "out", "wait_minutes", "oracle", "budget", "cache_dir", "workdir"}
PHASES = ("selected", "labelled", "trained")


class RunLocked(StateError):
    """Another live process holds the run directory."""


class RunLock:
    """``with RunLock(run_dir):`` -- this process alone writes the run; a second one is refused naming the holder."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.path = self.dir / LOCK_FILE
        self.fd: int | None = None
        self.previous: dict = {}  # what a dead holder left in the lock file (a lock taken over)

    def _holder(self, wait: bool = False) -> dict:
        """What the lock file says about its holder; ``wait``: the holder writes it right after locking."""
        for _ in range(20 if wait else 1):
            try:
                holder = json.loads(self.path.read_text() or "{}")
                if isinstance(holder, dict) and (holder.get("pid") or not wait):
                    return holder
            except (OSError, json.JSONDecodeError):
                pass
            time.sleep(0.05)
        return {}

    def __enter__(self) -> "RunLock":
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self._holder(wait=True)
            pid, host = holder.get("pid", "unknown"), holder.get("host")
            where = f" on {host}" if host and host != socket.gethostname() else ""
            raise RunLocked(f"{self.dir} is in use by another after-hf process (PID {pid}{where}, started "
                            f"{holder.get('started', '?')}): wait for it to finish or stop it (kill {pid}), then run "
                            f"the command again; or choose another --out.") from None
        self.fd, self.previous = fd, self._holder()
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv,
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        crash_point("locked", "run")
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # released cleanly: a lock file that still names a PID was left by a killed one
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def check_state(data: Any, path: Path) -> None:
    """Refuse a state file that parses but is not a consistent after-hf state (edited, wrong file, other version)."""
    fix = (f"Restore {path.with_name(PREVIOUS_FILE)} (the state one phase earlier) over it and run again with "
           f"--resume, or start a new run in another --out; nothing was reset.")

    def bad(what: str) -> StateError:
        return StateError(f"{path} is not a valid after-hf state file (format {FORMAT}): {what}. {fix}")

    if not isinstance(data, dict):
        raise bad(f"it holds a {type(data).__name__}, not an object")
    missing = [k for k in ("format", "config_fingerprint", "rounds", "stopped") if k not in data]
    if missing:
        raise bad(f"keys {missing} are missing")
    if data["format"] != FORMAT:
        raise bad(f"format is {data['format']!r}")
    if not isinstance(data["rounds"], list):
        raise bad("'rounds' is not a list")
    seen: set[str] = set()
    for position, rec in enumerate(data["rounds"]):
        if not isinstance(rec, dict) or rec.get("round") != position:
            raise bad(f"round entry {position} is not round {position}")
        if rec.get("phase") not in PHASES:
            raise bad(f"round {position} has phase {rec.get('phase')!r}, not one of {PHASES}")
        try:
            ids = [item["id"] for item in rec["selected"]]
            labelled, skipped = set(rec["labels"]), set(rec["skipped"])
            values_ok = all(isinstance(v, int) and not isinstance(v, bool) for v in rec["labels"].values())
        except (KeyError, TypeError, AttributeError):
            raise bad(f"round {position} lacks a list of selected ids, a labels mapping or a skipped list") from None
        if not values_ok:
            raise bad(f"round {position} has labels that are not class indices")
        if len(set(ids)) != len(ids) or seen & set(ids):
            raise bad(f"round {position} selects an id twice or one already selected in an earlier round")
        if not (labelled | skipped) <= set(ids) or labelled & skipped:
            raise bad(f"round {position} has labels for ids it did not select, or ids both labelled and skipped")
        if rec["phase"] != "selected" and labelled | skipped != set(ids):
            raise bad(f"round {position} is '{rec['phase']}' but not every selected id was answered")
        seen |= set(ids)


def run_path(config: dict[str, Any], key: str) -> str:
    """A relative path of a run config read against the directory the run was started from (``workdir``, written
    by `after-hf al`), unless it exists from here; Hub ids and named configs are returned as they are."""
    value = str(config[key])
    if Path(value).is_absolute() or Path(value).exists() or not config.get("workdir"):
        return value
    candidate = Path(config["workdir"]) / value
    return str(candidate) if candidate.exists() or key == "cache_dir" else value


def config_fingerprint(config: dict[str, Any]) -> str:
    fixed = {k: v for k, v in sorted(config.items()) if k not in RESUMABLE_OPTIONS}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunState:
    def __init__(self, run_dir: Path, data: dict[str, Any]):
        self.dir, self.data = run_dir, data

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, run_dir: str | Path, config: dict[str, Any], resume: bool,
             defaults: dict[str, Any] | None = None) -> "RunState":
        """Start a run, or resume one made with the same options. ``defaults``: options added to after-hf after
        the run started are accepted at their default value (a run from an older version still resumes)."""
        run_dir = Path(run_dir)
        state_path = run_dir / STATE_FILE
        if state_path.exists():
            if not resume:
                raise StateError(
                    f"{run_dir} already holds an active-learning run. Pass --resume to continue it, "
                    f"or choose another --out."
                )
            data = read_json(state_path, "active-learning state", fix=(
                f"Copy {run_dir / PREVIOUS_FILE} (the state one phase earlier) over it and run again with --resume, "
                f"or start a new run in another --out"))
            check_state(data, state_path)
            if data["config_fingerprint"] != config_fingerprint(config):
                saved = read_json(run_dir / CONFIG_FILE, "run config") if (run_dir / CONFIG_FILE).is_file() else {}
                defaults = defaults or {}
                changed = sorted(k for k in set(saved) | set(config)
                                 if k not in RESUMABLE_OPTIONS and saved.get(k) != config.get(k)
                                 and not (k not in saved and k in defaults and config.get(k) == defaults[k]))
                if saved and not changed:
                    return cls(run_dir, data)
                raise StateError(f"--resume with a different configuration than {run_dir} was started with "
                                 f"(changed: {changed}). Use the original options, or another --out.")
            return cls(run_dir, data)
        cls.check_resume(run_dir, resume)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / CONFIG_FILE, config)
        state = cls(run_dir, {"format": FORMAT, "config_fingerprint": config_fingerprint(config),
                              "rounds": [], "stopped": None})
        state.save()
        return state

    @staticmethod
    def started(run_dir: str | Path) -> bool:
        """Whether ``run_dir`` holds a run that ``--resume`` can continue."""
        return (Path(run_dir) / STATE_FILE).is_file()

    @classmethod
    def check_resume(cls, run_dir: str | Path, resume: bool) -> None:
        """``--resume`` of a directory that holds no run is refused (a mistyped --out would silently start over)."""
        if resume and not cls.started(run_dir):
            raise StateError(f"--resume: {run_dir} holds no active-learning run to continue ({STATE_FILE} missing); "
                             f"run without --resume to start one, or check --out.")

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunState":
        """Open a finished or running run read-only (no config check): for reports and later stages."""
        state_path = Path(run_dir) / STATE_FILE
        if not state_path.is_file():
            raise StateError(f"{run_dir} holds no active-learning run ({STATE_FILE} missing): run `after-hf al --out "
                             f"{run_dir}` first.")
        data = read_json(state_path, "active-learning state")
        check_state(data, state_path)
        return cls(Path(run_dir), data)

    def save(self) -> None:
        path = self.dir / STATE_FILE
        if path.exists():
            shutil.copyfile(path, self.dir / f".{PREVIOUS_FILE}.tmp")
            (self.dir / f".{PREVIOUS_FILE}.tmp").replace(self.dir / PREVIOUS_FILE)
        atomic_write_json(path, self.data)

    # -- queries -------------------------------------------------------------------------------
    @property
    def rounds(self) -> list[dict[str, Any]]:
        return self.data["rounds"]

    def round(self, index: int) -> dict[str, Any] | None:
        return self.rounds[index] if index < len(self.rounds) else None

    def labels(self, up_to_round: int | None = None) -> dict[str, int]:
        """Every label received so far (or up to and including ``up_to_round``), by sample id."""
        out: dict[str, int] = {}
        for rec in self.rounds[: None if up_to_round is None else up_to_round + 1]:
            out.update(rec.get("labels", {}))
        return out

    def asked(self) -> set[str]:
        """Every id ever sent to the oracle (labelled, skipped or pending): never asked again."""
        return {item["id"] for rec in self.rounds for item in rec["selected"]}

    # -- transitions (each one saved at once) ----------------------------------------------------
    def record_selection(self, index: int, target_size: int, selected: list[dict], strategy: str,
                         seconds: dict) -> dict:
        if index != len(self.rounds):
            raise StateError(f"round {index} selected out of order (state has {len(self.rounds)} rounds)")
        ids = [s["id"] for s in selected]
        if len(set(ids)) != len(ids) or set(ids) & self.asked():
            raise StateError(f"round {index}: selection repeats an id already asked for; this is a bug, please "
                             "report it")
        rec = {"round": index, "target_size": target_size, "strategy": strategy, "selected": selected,
               "labels": {}, "skipped": [], "phase": "selected", "metrics": None, "seconds": dict(seconds)}
        self.rounds.append(rec)
        self.save()
        return rec

    def record_labels(self, index: int, labels: dict[str, int], skipped: list[str], seconds: float,
                      answers: dict[str, list[dict]] | None = None, reached_only: bool = False) -> None:
        """``answers``: every answer per id (a human round: label name or None, annotator, time; a rater policy:
        each rater's labels). ``reached_only``: the round's answer budget ran out before the end of its ranked
        selection; the ids it did not reach leave the selection (in the same write) and stay in the pool."""
        rec = self.rounds[index]
        asked = {s["id"] for s in rec["selected"]}
        unknown = (set(labels) | set(skipped)) - asked
        if unknown:
            raise StateError(f"round {index}: labels for ids that were not asked for: {sorted(unknown)[:5]}")
        if reached_only:
            rec["selected"] = [s for s in rec["selected"] if s["id"] in labels or s["id"] in skipped]
        rec["labels"], rec["skipped"], rec["phase"] = {k: int(v) for k, v in labels.items()}, list(skipped), "labelled"
        if answers is not None:
            rec["answers"] = answers
        rec["seconds"]["annotate"] = seconds
        self.save()

    def record_training(self, index: int, metrics: dict, seconds: dict) -> None:
        rec = self.rounds[index]
        rec["metrics"], rec["phase"] = metrics, "trained"
        rec["seconds"].update(seconds)
        self.save()

    def stop(self, reason: str) -> None:
        self.data["stopped"] = reason
        self.save()
