"""From a person's labels to a published model, in a browser (issue 12's "done when").

`after-hf al --oracle human --seed_size 8` on the generated corpus (its file names encode the emotion, as CREMA-D's
do) -> two people label the 8 queued clips in the Annotate tab of the Space (blind: no sample id or file name on the
page; two tabs get different clips; one answer undone and given again; keyboard and buttons) -> `after-hf al
--resume` (it trains and queues round 1; a second `after-hf al` on the locked run exits with one line) -> `after-hf
deploy --run` -> `after-hf push --dry_run`: a card that names the 8 human-labelled clips and no local path.
Every step is the real command line in a subprocess. The annotators answer the truth, looked up by the clip each tab
holds (the test reads the run's leases.json, server-side), so the state can be checked label by label.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from space_support import chromium, save_tiny_classifier, served_app

from after_hf.al import oracle
from after_hf.data.manifest import label_names, load_manifest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def after_hf(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "after_hf.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=600)
    if check:
        assert proc.returncode == 0, f"after-hf {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def human_run(synth_manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("human_loop")
    run = root / "runs" / "al" / "mine"
    command = ["al", "--manifest", str(synth_manifest), "--backbone", "tiny", "--strategy", "entropy",
               "--cold_start", "kmeans", "--seed_size", "8", "--step_size", "8", "--budget", "16",
               "--head_epochs", "20", "--oracle", "human", "--out", str(run), "--cache_dir", str(root / "cache")]
    proc = after_hf(*command)
    assert "Round 0: 8 of 8 samples wait for a label" in proc.stdout and "--resume" in proc.stdout
    return root, run, command


@pytest.fixture(scope="module")
def app(human_run):
    root, run, _ = human_run
    model_dir = save_tiny_classifier(root / "served_model")
    with served_app(root, model_dir, run) as (url, log):
        yield url, log


def ctrl_c_as_at_a_terminal() -> None:
    """In the child before it starts: SIGINT at its default, so that Python turns it into KeyboardInterrupt as at a
    terminal. A test session started as a background job (`cmd &` without job control) ignores SIGINT, and an
    ignored signal stays ignored in every child: `al` would then never see the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def held_by(run: Path, annotator: str) -> str:
    """The clip the tab of ``annotator`` is showing (its lease), read server-side."""
    for _ in range(100):
        leases = json.loads((run / oracle.LEASES_FILE).read_text())
        held = [k for k, v in leases.items() if v["annotator"] == annotator]
        if len(held) == 1:
            return held[0]
        time.sleep(0.1)
    pytest.fail(f"{annotator} holds {len(held)} clips: {leases}")


def open_annotate(browser, url: str, name: str):
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.goto(url)
    page.get_by_role("tab", name="Annotate").click()
    page.locator("#annotate-status").get_by_text("left").wait_for(timeout=60_000)
    page.locator("#annotator-name textarea, #annotator-name input").first.fill(name)
    page.locator("#annotate-status").click()  # focus out of the name box: keys are shortcuts again
    return page


def wait_left(page, n: int) -> None:
    page.locator("#annotate-status").get_by_text(re.compile(rf"\b{n} of 8 left")).wait_for(timeout=30_000)


def test_a_person_labels_the_first_round_then_deploys_and_publishes_the_model(human_run, app, synth_manifest):
    root, run, command = human_run
    url, log = app
    train = load_manifest(synth_manifest, split="train")
    names = label_names(train)
    truth = {i: names[label] for i, label in zip(train["id"], train["label"])}
    queued = [item["id"] for item in oracle.read_queue(run)["items"]]
    secrets = [*queued, *(Path(i).name for i in queued)]  # ids and file names: they name the emotion (..._ANG_..)
    pages_html = []

    with chromium() as browser:
        ana = open_annotate(browser, url, "Ana")
        wait_left(ana, 8)
        bo = open_annotate(browser, url, "Bo")
        bo.locator("#annotate-status").get_by_text("1 being labelled by others").wait_for(timeout=30_000)
        first_ana, first_bo = held_by(run, "Ana"), held_by(run, "Bo")
        assert first_ana != first_bo  # two tabs, two clips
        assert not ana.locator("#annotate-guess").is_visible()  # the model's guess stays hidden until answered
        pages_html += [ana.content(), bo.content()]

        bo.locator(f"#label-{truth[first_bo]}").click()  # Bo answers one clip with the mouse, then closes the tab
        bo.locator("#annotate-feedback").get_by_text("Saved").wait_for(timeout=30_000)
        pages_html.append(bo.content())
        bo.close()
        time.sleep(2)  # the tab's unload gives its next clip back

        for answered in range(1, 8):  # Ana answers the rest with the keyboard
            sample_id = held_by(run, "Ana")
            ana.keyboard.press(str(names.index(truth[sample_id]) + 1))
            wait_left(ana, 7 - answered) if answered < 7 else None
            if answered == 2:  # one answer taken back (U) and given again
                ana.keyboard.press("u")
                ana.locator("#annotate-feedback").get_by_text("withdrawn").wait_for(timeout=30_000)
                wait_left(ana, 6)
                assert held_by(run, "Ana") == sample_id
                ana.keyboard.press(str(names.index(truth[sample_id]) + 1))
                wait_left(ana, 5)
            pages_html.append(ana.content())
        status = ana.locator("#annotate-status")
        status.get_by_text("All 8 items of round 0 are answered").wait_for(timeout=30_000)
        assert "--resume" in status.inner_text()
        pages_html.append(ana.content())

    for html in pages_html:  # blind: not one id or file name reached either page
        assert not [s for s in secrets if s in html]
    answers = oracle.read_answers(run)
    assert sorted(a["id"] for a in answers) == sorted(queued)  # the undone answer is gone, nothing twice
    assert {a["annotator"] for a in answers} == {"Ana", "Bo"} and all(a["label"] == truth[a["id"]] for a in answers)
    assert "Warning" not in log.read_text()  # a quiet console while people label

    # the loop resumes and trains on the 8 answers, then waits for round 1 (holding the run): a second al is refused
    # its output goes to a file: an unread pipe fills (64 KB of progress bars on a loaded machine) and blocks the
    # process in a write, so that it could not even print its message after the SIGINT below
    console = root / "waiting_al.log"
    with console.open("w") as sink:
        waiting = subprocess.Popen([sys.executable, "-m", "after_hf.cli", *command, "--resume", "--wait_minutes", "10"],
                                   env=ENV, stdout=sink, stderr=subprocess.STDOUT, text=True,
                                   preexec_fn=ctrl_c_as_at_a_terminal)
    try:
        deadline = time.time() + 300
        while oracle.read_queue(run)["round"] != 1:
            assert waiting.poll() is None, console.read_text()[-3000:]
            assert time.time() < deadline, "round 1 was not queued"
            time.sleep(0.5)
        second = after_hf(*command, "--resume", check=False)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1 and f"PID {waiting.pid}" in lines[0], second.stderr
    finally:  # a failure above stays the reported one; a process that ignores SIGINT is reported below
        waiting.send_signal(signal.SIGINT)
        try:
            waiting.wait(timeout=60)
            stopped = True
        except subprocess.TimeoutExpired:
            stopped = False
            waiting.kill()
            waiting.wait()
    assert stopped, f"after-hf al went on for 60 s after a SIGINT; its console:\n{console.read_text()[-3000:]}"
    assert "interrupted" in console.read_text()  # it stopped on the SIGINT, saying how to continue
    state = json.loads((run / "state.json").read_text())
    assert state["rounds"][0]["phase"] == "trained"
    assert {i: names[v] for i, v in state["rounds"][0]["labels"].items()} == {i: truth[i] for i in queued}

    deployed = root / "runs" / "deploy" / "mine"
    proc = after_hf("deploy", "--run", str(run), "--out", str(deployed))
    assert "8 human-labelled clips" in proc.stdout and "after-hf push" in proc.stdout
    upload = root / "upload"
    after_hf("push", "--model", str(deployed / "model"), "--repo_id", "someone/ser-labelled-by-people",
             "--dry_run", str(upload))
    card = (upload / "README.md").read_text()
    assert "**8 human-labelled clips**" in card and "labelled by 2 people" in card
    assert "Trained on generated speech" in card.split("## Results")[0] and "Chance level on the test set" in card
    for path in upload.iterdir():  # no local path in anything that would be uploaded
        if path.suffix in (".md", ".json"):
            text = path.read_text()
            assert str(root) not in text and "/tmp/" not in text and os.getcwd() not in text, path.name
