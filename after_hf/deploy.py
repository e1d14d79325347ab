"""`after-hf deploy`: the labels an active-learning run collected -> a deployable model, its metrics and provenance.

    after-hf deploy --run runs/al/mine --out runs/deploy/mine                      # head (default): seconds
    after-hf deploy --run runs/al/mine --out runs/deploy/mine_lora --kind lora --config recipes/demo/finetune.yaml

Reads the run directory of `after-hf al` (``state.json``: the labels a person gave in the labelling page, or the
simulated oracle's; ``config.json``: its manifest, backbone and feature cache), trains the classifier from the run's
backbone on exactly those labels (on each clip's vote distribution when the run used ``--soft_labels``, as its rounds
did), scores it on the manifest's validation and test splits, and writes ``OUT/model``:
a ``save_pretrained`` ``Wav2Vec2ForSequenceClassification`` (safetensors), ``metrics.json``,
``after_hf_provenance.json`` (``after_hf.model_info``; the model card is built from them) and ``eval_<split>/``
(confusion matrix, predictions).

* ``head``: the frozen backbone and a linear layer-weighted head trained on the run's cached features, exported
  exactly into wav2vec2's own ``use_weighted_layer_sum`` head (weighted sum of layers -> projector -> mean over
  time -> classifier; all linear, so the time-mean commutes, and the feature standardisation folds into the projector).
* ``lora`` / ``full``: `after-hf finetune` on the labelled clips, LoRA adapters (merged) or the whole encoder; the
  fine-tuning options come from the ``finetune:`` section of ``--config`` (or ``--finetune_config``).

A deploy whose output already holds the same kind trained on the same labels is skipped (so `after-hf experiment`
reruns skip it); a run that has collected more labels since is trained again. `after-hf experiment` calls
``deploy()`` for its deployable model and ``train_reference()`` for its 100%-label references.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from .config import ConfigError, load_recipe, parse_args
from .errors import AfterHFError
from .model_info import (KINDS, LabelInfo, ModelMetrics, Provenance, TaptInfo, TrainingData, chance_levels,
                         portable_name, read_metrics, read_provenance, write_metrics, write_provenance)

LANGUAGES = {"iemocap": "en", "cremad": "en", "ravdess": "en", "emovdb": "en", "tess": "en", "savee": "en",
             "shemo": "fa", "emodb": "de"}


@dataclass
class DeployArguments:
    run: str = field(metadata={
        "help": "Active-learning run directory (`after-hf al --out`), simulated or human oracle."})
    out: str = field(metadata={"help": "Output directory: the model goes to OUT/model (+ metrics.json, provenance)."})
    kind: str = field(default="head", metadata={
        "help": "head: frozen backbone + linear layer-weighted head (seconds); lora: LoRA adapters + head; "
                "full: the whole classifier fine-tuned; best: all three, the best on validation UA kept (the others "
                "stay in OUT/candidates).", "choices": [*KINDS, "best"]})
    finetune_config: str = field(default="", metadata={
        "help": "YAML recipe whose `finetune:` section sets the options of --kind lora/full (a --config file with "
                "that section is used too)."})
    seed: Optional[int] = field(default=None, metadata={"help": "Training seed (default: the run's seed)."})
    head_epochs: int = field(default=200, metadata={
        "help": "head: epochs of the linear head (best validation UA kept)."})


class DeployError(AfterHFError, ValueError):
    """A run that cannot be deployed (no labels yet, not a run directory); the message says what to do."""


@dataclass
class DeployResult:
    model_dir: Path
    metrics: ModelMetrics
    provenance: Provenance
    skipped: bool  # True: OUT already held this model (same kind, same labels): nothing was trained

    @property
    def validation(self) -> dict:
        return self.metrics.splits.get("validation", {})

    @property
    def test(self) -> dict:
        return self.metrics.splits.get("test", {})


# -- what the run and its manifest say -----------------------------------------------------------------------------

def _run_config(run_dir: Path) -> dict:
    from .al.state import CONFIG_FILE, run_path
    from .io import read_json

    if not (run_dir / CONFIG_FILE).is_file():
        raise DeployError(f"{run_dir} is not an active-learning run directory (no {CONFIG_FILE}): pass the --out of "
                          f"`after-hf al` to --run.")
    config = read_json(run_dir / CONFIG_FILE, "run config")
    if not isinstance(config, dict) or not {"manifest", "backbone"} <= set(config):
        what = "a model directory" if (run_dir / "model.safetensors").is_file() else "not an `after-hf al` run"
        raise DeployError(f"{run_dir} is {what} (its {CONFIG_FILE} has no manifest / backbone): pass the --out of "
                          f"`after-hf al` to --run; a trained model is published with `after-hf push --model "
                          f"{run_dir}`.")
    return {**config, **{key: run_path(config, key) for key in ("manifest", "backbone", "cache_dir")
                         if config.get(key)}}


def label_info(run_dir: Path, config: dict, pool_clips: int) -> tuple[dict[str, int], LabelInfo]:
    """The run's labels (id -> class index) and who gave them."""
    from .al.state import RunState

    from .al.raters import answers_used

    state = RunState.read(run_dir)
    labelled = state.labels()
    if not labelled:
        raise DeployError(f"{run_dir} has no labels yet: answer its queue in the Space's Annotate tab "
                          f"(`make space AFTER_HF_RUN={run_dir}`), then `after-hf al ... --out {run_dir} --resume`.")
    answers = [a for rec in state.rounds for given in (rec.get("answers") or {}).values() for a in given
               if "labels" not in a]  # people's answers; a simulated rater policy's ({"labels": [...]}) are not
    info = LabelInfo(oracle="human" if answers or config.get("oracle") == "human" else "simulated",
                     labelled_clips=len(labelled), pool_clips=pool_clips,
                     skipped_clips=sum(len(rec["skipped"]) for rec in state.rounds), answers=len(answers),
                     annotators=len({a.get("annotator") for a in answers}),
                     strategy=config.get("strategy"), cold_start=config.get("cold_start"),
                     rounds=sum(1 for rec in state.rounds if rec["phase"] == "trained") or len(state.rounds),
                     soft_labels=bool(config.get("soft_labels")))
    if config.get("rater_policy", "label") != "label":  # a simulated oracle asked the corpus' raters
        info.rater_policy, info.rater_answers = config["rater_policy"], answers_used(state.rounds)
    return labelled, info


def run_soft_targets(run_dir: Path, config: dict, labelled: dict[str, int]) -> Optional[dict[str, list[float]]]:
    """id -> the vote distribution the run trained each labelled clip on, when it ran with ``--soft_labels`` (else
    None): the answers its raters or annotators gave, else the manifest's votes, else the label as one vote
    (``al.loop.soft_targets``, the function the run's own rounds used)."""
    if not config.get("soft_labels"):
        return None
    from .al.learners import SplitArrays
    from .al.loop import soft_targets
    from .al.oracle import SimulatedOracle
    from .al.state import RunState
    from .data.manifest import label_names, load_manifest

    train = SplitArrays(load_manifest(config["manifest"], split="train"))
    missing = sorted(set(labelled) - set(train.ids))
    if missing:
        raise DeployError(f"{len(missing)} labelled ids of {run_dir} (e.g. {missing[0]}) are not in the train split of "
                          f"{config['manifest']}: the AL run was made on another manifest.")
    names = label_names(train.ds)
    votes = dict(zip(train.ids, train.votes)) if train.votes is not None else {}
    oracle = SimulatedOracle(dict(zip(train.ids, train.labels.tolist())), votes)
    ids = sorted(labelled)
    targets = soft_targets(RunState.read(run_dir), ids, labelled, oracle, len(names), names)
    return dict(zip(ids, targets.tolist()))


def training_data(manifest: str | Path) -> TrainingData:
    """Corpora, split protocol and whether the speech was generated, from the manifest's prepare report."""
    from .data.prepare import REPORT_NAME

    report_path = Path(manifest) / REPORT_NAME
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    corpora = dict(report.get("corpora") or {})
    generated = any((Path(root) / marker).is_file() for root in corpora.values()
                    for marker in ("synth_info.json", "synth_truth.csv"))
    names = sorted(corpora)
    layout = f"; {' + '.join(names)} layout)" if names else ")"
    name = ("generated emotional speech (after-hf synth, espeak-ng" + layout if generated
            else " + ".join(names) or f"the manifest {portable_name(manifest)}")
    return TrainingData(name=name, corpora=names, generated=generated, protocol=report.get("protocol"))


def _tapt_info(backbone: str) -> tuple[Optional[str], Optional[TaptInfo]]:
    """(the base model before TAPT, TAPT facts) of a backbone directory written by `after-hf tapt`."""
    path = Path(backbone) / "tapt_args.json"
    if not path.is_file():
        return portable_name(backbone), None
    args = json.loads(path.read_text())
    steps = args.get("max_steps_resolved") or args.get("max_steps")
    data = f"the {args.get('split', 'train')} split's audio (no labels)"
    return portable_name(args.get("model_name_or_path")), TaptInfo(steps=steps, data=data)


def _digest(kind: str, backbone: str, labelled: Optional[dict[str, int]], seed: int, options: dict,
            targets: Optional[dict[str, list[float]]] = None) -> str:
    """What makes two trainings the same: kind, backbone, the (id, label) pairs, seed, training options and, for
    soft labels, each clip's vote distribution."""
    pairs = sorted(labelled.items()) if labelled is not None else "all"
    soft = [sorted((i, [round(v, 6) for v in t]) for i, t in targets.items())] if targets is not None else []
    text = json.dumps([kind, portable_name(backbone), pairs, seed, options, *soft], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _finished(model_dir: Path, digest: str) -> Optional[DeployResult]:
    """The result already in ``model_dir`` when it was trained the same way on the same labels."""
    try:
        provenance, metrics = read_provenance(model_dir), read_metrics(model_dir)
    except ValueError:
        return None
    if provenance is None or metrics is None or provenance.labels_digest != digest:
        return None
    return DeployResult(model_dir, metrics, provenance, skipped=True)


# -- training ----------------------------------------------------------------------------------------------------

def train_linear_head(learner, ids: Sequence[str], labels: Sequence[int], seed: int, epochs: int = 200, targets=None):
    """A linear head on ``learner``'s cached features (a HeadLearner), channel statistics shared across layers;
    ``targets`` [N, C]: soft labels (vote distributions) trained on instead of ``labels``."""
    import numpy as np

    from .al.head import HeadClassifier, HeadTrainingArgs
    from .metrics import compute_ser_metrics

    pool = learner.features["train"]  # [N, L, H], memory-mapped
    mean, std = pool.mean(axis=(0, 1)), pool.std(axis=(0, 1))  # [H]: foldable into the projector
    args = HeadTrainingArgs(epochs=epochs, dropout=0.0, linear=True)
    head = HeadClassifier(len(learner.label_names), args, mean, std)
    val = learner.splits.get("validation")
    ua = lambda y_true, y_pred: compute_ser_metrics(y_pred, y_true, learner.label_names)["ua"]  # noqa: E731
    head.fit(pool[learner.splits["train"].index(ids)], np.asarray(labels), seed,
             val_feats=learner.features["validation"] if val is not None else None,
             val_labels=val.labels if val is not None else None, ua_fn=ua, targets=targets)
    return head


def export_linear_head(head, backbone: str, label_names: Sequence[str], out_dir: str | Path,
                       init_seed: int = 0, population=None) -> Path:
    """Write ``backbone`` + a linear ``head`` as a ``save_pretrained`` audio classifier (safetensors) into ``out_dir``.

    ``init_seed``: for a named (randomly initialised) backbone, the seed its cached features were computed with.
    ``population``: the head was trained on speaker-centred features (``HeadLearner.population``, [layers, hidden]):
    the model then centres each speaker's pooled vectors on the same population mean, mapped through the
    (linear) weighted layer sum and projector, so it scores exactly what the head scored."""
    import torch

    from .al.features import load_backbone
    from .inference import set_speaker_norm
    from .io import replace_dir
    from .models import is_named, load_classifier, load_feature_extractor

    net = head.model
    if not net.linear:
        raise ValueError("only a linear head (HeadTrainingArgs(linear=True)) equals wav2vec2's classification head")
    model = load_classifier(backbone, list(label_names), use_weighted_layer_sum=True,
                            classifier_proj_size=net.proj.out_features)
    if is_named(backbone):  # the encoder the features came from, not a fresh random one
        getattr(model, model.base_model_prefix).load_state_dict(load_backbone(backbone, init_seed).state_dict())
    std, mean = head.std.double(), head.mean.double()
    with torch.no_grad():
        weight = net.proj.weight.double() / std  # W (x - mu) / sd = (W / sd) x - (W / sd) mu
        model.layer_weights.copy_(net.layer_logits)
        model.projector.weight.copy_(weight.float())
        model.projector.bias.copy_((net.proj.bias.double() - weight @ mean).float())
        model.classifier.weight.copy_(net.out.weight)
        model.classifier.bias.copy_(net.out.bias)
        if population is not None:
            layers = torch.softmax(model.layer_weights.double(), dim=-1)
            mixed = (torch.as_tensor(population, dtype=torch.float64) * layers[:, None]).sum(0)
            set_speaker_norm(model, mixed.float() @ model.projector.weight.T + model.projector.bias)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    load_feature_extractor(backbone, model.config).save_pretrained(tmp)
    replace_dir(tmp, out_dir)
    return out_dir


def _train_head(model_dir: Path, backbone: str, manifest: str, cache_dir: str, labelled: dict[str, int], seed: int,
                epochs: int, speaker_norm: bool, targets: Optional[dict[str, list[float]]] = None) -> dict:
    from .al.head import HeadTrainingArgs
    from .al.learners import HeadLearner, SplitArrays
    from .data.manifest import label_names, load_manifest

    ds = load_manifest(manifest)
    learner = HeadLearner(backbone, SplitArrays.from_manifest(ds), label_names(ds), cache_dir, HeadTrainingArgs(),
                          init_seed=seed, speaker_norm=speaker_norm)
    ids = sorted(labelled)
    soft = None if targets is None else [targets[i] for i in ids]
    head = train_linear_head(learner, ids, [labelled[i] for i in ids], seed, epochs, targets=soft)
    export_linear_head(head, backbone, label_names(ds), model_dir, init_seed=seed, population=learner.population)
    return {"head_epochs": epochs, "speaker_norm": speaker_norm, **({"soft_labels": True} if soft else {})}


def _train_finetune(out_dir: Path, backbone: str, manifest: str, recipe: str, labelled: Optional[dict[str, int]],
                    seed: int, lora: bool, cache_dir: str = "",
                    targets: Optional[dict[str, list[float]]] = None) -> dict:
    """`after-hf finetune` on the labelled clips (``labelled`` None: every clip of the train split), on their vote
    distributions when ``targets`` (id -> distribution) are given."""
    from .data.manifest import label_names, load_manifest
    from .finetune import FinetuneArguments, finetune, recipe_options

    args = FinetuneArguments(**{"cnn_cache_dir": cache_dir, **recipe_options(recipe), "model": backbone, "seed": seed,
                                "lora": lora})
    train = pool = load_manifest(manifest, split=args.train_split)
    if labelled is not None:
        position = {sample_id: i for i, sample_id in enumerate(train["id"])}
        missing = [i for i in labelled if i not in position]
        if missing:
            raise DeployError(f"{len(missing)} labelled ids (e.g. {missing[0]}) are not in {manifest} split "
                              f"'{args.train_split}': the AL run was made on another manifest.")
        train = train.select(sorted(position[i] for i in labelled))
        train = train.map(lambda row: {"label": labelled[row["id"]]}, features=train.features, desc="the run's labels")
    val = load_manifest(manifest, split=args.eval_split) if args.eval_split else None
    soft = None if targets is None else [targets[i] for i in train["id"]]
    result = finetune(args, train, val, label_names(train), out_dir, stats_ds=pool,  # speaker statistics: the pool
                      targets=soft)
    return {"best_step": result.best_step, "train_seconds": round(result.train_seconds, 3),
            **({"soft_labels": True} if soft else {})}


def _evaluate(model_dir: Path, manifest: str) -> dict[str, dict]:
    """Scores of the saved model on the manifest's validation and test splits (those that exist)."""
    from .data.manifest import load_manifest
    from .evaluation import evaluate_dataset, load_model_for_eval, write_report

    model, feature_extractor, names = load_model_for_eval(str(model_dir))
    ds = load_manifest(manifest)
    scores = {}
    for split in ("validation", "test"):
        rows = ds.filter(lambda s, want=split: s == want, input_columns="split")
        if len(rows):
            scores[split], predictions = evaluate_dataset(model, feature_extractor, rows, names)
            write_report(scores[split], model_dir / f"eval_{split}", title=f"{split}: {model_dir.parent.name}",
                         rows=predictions, split=split)
    return scores


def train_model(out_dir: str | Path, kind: str, backbone: str, manifest: str, labelled: Optional[dict[str, int]],
                labels: LabelInfo, seed: int, cache_dir: str = "", finetune_config: str = "",
                head_epochs: int = 200, speaker_norm: bool = False,
                targets: Optional[dict[str, list[float]]] = None) -> DeployResult:
    """Train ``kind`` from ``backbone`` on ``labelled`` (id -> class; None = every training label) or, with
    ``targets`` (id -> vote distribution), on those soft labels; score it, and write OUT/model with metrics.json and
    provenance; skipped when OUT/model holds that model already."""
    from .data.manifest import label_names, load_manifest

    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} is not one of {list(KINDS)}.")
    if kind == "head" and labelled is None:
        raise ConfigError("kind head trains on an AL run's labels; use kind full or lora for every training label.")
    out_dir = Path(out_dir)
    model_dir = out_dir / "model"
    if kind == "head":
        options = {"head_epochs": head_epochs, **({"speaker_norm": True} if speaker_norm else {})}
    else:
        from .finetune import recipe_options

        options = recipe_options(finetune_config)
    digest = _digest(kind, backbone, labelled, seed, options, targets)
    done = _finished(model_dir, digest)
    if done is not None:
        return done
    if kind == "head":
        training = _train_head(model_dir, backbone, manifest, cache_dir, labelled, seed, head_epochs, speaker_norm,
                               targets)
    else:
        training = _train_finetune(out_dir, backbone, manifest, finetune_config, labelled, seed, lora=kind == "lora",
                                   cache_dir=cache_dir, targets=targets)
    names = label_names(load_manifest(manifest, split="train"))
    metrics = ModelMetrics(splits=_evaluate(model_dir, manifest), kind=kind, description=KINDS[kind], backbone=backbone,
                           num_classes=len(names), num_labelled=labels.labelled_clips, training=training)
    write_metrics(model_dir, metrics)
    data = training_data(manifest)
    base, tapt = _tapt_info(backbone)
    languages = {LANGUAGES.get(c) for c in data.corpora} if not data.generated else {"en"}
    provenance = Provenance(
        model_name=f"after-hf SER: {base}{' + TAPT' if tapt else ''}, {KINDS[kind]}, {labels.labelled_clips} "
                   f"{'human-' if labels.oracle == 'human' else ''}labelled clips",
        kind=kind, base_model=base, labels=labels, training_data=data, tapt=tapt,
        language=languages.pop() if len(languages) == 1 else None, labels_digest=digest)
    write_provenance(model_dir, provenance)  # last: a model without it is trained again
    return DeployResult(model_dir, metrics, provenance, skipped=False)


def deploy(run_dir: str | Path, out_dir: str | Path, kind: str = "head", finetune_config: str = "",
           seed: Optional[int] = None, head_epochs: int = 200) -> DeployResult:
    """The deployable model of an AL run: ``kind`` trained from the run's backbone on the run's labels."""
    from .data.manifest import load_manifest

    run_dir = Path(run_dir)
    config = _run_config(run_dir)
    pool = len(load_manifest(config["manifest"], split="train"))
    labelled, labels = label_info(run_dir, config, pool)
    seed = config.get("seed", 0) if seed is None else seed
    return train_model(out_dir, kind, config["backbone"], config["manifest"], labelled, labels, seed,
                       cache_dir=config.get("cache_dir", ""), finetune_config=finetune_config, head_epochs=head_epochs,
                       speaker_norm=bool(config.get("speaker_norm", False)),
                       targets=run_soft_targets(run_dir, config, labelled))


BEST = "best"  # --kind best: every kind of KINDS trained, the one with the best validation UA kept


def deploy_best(run_dir: str | Path, out_dir: str | Path, finetune_config: str = "", seed: Optional[int] = None,
                head_epochs: int = 200, kinds: Sequence[str] = tuple(KINDS)) -> DeployResult:
    """Each of ``kinds`` trained on the run's labels into OUT/candidates/<kind>; the best on validation UA (never
    test) copied to OUT/model; OUT/candidates.json lists each kind's validation and test UA."""
    import shutil

    from .io import atomic_write_json, replace_dir

    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ConfigError(f"candidates {unknown or '[]'}: choose among {list(KINDS)}.")
    out_dir = Path(out_dir)
    results = {kind: deploy(run_dir, out_dir / "candidates" / kind, kind, finetune_config, seed, head_epochs)
               for kind in kinds}
    if any("ua" not in r.validation for r in results.values()):
        raise DeployError(f"--kind {BEST} picks on the validation split, and the manifest of {run_dir} has none: "
                          "choose --kind head, lora or full.")
    best = max(results, key=lambda kind: results[kind].validation["ua"])  # first kind wins a tie
    chosen = results[best]
    current = read_provenance(out_dir / "model")
    if current is None or current.labels_digest != chosen.provenance.labels_digest:
        tmp = out_dir / ".model.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(chosen.model_dir, tmp)
        replace_dir(tmp, out_dir / "model")
    atomic_write_json(out_dir / "candidates.json", {
        "selected": best, "selected_on": "validation UA",
        "candidates": {kind: {"validation_ua": r.validation.get("ua"), "test_ua": r.test.get("ua")}
                       for kind, r in results.items()}})
    return DeployResult(out_dir / "model", chosen.metrics, chosen.provenance,
                        skipped=all(r.skipped for r in results.values()))


def train_reference(out_dir: str | Path, backbone: str, manifest: str, finetune_config: str, seed: int) -> DeployResult:
    """The whole classifier fine-tuned on every label of the train split (the experiment's supervised reference)."""
    from .data.manifest import load_manifest

    pool = len(load_manifest(manifest, split="train"))
    labels = LabelInfo(oracle="corpus", labelled_clips=pool, pool_clips=pool)
    return train_model(out_dir, "full", backbone, manifest, None, labels, seed, finetune_config=finetune_config)


def describe(result: DeployResult) -> str:
    """One line per evaluated split, with the chance level of the test split."""
    lines = []
    chance = chance_levels(result.metrics, "test")
    for split in sorted(result.metrics.splits, key=lambda name: name == "test"):  # test last, with its chance level
        scores = result.metrics.splits[split]
        lines.append(f"{split}: UA {scores['ua']:.3f}  WA {scores['wa']:.3f}  macro-F1 {scores['macro_f1']:.3f}")
        if split == "test" and chance:
            lines[-1] += f"  (chance: UA {chance['ua']:.3f}, WA {chance['wa']:.3f})"
    return "\n".join(lines)


def _argv_with_recipe(argv: list[str]) -> list[str]:
    """``--config FILE`` may be a fine-tuning recipe (a ``finetune:`` section and no ``deploy:`` one): use it as
    ``--finetune_config`` instead of as deploy's own options."""
    for i, arg in enumerate(argv):
        path = argv[i + 1] if arg == "--config" and i + 1 < len(argv) else arg.split("=", 1)[1] if arg.startswith(
            "--config=") else None
        if path is None:
            continue
        recipe = load_recipe(path)
        if isinstance(recipe.get("finetune"), dict) and "deploy" not in recipe:
            rest = argv[:i] + argv[i + (2 if arg == "--config" else 1):]
            return rest if "--finetune_config" in rest else [*rest, "--finetune_config", path]
        if isinstance(recipe.get("finetune"), dict) and "--finetune_config" not in argv:
            return [*argv, "--finetune_config", path]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = _argv_with_recipe(list(sys.argv[1:] if argv is None else argv))
    (args,) = parse_args([DeployArguments], argv, prog="after-hf deploy", description=__doc__, section="deploy")
    if args.kind == BEST:
        result = deploy_best(args.run, args.out, args.finetune_config, args.seed, args.head_epochs)
    else:
        result = deploy(args.run, args.out, args.kind, args.finetune_config, args.seed, args.head_epochs)
    labels = result.provenance.labels
    verb = "already holds" if result.skipped else "trained"
    print(f"{result.model_dir}: {verb} {KINDS[result.provenance.kind]} on {labels.labelled_clips} "
          f"{'human-' if labels.oracle == 'human' else ''}labelled clips of {args.run}"
          + (" (same labels: nothing to do)" if result.skipped else ""))
    print(describe(result))
    print(f"Next: `after-hf push --model {result.model_dir} --repo_id USER/NAME --dry_run OUT` writes the model card "
          f"and the upload folder; `make space AFTER_HF_MODEL={result.model_dir}` serves it; `after-hf predict --model "
          f"{result.model_dir} --audio_dir DIR --out predictions.csv` labels new recordings (one folder per speaker).")
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("deploy", main)
