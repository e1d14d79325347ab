"""`after-hf experiment`: the whole job in one command, each stage skipped when its output exists.

corpus (generated or on disk) -> prepare (manifest) -> TAPT -> AL grid (rater policies x strategies x cold starts
x seeds) -> full-data baseline (+ the no-TAPT ablation) -> report (results.md, learning_curves.png; with rater
policies also the answers to the target and answer_curves.png).
``--dry_run`` resolves and prints every stage, path, fold and budget without training anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import ConfigError, check_recipe, parse_args
from .io import atomic_write_json, check_output_dir

ALL_OF_POOL = 1 - 1e-9  # a fraction that rounds to every sample of the pool (1 would mean one sample)
GRID_SET = ("manifest", "out", "backbone", "strategy", "cold_start", "seed", "cache_dir", "resume", "rater_policy",
            "raters_per_clip")  # set per run


@dataclass
class ExperimentArguments:
    out: str = field(metadata={"help": "Experiment directory (corpus/, manifest/, tapt/, al/<run>/, results.md)."})
    synth_utterances: int = field(
        default=0, metadata={"help": "Generate this many utterances with espeak-ng as the corpus (0 = use --corpus)."})
    synth_voices: int = field(default=32, metadata={"help": "Distinct generated speakers (voices)."})
    synth_profile: str = field(
        default="recipes/demo/corpus.yaml",
        metadata={"help": "Profile of the generated corpus (class shares, emotion effects, speakers, lengths; see "
                          "`after-hf synth --help`)."},
    )
    label_noise: float = field(
        default=0.0,
        metadata={"help": "Generated corpus: probability that a clip's label is wrong (AFTER's noisy pool; the "
                          "ceiling still scores the true emotion)."},
    )
    corpus: list[str] = field(
        default_factory=list,
        metadata={"help": "Corpora on disk as NAME=PATH (iemocap, ravdess, cremad, ...); several = a merged pool."},
    )
    protocol: str = field(
        default="speaker",
        metadata={"help": "Split protocol passed to prepare: speaker (speaker-independent), loso (IEMOCAP folds) or "
                          "utterance (speaker-dependent, for corpora with too few speakers: optimistic scores).",
                  "choices": ["speaker", "loso", "utterance"]},
    )
    folds: list[int] = field(default_factory=lambda: [1], metadata={"help": "LOSO folds to run (IEMOCAP: 1 2 3 4 5)."})
    tapt_config: str = field(
        default="", metadata={"help": "YAML recipe for `after-hf tapt` ('' = no TAPT: the backbone is used as it is)."})
    backbone: str = field(
        default="small",
        metadata={"help": "Starting backbone: named config, local dir or Hub id (TAPT starts from it)."},
    )
    finetune_config: str = field(
        default="",
        metadata={"help": "YAML recipe (`finetune:` section) for full-mode AL rounds, the final model and the "
                          "fine-tuning references."},
    )
    strategies: list[str] = field(
        default_factory=lambda: ["entropy", "random"],
        metadata={"help": "Query strategies to compare (any `after-hf al --strategy`)."},
    )
    cold_starts: list[str] = field(
        default_factory=lambda: ["kmeans"],
        metadata={"help": "Cold starts to compare (any `after-hf al --cold_start`)."},
    )
    seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds (each setting runs once per seed)."})
    rater_policies: list[str] = field(
        default_factory=list,
        metadata={"help": "Rater policies to compare, each POLICY:RATERS (a manifest with rater answers): fixed:1 = "
                          "one rater per clip, fixed:3 = a panel of 3, dynamic:3 = one rater and more only while "
                          "they disagree, up to 3 (`after-hf al --rater_policy / --raters_per_clip`); budgets then "
                          "count rater answers and the report adds the answers each setting needed to reach 97% of "
                          "the full-data UA. Empty = one label per clip (the manifest's)."},
    )
    al: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Options of every AL run of the grid: any `after-hf al` option (mode, seed_size, step_size, "
                          "budget, mc_passes, head_epochs, warm_start, stop_kappa, strategy_options, ...; see "
                          f"`after-hf al --help`) but those the grid sets ({', '.join(GRID_SET)}). An `al:` mapping "
                          "inside the recipe's `experiment:` section; KEY=VALUE on the command line, merged over the "
                          "recipe (e.g. --al budget=0.3 warm_start=true). strategy_options / cold_start_options go to "
                          "the strategies that take them."},
    )
    baseline: bool = field(
        default=True, metadata={"help": "Also train on 100% of the pool's labels (the baseline of every ratio)."})
    ablation_no_tapt: bool = field(
        default=True, metadata={"help": "Also run the full-data baseline and the first strategy without TAPT."})
    scratch_backbone: str = field(
        default="",
        metadata={"help": "Also run the full-data baseline and the first strategy from this randomly initialised "
                          "named config (e.g. small, the demo base's architecture): what pre-training buys. '' = no."},
    )
    final_model: str = field(
        default="head",
        metadata={"help": "The deployable classifier (OUT/final/model: `make space`, `after-hf push`), `after-hf "
                          "deploy` on the first strategy's first-seed run: head (frozen TAPT encoder + a linear "
                          "layer-weighted head, exported as Wav2Vec2ForSequenceClassification; seconds), lora or "
                          "full (fine-tune with --finetune_config), best (all three, the best on validation UA "
                          "kept) or none.",
                  "choices": ["head", "lora", "full", "best", "none"]},
    )
    final_candidates: list[str] = field(
        default_factory=lambda: ["head", "lora", "full"],
        metadata={"help": "final_model best: the kinds trained and compared on validation UA (head, lora, full)."},
    )
    finetune_references: bool = field(
        default=False,
        metadata={"help": "Also fine-tune the whole classifier on 100% of the labels, from TAPT and without TAPT "
                          "(the supervised reference and the TAPT ablation)."},
    )
    dry_run: bool = field(
        default=False, metadata={"help": "Print every resolved stage, config, fold and budget; train nothing."})


def _run_name(strategy: str, cold: str, tag: str, seed: int, policy: str = "") -> str:
    return f"{strategy.replace(':', '+')}-{cold}{policy.replace(':', '')}{tag}__s{seed}"


def rater_policies_of(args: ExperimentArguments) -> list[tuple[str, dict[str, Any]]]:
    """(run-name tag, `al` options) per rater policy of the grid: [("", {})] without the axis."""
    found = []
    for spec in args.rater_policies:
        policy, _, count = spec.partition(":")
        if policy not in ("fixed", "dynamic") or not count.isdigit() or int(count) < 1:
            raise ConfigError(f"experiment option rater_policies: {spec!r} is not POLICY:RATERS; use fixed:N (N raters "
                              "per clip) or dynamic:N (one rater, more while they disagree, up to N), e.g. [fixed:1, "
                              "fixed:3, dynamic:3]; leave rater_policies empty for one corpus label per clip.")
        found.append((f"-{policy}{count}", {"rater_policy": policy, "raters_per_clip": int(count)}))
    if len({tag for tag, _ in found}) < len(found):
        raise ConfigError(f"experiment option rater_policies: {args.rater_policies} names a policy twice.")
    return found or [("", {})]


def folds_of(args: ExperimentArguments) -> list[int | None]:
    return list(args.folds) if args.protocol == "loso" else [None]


def manifest_of(args: ExperimentArguments, fold: int | None) -> Path:
    """The manifest of a fold (LOSO) or the one manifest."""
    return Path(args.out) / (f"manifest_fold{fold}" if fold else "manifest")


def tapt_dir_of(args: ExperimentArguments, fold: int | None) -> str:
    """TAPT output for a fold: each LOSO fold pre-trains on its own training audio (its test session never seen)."""
    if not args.tapt_config:
        return args.backbone
    return str(Path(args.out) / (f"tapt_fold{fold}" if fold else "tapt"))


def _grid_name(key: str) -> str | None:
    """``key`` as the grid option it names (``model`` and the other spellings of ``backbone`` included: `al` calls
    it ``backbone``), or None for an option the grid does not set."""
    from .config import synonyms

    if key in GRID_SET:
        return key
    grid = next((name for name in synonyms(key) if name in GRID_SET), None)
    return f"{key} (= {grid})" if grid else None


def al_options(args: ExperimentArguments) -> dict[str, Any]:
    """The `al:` options shared by every run, checked against `after-hf al`'s (names, types, choices)."""
    from .al.loop import ALArguments

    owned = sorted(filter(None, map(_grid_name, args.al)))
    if owned:
        raise ConfigError(f"experiment option al: {owned} are set by the grid for each run; use strategies / "
                          f"cold_starts / seeds / rater_policies / backbone / out instead, and remove them from al.")
    check_recipe(args.al, [ALArguments], "experiment option al", hidden=GRID_SET)
    from .al.budget import check_size

    for key in ("seed_size", "step_size", "budget"):  # a count or a fraction: checked now, not after TAPT
        if key in args.al:
            check_size(args.al[key], f"experiment option al.{key}")
    return {"finetune_config": args.finetune_config, **args.al}


def _routed(options: dict[str, Any], names: list[str], kind: str, cold_start: bool = False) -> dict[str, dict]:
    """name -> the options of ``options`` that strategy takes; a misspelt name, an option none of them takes or a
    value a strategy refuses is an error now (as `after-hf al` checks before its run), not after TAPT."""
    from .al.strategies import StrategyError, get_cold_start, get_strategy, options_of

    build = get_cold_start if cold_start else get_strategy
    for name in names:
        try:
            build(name)
        except StrategyError as err:
            raise ConfigError(f"experiment option {'cold_starts' if cold_start else 'strategies'}: {err}") from err
    per_name = {n: {k: v for k, v in options.items() if k in options_of(n, cold_start)} for n in names}
    unused = sorted(set(options) - {k for taken in per_name.values() for k in taken})
    if unused:
        raise ConfigError(f"experiment option al.{kind}: {unused} are taken by none of {names}; see "
                          f"`after-hf al --help` for the options of each.")
    for name, taken in per_name.items():
        try:
            build(name, **taken)
        except StrategyError as err:
            raise ConfigError(f"experiment option al.{kind}: {err}") from err
    return per_name


def ablations_of(args: ExperimentArguments) -> list[tuple[str, str]]:
    """(tag, backbone) of the pre-training ablations: the backbone without TAPT, and a random-weight encoder."""
    from .models import is_named

    found = [("no_tapt", args.backbone)] if args.ablation_no_tapt and args.tapt_config else []
    if args.scratch_backbone:
        if not is_named(args.scratch_backbone):
            raise ConfigError(f"experiment option scratch_backbone: {args.scratch_backbone!r} is not a named config "
                              "(tiny, small, ...): it names the architecture whose random weights are the baseline.")
        found.append(("scratch", args.scratch_backbone))
    return found


def plan(args: ExperimentArguments) -> list:
    """Every AL run of the grid as resolved `after-hf al` options (ALArguments)."""
    from .al.loop import ALArguments

    out, shared = Path(args.out), al_options(args)
    strategy_options = _routed(shared.pop("strategy_options", {}), list(args.strategies), "strategy_options")
    cold_options = _routed(shared.pop("cold_start_options", {}), list(args.cold_starts), "cold_start_options", True)
    runs = []
    for fold in folds_of(args):
        tapt_dir = tapt_dir_of(args, fold)
        common = dict(shared, manifest=str(manifest_of(args, fold)), cache_dir=str(out / "cache" / "features"))
        run_dir = out / "al" / (f"fold{fold}" if fold else "")
        ablations = ablations_of(args)  # (tag, backbone): the same runs from a less pre-trained encoder
        policies = rater_policies_of(args)  # (tag, rater options): who answers, and what the budget counts
        grid = [(s, c, "", tapt_dir, p) for p in policies for s in args.strategies for c in args.cold_starts]
        grid += [(args.strategies[0], args.cold_starts[0], f"-{tag}", backbone, policies[0])
                 for tag, backbone in ablations]
        for seed in args.seeds:
            for strategy, cold, tag, backbone, (policy, raters) in grid:
                runs.append(ALArguments(**common, **raters, out=str(run_dir / _run_name(strategy, cold, tag, seed,
                                                                                          policy)),
                                        backbone=backbone, strategy=strategy, cold_start=cold, seed=seed,
                                        strategy_options=strategy_options[strategy],
                                        cold_start_options=cold_options[cold]))
            if args.baseline:  # one round with every label of the pool
                for tag, backbone in [("", tapt_dir), *((f"_{t}", b) for t, b in ablations)]:
                    everything = dict(seed_size=ALL_OF_POOL, step_size=ALL_OF_POOL, budget=ALL_OF_POOL)
                    runs.append(ALArguments(**{**common, **everything}, out=str(run_dir / f"full_data{tag}__s{seed}"),
                                            backbone=backbone, strategy="random", cold_start="random", seed=seed))
    return runs


def deploy_stages(args: ExperimentArguments, runs: list, timings: dict) -> None:
    """Supervised stages (`after_hf.deploy`): the deployable model on the labels the first AL run collected, and
    optionally the 100%-label fine-tuning references. Each is skipped when its output already holds it."""
    from .deploy import BEST, KINDS, deploy, deploy_best, describe, train_reference

    out = Path(args.out)
    tapt_dir = tapt_dir_of(args, folds_of(args)[0])  # the deployable model and references: first fold
    manifest, seed, source = runs[0].manifest, args.seeds[0], runs[0]  # first strategy x cold start, first seed
    stages = []  # (timing name, description, training call)
    if args.final_model == BEST:
        stages.append(("final_model", f"{', '.join(args.final_candidates)} on the labels of {Path(source.out).name}"
                                      ", the best on validation UA kept",
                       lambda: deploy_best(source.out, out / "final", args.finetune_config, seed,
                                           kinds=args.final_candidates)))
    elif args.final_model != "none":
        stages.append(("final_model", f"{KINDS[args.final_model]} on the labels of {Path(source.out).name}",
                       lambda: deploy(source.out, out / "final", args.final_model, args.finetune_config, seed)))
    if args.finetune_references:
        stages.append(("finetune_all", "whole classifier on 100% of the labels, from TAPT",
                       lambda: train_reference(out / "finetune" / "finetune_all", tapt_dir, manifest,
                                               args.finetune_config, seed)))
        if args.tapt_config:
            stages.append(("finetune_all_no_tapt", "whole classifier on 100% of the labels, without TAPT",
                           lambda: train_reference(out / "finetune" / "finetune_all_no_tapt", args.backbone, manifest,
                                                   args.finetune_config, seed)))
    for name, what, train in stages:
        print(f"\n[deploy] {name}: {what}")
        t0 = time.perf_counter()
        result = train()
        timings[name] = time.perf_counter() - t0
        print(("(already done) " if result.skipped else "") + describe(result).replace("\n", "; "))


def reference_stage(args: ExperimentArguments, out: Path, timings: dict) -> None:
    """OUT/references.json: the acoustic baseline (every corpus) and, for a generated corpus, the ceiling."""
    from .reference import PROSODIC_CACHE, REFERENCES_FILE, acoustic_baseline, ceiling

    path = out / REFERENCES_FILE
    if path.is_file():
        return
    t0 = time.perf_counter()
    manifest = manifest_of(args, folds_of(args)[0])
    refs = {"acoustic_baseline": acoustic_baseline(manifest, cache=out / "cache" / PROSODIC_CACHE)}
    truth = out / "corpus" / "synth_truth.csv"
    if args.synth_utterances and truth.is_file():
        refs["ceiling"] = ceiling(manifest, truth)
    atomic_write_json(path, refs)
    timings["references"] = time.perf_counter() - t0
    print("[references] " + ", ".join(f"{name}: test UA {r['test_ua']:.3f}" for name, r in refs.items()))


def print_plan(args: ExperimentArguments, runs: list, out: Path) -> None:
    """--dry_run: every stage as the command it amounts to."""
    corpus = f"synth:{args.synth_utterances}" if args.synth_utterances else args.corpus
    print(f"experiment {out}: corpus={corpus}, protocol={args.protocol}, "
          f"folds={args.folds if args.protocol == 'loso' else '-'}, "
          f"TAPT={args.tapt_config or 'none'} from {args.backbone}")
    for fold in folds_of(args) if args.tapt_config else []:
        print(f"  tapt --config {args.tapt_config} --model_name_or_path {args.backbone} --manifest "
              f"{manifest_of(args, fold)} --output_dir {tapt_dir_of(args, fold)}"
              + (f" (fold {fold}: its training sessions only)" if fold else ""))
    shown = {"mode", "seed_size", "step_size", "budget", "strategy_options", "cold_start_options"}
    if args.rater_policies:
        print(f"rater policies: {', '.join(args.rater_policies)} (seed_size / step_size / budget count rater answers)")
    extra = "".join(f" --{k} " + (" ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else str(v))
                    for k, v in args.al.items() if k not in shown)  # the recipe's other al: options
    for run in runs:
        options = "".join(f" --{name} " + " ".join(f"{k}={v}" for k, v in getattr(run, name).items())
                          for name in ("strategy_options", "cold_start_options") if getattr(run, name)) + extra
        raters = (f" --rater_policy {run.rater_policy} --raters_per_clip {run.raters_per_clip}"
                  if run.rater_policy != "label" else "")
        print(f"  al --out {run.out} --manifest {run.manifest} --backbone {run.backbone} --mode {run.mode} "
              f"--strategy {run.strategy} --cold_start {run.cold_start} --seed {run.seed}{raters} "
              f"--seed_size {run.seed_size:.10g} --step_size {run.step_size:.10g} --budget {run.budget:.10g}{options}")
    if args.final_model != "none":
        print(f"  deploy --run {runs[0].out} --out {out / 'final'} --kind {args.final_model}   (the deployable model)")
    if args.finetune_references:
        print(f"  finetune --model {runs[0].backbone} on 100% of the labels -> {out / 'finetune' / 'finetune_all'}")
    print(f"{len(runs)} AL runs; nothing was trained (--dry_run).")


def data_stages(args: ExperimentArguments, out: Path, timings: dict) -> None:
    """The corpus (generated, or on disk) and one manifest per fold."""
    from .data.prepare import prepare

    corpora = list(args.corpus)
    if args.synth_utterances:
        from .data.synth import synthesize

        t0 = time.perf_counter()
        synthesize(out / "corpus", num_utterances=args.synth_utterances, seed=0, voices=args.synth_voices,
                   profile=args.synth_profile, label_noise=args.label_noise)
        corpora = [f"cremad={out / 'corpus'}"]
        timings["synth"] = time.perf_counter() - t0
    for fold in folds_of(args):
        manifest = manifest_of(args, fold)
        if not (manifest / "dataset_info.json").is_file():
            t0 = time.perf_counter()
            prepare(dict(c.split("=", 1) for c in corpora), str(manifest), protocol=args.protocol, fold=fold or 1)
            timings[f"prepare{fold or ''}"] = time.perf_counter() - t0


def tapt_stages(args: ExperimentArguments, timings: dict) -> None:
    """TAPT per fold on the fold's training audio; a killed TAPT continues from its last checkpoint."""
    from .tapt import has_started
    from .tapt import main as tapt_main

    for fold in folds_of(args):
        tapt_dir = Path(tapt_dir_of(args, fold))
        t0 = time.perf_counter()
        if not (tapt_dir / "model.safetensors").is_file():
            tapt_main(["--config", args.tapt_config, "--model_name_or_path", args.backbone,
                       "--manifest", str(manifest_of(args, fold)), "--output_dir", str(tapt_dir),
                       *(["--resume"] if has_started(tapt_dir) else [])])
        timings[tapt_dir.name] = time.perf_counter() - t0


def al_stages(runs: list, timings: dict) -> None:
    from .al.loop import run_al
    from .al.state import RunState

    for i, run in enumerate(runs, 1):
        print(f"\n[{i}/{len(runs)}] {Path(run.out).name}")
        t0 = time.perf_counter()
        run_al(replace(run, resume=RunState.started(run.out)))  # a finished or killed run continues
        timings[Path(run.out).name] = time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args([ExperimentArguments], argv, prog="after-hf experiment", description=__doc__,
                         section="experiment")
    out = check_output_dir(args.out, "--out")
    runs = plan(args)
    if args.dry_run:
        print_plan(args, runs, out)
        return 0
    timings: dict[str, float] = {}
    started = time.perf_counter()
    data_stages(args, out, timings)
    reference_stage(args, out, timings)
    if args.tapt_config:
        tapt_stages(args, timings)
    al_stages(runs, timings)
    deploy_stages(args, runs, timings)
    from .report import build_report

    report = build_report(out)
    timings["total"] = time.perf_counter() - started
    atomic_write_json(out / "timings.json", timings)
    tapt_dirs = [tapt_dir_of(args, fold) for fold in folds_of(args)] if args.tapt_config else []
    print(f"\nReport: {report}\nLearning curves: {out / 'learning_curves.png'}\n"
          + (f"TAPT model: {', '.join(tapt_dirs)}\n" if tapt_dirs else "")
          + (f"Deployable model: {out / 'final' / 'model'}\n" if args.final_model != "none" else "")
          + "Next: serve a model with `make space`, push one with `after-hf push --model DIR --repo_id USER/NAME "
            "--dry_run OUT`, or label new recordings with `after-hf predict --model DIR --audio_dir DIR --out "
            "predictions.csv`.")
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("experiment", main)
