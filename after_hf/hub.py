"""`after-hf push`: a model card with model-index results, then ``create_repo`` + ``upload_folder``.

    after-hf push --model runs/demo/final/model --repo_id USER/NAME [--private] [--dry_run OUT]

The folder that is uploaded is built first (the model directory's safe files + a generated README.md);
``--dry_run OUT`` writes exactly that folder to OUT and makes no network call. A real push needs
``HF_HUB_OFFLINE=0`` and a token in ``HF_TOKEN`` (or ``hf auth login``).

The card is ``templates/model_card.md`` filled from the model directory (every file optional except the weights):
``config.json`` (the classes), ``metrics.json`` and ``after_hf_provenance.json`` (``after_hf.model_info``: one
typed structure each, written by ``after-hf deploy`` / ``finetune`` / ``evaluate``), ``training_config.json``
(fine-tuning options) and transformers ``Trainer`` result files (``<set>_results.json``). Nothing local travels:
the uploaded ``training_config.json`` loses its paths, and the provenance records local directories by name only.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .config import parse_args
from .errors import AfterHFError
from .io import atomic_write_text
from .model_info import (GENERATED_NOTICE, ModelInfoError, ModelMetrics, Provenance, chance_levels, is_hub_id,
                         labels_sentence, portable_name, read_metrics, read_provenance)

TRAINING_CONFIG_FILE = "training_config.json"
CARD_TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
# Only these top-level files of the model directory are uploaded: no pickles (*.bin, *.pt, training_args.bin),
# no checkpoints or optimizer states, no sub-directories.
UPLOAD_SUFFIXES = {".json", ".safetensors", ".png", ".md", ".txt", ".yaml"}
LOCAL_OPTIONS = ("manifest", "output_dir", "model")  # training_config.json keys that hold local paths
# (metric key in our metrics files, model-index metric type, display name)
CARD_METRICS = (
    ("ua", "unweighted_accuracy", "UA (unweighted accuracy)"),
    ("wa", "accuracy", "WA (weighted accuracy)"),
    ("macro_f1", "f1", "Macro-F1"),
)
SET_ALIASES = {"eval": "validation"}  # Trainer's prefix for the validation set


@dataclass
class PushArguments:
    model: str = field(metadata={
        "help": "Model directory (`after-hf deploy` / `finetune` output: config.json, *.safetensors, "
                "preprocessor_config.json, metrics.json, optional after_hf_provenance.json)."})
    repo_id: str = field(metadata={"help": "Hub model repository to create or update, as USER/NAME or ORG/NAME."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    dry_run: Optional[str] = field(default=None, metadata={
        "help": "Write the exact folder that would be uploaded to this directory and make no network call."})
    commit_message: str = field(default="Upload after-hf speech emotion recognition model",
                                metadata={"help": "Commit message of the upload."})


class PushError(AfterHFError, ValueError):
    """A model directory or repo id that cannot be pushed; the message names the fix."""


# -- reading the model directory ------------------------------------------------------------------------

def _read_optional_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PushError(f"{path} is not valid JSON ({err}); fix or delete it before pushing.") from err
    if not isinstance(data, dict):
        raise PushError(f"{path} must hold a JSON object, got {type(data).__name__}; fix or delete it.")
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_eval_results(model_dir: Path) -> dict[str, dict[str, float]]:
    """``{evaluation set: {"ua"|"wa"|"macro_f1": value}}`` from metrics.json and Trainer result files."""
    results: dict[str, dict[str, float]] = {}

    def add(set_name: str, values: dict) -> None:
        picked = {key: _number(values.get(key)) for key, _, _ in CARD_METRICS}
        picked = {k: v for k, v in picked.items() if v is not None}
        if picked:
            results.setdefault(SET_ALIASES.get(set_name, set_name), {}).update(picked)

    # Trainer.save_metrics: <set>_results.json / all_results.json with "<set>_<metric>" keys.
    pattern = re.compile(r"^(?P<set>.+?)_(?P<metric>ua|wa|macro_f1)$")
    for path in sorted(model_dir.glob("*results.json")):
        flat: dict[str, dict[str, float]] = {}
        for key, value in _read_optional_json(path).items():
            match = pattern.match(key)
            if match:
                flat.setdefault(match["set"], {})[match["metric"]] = value
        for set_name, values in flat.items():
            add(set_name, values)
    for set_name, values in _model_files(model_dir)[0].splits.items():  # metrics.json wins
        if isinstance(values, dict):
            add(set_name, values)
    return results


def _model_files(model_dir: Path) -> tuple[ModelMetrics, Provenance | None]:
    try:
        return read_metrics(model_dir) or ModelMetrics(), read_provenance(model_dir)
    except ModelInfoError as err:
        raise PushError(str(err)) from err


def read_label_names(model_dir: Path) -> list[str]:
    config = _read_optional_json(model_dir / "config.json")
    id2label = config.get("id2label") or {}
    try:
        return [id2label[k] for k in sorted(id2label, key=int)]
    except (ValueError, TypeError):
        return list(id2label.values())


def check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise PushError(f"model directory {model_dir} not found: pass the directory written by `after-hf deploy` "
                        f"(OUT/model) or `after-hf finetune` (OUTPUT_DIR/model) to --model.")
    if not (model_dir / "config.json").is_file():
        raise PushError(f"{model_dir} has no config.json: pass a directory written by `save_pretrained`.")
    if not any(model_dir.glob("*.safetensors")):
        raise PushError(f"{model_dir} has no *.safetensors weights (only safetensors are uploaded): re-save the model "
                        f"with `model.save_pretrained(DIR)` (safetensors is the default).")
    if not read_label_names(model_dir):
        raise PushError(f"{model_dir}/config.json has no id2label: save a classifier made by `after-hf deploy`.")


def check_repo_id(repo_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo_id or "") or ".." in repo_id:
        raise PushError(f"--repo_id '{repo_id}' is not a Hub repository id: use USER/NAME (letters, digits, '-', '_', "
                        f"'.').")


# -- the card: templates/model_card.md filled from the model directory ----------------------------------------------

def _results_table(results: dict[str, dict[str, float]]) -> str:
    if not results:
        return "No evaluation results were found in the model directory (metrics.json)."
    rows = ["| evaluation set | UA | WA | macro-F1 |", "|---|---|---|---|"]
    for set_name, metrics in results.items():
        rows.append(f"| {set_name} | " + " | ".join(f"{metrics[k]:.4f}" if k in metrics else "–"
                                                   for k, _, _ in CARD_METRICS) + " |")
    return "\n".join(rows)


def _method(provenance: Provenance | None, metrics: ModelMetrics, training: dict) -> dict[str, str]:
    """The card's method sentences: backbone, TAPT, how the classifier was trained, fine-tuning options."""
    base = (provenance.base_model if provenance else None) or portable_name(training.get("model"))
    tapt = provenance.tapt if provenance else None
    if tapt:
        steps = f", {tapt.steps} steps" if tapt.steps else ""
        tapt_md = (f"The backbone was first adapted by task-adaptive pre-training (TAPT{steps}, on {tapt.data}): "
                   f"wav2vec 2.0's own self-supervised objective continued on the task's unlabelled audio.")
    else:
        tapt_md = "No task-adaptive pre-training (TAPT) is recorded for this model."
    kind = (provenance.kind if provenance else None) or metrics.kind
    soft = (provenance.labels.soft_labels if provenance else False) or bool(training.get("soft_labels"))
    to = " to each clip's vote distribution (soft labels)" if soft else ""
    if kind == "head":
        norm = (", each clip's features centred on its speaker's mean over that speaker's clips (speaker "
                "normalisation)" if metrics.training.get("speaker_norm") else "")
        training_md = ("Training: the whole encoder frozen; a softmax-weighted sum of its layers, a linear projector, "
                       "mean pooling over time and a linear classifier trained on the labelled clips (wav2vec2's "
                       f"`use_weighted_layer_sum` head) with class-weighted cross-entropy{to}{norm}.")
    else:
        what = ("LoRA adapters on the attention projections (merged into the weights)" if kind == "lora"
                else "the encoder")
        # what the training config records (finetune's defaults where an older config lacks a key)
        loss = "class-weighted cross-entropy" if training.get("class_weighted_loss", True) else "cross-entropy"
        cnn = "frozen" if training.get("freeze_feature_encoder", True) else "trained too"
        norm = (", each clip's pooled vector centred on its speaker's mean (speaker normalisation)"
                if training.get("speaker_norm") else "")
        training_md = (f"Fine-tuning: {what} and a linear head trained with {loss}{to}, CNN feature encoder {cnn}, "
                       f"masked mean pooling{norm}.")
    hyper = {k: training[k] for k in ("learning_rate", "num_train_epochs", "per_device_train_batch_size",
                                      "max_train_seconds", "lora", "class_weighted_loss", "seed") if k in training}
    return {"base_md": f"`{base}`" if base else "a wav2vec 2.0 backbone", "tapt_md": tapt_md,
            "training_md": training_md,
            "hyper_md": ("\n\nFine-tuning options: " + ", ".join(f"`{k}={v}`" for k, v in hyper.items()) + ".")
            if hyper else ""}


def _card_data(provenance: Provenance | None, results: dict, model_name: str, base_model: str | None):
    from huggingface_hub import EvalResult, ModelCardData

    data = provenance.training_data if provenance else None
    dataset_type = ("after-hf-synth" if data.generated else "+".join(data.corpora) or "custom") if data else "custom"
    dataset_name = data.name if data else "after-hf manifest"
    eval_results = [
        EvalResult(task_type="audio-classification", task_name="Speech emotion recognition", dataset_type=dataset_type,
                   dataset_name=f"{dataset_name} ({set_name})", dataset_split=set_name, metric_type=metric_type,
                   metric_name=display, metric_value=round(metrics[key], 4))
        for set_name, metrics in results.items() for key, metric_type, display in CARD_METRICS if key in metrics
    ]
    return ModelCardData(
        model_name=model_name, language=provenance.language if provenance else None,
        license=provenance.license if provenance else "apache-2.0", library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["audio-classification", "speech-emotion-recognition", "wav2vec2", "active-learning", "after-hf"]
        + (["synthetic-speech"] if data and data.generated else []),
        base_model=base_model if is_hub_id(base_model) else None,
        datasets=[d for d in data.hub_ids if is_hub_id(d)] or None if data else None,
        eval_results=eval_results or None,
    )


def _parameter_count(model_dir: Path) -> str | None:
    """"0.7 M" / "94.4 M": the number of values in model.safetensors (read from its header, no weights loaded)."""
    from safetensors import safe_open

    path = model_dir / "model.safetensors"
    if not path.is_file():
        return None
    with safe_open(str(path), framework="numpy") as weights:
        total = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return f"{total / 1e6:.1f} M"


def build_card(model_dir: Path, repo_id: str):
    """The ``huggingface_hub.ModelCard`` for ``model_dir``: ``templates/model_card.md`` rendered with its facts."""
    from huggingface_hub import ModelCard

    metrics, provenance = _model_files(model_dir)
    training = _read_optional_json(model_dir / TRAINING_CONFIG_FILE)
    labels, results = read_label_names(model_dir), read_eval_results(model_dir)
    method = _method(provenance, metrics, training)
    chance = chance_levels(metrics, "test")
    if provenance:
        data = provenance.training_data
        training_data_md = f"{data.name}" + (f", {data.protocol} split protocol" if data.protocol else "") + "."
    else:
        training_data_md = f"An after-hf manifest ({training['num_train']} clips)." if training.get("num_train") else \
            "Not recorded (the model directory has no after_hf_provenance.json)."
    counts = training.get("train_label_counts") or {}
    if counts:
        training_data_md += "\n\nLabelled clips per class used for the final model: " + ", ".join(
            f"{k} {v}" for k, v in counts.items()) + "."
    card_data = _card_data(provenance, results, repo_id.split("/")[-1], provenance.base_model if provenance else
                           training.get("model"))
    return ModelCard.from_template(
        card_data, template_path=str(CARD_TEMPLATE), repo_id=repo_id, model_name=repo_id.split("/")[-1],
        generated=bool(provenance and provenance.training_data.generated), generated_notice=GENERATED_NOTICE,
        num_classes=len(labels), class_list=", ".join(labels), results_table=_results_table(results),
        chance={**chance, "n_classes": round(1 / chance["ua"])} if chance else None,
        label_set=", ".join(f"`{i}`: {name}" for i, name in enumerate(labels)), training_data_md=training_data_md,
        labels_md=labels_sentence(provenance.labels) if provenance else "",
        has_validation="validation" in results, num_parameters=_parameter_count(model_dir),
        single_clip=(metrics.splits.get("test", {}).get("single_clip")
                     if metrics.training.get("speaker_norm") or training.get("speaker_norm") else None),
        labels_fallback=("supervised fine-tuning on all labels of the training split"
                         + (f" ({training['num_train']} clips)" if training.get("num_train") else "")
                         + " (no active learning)."),
        **method,
    )


# -- the upload folder and the push ----------------------------------------------------------------------

def stage_upload(model_dir: Path, repo_id: str, out_dir: Path) -> list[str]:
    """Write the folder to upload (safe model files + README.md) into ``out_dir``; return its file names."""
    check_model_dir(model_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PushError(f"{out_dir} already exists and is not empty: choose a new --dry_run directory or delete it.")
    out_dir.mkdir(parents=True, exist_ok=True)
    card = build_card(model_dir, repo_id)
    for path in sorted(model_dir.iterdir()):
        if not (path.is_file() and path.suffix in UPLOAD_SUFFIXES and path.name != "README.md"):
            continue
        if path.name == TRAINING_CONFIG_FILE:  # the fine-tuning options travel, this machine's paths do not
            options = _read_optional_json(path)
            options.update({k: portable_name(options[k]) for k in LOCAL_OPTIONS if k in options})
            atomic_write_text(out_dir / path.name, json.dumps(options, indent=2, sort_keys=True) + "\n")
        else:
            shutil.copy2(path, out_dir / path.name)
    atomic_write_text(out_dir / "README.md", str(card))
    return sorted(p.name for p in out_dir.iterdir())


def hub_token() -> str:
    """The token from the environment (HF_TOKEN) or the stored login; fail fast without one."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN (a write token) or run `hf auth login`, or use "
                        "--dry_run OUT.")
    return token


def check_online() -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise PushError("the Hub is offline (HF_HUB_OFFLINE=1): run with HF_HUB_OFFLINE=0 to push, or use --dry_run "
                        "OUT to write the folder that would be uploaded.")


def upload(folder: Path, repo_id: str, *, repo_type: str = "model", private: bool = False,
           commit_message: str, space_sdk: str | None = None) -> str:
    """``create_repo`` (exist_ok) + ``upload_folder``; returns the commit URL."""
    from huggingface_hub import create_repo, upload_folder

    check_online()
    token = hub_token()
    repo = create_repo(repo_id=repo_id, token=token, private=private, repo_type=repo_type, exist_ok=True,
                       space_sdk=space_sdk)
    commit = upload_folder(repo_id=repo.repo_id, folder_path=str(folder), repo_type=repo_type, token=token,
                           commit_message=commit_message)
    return str(getattr(commit, "commit_url", commit))


def push(args: PushArguments) -> Path | str:
    """Dry run: the written folder. Otherwise: the commit URL on the Hub."""
    check_repo_id(args.repo_id)
    model_dir = Path(args.model)
    if args.dry_run:
        out = Path(args.dry_run)
        files = stage_upload(model_dir, args.repo_id, out)
        print(f"dry run: {len(files)} files that would be uploaded to {args.repo_id} written to {out}: "
              f"{', '.join(files)}")
        return out
    check_online()
    with tempfile.TemporaryDirectory(prefix="after-hf-push-") as tmp:
        stage_upload(model_dir, args.repo_id, Path(tmp) / "upload")
        url = upload(Path(tmp) / "upload", args.repo_id, private=args.private, commit_message=args.commit_message)
    print(f"pushed {model_dir} to https://huggingface.co/{args.repo_id} ({url})")
    return url


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args([PushArguments], argv, prog="after-hf push", description=__doc__, section="push")
    push(args)  # a PushError / ConfigError is one line at the CLI's boundary (after_hf.cli)
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("push", main)
