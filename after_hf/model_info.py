"""The two files that travel with every after-hf model, one typed structure each, one writer, one reader.

* ``metrics.json`` -> ``ModelMetrics``: the scores per evaluation set (``splits``) and what was trained. Written by
  ``after-hf finetune``, ``after-hf deploy`` and ``after-hf evaluate`` (through ``write_metrics``); read by the
  model card, the experiment report and the Space's "About this model" panel (through ``read_metrics``).
* ``after_hf_provenance.json`` -> ``Provenance``: how the model was made (base model, TAPT, who labelled how many
  clips, training data). Written by ``after-hf deploy``; read by the card and the Space.

Both are uploaded with the model, so they are portable by construction: a local directory is recorded by its name
only (``portable_name``), never by its path. Pure Python (no torch): the Space bundles this module.

metrics.json (``format: after-hf-metrics/1``)::

    {"format": "after-hf-metrics/1", "kind": "head" | "lora" | "full" | null (an evaluation only),
     "description": "frozen encoder + linear layer-weighted head", "backbone": "tapt",
     "num_classes": 4, "num_labelled": 30,                  # classes, and the labelled clips it was trained on
     "splits": {"validation": SCORES, "test": SCORES},     # SCORES: ua, wa, macro_f1, per_class_recall,
     "training": {"best_step": 12, "train_seconds": 3.5}}  #   confusion_matrix (rows = truth), label_names, num_samples
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from .errors import AfterHFError

METRICS_FILE = "metrics.json"
PROVENANCE_FILE = "after_hf_provenance.json"
METRICS_FORMAT = "after-hf-metrics/1"
PROVENANCE_FORMAT = "after-hf-provenance/1"
KINDS = {  # what `after-hf deploy --kind` trains, as the card and the report name it
    "head": "frozen encoder + linear layer-weighted head",
    "lora": "LoRA adapters + head (merged)",
    "full": "whole classifier fine-tuned",
}


class ModelInfoError(AfterHFError, ValueError):
    """A metrics or provenance file that exists but cannot be read; the message names the file and the fix."""


def portable_name(source: Any) -> Optional[str]:
    """A backbone / model reference fit for a public file: a Hub id or named config as is, a local path by its name."""
    if source is None:
        return None
    text = str(source)
    local = Path(text).expanduser()
    if local.is_absolute() or local.exists() or text.startswith((".", "~")) or text.count("/") > 1:
        return local.resolve().name or text
    return text


def _read_json(path: Path, fix: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelInfoError(f"{path} is not valid JSON ({err}); {fix}") from err
    if not isinstance(data, dict):
        raise ModelInfoError(f"{path} must hold a JSON object, got {type(data).__name__}; {fix}")
    return data


def _write_json(path: Path, data: dict) -> None:
    from .io import atomic_write_json

    atomic_write_json(path, data)


# -- metrics.json -----------------------------------------------------------------------------------------------

@dataclass
class ModelMetrics:
    splits: dict[str, dict] = field(default_factory=dict)  # evaluation set -> compute_ser_metrics + num_samples
    kind: Optional[str] = None  # head / lora / full; None for a plain evaluation
    description: Optional[str] = None
    backbone: Optional[str] = None  # portable_name of what was trained from
    num_classes: Optional[int] = None
    num_labelled: Optional[int] = None  # labelled clips the model was trained on
    training: dict = field(default_factory=dict)  # best_step, train_seconds, ...
    format: str = METRICS_FORMAT

    def score(self, split: str, key: str = "ua") -> Optional[float]:
        value = self.splits.get(split, {}).get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def class_counts(self, split: str) -> dict[str, int]:
        """Clips per class of an evaluation set (the confusion matrix's row sums)."""
        scores = self.splits.get(split, {})
        names, matrix = scores.get("label_names") or [], scores.get("confusion_matrix") or []
        return {name: int(sum(row)) for name, row in zip(names, matrix)}


def write_metrics(path: str | Path, metrics: ModelMetrics) -> Path:
    """The one writer of metrics.json (``path``: the file, or a directory to write it into)."""
    path = Path(path)
    path = path / METRICS_FILE if path.suffix != ".json" else path
    metrics.backbone = portable_name(metrics.backbone)
    _write_json(path, asdict(metrics))
    return path


def read_metrics(path: str | Path) -> Optional[ModelMetrics]:
    """metrics.json of a model directory (or the file itself); None when absent. Files from before the format
    field (``{"validation": {...}, "test": {...}, ...}``) are read too."""
    path = Path(path)
    path = path / METRICS_FILE if path.is_dir() else path
    if not path.is_file():
        return None
    data = _read_json(path, "fix it or delete it (re-run the command that wrote it).")
    if data.get("format") != METRICS_FORMAT:  # older after-hf: evaluation sets at the top level
        splits = {k: v for k, v in data.items() if isinstance(v, dict) and "ua" in v}
        training = {k: data[k] for k in ("best_step", "train_seconds") if k in data}
        return ModelMetrics(splits=splits, kind=None, description=data.get("kind"), backbone=data.get("backbone"),
                            num_labelled=data.get("num_labels"), training=training)
    known = {f.name for f in fields(ModelMetrics)}
    return ModelMetrics(**{k: v for k, v in data.items() if k in known})


# -- after_hf_provenance.json -------------------------------------------------------------------------------------

@dataclass
class LabelInfo:
    """Who labelled which clips the model was trained on."""
    oracle: str  # human (people in the labelling page), simulated (the corpus' labels revealed by AL), corpus (all)
    labelled_clips: int  # distinct clips with a label the model was trained on
    pool_clips: int  # clips in the training pool
    skipped_clips: int = 0  # asked for, but skipped by the annotators
    answers: int = 0  # human answers given (several people may answer one clip)
    annotators: int = 0  # distinct annotator names
    strategy: Optional[str] = None  # active-learning query strategy (None: all labels, no AL)
    cold_start: Optional[str] = None
    rounds: Optional[int] = None
    rater_policy: Optional[str] = None  # fixed / dynamic: a simulated oracle asked the corpus' raters (al.raters)
    rater_answers: int = 0  # rater answers that policy asked for (what its budget counted)
    soft_labels: bool = False  # trained on each clip's vote distribution (the split of its answers), not one label

    @property
    def fraction(self) -> Optional[float]:
        return self.labelled_clips / self.pool_clips if self.pool_clips else None


@dataclass
class TrainingData:
    name: str  # e.g. "generated emotional speech (after-hf synth, espeak-ng)" or "iemocap + cremad"
    corpora: list[str] = field(default_factory=list)
    generated: bool = False  # synthetic speech, not recordings of people
    protocol: Optional[str] = None  # speaker / loso split of the manifest
    hub_ids: list[str] = field(default_factory=list)  # Hub datasets (go to the card's `datasets` metadata)


@dataclass
class TaptInfo:
    steps: Optional[int] = None
    data: Optional[str] = None  # what audio it continued pre-training on


@dataclass
class Provenance:
    model_name: str  # shown by the Space when the model has no Hub id
    kind: str  # head / lora / full
    base_model: Optional[str]  # the backbone before TAPT: Hub id, named config or local directory name
    labels: LabelInfo
    training_data: TrainingData
    tapt: Optional[TaptInfo] = None
    language: Optional[str] = None
    license: str = "apache-2.0"
    labels_digest: Optional[str] = None  # of the (id, label) pairs trained on: a rerun with the same labels is skipped
    format: str = PROVENANCE_FORMAT


def write_provenance(model_dir: str | Path, provenance: Provenance) -> Path:
    path = Path(model_dir) / PROVENANCE_FILE
    _write_json(path, asdict(provenance))
    return path


def read_provenance(model_dir: str | Path) -> Optional[Provenance]:
    """The model's provenance, or None when it has none (e.g. a plain `after-hf finetune` output)."""
    path = Path(model_dir) / PROVENANCE_FILE
    if not path.is_file():
        return None
    fix = "re-create it with `after-hf deploy --run AL_RUN --out DIR` (or delete it: the card then says less)."
    data = _read_json(path, fix)
    if data.get("format") != PROVENANCE_FORMAT:
        raise ModelInfoError(f"{path} was written by an older after-hf (format {data.get('format')!r}); {fix}")
    try:
        return Provenance(**{**data, "labels": LabelInfo(**data["labels"]),
                             "training_data": TrainingData(**data["training_data"]),
                             "tapt": TaptInfo(**data["tapt"]) if data.get("tapt") else None})
    except (KeyError, TypeError) as err:
        raise ModelInfoError(f"{path} does not match the provenance format {PROVENANCE_FORMAT} ({err}); {fix}") from err


def is_hub_id(name: Any) -> bool:
    return isinstance(name, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not Path(name).exists()


# -- sentences shared by the model card and the Space's "About this model" panel ------------------------------------

GENERATED_NOTICE = ("**Trained on generated speech** (espeak-ng text-to-speech with emotional prosody, made by "
                    "`after-hf synth`), not on recordings of people: it demonstrates the method and will do poorly on "
                    "real voices.")


def chance_levels(metrics: Optional[ModelMetrics], split: str = "test") -> Optional[dict]:
    """What guessing scores on an evaluation set: UA of any constant (or uniformly random) guess = 1 / classes present;
    WA of always answering the most frequent class = its share. None without a confusion matrix."""
    counts = metrics.class_counts(split) if metrics else {}
    present = {name: n for name, n in counts.items() if n}
    if not present:
        return None
    total = sum(present.values())
    majority = max(present, key=present.get)
    return {"ua": 1 / len(present), "wa": present[majority] / total, "majority": majority, "clips": total,
            "balance": ", ".join(f"{name} {n} ({100 * n / total:.0f}%)" for name, n in counts.items())}


def labels_sentence(labels: LabelInfo) -> str:
    """How many clips were labelled, by whom, and how they were chosen (classes are named elsewhere)."""
    share = f" ({100 * labels.fraction:.1f}% of the {labels.pool_clips}-clip training pool)" if labels.fraction else ""
    if not labels.strategy:
        chosen = ""
    elif (labels.rounds or 0) <= 1:  # only the seed round so far: the cold start chose them, not the query strategy
        chosen = f", chosen by the {labels.cold_start} cold start of active learning (1 round)"
    else:
        chosen = (f", chosen by active learning ({labels.strategy} query strategy after a {labels.cold_start} cold "
                  f"start, {labels.rounds} rounds)")
    soft = (" The model was trained on each clip's vote distribution (how its answers split over the classes), not "
            "on one label per clip (soft labels)." if labels.soft_labels else "")
    if labels.oracle == "human":
        people = f"{labels.annotators} {'person' if labels.annotators == 1 else 'people'}"
        who = (f"; labelled by {people} in the after-hf labelling page ({labels.answers} answers"
               + (f", {labels.skipped_clips} clips skipped" if labels.skipped_clips else "") + ")")
        return f"**{labels.labelled_clips} human-labelled clips**{share}{chosen}{who}.{soft}"
    if labels.oracle == "simulated" and labels.rater_policy:
        return (f"**{labels.labelled_clips} labelled clips**{share}{chosen}; each label is the majority of the answers "
                f"of the corpus' own raters, asked one at a time by a simulated oracle ({labels.rater_policy} rater "
                f"policy, {labels.rater_answers} rater answers in all).{soft}")
    if labels.oracle == "simulated":
        return (f"**{labels.labelled_clips} labelled clips**{share}{chosen}; their labels were the corpus' own, "
                f"revealed when a clip was chosen (a simulated annotator).{soft}")
    return f"**{labels.labelled_clips} labelled clips**: every clip of the training pool (no active learning).{soft}"
