"""Small on-disk helpers shared by every stage: atomic writes and JSON state."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from .errors import AfterHFError

CRASH_ENV = "AFTER_HF_CRASH_AT"
_crash_counts: Counter = Counter()


def crash_point(phase: str, key: Any) -> None:
    """Test-only fault injection: SIGKILL this process at a named point; a no-op unless ``AFTER_HF_CRASH_AT`` is set.

    ``AFTER_HF_CRASH_AT=PHASE:KEY`` kills at the first ``crash_point(PHASE, KEY)``, ``PHASE:KEY#N`` at the N-th.
    Points: ``locked:run`` (the run-dir lock taken, nothing written yet), ``train:R`` (round R's model fitted, nothing
    of it saved), ``saved:R`` (model saved, state not yet updated), ``scored:R`` (pool scored, nothing selected),
    ``selected:R`` (selection saved, no labels yet) in ``after_hf.al.loop``; ``write:FILENAME`` (new content written
    to the temporary file, not yet moved into place) in ``atomic_write_text``. ``AFTER_HF_CRASH_SIGNAL=SIGSTOP``
    freezes the process there instead (it keeps what it holds, e.g. the run-dir lock). tests/test_reliability.py and
    tests/test_run_lock.py use them to kill or freeze runs at exact points.
    """
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point = f"{phase}:{key}"
    target, _, nth = spec.partition("#")
    if target != point:
        return
    _crash_counts[point] += 1
    if _crash_counts[point] >= int(nth or 1):
        os.kill(os.getpid(), getattr(signal, os.environ.get("AFTER_HF_CRASH_SIGNAL", "SIGKILL")))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        crash_point("write", path.name)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


class StateError(AfterHFError, RuntimeError):
    """A state file that exists but cannot be trusted (half-written, edited, corrupted)."""


def read_json(path: str | Path, what: str = "state file", fix: str | None = None) -> Any:
    """Read JSON, turning a corrupt file into an error that names it and the fix (never a silent reset)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        fix = fix or ("Restore it from the previous round's copy in the same directory, or delete the run "
                      "directory to start over")
        raise StateError(f"{what} {path} is corrupted ({err}). {fix}; it was not reset automatically.") from err


def replace_dir(tmp_dir: str | Path, final_dir: str | Path) -> None:
    """Move a fully written ``tmp_dir`` into place as ``final_dir`` (replacing any older one)."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    old = final_dir.with_name(f".{final_dir.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old)


class OutputDirError(AfterHFError, FileExistsError):
    """An output path that cannot be used: a file where a directory belongs, or another run's directory."""


def check_output_dir(path: str | Path, option: str) -> Path:
    """``path`` as a Path, refused (naming ``option``) when it is an existing file: outputs are directories."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"{option} {path} is a file, but it names a directory to write into (created if "
                             f"missing): pass a directory path, e.g. {path.with_suffix('')}_out.")
    return path
