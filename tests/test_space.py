"""The Space's functions without a browser: audio conversion, refusals, windowed classification, annotation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from space_support import EXAMPLES, LABELS, direct_probs, load_app_module, save_tiny_classifier

from after_hf.al import oracle
from after_hf.data.audio import load_audio


@pytest.fixture(scope="module")
def A():
    return load_app_module()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("space_model") / "model")


@pytest.fixture(scope="module")
def space(A, model_dir):
    return A.SpaceApp(A.AppArguments(model=str(model_dir), max_seconds=30.0, window_seconds=10.0))


def _resample_to(wave16k: np.ndarray, rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(wave16k), 16000, rate).numpy()


def test_numpy_int16_stereo_44k_becomes_mono_float32_16k(A):
    rate, seconds = 44100, 1.0
    t = np.arange(int(rate * seconds)) / rate
    left = (0.5 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)  # Gradio's (samples, channels) int16
    wave = A.numpy_to_mono_16k(rate, stereo, max_seconds=30)
    assert wave.dtype == np.float32 and wave.ndim == 1 and abs(len(wave) - 16000) <= 1
    middle = wave[1000:-1000]
    assert abs(np.abs(middle).max() - 0.25) < 0.01  # channels averaged: half of the left channel's 0.5
    spectrum = np.abs(np.fft.rfft(middle))
    assert abs(np.argmax(spectrum) * 16000 / len(middle) - 440) < 3  # the pitch survived resampling
    # channels-first arrays and 8-bit unsigned PCM are understood too
    assert np.allclose(A.numpy_to_mono_16k(rate, stereo.T, 30), wave)
    u8 = np.full(rate, 128 + 64, dtype=np.uint8)
    assert np.allclose(A.numpy_to_mono_16k(rate, u8, 30)[100:-100], 0.5, atol=1e-3)


def test_classify_numpy_stereo_matches_the_models_own_probabilities(space, model_dir):
    wave = load_audio(EXAMPLES[0])
    wave44 = _resample_to(wave, 44100)
    stereo = np.round(np.stack([wave44, wave44], axis=1) * 32767).astype(np.int16)
    probs, figure, note = space.classify((44100, stereo))
    assert list(probs) == LABELS and abs(sum(probs.values()) - 1) < 1e-5
    expected = direct_probs(model_dir, wave)
    assert np.abs(np.array(list(probs.values())) - expected).max() < 0.03  # 16k -> 44.1k int16 -> 16k round trip
    assert LABELS[int(np.argmax(expected))] in note
    assert figure.axes and figure.axes[0].get_xlim()[1] == pytest.approx(len(wave) / 16000, rel=0.01)


def test_classify_file_is_exactly_the_models_argmax(space, model_dir):
    for path in EXAMPLES:
        probs, _, _ = space.classify(str(path))
        expected = direct_probs(model_dir, load_audio(path))
        assert np.allclose(list(probs.values()), expected, atol=1e-5)
        assert max(probs, key=probs.get) == LABELS[int(np.argmax(expected))]


def test_silence_is_refused(A, space):
    with pytest.raises(A.InputError, match="silent"):
        space.classify((16000, np.zeros(16000, dtype=np.int16)))
    hiss = (np.random.default_rng(0).standard_normal(16000) * 32767 * 10 ** (-70 / 20)).astype(np.int16)
    with pytest.raises(A.InputError, match="silent"):  # a -70 dBFS noise floor is no speech
        space.classify((48000, hiss))


def test_too_long_and_too_short_are_refused(A, space, tmp_path):
    import soundfile as sf

    with pytest.raises(A.InputError, match=r"31\.0 s long; this demo accepts at most 30 s"):
        space.classify((8000, np.ones(8000 * 31, dtype=np.int16)))
    long_file = tmp_path / "long.wav"
    sf.write(long_file, np.full(16000 * 31, 0.1, dtype=np.float32), 16000)
    with pytest.raises(A.InputError, match="at most 30 s"):
        space.classify(str(long_file))
    with pytest.raises(A.InputError, match="too short"):
        space.classify((16000, (np.ones(800) * 3000).astype(np.int16)))


@pytest.mark.parametrize("content", [b"this is a text file, not audio\n" * 20, b""])
def test_non_audio_is_refused_with_the_fix(A, space, tmp_path, content):
    fake = tmp_path / "notes.wav"
    fake.write_bytes(content)
    with pytest.raises(A.InputError, match="notes.wav.*Upload a WAV, FLAC, MP3 or OGG"):
        space.classify(str(fake))
    with pytest.raises(A.InputError, match="No audio"):
        space.classify(None)


def test_long_clip_is_classified_in_windows(A, space, model_dir):
    rng = np.random.default_rng(1)
    pieces = [load_audio(p) for p in EXAMPLES]
    wave = np.concatenate([pieces[i % len(pieces)] for i in range(24)]).astype(np.float32)[: 16000 * 23]
    wave = wave + 0.001 * rng.standard_normal(len(wave)).astype(np.float32)
    probs, _, note = space.classify((16000, np.round(wave * 32767).astype(np.int16)))
    assert "3 windows of up to 10 s" in note
    quantised = np.round(wave * 32767).astype(np.int16).astype(np.float32) / 32768
    windows = [quantised[:160000], quantised[160000:320000], quantised[320000:]]
    expected = sum(len(w) * direct_probs(model_dir, w) for w in windows) / len(quantised)
    assert np.allclose(list(probs.values()), expected, atol=1e-5)
    assert "windows" not in space.classify(str(EXAMPLES[0]))[2]


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    items = [{"id": f"synth/{p.stem}", "path": str(p), "guess": None, "probs": None, "uncertainty": 0.9 - 0.1 * i}
             for i, p in enumerate(EXAMPLES[:3])]
    items[1]["probs"] = [0.1, 0.2, 0.6, 0.1]  # the loop may store its own probabilities
    oracle.write_queue(run, 2, items)
    return run


def _shown_text(view: dict) -> str:
    """Everything of a view that reaches the page (the id stays on the server, in a gr.State)."""
    return " ".join(str(view[k]) for k in ("status", "details", "feedback"))


def test_annotate_is_blind_saves_named_answers_and_counts(A, model_dir, run_dir):
    app = A.SpaceApp(A.AppArguments(model=str(model_dir), run_dir=str(run_dir)))
    view = app.next_item("tab1", "ana")
    first = EXAMPLES[0]
    assert view["id"] == f"synth/{first.stem}" and "3 of 3 left" in view["status"] and "Round 2" in view["status"]
    assert first.stem not in _shown_text(view) and "synth/" not in _shown_text(view)  # blind: no id, no file name
    rate, audio = view["audio"]
    assert rate == 16000 and audio.dtype == np.int16  # int16: Gradio needs no conversion (and warns about none)
    assert np.allclose(audio / 32767, load_audio(first), atol=1e-4)
    expected = direct_probs(model_dir, load_audio(first))  # no stored probs: the served model's guess
    assert np.allclose(list(view["guess"].values()), expected, atol=1e-5)
    assert "score for this clip: 0.9" in view["details"] and "guess" not in view["details"]  # no guess in the text

    with pytest.raises(A.InputError, match="Type your name"):
        app.answer(view["id"], "happy", "tab1", "  ")
    view = app.answer(view["id"], "happy", "tab1", "ana")
    assert f"the model had guessed **{LABELS[int(np.argmax(expected))]}**" in view["feedback"]  # revealed afterwards
    assert view["id"] == f"synth/{EXAMPLES[1].stem}" and "2 of 3 left" in view["status"]
    assert view["guess"] == dict(zip(LABELS, [0.1, 0.2, 0.6, 0.1]))
    view = app.answer(view["id"], None, "tab1", "ana")  # skip
    assert "1 of 3 left" in view["status"] and "Skipped" in view["feedback"]
    saved = oracle.read_answers(run_dir)
    assert [(a["id"], a["label"], a["annotator"], a["skipped"]) for a in saved] == [
        (f"synth/{EXAMPLES[0].stem}", "happy", "ana", False), (f"synth/{EXAMPLES[1].stem}", None, "ana", True)]
    view = app.answer(view["id"], "sad", "tab1", "ana")
    assert view["id"] is None and "All 3 items of round 2 are answered" in view["status"]
    assert "--resume" in view["status"]
    assert [i["id"] for i in oracle.pending(run_dir)] == []


def test_two_tabs_get_different_clips_and_undo_brings_the_last_one_back(A, model_dir, run_dir):
    app = A.SpaceApp(A.AppArguments(model=str(model_dir), run_dir=str(run_dir)))
    one, two = app.next_item("tab1", "ana"), app.next_item("tab2", "bo")
    assert one["id"] != two["id"] and "1 being labelled by others" in two["status"]
    assert app.next_item("tab1", "ana")["id"] == one["id"]  # a reload keeps the tab's clip
    after = app.answer(one["id"], "angry", "tab1", "ana")
    assert after["id"] not in (one["id"], two["id"])  # the third clip: the second is still bo's
    back = app.undo("tab1", "ana")
    assert back["id"] == one["id"] and "withdrawn" in back["feedback"]
    assert oracle.read_answers(run_dir) == []
    assert "Nothing to undo" in app.undo("tab1", "ana")["feedback"]
    # bo answers the clip; then ana, from an old tab whose lease had expired, answers it too: both answers kept
    app.answer(two["id"], "sad", "tab2", "bo")
    oracle.save_annotation(run_dir, two["id"], "angry", LABELS, "ana", "tab1")
    kept = oracle.answers_by_id(run_dir)[two["id"]]
    assert [(a["annotator"], a["label"]) for a in kept] == [("bo", "sad"), ("ana", "angry")]
    app.release("tab2")
    assert oracle.leased_by_others(run_dir, "tab1") == 0


def test_annotate_without_run_or_with_broken_items(A, model_dir, run_dir):
    app = A.SpaceApp(A.AppArguments(model=str(model_dir)))
    assert app.next_item()["id"] is None and "--run_dir" in app.next_item()["status"]

    queue = oracle.read_queue(run_dir)
    queue["items"][0]["path"] = str(run_dir / "missing.wav")
    oracle.write_queue(run_dir, queue["round"], queue["items"])
    app = A.SpaceApp(A.AppArguments(model=str(model_dir), run_dir=str(run_dir)))
    view = app.next_item("tab", "ana")
    assert view["audio"] is None and "cannot be played" in view["details"] and "Skip" in view["details"]
    assert "missing.wav" not in _shown_text(view)
    assert app.answer(view["id"], None, "tab", "ana")["id"] == queue["items"][1]["id"]

    (run_dir / "annotations.json").write_text("{half")
    assert "corrupted" in app.next_item("tab", "ana")["status"]


def test_a_closed_round_takes_no_more_answers(A, model_dir, run_dir):
    app = A.SpaceApp(A.AppArguments(model=str(model_dir), run_dir=str(run_dir)))
    view = app.next_item("tab", "ana")
    oracle.close_queue(run_dir)  # the loop took the round's answers
    after = app.answer(view["id"], "happy", "tab", "ana")
    assert "already taken for training" in after["feedback"] and oracle.read_answers(run_dir) == []
    assert after["id"] is None and "being trained on" in after["status"]


def test_model_and_run_dir_come_from_args_or_environment(A, model_dir, run_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("AFTER_HF_MODEL", str(model_dir))
    monkeypatch.setenv("AFTER_HF_RUN", str(run_dir))
    args = A.resolve_args([])
    assert (args.model, args.run_dir) == (str(model_dir), str(run_dir))
    assert A.resolve_args(["--model", "org/name", "--max_seconds", "5"]).model == "org/name"
    monkeypatch.delenv("AFTER_HF_MODEL")
    assert A.resolve_args([]).model == str(A.HERE / "model")  # the demo model shipped with the Space
    monkeypatch.setattr(A, "HERE", tmp_path)  # a Space folder without one
    with pytest.raises(SystemExit, match="No model"):
        A.resolve_args([])
    with pytest.raises(SystemExit, match="not a directory"):
        A.resolve_args(["--model", str(model_dir), "--run_dir", str(run_dir / "nope")])


def test_make_space_without_a_trained_model_says_what_to_do(A, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `make space` passes relative paths: runs/demo/...
    monkeypatch.setenv("AFTER_HF_MODEL", "runs/demo/final/model")
    monkeypatch.setenv("AFTER_HF_RUN", "runs/demo")
    with pytest.raises(SystemExit, match=r"runs/demo/final/model does not exist.*`make demo`"):
        A.main([])
    monkeypatch.delenv("AFTER_HF_RUN")
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(SystemExit, match=r"(?s)Cannot load the classifier .*not_a_model.*model\.safetensors"):
        A.main(["--model", str(tmp_path / "not_a_model")])


def test_model_loads_without_remote_code_and_only_from_safetensors(A, model_dir, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    evil = tmp_path / "evil"
    shutil.copytree(model_dir, evil)
    config = json.loads((evil / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "payload.Config", "AutoModelForAudioClassification": "payload.Model"}
    (evil / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "payload_ran"
    (evil / "payload.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                     "from transformers import Wav2Vec2Config as Config\n"
                                     "from transformers import Wav2Vec2ForSequenceClassification as Model\n")
    classifier = A.EmotionClassifier(str(evil))
    assert not marker.exists() and type(classifier.model).__module__.startswith("transformers.")
    torch.save(load_file(evil / "model.safetensors"), evil / "pytorch_model.bin")  # pickle: never unpickled
    (evil / "model.safetensors").unlink()
    with pytest.raises(OSError, match="safetensors"):
        A.EmotionClassifier(str(evil))


def test_experiment_dir_points_to_the_runs_that_have_a_queue(A, model_dir, tmp_path):
    oracle.write_queue(tmp_path / "al" / "entropy__s0", 1, [])
    oracle.write_queue(tmp_path / "al" / "random__s0", 1, [{"id": "x", "path": str(EXAMPLES[0])}])
    status = A.SpaceApp(A.AppArguments(model=str(model_dir), run_dir=str(tmp_path))).next_item()["status"]
    assert "holds no queue of its own" in status and f"`{tmp_path / 'al' / 'random__s0'}`" in status
    empty = tmp_path / "new_run"
    empty.mkdir()
    status = A.SpaceApp(A.AppArguments(model=str(model_dir), run_dir=str(empty))).next_item()["status"]
    assert f"after-hf al --manifest MANIFEST --backbone BACKBONE --oracle human --seed_size 8 --out {empty}" in status


def test_header_and_about_name_the_model_not_its_path(A, model_dir, tmp_path):
    from space_support import write_model_files

    from after_hf.model_info import LabelInfo, ModelMetrics, Provenance, TrainingData

    app = A.SpaceApp(A.AppArguments(model=str(model_dir)))
    assert str(model_dir) not in app.title and "records no training data" in app.about
    folder = save_tiny_classifier(tmp_path / "runs" / "final" / "model")
    matrix = [[3, 1, 0, 0], [1, 2, 1, 0], [0, 1, 3, 0], [0, 0, 1, 3]]
    write_model_files(folder, ModelMetrics(splits={"test": {"ua": 0.688, "wa": 0.6875, "macro_f1": 0.69,
                                                             "label_names": LABELS, "confusion_matrix": matrix}}),
                      Provenance(model_name="after-hf SER: small + TAPT, head, 8 human-labelled clips", kind="head",
                                 base_model="small", labels=LabelInfo(oracle="human", labelled_clips=8, pool_clips=840,
                                                                      answers=8, annotators=1),
                                 training_data=TrainingData(name="generated emotional speech", generated=True)))
    title, about = A.describe_model(str(folder))
    assert title == "after-hf SER: small + TAPT, head, 8 human-labelled clips" and str(tmp_path) not in title + about
    assert "Trained on generated speech" in about and "**Test UA 0.688**" in about and "chance level UA 0.250" in about
    assert "**8 human-labelled clips**" in about and "neutral 4 (25%)" in about
    assert "scores it alone" not in about  # no speaker normalisation recorded: one figure is the whole truth
    # a speaker-normalised model: the About panel also gives what this page gets, one upload scored alone
    write_model_files(folder, ModelMetrics(splits={"test": {"ua": 0.688, "wa": 0.6875, "macro_f1": 0.69,
                                                             "label_names": LABELS, "confusion_matrix": matrix,
                                                             "single_clip": {"ua": 0.412, "wa": 0.4}}}))
    about = A.describe_model(str(folder))[1]
    assert "**Test UA 0.688**" in about and "scores it alone, which on the test set gives **UA 0.412**" in about
    assert A.describe_model("org/not-cached")[0] == "[org/not-cached](https://huggingface.co/org/not-cached)"


def test_the_annotate_tab_exists_only_with_a_run(A, model_dir, run_dir):
    import gradio as gr

    def tabs(app):
        return sorted(b.label for b in A.build_ui(app).blocks.values() if isinstance(b, gr.Tab))

    assert tabs(A.SpaceApp(A.AppArguments(model=str(model_dir)))) == ["Classify"]  # `make space` without a run
    assert tabs(A.SpaceApp(A.AppArguments(model=str(model_dir), run_dir=str(run_dir)))) == ["Annotate", "Classify"]


def test_the_shipped_demo_model_gets_each_example_right_as_a_single_clip():
    """spaces_demo/model is the demo's deployable model and spaces_demo/examples/ are held-out test clips it
    classifies correctly one at a time (as the Space does: no speaker statistics), whole clips of >= 2 s, as
    examples.json records them (spaces_demo/make_examples.py). A refreshed model without refreshed examples fails."""
    from space_support import SPACE_DIR

    from after_hf.data.audio import duration_seconds
    from after_hf.evaluation import load_model_for_eval
    from after_hf.inference import predict

    info = json.loads((SPACE_DIR / "examples" / "examples.json").read_text())["clips"]
    assert sorted(p.name for p in EXAMPLES) == sorted(info) and len(EXAMPLES) >= 3
    model, fe, names = load_model_for_eval(str(SPACE_DIR / "model"))
    probs = predict(model, fe, [str(p) for p in EXAMPLES], progress=False)["probs"]
    assert [names[i] for i in probs.argmax(1)] == [p.stem for p in EXAMPLES]
    for path in EXAMPLES:
        assert duration_seconds(path) >= 2.0 and abs(duration_seconds(path) - info[path.name]["duration_s"]) < 0.05
