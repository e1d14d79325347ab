"""`after-hf predict`: a trained classifier on recordings nobody labelled -> one CSV row per clip.

A speaker-normalised model scores a folder laid out one folder per speaker exactly as `evaluate` scores the same
clips from a manifest with speakers; `--speakers none` scores each clip alone; an undecodable file is listed with
its reason and left out; bad options are one line.
"""

import csv
from pathlib import Path

import numpy as np
import pytest

from after_hf.al.head import HeadTrainingArgs
from after_hf.al.learners import HeadLearner, SplitArrays
from after_hf.cli import main as cli
from after_hf.data.manifest import label_names, load_manifest
from after_hf.deploy import export_linear_head, train_linear_head
from after_hf.evaluation import load_model_for_eval
from after_hf.inference import predict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def centred_model(synth_manifest, tmp_path_factory):
    """A linear head on speaker-centred features of the tiny encoder, exported as a classifier."""
    tmp = tmp_path_factory.mktemp("predict")
    manifest = load_manifest(synth_manifest)
    names, splits = label_names(manifest), SplitArrays.from_manifest(manifest)
    learner = HeadLearner("tiny", splits, names, tmp / "cache", HeadTrainingArgs(), init_seed=3, speaker_norm=True)
    train = splits["train"]
    head = train_linear_head(learner, list(train.ids), train.labels, seed=0, epochs=30)
    return export_linear_head(head, "tiny", names, tmp / "model", init_seed=3, population=learner.population)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _probs(rows, names):
    return np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])


def test_a_folder_per_speaker_is_scored_as_evaluate_scores_the_speakers(synth_manifest, centred_model, tmp_path,
                                                                         capsys):
    test = load_manifest(synth_manifest, split="test")
    model, fe, names = load_model_for_eval(str(centred_model))
    audio = tmp_path / "audio"
    for path, speaker in zip(test["path"], test["speaker"]):
        folder = audio / speaker.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"clip_{len(list(folder.iterdir()))}.wav").symlink_to(path)  # names that give nothing away
    (audio / "notes").mkdir()
    (audio / "notes" / "broken.wav").write_text("not audio")
    out = tmp_path / "pred.csv"
    assert cli(["predict", "--model", str(centred_model), "--audio_dir", str(audio), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{len(test)} clips -> {out}" in printed
    assert "left out: " in printed and "broken.wav" in printed
    rows = _rows(out)
    assert len(rows) == len(test) and "broken.wav" not in {r["path"] for r in rows}
    expected = predict(model, fe, test, progress=False)["probs"]  # the manifest's speakers: centred per speaker
    position = {p: i for i, p in enumerate(test["path"])}
    order = [position[str(Path(r["path"]).resolve())] for r in rows]
    np.testing.assert_allclose(_probs(rows, names), expected[order], atol=2e-4)
    assert {r["predicted"] for r in rows} <= set(names)

    # the same clips from the manifest: the same probabilities
    from_manifest = tmp_path / "manifest.csv"
    assert cli(["predict", "--model", str(centred_model), "--manifest", str(synth_manifest), "--split", "test",
                "--out", str(from_manifest)]) == 0
    np.testing.assert_allclose(_probs(_rows(from_manifest), names), expected, atol=2e-4)

    # --speakers none also drops a manifest's speaker column
    unspoken = tmp_path / "manifest_alone.csv"
    assert cli(["predict", "--model", str(centred_model), "--manifest", str(synth_manifest), "--split", "test",
                "--speakers", "none", "--out", str(unspoken)]) == 0
    np.testing.assert_allclose(_probs(_rows(unspoken), names), predict(model, fe, list(test["path"]),
                                                                      progress=False)["probs"], atol=2e-4)

    # no speakers: each clip alone, said on the console
    alone = tmp_path / "alone.csv"
    assert cli(["predict", "--model", str(centred_model), "--audio_dir", str(audio), "--speakers", "none",
                "--out", str(alone)]) == 0
    assert "no speakers were given: every clip was scored alone" in capsys.readouterr().out
    single = predict(model, fe, list(test["path"]), progress=False)["probs"]  # paths only: no speakers
    np.testing.assert_allclose(_probs(_rows(alone), names), single[order], atol=2e-4)
    assert not np.allclose(single, expected, atol=1e-3)  # centring changes the scores: the test can tell them apart


def test_linked_folders_broken_links_and_hidden_files_are_accounted_for(synth_manifest, centred_model, tmp_path,
                                                                         capsys):
    test = load_manifest(synth_manifest, split="test")
    real = tmp_path / "elsewhere" / "spk"
    real.mkdir(parents=True)
    for i, path in enumerate(test["path"][:6]):
        (real / f"{i}.wav").symlink_to(path)
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "spk").symlink_to(real, target_is_directory=True)  # a linked speaker folder is searched
    (audio / "loop").symlink_to(audio, target_is_directory=True)  # a link back up the tree: walked once
    (audio / "gone.wav").symlink_to(tmp_path / "missing.wav")  # a link to nothing: named
    (audio / ".cache").mkdir()
    (audio / ".cache" / "x.wav").symlink_to(test["path"][0])  # hidden: counted
    out = tmp_path / "p.csv"
    assert cli(["predict", "--model", str(centred_model), "--audio_dir", str(audio), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6 clips ->" in printed and "gone.wav: file not found" in printed and "1 hidden audio files" in printed
    assert len(_rows(out)) == 6


@pytest.mark.parametrize("case", ["both", "neither", "out_is_folder", "empty_folder", "out_under_a_file"])
def test_bad_options_are_one_line(synth_manifest, centred_model, tmp_path, capsys, case):
    (tmp_path / "empty").mkdir()
    base = ["predict", "--model", str(centred_model)]
    argv = {"both": base + ["--audio_dir", str(tmp_path), "--manifest", str(synth_manifest), "--out", "x.csv"],
            "neither": base + ["--out", str(tmp_path / "x.csv")],
            "out_is_folder": base + ["--manifest", str(synth_manifest), "--out", str(tmp_path)],
            "empty_folder": base + ["--audio_dir", str(tmp_path / "empty"), "--out", str(tmp_path / "x.csv")],
            "out_under_a_file": base + ["--manifest", str(synth_manifest), "--out", str(tmp_path / "f" / "x.csv")],
            }[case]
    (tmp_path / "f").write_text("a file, not a folder")
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("after-hf predict:")
    assert not (tmp_path / "x.csv").exists()


def test_a_flat_folder_is_one_speaker_and_the_console_says_so(synth_manifest, centred_model, tmp_path, capsys):
    test = load_manifest(synth_manifest, split="test")
    for i, path in enumerate(test["path"]):
        (tmp_path / f"{i}.wav").symlink_to(path)
    assert cli(["predict", "--model", str(centred_model), "--audio_dir", str(tmp_path), "--out",
                str(tmp_path / "out" / "p.csv")]) == 0
    assert f"all {len(test)} clips were taken as one speaker ('.')" in capsys.readouterr().out
    assert {r["speaker"] for r in _rows(tmp_path / "out" / "p.csv")} == {"."}


def test_a_speaker_with_too_few_clips_passes_unchanged_beside_centred_ones(synth_manifest, centred_model):
    """Under MIN_SPEAKER_CLIPS a speaker has no usable statistics: its clips are scored as they are (alone), even
    when other speakers in the same call are centred (they were shifted by the stored mean minus the input's)."""
    test = load_manifest(synth_manifest, split="test")
    model, fe, _ = load_model_for_eval(str(centred_model))
    paths = list(test["path"])
    alone = predict(model, fe, paths, progress=False)["probs"]  # no speakers at all
    few = predict(model, fe, paths[:3], speakers=["x"] * 3, progress=False)["probs"]
    np.testing.assert_allclose(few, alone[:3], atol=1e-5)
    speakers = ["x"] * 3 + list(test["speaker"])[3:]  # three clips relabelled as a 3-clip speaker beside the others
    mixed = predict(model, fe, paths, speakers=speakers, progress=False)["probs"]
    np.testing.assert_allclose(mixed[:3], alone[:3], atol=1e-5)
    assert not np.allclose(mixed[3:], alone[3:], atol=1e-3)  # the real speakers are still centred


def test_recordings_over_max_seconds_are_listed_and_left_out(synth_manifest, centred_model, tmp_path, capsys):
    test = load_manifest(synth_manifest, split="test")
    short = min(test["duration"])
    for i, path in enumerate(test["path"][:8]):
        (tmp_path / f"{i}.wav").symlink_to(path)
    ordered = sorted(test["duration"][:8])
    cap = round((ordered[3] + ordered[4]) / 2, 3)  # half of them are longer (a cap between two lengths: no ties)
    out = tmp_path / "p.csv"
    assert cli(["predict", "--model", str(centred_model), "--audio_dir", str(tmp_path), "--max_seconds", str(cap),
                "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    longer = sum(d > cap for d in test["duration"][:8])
    assert longer >= 1 and printed.count(f"over --max_seconds {cap:g}: split it into utterances") == longer
    assert len(_rows(out)) == 8 - longer
    assert cli(["predict", "--model", str(centred_model), "--manifest", str(synth_manifest), "--split", "test",
                "--max_seconds", str(short), "--out", str(tmp_path / "m.csv")]) == 0
    assert len(_rows(tmp_path / "m.csv")) == sum(d <= short for d in test["duration"])
