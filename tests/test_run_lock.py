"""One process per run directory, tested with real processes.

A second `after-hf al` on a run another process holds is refused with one line naming the holder's PID, whether the
first one has not written state.json yet (frozen with SIGSTOP right after taking the lock; the second comes without
--resume) or is waiting for a person's answers (the second comes with --resume). A lock left by a killed process is
taken over and the run continues.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from after_hf.al.state import LOCK_FILE, RunLock, RunLocked, check_state
from tones import make_tone_manifest

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
OPTIONS = ["--backbone", "tiny", "--strategy", "random", "--cold_start", "random", "--seed_size", "4",
           "--step_size", "4", "--budget", "8", "--head_epochs", "3"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock")
    return root, make_tone_manifest(root / "tones", {"train": 8, "validation": 2, "test": 2})


def al_command(work, run, *extra):
    root, manifest = work
    return [sys.executable, "-m", "after_hf.cli", "al", "--manifest", str(manifest), "--out", str(run),
            "--cache_dir", str(root / "cache"), *OPTIONS, *extra]


def refused(command, holder_pid):
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr[-3000:])
    assert f"PID {holder_pid}" in lines[0] and "in use by another after-hf process" in lines[0]
    assert lines[0].startswith("after-hf al: ") and "Traceback" not in proc.stderr
    return lines[0]


def wait_until(condition, what, timeout=240):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def stopped(pid):
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_run_locked_before_state_json_exists_is_refused_then_taken_over_from_the_dead_holder(work):
    run = work[0] / "fresh"
    first = subprocess.Popen(al_command(work, run), env={**ENV, "AFTER_HF_CRASH_AT": "locked:run",
                                                           "AFTER_HF_CRASH_SIGNAL": "SIGSTOP"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: stopped(first.pid), "the first process to freeze holding the lock")
        assert not (run / "state.json").exists() and not (run / "config.json").exists()  # nothing written yet
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == first.pid
        refused(al_command(work, run), first.pid)  # (with --resume: the next test)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # the refused processes wrote nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    # the holder is dead; its lock file still names it: the next run takes over and completes
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == first.pid
    proc = subprocess.run(al_command(work, run), env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"left locked by process {first.pid}, which is no longer running" in proc.stdout
    state = json.loads((run / "state.json").read_text())
    check_state(state, run / "state.json")
    assert [r["phase"] for r in state["rounds"]] == ["trained", "trained"]
    assert (run / LOCK_FILE).read_text() == ""  # released cleanly: the next run has nothing to take over


def test_a_run_waiting_for_answers_is_refused(work):
    run = work[0] / "human"
    first = subprocess.Popen(al_command(work, run, "--oracle", "human", "--wait_minutes", "10"), env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: (run / "queue.json").exists() or first.poll() is not None, "the queue of round 0")
        assert first.poll() is None, first.stderr.read().decode()[-3000:]
        state_before = (run / "state.json").read_bytes()
        line = refused(al_command(work, run, "--oracle", "human", "--resume"), first.pid)  # (without: the test above)
        assert "kill" in line and "another --out" in line
        assert (run / "state.json").read_bytes() == state_before
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
    proc = subprocess.run(al_command(work, run, "--oracle", "human", "--resume"), env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "wait for a label" in proc.stdout, proc.stderr[-3000:]


def test_the_lock_in_process(tmp_path):
    """The lock itself: exclusive across open file descriptions, released on exit, re-entrant after release."""
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunLocked, match=f"PID {os.getpid()}"):
            with RunLock(tmp_path / "run"):
                pass
    with RunLock(tmp_path / "run") as lock:
        assert lock.previous == {}
