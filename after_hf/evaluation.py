"""Score a fine-tuned classifier on one manifest split: UA / WA / macro-F1, per-class recall, confusion matrix.

    after-hf evaluate --model runs/ft/model --manifest data/manifest --split test [--out DIR]

Writes OUT/metrics.json, OUT/confusion_matrix.png and OUT/predictions.csv, and prints a per-class table.
Utterances are scored at full length (never truncated), batched by length (``inference.predict``).
When the split's clips have rater votes (IEMOCAP, CREMA-D with its rating files, ...), the predicted probabilities
are also scored against the vote distribution (KL, Brier, vote accuracy: ``metrics.soft_labels``), under
``soft_labels`` in metrics.json, and predictions.csv gets the votes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import parse_args
from .data.manifest import label_names as manifest_label_names
from .data.manifest import ManifestError, load_manifest
from .data.ratings import has_votes, vote_matrix
from .io import atomic_write_text, check_output_dir
from .metrics import compute_ser_metrics, compute_soft_label_metrics, per_speaker_scores
from .model_info import ModelMetrics, write_metrics
from .models import ModelError, is_named, load_classifier, load_config, load_feature_extractor
from .plots import plot_confusion_matrix


@dataclass
class EvaluateArguments:
    model: str = field(
        metadata={"help": "Fine-tuned classifier: a save_pretrained directory (e.g. RUN/model) or a Hub id."})
    manifest: str = field(metadata={"help": "Manifest directory to score."})
    split: str = field(default="test", metadata={"help": "Manifest split to score (train, validation, test)."})
    out: str | None = field(
        default=None,
        metadata={"help": "Output directory (default: MODEL/eval_SPLIT for a local model, else ./eval_SPLIT)."},
    )
    batch_seconds: float = field(
        default=160.0, metadata={"help": "Seconds of padded audio per batch (lower it if memory runs out)."})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available), cpu or cuda[:N]."})


def model_label_names(config) -> list[str]:
    """The classifier's label names in index order, from its (string-keyed) id2label."""
    return [config.id2label[i] for i in sorted(config.id2label, key=int)]


class NotAClassifier(ModelError, ValueError):
    """A model source that loads but is no fine-tuned emotion classifier (a named config, a TAPT output)."""


def load_model_for_eval(source: str, device: str = "cpu"):
    """(model, feature_extractor, label_names) of a fine-tuned classifier directory or Hub id."""
    if is_named(source):
        raise NotAClassifier(f"'{source}' is an untrained named config: pass the directory written by "
                             "`after-hf finetune` (RUN/model).")
    config = load_config(source)
    names = model_label_names(config)
    if all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        raise NotAClassifier(
            f"{source} is not a fine-tuned emotion classifier: its classes have no names ({names}, architecture "
            f"{getattr(config, 'architectures', None)}). Evaluate the directory `after-hf finetune` wrote "
            f"(OUTPUT_DIR/model), e.g. fine-tune this checkpoint first with `after-hf finetune --model {source}`."
        )
    model = load_classifier(source, names).to(device).eval()
    return model, load_feature_extractor(source, model.config), names


def evaluate_dataset(model, feature_extractor, ds, label_names: Sequence[str], batch_seconds: float = 160.0):
    """Scores of ``model`` (whose classes are ``label_names``) on manifest rows ``ds`` -> (metrics, predictions).

    Manifest labels are matched to the model's classes by name, so the two label orders may differ.
    """
    label_names = list(label_names)
    data_names = manifest_label_names(ds)
    unknown = sorted(set(data_names) - set(label_names))
    present = {data_names[i] for i in set(ds["label"])}
    if present & set(unknown):
        raise ManifestError(
            f"manifest labels {sorted(present & set(unknown))} are not classes of the model {label_names}; "
            f"evaluate on a manifest built with the model's label set."
        )
    from .inference import classify_pooled, predict, speaker_norm_of  # torch is imported here, not for `--help`

    references = np.asarray([label_names.index(data_names[i]) for i in ds["label"]], dtype=np.int64)
    out = predict(model, feature_extractor, ds, batch_seconds=batch_seconds, return_embeddings=True)
    predicted = out["probs"].argmax(-1)
    scores = compute_ser_metrics(predicted, references, label_names)
    scores["num_samples"] = len(ds)
    if "speaker" in ds.column_names:  # speaker-independent splits: how far apart the held-out voices are
        scores["per_speaker"] = per_speaker_scores(predicted, references, ds["speaker"])
    if speaker_norm_of(model) is not None:  # also as a single clip of an unknown speaker (the Space, a pipeline):
        alone = classify_pooled(model, out["embeddings"])  # the same encoder outputs, no speaker statistics
        single = compute_ser_metrics(alone.argmax(-1), references, label_names)
        scores["single_clip"] = {k: single[k] for k in ("ua", "wa", "macro_f1")}
    rows = {"id": list(ds["id"]), "reference": references, "predicted": predicted, "probs": out["probs"]}
    if has_votes(ds):
        try:
            votes, _ = vote_matrix(ds, label_names)
        except ValueError as err:  # votes on a class the model lacks: the hard-label scores still stand
            scores["soft_labels"] = {"skipped": str(err)}
        else:
            scores["soft_labels"] = compute_soft_label_metrics(out["probs"], votes)
            rows["votes"] = votes
    return scores, rows


def format_table(scores: dict) -> str:
    """Per-class recall / support table plus the UA, WA and macro-F1 lines."""
    names, cm = scores["label_names"], np.asarray(scores["confusion_matrix"])
    width = max(8, *map(len, names))
    lines = [f"{'class':<{width}}  {'recall':>7}  {'support':>7}"]
    for name, support in zip(names, cm.sum(axis=1)):
        recall = scores["per_class_recall"][name]
        lines.append(f"{name:<{width}}  {'   n/a' if recall is None else f'{recall:7.4f}'}  {support:7d}")
    lines.append(f"{'UA':<{width}}  {scores['ua']:7.4f}   (mean per-class recall)")
    lines.append(f"{'WA':<{width}}  {scores['wa']:7.4f}   (accuracy)")
    lines.append(f"{'macro-F1':<{width}}  {scores['macro_f1']:7.4f}")
    single = scores.get("single_clip")
    if single:
        lines.append(f"{'UA alone':<{width}}  {single['ua']:7.4f}   (each clip without its speaker's other clips, as "
                     "a pipeline or the Space scores one upload; UA above: centred on each speaker)")
    lines += _speaker_lines(scores.get("per_speaker") or {}, width)
    soft = scores.get("soft_labels")
    if soft and "skipped" in soft:
        lines.append(f"vote distribution not scored: {soft['skipped']}")
    elif soft:
        lines.append(f"against the raters' votes ({soft['num_rated']} of {scores['num_samples']} clips rated):")
        lines += [f"{'KL':<{width}}  {soft['kl']:7.4f}   (KL(votes || predicted), nats; 0 = predicts the vote split)",
                  f"{'Brier':<{width}}  {soft['brier']:7.4f}   (sum of squared differences to the vote distribution)",
                  f"{'vote acc':<{width}}  {soft['vote_accuracy']:7.4f}   (chance a random rater chose the predicted "
                  "class)"]
    return "\n".join(lines)


def _speaker_lines(per_speaker: dict, width: int, show: int = 12) -> list[str]:
    """UA per speaker, worst first (at most ``show`` lines): a model that fails one held-out voice shows here."""
    if len(per_speaker) < 2:
        return []
    ranked = sorted(per_speaker.items(), key=lambda kv: kv[1]["ua"])
    uas = [s["ua"] for _, s in ranked]
    lines = [f"per speaker: UA {min(uas):.4f} (worst) to {max(uas):.4f} (best) over {len(ranked)} speakers"]
    for name, s in ranked[:show]:
        lines.append(f"  {name:<{width}}  {s['ua']:7.4f}  {s['num_samples']:7d}")
    if len(ranked) > show:
        lines.append(f"  ... {len(ranked) - show} more in metrics.json (per_speaker)")
    return lines


def write_report(scores: dict, out_dir: str | Path, title: str | None = None, rows: dict | None = None,
                 split: str = "test", model: str | None = None) -> dict[str, Path]:
    """metrics.json (``model_info`` schema: ``splits[split]``) + confusion_matrix.png (+ predictions.csv when ``rows``
    is given) into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {"metrics": out_dir / "metrics.json", "confusion_matrix": out_dir / "confusion_matrix.png"}
    write_metrics(paths["metrics"], ModelMetrics(splits={split: scores}, backbone=model,
                                                 num_classes=len(scores["label_names"])))
    plot_confusion_matrix(scores["confusion_matrix"], scores["label_names"], paths["confusion_matrix"], title=title)
    if rows is not None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        names = scores["label_names"]
        votes = rows.get("votes")
        vote_columns = [f"votes_{n}" for n in names] if votes is not None else []
        writer.writerow(["id", "reference", "predicted", *[f"p_{n}" for n in names], *vote_columns])
        for j, (i, ref, pred, probs) in enumerate(zip(rows["id"], rows["reference"], rows["predicted"], rows["probs"])):
            extra = [f"{v:.4f}" for v in votes[j]] if votes is not None else []
            writer.writerow([i, names[ref], names[pred], *[f"{p:.5f}" for p in probs], *extra])
        paths["predictions"] = out_dir / "predictions.csv"
        atomic_write_text(paths["predictions"], buf.getvalue())
    return paths


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args([EvaluateArguments], argv, prog="after-hf evaluate", description=__doc__, section="evaluate")
    from .inference import process_device  # torch is imported here, not for `--help`

    if args.out:
        check_output_dir(args.out, "--out")
    model, feature_extractor, names = load_model_for_eval(args.model, process_device(args.device))
    ds = load_manifest(args.manifest, split=args.split)
    scores, rows = evaluate_dataset(model, feature_extractor, ds, names, args.batch_seconds)
    local = Path(args.model).is_dir()
    out_dir = Path(args.out) if args.out else (Path(args.model) if local else Path(".")) / f"eval_{args.split}"
    paths = write_report(scores, out_dir, title=f"{args.split}: "
                                                f"{args.model}", rows=rows, split=args.split, model=args.model)
    print(f"{args.split} split of {args.manifest}: {len(ds)} utterances, model {args.model}")
    print(format_table(scores))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("evaluate", main)
