"""`after-hf al`: the active-learning loop, resumable round by round.

Round 0 picks a seed set with a cold-start strategy on the backbone's embeddings; every later round
scores the unlabelled pool with the model of the previous round and asks the query strategy for the
next batch; the oracle answers (dataset labels in simulation, a person through the Space's Annotate
tab); the model is retrained and evaluated: head_only (the default) trains a new head on the frozen backbone's
features, full re-fine-tunes the whole classifier from the backbone (the TAPT checkpoint, as AFTER does);
--warm_start starts each round from the previous round's model instead.

Every phase is saved in ``state.json`` before the next starts, so a run killed at any point continues with
``--resume`` exactly as if it had not stopped.
"""
# ``crash_point`` calls mark where tests/test_reliability.py kills the process (test-only: they do nothing unless
# ``AFTER_HF_CRASH_AT`` is set, see ``after_hf.io.crash_point``); a comment, not the docstring, which is `--help`.

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ConfigError, parse_args, to_dict
from ..data.manifest import label_names as manifest_label_names
from ..data.manifest import ManifestError, load_manifest
from ..io import StateError, atomic_write_json, check_output_dir, crash_point
from ..models import check_weights, is_named, load_config, untrained_note
from . import oracle as oracle_files
from . import raters
from .budget import budget_schedule
from .state import LOCK_FILE, RunLock, RunState
from .stopping import StabilisingPredictions
from .strategies import LabelledView, PoolView, describe, get_cold_start, get_strategy

if TYPE_CHECKING:  # the learners import torch: they are loaded by the run, not by `after-hf al --help`
    from .learners import Learner, SplitArrays

logger = logging.getLogger("after_hf.al")


@dataclass
class ALArguments:
    manifest: str = field(metadata={"help": "Manifest directory written by `after-hf prepare`."})
    out: str = field(metadata={"help": "Run directory (state.json, per-round selections, models, metrics)."})
    backbone: str = field(
        default="small",
        metadata={"help": "TAPT output dir, Hub id (facebook/wav2vec2-base) or named config (tiny/small)."},
    )
    mode: str = field(
        default="head_only",
        metadata={"help": "head_only: frozen backbone, cached features, small head per round (cheap); full: "
                          "re-fine-tune the whole classifier each round.", "choices": ["head_only", "full"]},
    )
    strategy: str = field(default="entropy", metadata={"help": describe()})
    strategy_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Options of --strategy as KEY=VALUE (a mapping in a recipe), e.g. beta=2 (power_*), "
                          "num_samples=500 (batchbald), max_per_speaker=3 (speaker_diverse:...); checked by the "
                          "strategy before the run starts."},
    )
    cold_start: str = field(default="kmeans", metadata={"help": describe(cold_start=True)})
    cold_start_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Options of --cold_start as KEY=VALUE, e.g. num_clusters=silhouette (kmeans: k by "
                          "silhouette score) or num_clusters=8."},
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of selections, training and MC dropout (runs are reproducible per seed)."})
    seed_size: float = field(default=0.05, metadata={
        "help": "Seed set: a whole count (>= 1, e.g. 200) or a fraction of the pool (< 1, e.g. 0.05)."})
    step_size: float = field(
        default=0.05, metadata={"help": "Labels added per round: a whole count or a fraction of the pool."})
    budget: float = field(default=0.20, metadata={
        "help": "Total labels to reach: a whole count or a fraction of the pool (0.2 = 20 %)."})
    mc_passes: int = field(default=20, metadata={"help": "MC-dropout passes for BALD / BatchBALD / power_bald."})
    oracle: str = field(
        default="simulated",
        metadata={"help": "simulated: reveal manifest labels when selected; human: queue for the Space's Annotate "
                          "tab.", "choices": ["simulated", "human"]},
    )
    wait_minutes: float = field(
        default=0.0,
        metadata={"help": "Human oracle: minutes to wait for answers before exiting (resume later with --resume)."},
    )
    stop_kappa: float = field(
        default=0.0,
        metadata={"help": "Stabilising-predictions stop: stop when Cohen's kappa between consecutive rounds' "
                          "predictions on a held-out unlabelled sample reaches this (e.g. 0.99); 0 = off."},
    )
    stop_patience: int = field(default=2, metadata={"help": "Consecutive rounds above stop_kappa needed to stop."})
    stop_set_size: int = field(
        default=200,
        metadata={"help": "Size of the held-out unlabelled stop set (taken from the pool, never selected)."},
    )
    cache_dir: str = field(default="", metadata={
        "help": "Where frozen-encoder features are cached (shared by every run of the same backbone). Default: "
                "MANIFEST/../cache/features, beside the manifest (for a manifest made by `after-hf experiment`, that "
                "experiment's own cache, whose features are then reused)."})
    head_epochs: int = field(default=60, metadata={"help": "head_only: epochs per round."})
    head_learning_rate: float = field(default=2e-3, metadata={"help": "head_only: AdamW learning rate."})
    head_dropout: float = field(default=0.3, metadata={"help": "head_only: dropout of the head (MC-dropout source)."})
    speaker_norm: bool = field(
        default=False,
        metadata={"help": "head_only: z-normalise the pooled encoder features per speaker over that speaker's clips "
                          "(SER practice; speaker ids need no labels). The exported deployable head cannot do this "
                          "for a single clip."},
    )
    warm_start: bool = field(
        default=False,
        metadata={"help": "Start each round from the previous round's model instead of retraining from the backbone "
                          "(AFTER retrains from the TAPT checkpoint every round)."},
    )
    warm_start_epochs: str = field(
        default="same",
        metadata={"help": "full mode with --warm_start: same = every round trains the recipe's num_train_epochs; "
                          "scaled = a warm-started round trains num_train_epochs x (labels new this round / labelled "
                          "set), at least 1, so a round costs what its new labels need (round 0 trains the recipe's "
                          "epochs).", "choices": ["same", "scaled"]},
    )
    finetune_config: str = field(
        default="", metadata={"help": "full mode: YAML recipe of `after-hf finetune` options used every round."})
    finetune_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "full mode: `after-hf finetune` options over the recipe's, as KEY=VALUE (a mapping in a "
                          "recipe), e.g. speaker_stats_clips=8 min_eval_samples=256; checked before the run starts."},
    )
    rater_policy: str = field(
        default="label",
        metadata={"help": "Simulated oracle: label = the manifest's label, one per clip, budgets count clips; fixed = "
                          "raters_per_clip rater answers per clip; dynamic = one rater, more only while they "
                          "disagree or the model disagrees, up to raters_per_clip (Zhang et al.). With fixed / "
                          "dynamic, seed_size / step_size / budget count rater answers (the manifest's ratings).",
                  "choices": ["label", "fixed", "dynamic"]},
    )
    raters_per_clip: int = field(
        default=3, metadata={"help": "rater_policy fixed: answers per clip; dynamic: the most answers per clip."})
    soft_labels: bool = field(
        default=False,
        metadata={"help": "Train on each labelled clip's vote distribution (cross-entropy to the raters' votes) "
                          "instead of one label: the simulated oracle reveals the manifest's rater votes, a human "
                          "round the distribution of its annotators' answers. Needs a manifest with ratings."},
    )
    resume: bool = field(
        default=False, metadata={"help": "Continue the run in --out after a crash or after labels arrived."})


def make_learner(args: ALArguments, splits: dict[str, SplitArrays], labels: list[str]) -> Learner:
    if args.mode == "head_only":
        from .head import HeadTrainingArgs
        from .learners import HeadLearner

        head_args = HeadTrainingArgs(epochs=args.head_epochs, learning_rate=args.head_learning_rate,
                                     dropout=args.head_dropout)
        return HeadLearner(args.backbone, splits, labels, args.cache_dir, head_args, init_seed=args.seed,
                           speaker_norm=args.speaker_norm)
    from .full_learner import FullLearner

    return FullLearner(args.backbone, splits, labels, Path(args.out) / "models", args.finetune_config, args.cache_dir,
                       scale_warm_epochs=args.warm_start_epochs == "scaled", options=args.finetune_options)


def _selection_scores(strategy, pool: PoolView) -> np.ndarray | None:
    """Per-item scores to store beside each selection, or None for set-based strategies (random, CoreSet...)."""
    scorer = getattr(strategy, "scores", None)
    try:
        scores = None if scorer is None else scorer(pool)
    except (TypeError, ValueError, NotImplementedError):
        return None
    if scores is None:
        return None
    scores = np.asarray(scores, dtype=np.float64)
    return scores if scores.shape == (len(pool),) else None


def select_round(args, state, learner: Learner, train: SplitArrays, index: int, target: int,
                 stop_ids: set[str]) -> dict:
    """Choose ``target - |labelled|`` new ids: cold start in round 0, the query strategy afterwards."""
    asked = state.asked()
    candidates = [i for i in train.ids if i not in asked and i not in stop_ids]
    labelled = state.labels()
    if args.rater_policy == "label":
        k = min(target - len(labelled), len(candidates))
    else:  # the round's rater answers: a fixed panel per clip, or at least one answer per clip (dynamic)
        per_clip = args.raters_per_clip if args.rater_policy == "fixed" else 1
        k = min(-(-(target - raters.answers_used(state.rounds)) // per_clip), len(candidates))
    rng = np.random.default_rng([args.seed, index])
    started = time.perf_counter()
    name = args.cold_start if index == 0 else args.strategy
    if index == 0:
        strategy = get_cold_start(name, **args.cold_start_options)
    else:
        strategy = get_strategy(name, **args.strategy_options)
    needs = frozenset(strategy.needs)
    arrays: dict[str, np.ndarray] = {}
    load_seconds = 0.0
    if index == 0:
        if "embeddings" in needs:
            arrays["embeddings"] = learner.embed(candidates)
    elif needs or args.rater_policy == "dynamic":  # the dynamic rater policy compares answers with the model
        learner.load(Path(args.out) / "models" / f"round_{index - 1}")
        load_seconds = time.perf_counter() - started
        arrays = learner.score(candidates, needs | {"probs"}, args.mc_passes, seed=args.seed * 1000 + index)
    crash_point("scored", index)
    score_seconds = time.perf_counter() - started - load_seconds
    shown = (needs | {"probs"}) & {"probs", "mc_probs", "embeddings"}
    pool = PoolView(ids=np.array(candidates, dtype=object), speakers=train.speakers[train.index(candidates)],
                    **{k: v for k, v in arrays.items() if k in shown})
    lab_ids = list(labelled)
    lab_embeddings = None
    if "embeddings" in needs and lab_ids:  # CoreSet / TypiClust: the labelled items are the first centres
        lab_embeddings = (learner.embed(lab_ids) if index == 0 else learner.score(
            lab_ids, frozenset({"embeddings"}), 0, seed=args.seed * 1000 + index)["embeddings"])
    lab_view = LabelledView(ids=np.array(lab_ids, dtype=object),
                            labels=np.array([labelled[i] for i in lab_ids], dtype=np.int64),
                            embeddings=lab_embeddings,
                            speakers=train.speakers[train.index(lab_ids)] if lab_ids else None)
    t0 = time.perf_counter()
    chosen = [str(i) for i in strategy.select(pool, lab_view, k, rng)]
    select_seconds = time.perf_counter() - t0
    scores = _selection_scores(strategy, pool) if index else None
    row = {sample_id: k for k, sample_id in enumerate(candidates)}  # only the chosen rows are stored
    selected = [{"id": i, "score": None if scores is None else float(scores[row[i]]),
                 "probs": arrays["probs"][row[i]].tolist() if "probs" in arrays else None} for i in chosen]
    return state.record_selection(index, target, selected, name,
                                  {"load": load_seconds, "score": score_seconds, "select": select_seconds})


def _cli_values(value) -> list[str]:
    """An option's value as command-line words (lists as several words, mappings as KEY=VALUE words)."""
    shown = (lambda v: f"{v:g}" if isinstance(v, float) else str(v))  # noqa: E731
    if isinstance(value, dict):
        return [f"{k}={shown(v)}" for k, v in value.items()]
    return list(map(shown, value)) if isinstance(value, (list, tuple)) else [shown(value)]


def resume_command(args: ALArguments) -> str:
    """The command that continues this run: every option that differs from its default, plus --resume."""
    import shlex

    parts = ["after-hf", "al"]
    for f in fields(ALArguments):
        value = getattr(args, f.name)
        if f.name in ("resume", "wait_minutes") or (f.default is not MISSING and value == f.default):
            continue
        parts += [f"--{f.name}", *_cli_values(value)]
    return shlex.join([*parts, "--resume"])


def annotate_round(args, state, rec, train: SplitArrays, labels: list[str], oracle) -> bool:
    """Get labels for the round's selection; False when a person still has to answer (human oracle)."""
    started = time.perf_counter()
    ids = [s["id"] for s in rec["selected"]]
    if args.oracle == "simulated" and args.rater_policy != "label":
        budget = rec["target_size"] - raters.answers_used(state.rounds[: rec["round"]])
        got, skipped, answers = raters.annotate(args.rater_policy, rec["selected"], oracle.panels(ids), labels,
                                                args.raters_per_clip, budget)
        state.record_labels(rec["round"], got, skipped, time.perf_counter() - started, answers=answers,
                            reached_only=True)
        return True
    if args.oracle == "simulated":
        state.record_labels(rec["round"], oracle.label(ids), [], time.perf_counter() - started)
        return True
    run = Path(args.out)
    queue = oracle_files.read_queue(run)
    if queue.get("round") != rec["round"]:
        oracle_files.write_queue(run, rec["round"], resume=resume_command(args), items=[
            {"id": i, "path": train.paths[train.position[i]],
             "guess": labels[int(np.argmax(s["probs"]))] if s.get("probs") else None,
             "probs": dict(zip(labels, s["probs"])) if s.get("probs") else None,
             "uncertainty": s.get("score")} for i, s in zip(ids, rec["selected"])])
    deadline = time.time() + 60 * args.wait_minutes
    while True:
        answers = oracle_files.answers_by_id(run)
        missing = [i for i in ids if not answers.get(i)]
        if not missing:
            break
        if time.time() >= deadline:
            print(f"Round {rec['round']}: {len(missing)} of {len(ids)} samples wait for a label. Label them in the "
                  f"Space's Annotate tab (`make space AFTER_HF_RUN={run}`), then continue with "
                  f"`{resume_command(args)}`.")
            return False
        time.sleep(5)
    given = {i: oracle_files.resolve(answers[i]) for i in ids}  # several people's answers: majority, ties to the first
    unknown = {i: label for i, label in given.items() if label is not None and label not in labels}
    if unknown:
        sample_id, label = next(iter(unknown.items()))
        raise StateError(f"{run / oracle_files.ANNOTATIONS_FILE}: {len(unknown)} answers have labels outside the "
                         "label set "
                         f"{labels}, e.g. {sample_id!r} -> {label!r}. Correct them (or delete those entries and label "
                         f"them again in the Space), then run the same command with --resume.")
    got = {i: labels.index(label) for i, label in given.items() if label is not None}
    skipped = [i for i in ids if given[i] is None]
    kept = {i: [{k: a.get(k) for k in ("label", "annotator", "time")} for a in answers[i]] for i in ids}
    state.record_labels(rec["round"], got, skipped, time.perf_counter() - started, answers=kept)
    oracle_files.close_queue(run)  # the page takes no more answers for this round
    return True


def soft_targets(state, ids: list[str], labelled: dict[str, int], oracle, num_labels: int,
                 label_names: list[str]) -> np.ndarray:
    """[N, C] each labelled clip's vote distribution: its human annotators' answers when a person labelled it,
    else the simulated oracle's rater votes, else its label as the single vote (a clip nobody rated)."""
    from ..data.ratings import tally

    answers = {i: a for rec in state.rounds for i, a in (rec.get("answers") or {}).items()}
    revealed = oracle.votes([i for i in ids if i not in answers])
    out = np.zeros((len(ids), num_labels))
    for row, sample_id in enumerate(ids):
        # a person's answer names one label (None = skipped); a rater policy's answer a list of labels
        given = [a["labels"] if "labels" in a else [a["label"]] for a in answers.get(sample_id, ())
                 if a.get("labels") or a.get("label") is not None]
        dist = np.asarray(tally(given, label_names)["vote_dist"]) if given else np.zeros(num_labels)
        votes = revealed.get(sample_id)
        if dist.sum() > 0:
            out[row] = dist
        elif votes is not None and votes.sum() > 0:
            out[row] = votes
        else:
            out[row, labelled[sample_id]] = 1.0
    return out


def train_round(args, state, learner: Learner, rec, oracle=None) -> dict:
    labelled = state.labels(rec["round"])
    ids = sorted(labelled)
    started = time.perf_counter()
    previous = Path(args.out) / "models" / f"round_{rec['round'] - 1}"
    init_from = previous if args.warm_start and rec["round"] > 0 else None
    targets = None
    if args.soft_labels:
        targets = soft_targets(state, ids, labelled, oracle, len(learner.label_names), learner.label_names)
    fit_info = learner.fit(ids, [labelled[i] for i in ids], seed=args.seed * 1000 + rec["round"], init_from=init_from,
                           targets=targets)
    train_seconds = time.perf_counter() - started
    crash_point("train", rec["round"])
    saving = time.perf_counter()
    learner.save(Path(args.out) / "models" / f"round_{rec['round']}")
    save_seconds = time.perf_counter() - saving
    crash_point("saved", rec["round"])
    t0 = time.perf_counter()
    metrics = {split: learner.evaluate(split) for split in ("validation", "test") if split in learner.splits}
    metrics["num_labelled"] = len(ids)
    metrics["num_answers"] = raters.answers_used(state.rounds[: rec["round"] + 1])
    metrics["fraction_labelled"] = len(ids) / len(learner.splits["train"])
    metrics["fit"] = {k: v for k, v in fit_info.items() if k != "model"}
    state.record_training(rec["round"], metrics, {"train": train_seconds, "save": save_seconds,
                                                  "evaluate": time.perf_counter() - t0})
    return metrics


def default_cache_dir(manifest: str) -> str:
    """Beside the manifest (an experiment's manifest: the experiment's own cache), never relative to the working
    directory, so that runs on one manifest share their features wherever they are started from."""
    return str(Path(manifest).parent / "cache" / "features")


def announce_encoding(args: ALArguments, splits: dict[str, SplitArrays]) -> None:
    """Say what the first minutes of a run are spent on: encoding the clips the feature cache does not hold yet."""
    if args.mode != "head_only":
        return
    from .features import FeatureCache

    cache = FeatureCache(args.cache_dir, args.backbone, init_seed=args.seed)
    missing = sum(sample_id not in cache for split in splits.values() for sample_id in split.ids)
    if missing:
        print(f"Encoding {missing} clips with {args.backbone} once (cached in {args.cache_dir}; later rounds and runs "
              f"reuse them)...", flush=True)


def check_rater_policy(args: ALArguments, train: SplitArrays) -> None:
    """A rater policy needs the simulated oracle, a panel size and rater answers in the pool."""
    if args.rater_policy == "label":
        return
    if args.oracle != "simulated":
        raise ConfigError(f"--rater_policy {args.rater_policy} asks the manifest's raters (a simulated oracle); with "
                          "--oracle human use --rater_policy label (the labelling page collects each person's "
                          "answers itself).")
    if args.raters_per_clip < 1:
        raise ConfigError(f"--raters_per_clip must be >= 1, got {args.raters_per_clip}.")
    if "ratings" not in train.ds.column_names or not any(train.ds["n_raters"]):
        raise ManifestError(f"--rater_policy {args.rater_policy}: manifest {args.manifest} has no rater answers in its "
                            "train split; prepare a corpus with ratings (e.g. `after-hf synth` with a raters: profile "
                            "section, IEMOCAP, CREMA-D with its rating files), or use --rater_policy label.")


def rater_budget(args: ALArguments, pool_size: int) -> tuple[float, int | None]:
    """(budget, capacity) of the schedule. Under a rater policy a budget past the pool's answers (clips x raters per
    clip) ends at them, with a note: an experiment grid shares one answer budget between 1- and 3-rater policies."""
    if args.rater_policy == "label":
        return args.budget, None
    from .budget import resolve_size

    capacity = pool_size * args.raters_per_clip
    wanted = resolve_size(args.budget, pool_size, "budget", capacity=math.inf)  # the value's own checks; capped below
    if wanted <= capacity:
        return args.budget, capacity
    print(f"note: --budget {wanted} rater answers is more than the pool holds ({pool_size} clips x "
          f"{args.raters_per_clip} {'rater' if args.raters_per_clip == 1 else 'raters'}): the run ends at {capacity}.")
    return capacity, capacity


def rater_panels(train: SplitArrays) -> dict[str, list[list[str]]]:
    """Each pool clip's counted rater answers in corpus order (self-evaluations left out)."""
    ratings = train.ds["ratings"] if "ratings" in train.ds.column_names else [[] for _ in train.ids]
    return {i: [list(r["labels"]) for r in rs if not r["self_eval"]] for i, rs in zip(train.ids, ratings)}


def run_al(args: ALArguments) -> RunState:
    args.cache_dir = args.cache_dir or default_cache_dir(args.manifest)
    # relative paths in the config (manifest, backbone, cache) are read against the directory the run was started
    # from, wherever a later command (deploy, resume) runs
    config = {**to_dict(args), "workdir": os.getcwd()}
    check_output_dir(args.out, "--out")
    manifest = load_manifest(args.manifest)  # checked before the run directory is created
    labels = manifest_label_names(manifest)
    from .learners import SplitArrays

    splits = SplitArrays.from_manifest(manifest)
    if "train" not in splits:
        raise ManifestError(f"manifest {args.manifest} has no 'train' rows: the active-learning pool is the train "
                            "split; re-run `after-hf prepare` with a train split.")
    train = splits["train"]
    if args.soft_labels and args.oracle == "simulated" and train.votes is None:
        raise ManifestError(f"--soft_labels: manifest {args.manifest} has no rater votes in its train split; prepare "
                            "a corpus with ratings (e.g. `after-hf synth` with a raters: profile section, IEMOCAP, "
                            "CREMA-D with its rating files), or drop --soft_labels.")
    stop_rng = np.random.default_rng([args.seed, 7919])
    stop_ids = set()
    if args.stop_kappa:
        stop_ids = set(stop_rng.choice(train.ids, size=min(args.stop_set_size, len(train) // 5), replace=False))
    pool_size = len(train) - len(stop_ids)
    check_rater_policy(args, train)
    schedule = budget_schedule(pool_size, args.seed_size, args.step_size, *rater_budget(args, pool_size))
    # a misspelt name or an option the strategy refuses fails now, not after round 0
    get_cold_start(args.cold_start, **args.cold_start_options), get_strategy(args.strategy, **args.strategy_options)
    if not is_named(args.backbone):  # a backbone directory without config / weights is named now too
        load_config(args.backbone)
        check_weights(args.backbone)
    if args.mode == "full":  # the fine-tuning recipe of every round and the options over it, checked up front
        from ..config import check_recipe
        from ..finetune import FinetuneArguments, recipe_options

        recipe_options(args.finetune_config)
        check_recipe(args.finetune_options, [FinetuneArguments], "al option finetune_options")
    if not (Path(args.out) / LOCK_FILE).exists():  # never started: say so before the lock creates the directory
        RunState.check_resume(args.out, args.resume)
    # Every input is checked: only now is the run directory created (a bad option leaves nothing to clean up),
    # and only by the process that holds its lock.
    with RunLock(args.out) as lock:
        if lock.previous.get("pid"):
            print(f"note: {args.out} was left locked by process {lock.previous['pid']}, which is no longer running "
                  f"(killed?); taking it over and continuing from what it saved.")
        defaults = {f.name: f.default if f.default is not MISSING else f.default_factory()
                    for f in fields(ALArguments) if f.default is not MISSING or f.default_factory is not MISSING}
        state = RunState.open(args.out, config, args.resume, defaults)
        announce_encoding(args, splits)
        started = time.perf_counter()
        learner = make_learner(args, splits, labels)
        if time.perf_counter() - started > 5:
            print(f"Features ready ({time.perf_counter() - started:.0f} s).")
        sizes = "labelled sizes" if args.rater_policy == "label" else f"rater answers, {args.rater_policy} policy"
        print(f"Active learning: pool {pool_size}, rounds {len(schedule)} ({sizes} {schedule}), "
              f"strategy {args.strategy}, cold start {args.cold_start}, mode {args.mode}, run dir {args.out}")
        if run_rounds(args, state, learner, train, labels, schedule, stop_ids):
            atomic_write_json(Path(args.out) / "summary.json", summarise(state))
    return state


def run_rounds(args: ALArguments, state: RunState, learner: Learner, train: SplitArrays, labels: list[str],
               schedule: list[int], stop_ids: set[str]) -> bool:
    """Select, annotate, train round by round from wherever the state is; False when a person still has to answer."""
    votes = dict(zip(train.ids, train.votes)) if train.votes is not None else {}
    panels = rater_panels(train) if args.rater_policy != "label" else {}
    oracle = oracle_files.SimulatedOracle(dict(zip(train.ids, train.labels.tolist())), votes, panels)
    stopper = StabilisingPredictions(args.stop_kappa, args.stop_patience) if args.stop_kappa else None
    for index, target in enumerate(schedule):
        if state.data["stopped"]:
            break
        rec = state.round(index)
        if rec is None and not set(train.ids) - state.asked() - stop_ids:
            state.stop(f"the pool is exhausted after {raters.answers_used(state.rounds)} rater answers (round "
                       f"{index} would reach {target})")
            print(state.data["stopped"])
            break
        if rec is None:
            rec = select_round(args, state, learner, train, index, target, stop_ids)
            crash_point("selected", index)
        if rec["phase"] == "selected" and not annotate_round(args, state, rec, train, labels, oracle):
            return False
        if rec["phase"] == "labelled":
            metrics = train_round(args, state, learner, rec, oracle)
            answers = f", {metrics['num_answers']} rater answers" if args.rater_policy != "label" else ""
            print(f"round {index}: {metrics['num_labelled']} labels ({100 * metrics['fraction_labelled']:.1f}%)"
                  f"{answers}, test UA {metrics.get('test', {}).get('ua', float('nan')):.3f}")
        if stopper is not None:
            learner.load(Path(args.out) / "models" / f"round_{index}")
            ids = sorted(stop_ids)
            preds = learner.score(ids, frozenset({"probs"}), 0, seed=0)["probs"].argmax(1)
            if stopper.update(index, preds):
                state.stop(f"stabilising predictions: kappa >= {args.stop_kappa} for {args.stop_patience} rounds "
                           f"(round {index})")
                print(state.data["stopped"])
    return True


def summarise(state: RunState) -> dict:
    rows = []
    for rec in state.rounds:
        if rec["metrics"]:
            rows.append({"round": rec["round"], "num_labelled": rec["metrics"]["num_labelled"],
                         "fraction_labelled": rec["metrics"]["fraction_labelled"],
                         **({"num_answers": rec["metrics"]["num_answers"]} if "num_answers" in rec["metrics"] else {}),
                         **{f"{split}_{m}": rec["metrics"][split][m] for split in ("validation", "test")
                            if split in rec["metrics"] for m in ("ua", "wa", "macro_f1")},
                         **{f"{split}_{m}": rec["metrics"][split]["soft_labels"][m] for split in ("validation", "test")
                            if "soft_labels" in rec["metrics"].get(split, {}) for m in ("kl", "brier")},
                         "seconds": rec["seconds"]})
    return {"rounds": rows, "stopped": state.data["stopped"]}


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args([ALArguments], argv, prog="after-hf al", description=__doc__, section="al")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    note = untrained_note(args.backbone, "--backbone")
    if note:
        print(note)
    run_al(args)  # a run in use by another process (RunLocked) is one line at the CLI's boundary
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("al", main)
