"""Crashes and corrupted state in the active-learning loop.

`after-hf al` is killed with a real SIGKILL in a subprocess at exact points (the test-only
``AFTER_HF_CRASH_AT`` kill points of ``after_hf.io.crash_point``): during a round's training, between
scoring the pool and selecting, in the middle of writing ``state.json``, and while the annotation writer
saves a label. After ``--resume`` the run must have asked for exactly the ids of an uninterrupted run,
round by round, with no label lost or duplicated and valid state files. A corrupted or edited state file
is reported with its fix and never reset, and the fix the message gives works.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from after_hf.al import oracle
from after_hf.al.loop import main as al_main
from after_hf.al.state import check_state
from after_hf.data.manifest import load_manifest
from after_hf.io import StateError
from tones import TONE_LABELS, make_tone_manifest

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# 40-utterance pool, rounds of 6, 10, 14, 18 labels; tiny frozen backbone, head-only learner (seconds a run)
AL_OPTIONS = ["--backbone", "tiny", "--mode", "head_only", "--strategy", "entropy", "--cold_start", "kmeans",
              "--seed_size", "6", "--step_size", "4", "--budget", "18", "--head_epochs", "10", "--seed", "0"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The in-process runs compute like the OMP_NUM_THREADS=1 subprocesses (and fast on shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    manifest = make_tone_manifest(root / "tones", {"train": 20, "validation": 4, "test": 4})
    return {"root": root, "manifest": manifest, "cache": root / "cache"}


def argv(work, out, *extra):
    return ["--manifest", str(work["manifest"]), "--out", str(out), "--cache_dir", str(work["cache"]), *AL_OPTIONS,
            *extra]


def killed(args: list, crash_at: str):
    """Run ``args`` (a python -m / -c command line) in a subprocess that SIGKILLs itself at ``crash_at``."""
    env = {**os.environ, **ONE_THREAD, "HF_HUB_OFFLINE": "1", "AFTER_HF_CRASH_AT": crash_at}
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == -signal.SIGKILL, \
        f"not killed at {crash_at} (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc


def read_state(run):
    data = json.loads((run / "state.json").read_text())
    check_state(data, run / "state.json")  # parses *and* is a consistent state
    if (run / "state.prev.json").exists():
        check_state(json.loads((run / "state.prev.json").read_text()), run / "state.prev.json")
    return data


def rounds_of(data):
    return [[s["id"] for s in r["selected"]] for r in data["rounds"]]


@pytest.fixture(scope="module")
def reference(work):
    """An uninterrupted run (in-process, through the CLI entry point)."""
    run = work["root"] / "reference"
    assert al_main(argv(work, run)) == 0
    data = read_state(run)
    assert [len(r) for r in rounds_of(data)] == [6, 4, 4, 4]
    return run, data


def assert_same_run(run, reference_data, work):
    data = read_state(run)
    assert rounds_of(data) == rounds_of(reference_data)  # the same ids, in the same order, every round
    assert [r["labels"] for r in data["rounds"]] == [r["labels"] for r in reference_data["rounds"]]
    assert all(r["phase"] == "trained" for r in data["rounds"])
    ids = [i for r in data["rounds"] for i in r["labels"]]
    assert len(ids) == len(set(ids)) == 18  # no label lost or duplicated
    train = load_manifest(work["manifest"], "train")
    truth = dict(zip(train["id"], train["label"]))
    assert all(truth[i] == label for r in data["rounds"] for i, label in r["labels"].items())
    np.testing.assert_allclose([r["metrics"]["test"]["ua"] for r in data["rounds"]],
                               [r["metrics"]["test"]["ua"] for r in reference_data["rounds"]], atol=1e-12)
    assert json.loads((run / "summary.json").read_text())["rounds"][-1]["num_labelled"] == 18


CRASHES = {
    # kill point -> (rounds in state.json after the kill, phase of the last one)
    "train:1": (2, "labelled"),  # round 1 labelled, its model fitted but not saved
    "scored:2": (2, "trained"),  # pool scored with round 1's model, round 2 not selected yet
    "write:state.json#5": (1, "trained"),  # the 5th save (round 1's selection) is in its temporary file only
}


@pytest.mark.parametrize("crash_at", list(CRASHES))
def test_sigkill_then_resume_equals_an_uninterrupted_run(work, reference, crash_at):
    ref_run, ref_data = reference
    run = work["root"] / f"killed_{crash_at.replace(':', '_').replace('#', '_')}"
    killed(["-m", "after_hf.cli", "al", *argv(work, run)], crash_at)
    data = read_state(run)  # what the kill left is a valid state
    n_rounds, phase = CRASHES[crash_at]
    assert len(data["rounds"]) == n_rounds and data["rounds"][-1]["phase"] == phase
    assert rounds_of(data) == rounds_of(ref_data)[:n_rounds]
    assert not (run / "summary.json").exists()
    if crash_at == "train:1":
        assert not (run / "models" / "round_1").exists()
    if crash_at.startswith("write:"):
        leftovers = list(run.glob(".state.json.*.tmp"))
        # written, never moved in
        assert len(leftovers) == 1 and len(json.loads(leftovers[0].read_text())["rounds"]) == 2
    with pytest.raises(StateError, match="--resume"):  # a plain re-run refuses to overwrite the run
        al_main(argv(work, run))
    assert al_main(argv(work, run, "--resume")) == 0
    assert_same_run(run, ref_data, work)
    assert al_main(argv(work, run, "--resume")) == 0  # resuming a finished run changes nothing
    assert rounds_of(read_state(run)) == rounds_of(ref_data)


def test_sigkill_while_saving_an_annotation_loses_nothing(work):
    run = work["root"] / "human"
    options = argv(work, run, "--oracle", "human", "--budget", "6")
    assert al_main(options) == 0  # queues the 6 seed samples and exits: nobody answered yet
    items = oracle.read_queue(run)["items"]
    train = load_manifest(work["manifest"], "train")
    truth = {i: TONE_LABELS[label] for i, label in zip(train["id"], train["label"])}
    answers = {it["id"]: truth[it["id"]] for it in items}
    answers[items[5]["id"]] = None  # the last one is skipped
    for it in items[:3]:
        oracle.save_annotation(run, it["id"], answers[it["id"]], TONE_LABELS)
    before = (run / "annotations.json").read_bytes()

    code = (f"from after_hf.al.oracle import save_annotation; "
            f"save_annotation({str(run)!r}, {items[3]['id']!r}, {answers[items[3]['id']]!r}, {list(TONE_LABELS)!r})")
    killed(["-c", code], "write:annotations.json")
    assert (run / "annotations.json").read_bytes() == before  # the previous answers, intact and complete
    half = list(run.glob(".annotations.json.*.tmp"))
    # it died after writing, before the move
    assert len(half) == 1 and items[3]["id"] in [a["id"] for a in json.loads(half[0].read_text())["answers"]]
    assert [it["id"] for it in oracle.pending(run)] == [it["id"] for it in items[3:]]  # the 4th is still asked for

    for it in items[3:]:  # the killed writer's lock was released with its process
        oracle.save_annotation(run, it["id"], answers[it["id"]], TONE_LABELS)
    assert oracle.pending(run) == []
    assert al_main([*options, "--resume"]) == 0
    rec = read_state(run)["rounds"][0]
    assert rec["phase"] == "trained" and rec["skipped"] == [items[5]["id"]]
    # 5 labels, once each
    assert rec["labels"] == {i: TONE_LABELS.index(a) for i, a in answers.items() if a is not None}


# -- corrupted or edited state: reported with the fix, never reset -------------------------------------------------

def _finished_copy(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    return run


def _drop_round_key(d):
    del d["rounds"][1]["labels"]


def _duplicate_id(d):
    d["rounds"][2]["selected"][0]["id"] = d["rounds"][0]["selected"][0]["id"]


def _foreign_label(d):
    d["rounds"][1]["labels"]["tones/not_asked"] = 0


EDITS = {
    "truncated": lambda text, d: text[: len(text) // 2],
    "empty": lambda text, d: "",
    "a list": lambda text, d: "[]",
    "no fingerprint": lambda text, d: json.dumps({k: v for k, v in d.items() if k != "config_fingerprint"}),
    "other format": lambda text, d: json.dumps({**d, "format": 2}),
    "unknown phase": lambda text, d: json.dumps({**d, "rounds": [{**d["rounds"][0], "phase": "done"},
                                                                 *d["rounds"][1:]]}),
    "round without labels": lambda text, d: (_drop_round_key(d), json.dumps(d))[1],
    "id selected twice": lambda text, d: (_duplicate_id(d), json.dumps(d))[1],
    "label for an id never asked": lambda text, d: (_foreign_label(d), json.dumps(d))[1],
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_corrupted_state_is_reported_with_the_fix_and_left_alone(work, reference, tmp_path, edit):
    run = _finished_copy(reference, tmp_path)
    path = run / "state.json"
    text = path.read_text()
    path.write_text(EDITS[edit](text, json.loads(text)))
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(StateError) as err:
        al_main(argv(work, run, "--resume"))
    message = str(err.value)
    assert str(path) in message and "state.prev.json" in message and "--resume" in message
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files  # nothing reset, rewritten or added


def test_the_fix_in_the_message_works(work, reference, tmp_path):
    """Copying state.prev.json over a corrupted state.json (what the error says) resumes to the same result."""
    run = _finished_copy(reference, tmp_path)
    (run / "state.json").write_text('{"format": 1, "rounds": [')
    with pytest.raises(StateError, match="Copy .*state.prev.json"):
        al_main(argv(work, run, "--resume"))
    previous = json.loads((run / "state.prev.json").read_text())
    assert previous["rounds"][-1]["phase"] == "labelled"  # one phase behind: the last training is redone
    shutil.copyfile(run / "state.prev.json", run / "state.json")
    assert al_main(argv(work, run, "--resume")) == 0
    assert_same_run(run, reference[1], work)


@pytest.fixture
def waiting_run(work, tmp_path):
    """A human-oracle run waiting for answers to its 6-sample queue, two of them answered."""
    run = tmp_path / "human"
    options = argv(work, run, "--oracle", "human", "--budget", "6")
    assert al_main(options) == 0
    items = oracle.read_queue(run)["items"]
    for it in items[:2]:
        oracle.save_annotation(run, it["id"], "low", TONE_LABELS)
    return run, options, items


def test_corrupted_annotations_are_reported_not_discarded(waiting_run):
    run, options, _ = waiting_run
    path = run / "annotations.json"
    path.write_text(path.read_text()[:-20])
    damaged = path.read_bytes()
    with pytest.raises(StateError, match="annotations.json.*corrupted.*Repair") as err:
        al_main([*options, "--resume"])
    assert "not reset" in str(err.value)
    assert path.read_bytes() == damaged
    path.write_text(json.dumps([["not", "answers"]]))
    with pytest.raises(StateError, match="list of answers, each an object with an \"id\" and a \"label\""):
        oracle.pending(run)


def test_corrupted_queue_names_the_fix_and_the_fix_rebuilds_it(waiting_run):
    run, options, items = waiting_run
    (run / "queue.json").write_text('{"round": 0, "items": [{"id"')
    with pytest.raises(StateError, match="Delete it and run the same"):
        al_main([*options, "--resume"])
    (run / "queue.json").unlink()
    assert al_main([*options, "--resume"]) == 0  # still waiting for 4 answers
    assert [it["id"] for it in oracle.read_queue(run)["items"]] == [it["id"] for it in items]
    assert [it["id"] for it in oracle.pending(run)] == [it["id"] for it in items[2:]]  # the 2 answers were kept


def test_an_answer_outside_the_label_set_is_named(waiting_run):
    run, options, items = waiting_run
    saved = json.loads((run / "annotations.json").read_text())
    for it in items[2:]:
        saved["answers"].append({"id": it["id"], "label": "low", "annotator": "ana", "time": 0.0})
    saved["answers"][4]["label"] = "bored"  # edited by hand
    (run / "annotations.json").write_text(json.dumps(saved))
    with pytest.raises(StateError) as err:
        al_main([*options, "--resume"])
    message = str(err.value)
    assert "'bored'" in message and items[4]["id"] in message and "low" in message and "--resume" in message
    assert read_state(run)["rounds"][0]["phase"] == "selected"  # nothing recorded from the bad answers
