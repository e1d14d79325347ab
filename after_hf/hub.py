"""`after-hf push`: a model card with model-index results, then ``create_repo`` + ``upload_folder``.

    after-hf push --model runs/demo/final/model --repo_id USER/NAME [--private] [--dry_run OUT]

The folder that is uploaded is built first (the model directory's safe files + a generated README.md);
``--dry_run OUT`` writes exactly that folder to OUT and makes no network call. A real push needs
``HF_HUB_OFFLINE=0`` and a token in ``HF_TOKEN`` (or ``hf auth login``).

What the card is made of, all read from the model directory (every file optional except the weights):

* ``config.json`` (``id2label``: the label set), ``*.safetensors``, ``preprocessor_config.json``;
* ``metrics.json`` (written by ``after-hf finetune``): ``{"<evaluation set>": {"ua", "wa", "macro_f1", ...}, ...}``;
  transformers ``Trainer`` files (``all_results.json``, ``<set>_results.json`` with ``<set>_ua`` keys) are read too;
* ``training_config.json`` (written by ``after-hf finetune``): the options, ``label_names``, ``num_train``;
* ``after_hf_provenance.json`` — how the model was made, written by the experiment / AL runner. Schema
  (every key optional; unknown keys are kept in the uploaded file but not shown)::

      {
        "base_model": "facebook/wav2vec2-base",           # backbone before TAPT (a Hub id goes to card metadata)
        "tapt": {"steps": 20000, "audio_hours": 5.2,       # continued pre-training; absent or null = none
                 "data": "IEMOCAP sessions 1-4 (training split audio)"},
        "active_learning": {"strategy": "entropy",         # absent or null = trained on all labels
                            "cold_start": "kmeans", "rounds": 5,
                            "labelled": 1106, "pool": 5531,  # -> % of labels used (or give "fraction_labelled")
                            "run_dir": "runs/demo/al/entropy_seed0"},
        "training_data": {"name": "IEMOCAP (4-class), sessions 1-4", "type": "iemocap",
                          "hub_ids": ["org/dataset"]},     # hub_ids go to the card's `datasets` metadata
        "eval_data": {"name": "IEMOCAP session 5", "type": "iemocap"},   # dataset named in model-index
        "language": "en",
        "license": "apache-2.0"
      }
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .config import ConfigError, parse_args
from .io import atomic_write_text

PROVENANCE_FILE = "after_hf_provenance.json"
METRICS_FILE = "metrics.json"
TRAINING_CONFIG_FILE = "training_config.json"
# Only these top-level files of the model directory are uploaded: no pickles (*.bin, *.pt, training_args.bin),
# no checkpoints or optimizer states, no sub-directories.
UPLOAD_SUFFIXES = {".json", ".safetensors", ".png", ".md", ".txt", ".yaml"}
# (metric key in our metrics files, model-index metric type, display name)
CARD_METRICS = (
    ("ua", "unweighted_accuracy", "UA (unweighted accuracy)"),
    ("wa", "accuracy", "WA (weighted accuracy)"),
    ("macro_f1", "f1", "Macro-F1"),
)
SET_ALIASES = {"eval": "validation"}  # Trainer's prefix for the validation set
PAPER = "https://arxiv.org/abs/2310.00283"


@dataclass
class PushArguments:
    model: str = field(metadata={"help": "Fine-tuned model directory (save_pretrained output: config.json, *.safetensors, "
                                         "preprocessor_config.json, metrics.json, optional after_hf_provenance.json)."})
    repo_id: str = field(metadata={"help": "Hub model repository to create or update, as USER/NAME or ORG/NAME."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    dry_run: Optional[str] = field(default=None, metadata={"help": "Write the exact folder that would be uploaded to this "
                                                                   "directory and make no network call."})
    commit_message: str = field(default="Upload after-hf speech emotion recognition model",
                                metadata={"help": "Commit message of the upload."})


class PushError(ValueError):
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


def _pick_metrics(values: dict) -> dict[str, float]:
    out = {}
    for key, _, _ in CARD_METRICS:
        number = _number(values.get(key))
        if number is not None:
            out[key] = number
    return out


def read_eval_results(model_dir: Path) -> dict[str, dict[str, float]]:
    """``{evaluation set: {"ua"|"wa"|"macro_f1": value}}`` from metrics.json and Trainer result files."""
    results: dict[str, dict[str, float]] = {}

    def add(set_name: str, metrics: dict[str, float]) -> None:
        if metrics:
            results.setdefault(SET_ALIASES.get(set_name, set_name), {}).update(metrics)

    # Trainer.save_metrics: <set>_results.json / all_results.json with "<set>_<metric>" keys.
    pattern = re.compile(r"^(?P<set>.+?)_(?P<metric>ua|wa|macro_f1)$")
    for path in sorted(model_dir.glob("*results.json")):
        flat: dict[str, dict[str, float]] = {}
        for key, value in _read_optional_json(path).items():
            match, number = pattern.match(key), _number(value)
            if match and number is not None:
                flat.setdefault(match["set"], {})[match["metric"]] = number
        for set_name, metrics in flat.items():
            add(set_name, metrics)
    # after-hf finetune's metrics.json: {"validation": {...}, "test": {...}, "best_step": ...}; it wins.
    for set_name, values in _read_optional_json(model_dir / METRICS_FILE).items():
        if isinstance(values, dict):
            add(set_name, _pick_metrics(values))
    return results


def read_label_names(model_dir: Path) -> list[str]:
    config = _read_optional_json(model_dir / "config.json")
    id2label = config.get("id2label") or {}
    try:
        return [id2label[k] for k in sorted(id2label, key=int)]
    except (ValueError, TypeError):
        return list(id2label.values())


def check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise PushError(f"model directory {model_dir} not found: pass the directory written by `after-hf finetune` "
                        f"(OUTPUT_DIR/model) to --model.")
    if not (model_dir / "config.json").is_file():
        raise PushError(f"{model_dir} has no config.json: pass a directory written by `save_pretrained`.")
    if not any(model_dir.glob("*.safetensors")):
        raise PushError(f"{model_dir} has no *.safetensors weights (only safetensors are uploaded): re-save the model "
                        f"with `model.save_pretrained(DIR)` (safetensors is the default).")
    if not read_label_names(model_dir):
        raise PushError(f"{model_dir}/config.json has no id2label: save a classifier made by `after-hf finetune`.")


def check_repo_id(repo_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo_id or "") or ".." in repo_id:
        raise PushError(f"--repo_id '{repo_id}' is not a Hub repository id: use USER/NAME (letters, digits, '-', '_', '.').")


# -- the card ---------------------------------------------------------------------------------------------

def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def _label_fraction(provenance: dict, training: dict) -> tuple[float | None, str]:
    """(fraction of the training pool's labels used, sentence describing the method)."""
    al = provenance.get("active_learning") or {}
    if al:
        fraction = _number(al.get("fraction_labelled"))
        labelled, pool = _number(al.get("labelled")), _number(al.get("pool"))
        if fraction is None and labelled is not None and pool:
            fraction = labelled / pool
        parts = [f"active learning with the **{al.get('strategy', 'unspecified')}** query strategy"]
        if al.get("cold_start"):
            parts.append(f"a **{al['cold_start']}** cold start")
        if al.get("rounds") is not None:
            parts.append(f"{al['rounds']} rounds")
        counted = f" ({int(labelled)} of {int(pool)} utterances)" if labelled is not None and pool else ""
        share = f"; **{_percent(fraction)}% of the training pool's labels** were used{counted}" if fraction is not None else ""
        return fraction, ", ".join(parts) + share + "."
    num_train = training.get("num_train")
    counted = f" ({num_train} utterances)" if num_train else ""
    return 1.0, f"supervised fine-tuning on all labels of the training split{counted} (no active learning)."


def _training_sentence(provenance: dict) -> str:
    if provenance.get("head_only"):
        return ("Training: the whole encoder frozen (head-only active learning); a softmax-weighted sum of its layers, "
                "a linear projector, mean pooling over time and a linear classifier trained on the labelled utterances "
                "(wav2vec2's `use_weighted_layer_sum` head).")
    return "Fine-tuning: CNN feature encoder frozen, masked mean pooling and a linear head, class-weighted cross-entropy."


def _tapt_sentence(provenance: dict) -> str:
    tapt = provenance.get("tapt")
    if not tapt:
        return "No task-adaptive pre-training (TAPT) is recorded for this model."
    details = []
    if isinstance(tapt, dict):
        if tapt.get("steps") is not None:
            details.append(f"{tapt['steps']} steps")
        if tapt.get("audio_hours") is not None:
            details.append(f"{tapt['audio_hours']} h of audio")
        if tapt.get("data"):
            details.append(f"on {tapt['data']}")
    extra = f", {', '.join(details)}" if details else ""
    return (f"The backbone was first adapted by task-adaptive pre-training (TAPT{extra}): wav2vec 2.0's own "
            f"self-supervised objective continued on the task's unlabelled training audio.")


def _is_hub_id(name: Any) -> bool:
    return isinstance(name, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not Path(name).exists()


def build_card(model_dir: Path, repo_id: str):
    """The ``huggingface_hub.ModelCard`` for ``model_dir`` (robust to missing metrics / provenance fields)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    provenance = _read_optional_json(model_dir / PROVENANCE_FILE)
    training = _read_optional_json(model_dir / TRAINING_CONFIG_FILE)
    labels = read_label_names(model_dir)
    results = read_eval_results(model_dir)
    model_name = repo_id.split("/")[-1]
    train_data = provenance.get("training_data") or {}
    eval_data = provenance.get("eval_data") or train_data
    dataset_type = str(eval_data.get("type") or "custom")
    dataset_name = str(eval_data.get("name") or "after-hf manifest")

    eval_results = [
        EvalResult(
            task_type="audio-classification", task_name="Speech emotion recognition",
            dataset_type=dataset_type, dataset_name=f"{dataset_name} ({set_name})", dataset_split=set_name,
            metric_type=metric_type, metric_name=display, metric_value=round(metrics[key], 4),
        )
        for set_name, metrics in results.items()
        for key, metric_type, display in CARD_METRICS
        if key in metrics
    ]
    base_model = provenance.get("base_model") or training.get("model")
    hub_datasets = [d for d in (train_data.get("hub_ids") or []) if _is_hub_id(d)]
    card_data = ModelCardData(
        model_name=model_name,
        language=provenance.get("language"),
        license=provenance.get("license", "apache-2.0"),
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["audio-classification", "speech-emotion-recognition", "wav2vec2", "active-learning", "after-hf"],
        base_model=base_model if _is_hub_id(base_model) else None,
        datasets=hub_datasets or None,
        eval_results=eval_results or None,
    )

    fraction, method = _label_fraction(provenance, training)
    if results:
        rows = ["| evaluation set | UA | WA | macro-F1 |", "|---|---|---|---|"]
        for set_name, metrics in results.items():
            cells = [f"{metrics[k]:.4f}" if k in metrics else "–" for k, _, _ in CARD_METRICS]
            rows.append(f"| {set_name} | " + " | ".join(cells) + " |")
        results_md = "\n".join(rows)
    else:
        results_md = "No evaluation results were found in the model directory (metrics.json)."
    train_name = train_data.get("name") or (f"the manifest `{Path(training['manifest']).name}`"
                                            if training.get("manifest") else "an after-hf manifest")
    counts = training.get("train_label_counts") or {}
    counts_md = ("\n\nLabelled utterances per class used for the final model: "
                 + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".") if counts else ""
    base_md = f"`{base_model}`" if base_model else "a wav2vec 2.0 backbone"
    hyper = {k: training[k] for k in ("learning_rate", "num_train_epochs", "per_device_train_batch_size",
                                      "max_train_seconds", "lora", "class_weighted_loss", "seed") if k in training}
    hyper_md = ("\n\nFine-tuning options: " + ", ".join(f"`{k}={v}`" for k, v in hyper.items()) + ".") if hyper else ""
    share_md = f" It used {_percent(fraction)}% of the available training labels." if fraction is not None else ""

    body = f"""
# {model_name}

Speech emotion recognition: a `Wav2Vec2ForSequenceClassification`-style audio classifier that predicts one of
**{", ".join(labels)}** from a speech recording (mono, 16 kHz). Trained with after-hf, an implementation of
AFTER ([arXiv 2310.00283]({PAPER})): task-adaptive pre-training (TAPT) and active-learning fine-tuning, so that
few labels are needed (see Method for what this model used).{share_md}

## Results

UA = unweighted accuracy (mean per-class recall), WA = weighted accuracy (plain accuracy), macro-F1; on full-length
utterances.

{results_md}

## Label set

{", ".join(f"`{i}`: {name}" for i, name in enumerate(labels))}

## Training data

{train_name}.{counts_md}

## Method

- Backbone: {base_md}.
- {_tapt_sentence(provenance)}
- Labels: {method}
- {_training_sentence(provenance)}{hyper_md}

## How to use

```python
from transformers import pipeline

classifier = pipeline("audio-classification", model="{repo_id}")
classifier("speech.wav")  # [{{"label": "...", "score": ...}}, ...]
```

## Intended use

Research and demonstrations of speech emotion recognition on short (a few seconds), single-speaker utterances
with the labels above; a starting point for fine-tuning on your own data.

## Limitations

- Emotion is acted or annotated, culturally dependent and ambiguous; the scores are not calibrated probabilities of
  a person's inner state. Do not use this model to make decisions about people (hiring, policing, health, credit).
- Accuracy drops on other languages, recording conditions, speakers and emotion styles than the training data's.
- Only the {len(labels)} labels above can be predicted; any other state is mapped to the nearest one.
"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")


# -- the upload folder and the push ----------------------------------------------------------------------

def stage_upload(model_dir: Path, repo_id: str, out_dir: Path) -> list[str]:
    """Write the folder to upload (safe model files + README.md) into ``out_dir``; return its file names."""
    check_model_dir(model_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PushError(f"{out_dir} already exists and is not empty: choose a new --dry_run directory or delete it.")
    out_dir.mkdir(parents=True, exist_ok=True)
    card = build_card(model_dir, repo_id)
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and path.suffix in UPLOAD_SUFFIXES and path.name != "README.md":
            shutil.copy2(path, out_dir / path.name)
    atomic_write_text(out_dir / "README.md", str(card))
    return sorted(p.name for p in out_dir.iterdir())


def hub_token() -> str:
    """The token from the environment (HF_TOKEN) or the stored login; fail fast without one."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN (a write token) or run `hf auth login`, or use --dry_run OUT.")
    return token


def check_online() -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise PushError("the Hub is offline (HF_HUB_OFFLINE=1): run with HF_HUB_OFFLINE=0 to push, or use --dry_run OUT "
                        "to write the folder that would be uploaded.")


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
        print(f"dry run: {len(files)} files that would be uploaded to {args.repo_id} written to {out}: {', '.join(files)}")
        return out
    check_online()
    with tempfile.TemporaryDirectory(prefix="after-hf-push-") as tmp:
        stage_upload(model_dir, args.repo_id, Path(tmp) / "upload")
        url = upload(Path(tmp) / "upload", args.repo_id, private=args.private, commit_message=args.commit_message)
    print(f"pushed {model_dir} to https://huggingface.co/{args.repo_id} ({url})")
    return url


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args([PushArguments], argv, prog="after-hf push", description=__doc__, section="push")
    try:
        push(args)
    except (PushError, ConfigError) as err:
        print(f"after-hf push: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
