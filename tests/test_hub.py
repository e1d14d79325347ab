"""after-hf push / push-space (dry runs, card, real-call contract) and loading a model by Hub id from a local cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from space_support import EXAMPLES, LABELS, REPO, SPACE_DIR, save_tiny_classifier, write_model_files

from after_hf.cli import main as cli_main
from after_hf.hub import PushArguments, PushError, build_card, push, read_eval_results
from after_hf.hub_space import SPACE_MODULES, PushSpaceArguments, push_space
from after_hf.model_info import LabelInfo, ModelMetrics, Provenance, TaptInfo, TrainingData

def _scores(ua, wa, f1, matrix=None):
    matrix = matrix or [[30, 5, 3, 2], [6, 28, 4, 2], [3, 4, 30, 3], [2, 3, 5, 30]]
    return {"ua": ua, "wa": wa, "macro_f1": f1, "label_names": LABELS, "confusion_matrix": matrix,
            "num_samples": sum(map(sum, matrix))}


METRICS = ModelMetrics(
    splits={"validation": _scores(0.7123, 0.7301, 0.7002), "test": _scores(0.6543, 0.6611, 0.6401,
                                                                              [[50, 5, 3, 2], [6, 18, 4, 2],
                                                                               [3, 4, 20, 3], [2, 3, 5, 10]])},
    kind="full", description="whole classifier fine-tuned", backbone="/home/someone/runs/tapt", num_classes=4,
    num_labelled=1106, training={"best_step": 12, "train_seconds": 3.5})
PROVENANCE = Provenance(
    model_name="after-hf SER", kind="full", base_model="facebook/wav2vec2-base",
    labels=LabelInfo(oracle="human", labelled_clips=1106, pool_clips=5531, skipped_clips=3, answers=1130,
                     annotators=3, strategy="entropy", cold_start="kmeans", rounds=4),
    training_data=TrainingData(name="IEMOCAP sessions 1-4", corpora=["iemocap"], protocol="loso"),
    tapt=TaptInfo(steps=20000, data="the train split's audio (no labels)"), language="en")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = save_tiny_classifier(tmp_path_factory.mktemp("model") / "model")
    write_model_files(out, METRICS, PROVENANCE, {"model": "facebook/wav2vec2-base", "num_train": 1106,
                                                 "manifest": str(out.parent / "manifest"),
                                                 "output_dir": str(out.parent),
                                                 "train_label_counts": {"neutral": 300, "sad": 250}})
    (out / "training_args.bin").write_bytes(b"pickled trainer state")  # must never be uploaded
    return out


def _uploaded_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.iterdir() if p.suffix in (".json", ".md"))


def test_dry_run_card_parses_and_shows_metrics(model_dir, tmp_path):
    from huggingface_hub import ModelCard

    out = tmp_path / "upload"
    assert cli_main(["push", "--model", str(model_dir), "--repo-id", "me/ser-model", "--dry-run", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert "README.md" in files and "model.safetensors" in files and "preprocessor_config.json" in files
    assert "training_args.bin" not in files  # pickles stay home
    assert (out / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()

    card = ModelCard.load(out / "README.md")
    found = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert found == {
        ("validation", "unweighted_accuracy"): 0.7123, ("validation", "accuracy"): 0.7301, ("validation", "f1"): 0.7002,
        ("test", "unweighted_accuracy"): 0.6543, ("test", "accuracy"): 0.6611, ("test", "f1"): 0.6401,
    }
    assert {r.dataset_type for r in card.data.eval_results} == {"iemocap"}
    assert card.data.base_model == "facebook/wav2vec2-base"
    assert card.data.pipeline_tag == "audio-classification"
    text = card.text
    assert "| validation | 0.7123 | 0.7301 | 0.7002 |" in text
    assert "**4 classes** (neutral, happy, angry, sad)" in text  # classes ...
    assert "**1106 human-labelled clips** (20.0% of the 5531-clip training pool)" in text  # ... and clips, named apart
    assert "(entropy query strategy after a kmeans cold start, 4 rounds)" in text
    assert "labelled by 3 people" in text and "1130 answers" in text
    assert "TAPT, 20000 steps" in text
    # chance level and the test set's class balance (from its confusion matrix: 60 / 30 / 30 / 20 clips)
    assert "Chance level on the test set: UA **0.250**" in text and "WA **0.429**" in text and "neutral)" in text
    assert "Test set: 140 clips; class balance: neutral 60 (43%), happy 30 (21%), angry 30 (21%), sad 20 (14%)" in text
    assert all(label in text for label in LABELS)
    assert "## Intended use" in text and "## Limitations" in text
    assert "generated speech" not in text.lower()  # recordings of people: no such warning
    # nothing local travels: not in the card, not in the uploaded JSON files
    uploaded = _uploaded_text(out)
    assert str(model_dir.parent) not in uploaded and "/home/someone" not in uploaded
    assert json.loads((out / "training_config.json").read_text())["manifest"] == "manifest"


def test_card_of_a_model_trained_on_generated_speech_says_so_first(tmp_path):
    from huggingface_hub import ModelCard

    model = save_tiny_classifier(tmp_path / "model")
    data = TrainingData(name="generated emotional speech (after-hf synth, espeak-ng)", corpora=["cremad"],
                        generated=True, protocol="speaker")
    write_model_files(model, METRICS, replace(PROVENANCE, training_data=data))
    out = push(PushArguments(model=str(model), repo_id="me/synth", dry_run=str(tmp_path / "up")))
    card = ModelCard.load(out / "README.md")
    first_lines = card.text.strip().splitlines()[:4]
    assert any("Trained on generated speech" in line for line in first_lines), first_lines
    assert "synthetic-speech" in card.data.tags
    assert {r.dataset_type for r in card.data.eval_results} == {"after-hf-synth"}


def test_card_of_a_speaker_normalised_head_says_what_pipeline_gets(tmp_path):
    """A head trained on speaker-centred features: the card says so, gives the single-clip figures beside the
    `pipeline` example, warns that validation chose the model, counts parameters and says nothing twice."""
    model = save_tiny_classifier(tmp_path / "model")
    test = {**_scores(0.6543, 0.6611, 0.6401), "single_clip": {"ua": 0.4321, "wa": 0.4567, "macro_f1": 0.41}}
    head = replace(METRICS, kind="head", splits={**METRICS.splits, "test": test},
                   training={"head_epochs": 200, "speaker_norm": True})
    data = TrainingData(name="generated speech", corpora=["cremad"], generated=True, protocol="speaker")
    write_model_files(model, head, replace(PROVENANCE, kind="head", training_data=data))
    text = build_card(model, "me/head").text
    assert "centred on its speaker's mean over that speaker's clips (speaker normalisation)" in text
    assert "one clip alone, the test set\ngives UA **0.432** (WA 0.457)" in text
    assert "validation split may have chosen the model" in text
    assert re.search(r"the classifier has \d+\.\d M parameters", text)
    assert text.count("Trained on generated speech") == 1 and text.count("1106 human-labelled clips") == 1
    plain = replace(head, training={"head_epochs": 200})  # no speaker normalisation: pipeline gets the test figures
    write_model_files(model, plain, replace(PROVENANCE, kind="head", training_data=data))
    text = build_card(model, "me/head").text
    assert "speaker normalisation" not in text and "one clip alone" not in text


def test_card_without_metrics_or_provenance_still_renders(tmp_path):
    from huggingface_hub import ModelCard

    bare = save_tiny_classifier(tmp_path / "bare")
    out = push(PushArguments(model=str(bare), repo_id="me/bare", dry_run=str(tmp_path / "up")))
    card = ModelCard.load(out / "README.md")
    assert card.data.eval_results is None and "model-index" not in card.content
    assert "No evaluation results were found" in card.text
    assert "all labels of the training split" in card.text and "No task-adaptive pre-training" in card.text


@pytest.mark.parametrize("soft", [True, False])
def test_card_says_soft_labels_when_the_training_config_records_them(tmp_path, soft):
    """finetune's training_config.json records what training used (``soft_labels``): the card follows it."""
    bare = save_tiny_classifier(tmp_path / "bare")
    (bare / "training_config.json").write_text(json.dumps({"num_train": 12, "soft_labels": soft}))
    card = build_card(bare, "me/bare")
    assert ("vote distribution (soft labels)" in card.text) is soft


def test_card_describes_the_fine_tuning_the_training_config_records(tmp_path):
    """CNN frozen or trained, class weights, speaker normalisation: the card says what the run did, not defaults."""
    bare = save_tiny_classifier(tmp_path / "bare")
    config = {"num_train": 12, "freeze_feature_encoder": False, "class_weighted_loss": False, "speaker_norm": True}
    (bare / "training_config.json").write_text(json.dumps(config))
    text = build_card(bare, "me/bare").text
    assert "trained with cross-entropy, CNN feature encoder trained too" in text and "speaker normalisation" in text
    (bare / "training_config.json").write_text(json.dumps({"num_train": 12}))  # an older config: finetune's defaults
    text = build_card(bare, "me/bare").text
    assert "class-weighted cross-entropy, CNN feature encoder frozen" in text and "speaker normalisation" not in text


def test_provenance_from_an_older_after_hf_is_refused_with_the_fix(tmp_path):
    model = save_tiny_classifier(tmp_path / "old")
    (model / "after_hf_provenance.json").write_text(json.dumps({"base_model": "small", "active_learning": {}}))
    with pytest.raises(PushError, match="older after-hf.*after-hf deploy"):
        push(PushArguments(model=str(model), repo_id="me/old", dry_run=str(tmp_path / "up")))


def test_trainer_result_files_are_read(tmp_path):
    (tmp_path / "all_results.json").write_text(json.dumps({"eval_ua": 0.5, "eval_wa": 0.6, "test_macro_f1": 0.4,
                                                           "eval_loss": 1.2, "epoch": 3.0}))
    (tmp_path / "metrics.json").write_text(json.dumps({"validation": {"ua": 0.55}, "best_step": 3}))
    assert read_eval_results(tmp_path) == {"validation": {"ua": 0.55, "wa": 0.6}, "test": {"macro_f1": 0.4}}


@pytest.mark.parametrize("problem", ["no_weights", "bad_repo", "non_empty_out", "corrupt_metrics"])
def test_push_refuses_bad_input_with_the_fix(model_dir, tmp_path, problem):
    model, repo, out = model_dir, "me/ser", tmp_path / "out"
    if problem == "no_weights":
        model = tmp_path / "m"
        model.mkdir()
        (model / "config.json").write_text("{}")
        expected = "safetensors"
    elif problem == "bad_repo":
        repo, expected = "not a repo id", "USER/NAME"
    elif problem == "non_empty_out":
        out.mkdir()
        (out / "x").write_text("x")
        expected = "not empty"
    else:
        model = tmp_path / "m"
        save_tiny_classifier(model)
        (model / "metrics.json").write_text("{broken")
        expected = "metrics.json is not valid JSON"
    with pytest.raises(PushError, match=expected):
        push(PushArguments(model=str(model), repo_id=repo, dry_run=str(out)))


def test_real_push_offline_fails_fast_naming_dry_run(model_dir, capsys):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert cli_main(["push", "--model", str(model_dir), "--repo_id", "me/ser"]) == 2
    assert "--dry_run" in capsys.readouterr().err


def test_real_push_uploads_the_dry_run_folder_with_keyword_calls(model_dir, tmp_path, monkeypatch):
    """create_repo / upload_folder are recorded (the Hub is unreachable here): the same folder as the dry run,
    keyword arguments only, the token from HF_TOKEN."""
    import huggingface_hub
    from huggingface_hub import constants

    calls = []

    def create_repo(*args, **kwargs):
        assert not args, "create_repo must be called with keyword arguments"
        calls.append(("create_repo", kwargs))
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{kwargs['repo_id']}")

    def upload_folder(*args, **kwargs):
        assert not args, "upload_folder must be called with keyword arguments"
        folder = Path(kwargs["folder_path"])
        calls.append(("upload_folder", {**kwargs, "files": {p.name: p.read_bytes() for p in folder.iterdir()}}))
        return "https://huggingface.co/me/ser/commit/0"

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    push(PushArguments(model=str(model_dir), repo_id="me/ser", private=True))
    dry = push(PushArguments(model=str(model_dir), repo_id="me/ser", dry_run=str(tmp_path / "dry")))

    (name1, create), (name2, up) = calls
    assert (name1, name2) == ("create_repo", "upload_folder")
    assert create["repo_id"] == "me/ser" and create["private"] is True and create["token"] == "hf_test_token"
    assert create["exist_ok"] is True and create["repo_type"] == "model"
    assert up["repo_id"] == "me/ser" and up["token"] == "hf_test_token" and up["repo_type"] == "model"
    assert up["files"] == {p.name: p.read_bytes() for p in dry.iterdir()}


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def build_hub_cache(cache: Path, repo_id: str, model_dir: Path, commit: str) -> Path:
    """huggingface_hub's cache layout: blobs named by their hash (sha256 for LFS files such as safetensors, the git
    blob sha1 otherwise), snapshots/<commit>/ holding relative symlinks to them, refs/main holding the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in sorted(model_dir.iterdir()):
        data = path.read_bytes()
        blob = hashlib.sha256(data).hexdigest() if path.suffix == ".safetensors" else _git_blob_sha1(data)
        (repo / "blobs" / blob).write_bytes(data)
        (snapshot / path.name).symlink_to(Path("..", "..", "blobs", blob))
    (repo / "refs" / "main").write_text(commit)
    return repo


def test_space_folder_runs_alone_and_loads_the_model_by_hub_id_offline(model_dir, tmp_path):
    """The push-space dry-run folder is a complete Space; run in a subprocess (HF env vars are read when
    huggingface_hub is imported) with HF_HUB_OFFLINE=1 and a local HF cache holding ``org/ser-tiny``, its app imports
    only the bundled after_hf copy, and ``org/ser-tiny`` loads by Hub id through ``after_hf.models`` and the app."""
    import gradio
    from huggingface_hub import SpaceCard

    out = tmp_path / "space"
    assert cli_main(["push-space", "--model", "org/ser-tiny", "--repo_id", "me/ser-space", "--dry_run", str(out)]) == 0
    card = SpaceCard.load(out / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and (out / card.data.app_file).is_file()
    assert card.data.sdk_version == gradio.__version__  # the version the tests ran
    assert card.data.models == ["org/ser-tiny"] and card.data.title and card.data.emoji and card.data.license
    pins = dict(line.split("==") for line in (out / "requirements.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins["gradio"] == gradio.__version__ and "torch" in pins and "transformers" in pins
    assert "DEFAULT_MODEL = 'org/ser-tiny'" in (out / "app.py").read_text()
    examples = sorted((out / "examples").iterdir())
    assert [p.name for p in examples] == [p.name for p in EXAMPLES] and len(examples) >= 3
    assert sum(p.stat().st_size for p in examples) < 100_000
    bundled = sorted(str(p.relative_to(out / "after_hf")) for p in (out / "after_hf").rglob("*.py"))
    assert bundled == sorted(SPACE_MODULES) and not (out / "make_examples.py").exists()
    assert (out / "after_hf" / "models.py").read_bytes() == (REPO / "after_hf" / "models.py").read_bytes()

    cache = tmp_path / "hub_cache"
    commit = "0123456789abcdef0123456789abcdef01234567"
    build_hub_cache(cache, "org/ser-tiny", model_dir, commit)
    check = textwrap.dedent(f"""
        import sys
        import torch
        from huggingface_hub import scan_cache_dir
        from safetensors.torch import load_file
        import app
        from after_hf.models import load_classifier, load_feature_extractor
        files = [m.__file__ for name, m in sys.modules.items() if name.split(".")[0] == "after_hf"]
        outside = [f for f in files if not f.startswith(sys.argv[1])]
        assert files and not outside, outside
        info = scan_cache_dir()
        (repo,) = info.repos
        assert repo.repo_id == "org/ser-tiny" and not info.warnings, info.warnings
        assert {{r.commit_hash for r in repo.revisions}} == {{{commit!r}}}
        saved = load_file({str(model_dir / "model.safetensors")!r})
        model = load_classifier("org/ser-tiny", {LABELS!r})
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in saved.items()), "weights differ from the saved model"
        assert [model.config.id2label[k] for k in sorted(model.config.id2label, key=int)] == {LABELS!r}
        assert load_feature_extractor("org/ser-tiny").sampling_rate == 16000
        space = app.SpaceApp(app.resolve_args([]))  # DEFAULT_MODEL = org/ser-tiny
        assert space.title == "[org/ser-tiny](https://huggingface.co/org/ser-tiny)", space.title
        # from the Hub
        assert "Test UA 0.654" in space.about and "1106 human-labelled clips" in space.about, space.about
        state = space.classifier.model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in saved.items())
        probs, _, _ = space.classify("examples/{EXAMPLES[0].name}")
        assert list(probs) == {LABELS!r} and abs(sum(probs.values()) - 1) < 1e-5
        print("self-contained, loaded by id")
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("AFTER_HF_MODEL", "AFTER_HF_RUN")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "hf_home"))
    run = subprocess.run([sys.executable, "-c", check, str(out.resolve())], cwd=out, env=env, capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "self-contained, loaded by id" in run.stdout


def test_push_space_bundles_a_local_model_dir(model_dir, tmp_path):
    out = push_space(PushSpaceArguments(model=str(model_dir), repo_id="me/ser-space", dry_run=str(tmp_path / "s")))
    assert "DEFAULT_MODEL = 'model'" in (out / "app.py").read_text()
    assert (out / "model" / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    assert (out / "model" / "preprocessor_config.json").is_file()
    assert not (out / "model" / "training_args.bin").exists()
    with pytest.raises(PushError, match="neither a local model directory nor a Hub id"):
        push_space(PushSpaceArguments(model="no/such/dir", repo_id="me/s", dry_run=str(tmp_path / "s3")))


def test_space_source_front_matter():
    import gradio
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(SPACE_DIR / "README.md")
    assert (card.data.sdk, card.data.sdk_version, card.data.app_file) == ("gradio", gradio.__version__, "app.py")
    assert len(card.data.short_description) <= 60  # the Hub's limit
