"""Supervised stages of `after-hf experiment`: the deployable model and the full-label references.

* ``final``: a classifier trained on the labels an AL run collected (the oracle's answers, so a person's
  labels in human mode) -- the model `make space` serves and `after-hf push` uploads. Either the whole
  wav2vec2 classifier fine-tuned from the TAPT checkpoint (``finetune_stage``), or the frozen TAPT encoder
  with a linear layer-weighted head exported into the same model class (``head_stage``, seconds).
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


def _finish(model_dir: Path, summary: dict, provenance: dict | None) -> dict:
    if provenance:  # read by `after-hf push` for the model card (base model, TAPT, AL strategy, % of labels)
        atomic_write_json(model_dir / "after_hf_provenance.json", provenance)
    atomic_write_json(model_dir / "metrics.json", summary)
    return summary


def head_stage(out_dir: str | Path, backbone: str, manifest: str, cache_dir: str | Path, seed: int,
               labelled: dict[str, int], provenance: dict | None = None) -> dict:
    """Frozen ``backbone`` + a linear layer-weighted head trained on ``labelled`` (cached features), exported."""
    from .al.export import export_linear_head, train_linear_head
    from .al.head import HeadTrainingArgs
    from .al.learners import HeadLearner, SplitData
    from .evaluation import evaluate_dataset, load_model_for_eval, write_report

    model_dir = Path(out_dir) / "model"
    if (model_dir / "metrics.json").is_file():
        return json.loads((model_dir / "metrics.json").read_text())
    ds = load_manifest(manifest)
    names = manifest_label_names(ds)
    learner = HeadLearner(backbone, SplitData.from_manifest(ds), names, cache_dir, HeadTrainingArgs(), init_seed=seed)
    ids = sorted(labelled)
    head = train_linear_head(learner, ids, [labelled[i] for i in ids], seed)
    export_linear_head(head, backbone, names, model_dir, init_seed=seed)
    model, feature_extractor, _ = load_model_for_eval(str(model_dir))
    summary = {"backbone": backbone, "kind": "frozen encoder + linear layer-weighted head", "num_labels": len(ids),
               "validation": learner.evaluate_head(head, "validation") if "validation" in learner.splits else {}}
    test = load_manifest(manifest, split="test")
    scores, rows = evaluate_dataset(model, feature_extractor, test, names)
    write_report(scores, model_dir / "eval_test", title=f"test: {model_dir}", rows=rows)
    summary["test"] = scores
    return _finish(model_dir, summary, provenance)


def finetune_stage(out_dir: str | Path, backbone: str, manifest: str, recipe: str, seed: int,
                   labelled: dict[str, int] | None = None, provenance: dict | None = None) -> dict:
    """Fine-tune ``backbone`` on the manifest's train split (or only ``labelled`` id -> label), score the test split."""
    from .evaluation import evaluate_dataset, write_report
    from .finetune import FinetuneArguments, finetune

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
    return _finish(result.model_dir, summary, provenance)
