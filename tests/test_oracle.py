"""The human oracle's files: several answers per clip all kept, leases that keep two tabs apart and expire, undo,
a closed round, and the loop and deploy reading several people's answers."""

import json
import time

import pytest

from after_hf.al import oracle
from after_hf.al.loop import ALArguments, run_al
from after_hf.cli import main as cli
from after_hf.data.manifest import label_names, load_manifest
from after_hf.model_info import labels_sentence, read_provenance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def run(tmp_path):
    oracle.write_queue(tmp_path, 0, [{"id": f"c{i}", "path": f"/nowhere/c{i}.wav"} for i in range(4)])
    return tmp_path


def test_resolve_majority_ties_to_the_earliest_and_all_skipped():
    answers = lambda *labels: [{"label": label} for label in labels]  # noqa: E731
    assert oracle.resolve(answers("sad", "happy", "happy")) == "happy"
    assert oracle.resolve(answers("sad", "happy")) == "sad"  # a tie: the earliest answer's label
    assert oracle.resolve(answers(None, "angry")) == "angry"  # a skip is no vote
    assert oracle.resolve(answers(None, None)) is None


def test_leases_keep_tabs_apart_skip_what_a_person_answered_and_expire(run, monkeypatch):
    assert oracle.claim_next(run, "t1", "ana")["id"] == "c0"
    assert oracle.claim_next(run, "t2", "bo")["id"] == "c1"
    assert oracle.claim_next(run, "t1", "ana")["id"] == "c0"  # the same tab keeps its clip
    oracle.rename_holder(run, "t2", "bob")  # a name typed after the page opened: the tab's clip carries it
    assert json.loads((run / oracle.LEASES_FILE).read_text())["c1"]["annotator"] == "bob"
    oracle.rename_holder(run, "t2", "bo")
    oracle.save_annotation(run, "c0", "sad", annotator="ana", session="t1")
    assert oracle.claim_next(run, "t1", "ana")["id"] == "c2"
    # a clip that asks for two raters goes to a second person, never back to the first
    queue = oracle.read_queue(run)
    queue["items"][0]["raters"] = 2
    oracle.write_queue(run, 0, queue["items"])
    assert oracle.claim_next(run, "t3", "ana")["id"] == "c3" and oracle.claim_next(run, "t4", "cy")["id"] == "c0"
    # leases run out: a closed tab's clip comes back to the others
    now = time.time()
    monkeypatch.setattr(oracle.time, "time", lambda: now + 60 * oracle.LEASE_MINUTES + 1)
    assert oracle.leased_by_others(run, "nobody") == 0
    assert oracle.claim_next(run, "t5", "dee")["id"] == "c0"


def test_undo_withdraws_only_this_tabs_last_answer_while_the_round_is_open(run):
    oracle.save_annotation(run, "c0", "sad", annotator="ana", session="t1")
    oracle.save_annotation(run, "c1", "happy", annotator="bo", session="t2")
    oracle.save_annotation(run, "c2", "angry", annotator="ana", session="t1")
    assert oracle.undo_last(run, "t1")["id"] == "c2"
    assert [a["id"] for a in oracle.read_answers(run)] == ["c0", "c1"]
    assert oracle.claim_next(run, "t1", "ana")["id"] == "c2"  # the undone clip is the tab's again
    oracle.close_queue(run)
    assert oracle.undo_last(run, "t1") is None  # the loop took the round: nothing changes any more
    with pytest.raises(oracle.QueueClosed):
        oracle.save_annotation(run, "c3", "sad", annotator="ana")
    assert oracle.claim_next(run, "t1", "ana") is None


def test_a_format_1_annotations_file_is_still_read(run):
    (run / "annotations.json").write_text(json.dumps({"c0": {"label": "sad", "skipped": False, "time": 1.0}}))
    assert oracle.read_answers(run) == [{"id": "c0", "label": "sad", "skipped": False, "time": 1.0}]
    assert [i["id"] for i in oracle.pending(run)] == ["c1", "c2", "c3"]
    oracle.save_annotation(run, "c1", "happy", annotator="ana")  # rewritten in format 2, nothing lost
    saved = json.loads((run / "annotations.json").read_text())
    assert saved["format"] == 2 and [a["id"] for a in saved["answers"]] == ["c0", "c1"]


def test_two_peoples_answers_reach_the_state_and_the_provenance(synth_manifest, tmp_path):
    args = ALArguments(manifest=str(synth_manifest), out=str(tmp_path / "run"), backbone="tiny", strategy="random",
                       cold_start="random", seed_size=8, step_size=8, budget=16, head_epochs=3,
                       cache_dir=str(tmp_path / "cache"), oracle="human")
    run_al(args)
    queue = oracle.read_queue(args.out)
    assert len(queue["items"]) == 8 and "--oracle human" in queue["resume"] and queue["resume"].endswith("--resume")
    names = label_names(load_manifest(synth_manifest))
    for n, item in enumerate(queue["items"]):
        oracle.save_annotation(args.out, item["id"], names[n % 4], names, annotator="ana", session="a")
    first = queue["items"][0]["id"]
    oracle.save_annotation(args.out, first, names[1], names, annotator="bo", session="b")  # a second opinion
    args.resume = True
    state = run_al(args)
    rec = state.rounds[0]
    assert rec["labels"][first] == 0  # 1 vote each: the earlier answer (ana's) wins the tie
    assert [(a["annotator"], a["label"]) for a in rec["answers"][first]] == [("ana", names[0]), ("bo", names[1])]
    assert oracle.read_queue(args.out)["round"] == 1  # the next round is queued, the first one is closed and gone
    assert cli(["deploy", "--run", args.out, "--out", str(tmp_path / "deployed")]) == 0
    labels = read_provenance(tmp_path / "deployed" / "model").labels
    assert (labels.oracle, labels.labelled_clips, labels.answers, labels.annotators) == ("human", 8, 9, 2)
    assert "chosen by the random cold start of active learning (1 round)" in labels_sentence(labels)  # not the strategy
