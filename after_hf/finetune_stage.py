"""Supervised fine-tuning stages of `after-hf experiment`: the deployable model and the full-label references.

* ``final``: the whole wav2vec2 classifier fine-tuned from the TAPT checkpoint on the labels an AL run
  collected (the oracle's answers, so a person's labels in human mode) -- the model `make space` serves
  and `after-hf push` uploads.
* ``finetune_all`` / ``finetune_all_no_tapt``: the same recipe on 100% of the training labels, from the
  TAPT checkpoint and from the untouched backbone: the supervised reference and the TAPT ablation.
Each writes ``<dir>/model`` (save_pretrained) with ``metrics.json`` and a test report; a finished stage is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import check_recipe, load_recipe
from .data.manifest import label_names as manifest_label_names
from .data.manifest import load_manifest
from .io import atomic_write_json

RECIPE_OWN_KEYS = ("manifest", "output_dir", "model")  # set by the experiment, not by the recipe


def finetune_stage(out_dir: str | Path, backbone: str, manifest: str, recipe: str, seed: int,
                   labelled: dict[str, int] | None = None, provenance: dict | None = None) -> dict:
    """Fine-tune ``backbone`` on the manifest's train split (or only ``labelled`` id -> label), score the test split."""
    from .evaluate import evaluate_dataset, write_report
    from .train import FinetuneArguments, finetune

    out_dir = Path(out_dir)
    metrics_path = out_dir / "model" / "metrics.json"
    if metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    options = {k: v for k, v in (load_recipe(recipe, "finetune") if recipe else {}).items() if k not in RECIPE_OWN_KEYS}
    check_recipe(options, [FinetuneArguments], f"recipe {recipe}")
    args = FinetuneArguments(**{**options, "model": backbone, "seed": seed})
    train = load_manifest(manifest, split=args.train_split)
    names = manifest_label_names(train)
    if labelled is not None:
        position = {sample_id: i for i, sample_id in enumerate(train["id"])}
        missing = [i for i in labelled if i not in position]
        if missing:
            raise ValueError(f"{len(missing)} labelled ids (e.g. {missing[0]}) are not in {manifest} split "
                             f"'{args.train_split}': the AL run was made on another manifest.")
        train = train.select(sorted(position[i] for i in labelled))
        train = train.map(lambda row: {"label": labelled[row["id"]]}, features=train.features, desc="oracle labels")
    val = load_manifest(manifest, split=args.eval_split) if args.eval_split else None
    result = finetune(args, train, val, names, out_dir)
    summary = {"backbone": backbone, "num_labels": len(train), "validation": result.metrics,
               "best_step": result.best_step, "train_seconds": round(result.train_seconds, 3),
               "wall_seconds": round(result.wall_seconds, 3)}
    if args.test_split:
        test = load_manifest(manifest, split=args.test_split)
        scores, rows = evaluate_dataset(result.model, result.feature_extractor, test, names, args.eval_batch_seconds)
        write_report(scores, result.model_dir / f"eval_{args.test_split}", title=f"{args.test_split}: {result.model_dir}", rows=rows)
        summary["test"] = scores
    if provenance:  # read by `after-hf push` for the model card (base model, TAPT, AL strategy, % of labels)
        atomic_write_json(result.model_dir / "after_hf_provenance.json", provenance)
    atomic_write_json(metrics_path, summary)
    return summary
