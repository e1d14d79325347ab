"""AFTER's full-mode AL (the whole classifier fine-tuned every round) to 20 % of the labels vs full-data fine-tuning
on the demo corpus: wall time and test UA per seed, and where a round's time goes.

The experiment is ``recipes/demo/full_mode.yaml`` (``--recipe``) in its own directory: the same generated corpus,
split, TAPT and fine-tuning recipe as ``make demo-full``, resolved by ``after_hf.experiment.plan``:
  ours       ``--strategy`` (entropy, AFTER's) from the recipe's cold start, 5 % seed + 5 % a round to 20 %, with the
             recipe's ``al:`` options (warm start, epochs scaled to the new labels, early stopping on validation UA
             from its fine-tuning recipe, pool scoring on the cached CNN outputs)
  baseline   the plan's full-data run: the same fine-tuning on 100 % of the pool's labels, one round
Corpus, manifest, TAPT and the frozen CNN's outputs of every clip are made before either side runs (timed apart,
counted on neither side: both would pay them once); each run starts in a fresh directory, AL and baseline
alternating first. Ratios use the means over seeds. Per round (mean over seeds): load (the previous round's model),
score (the pool), select, train (inside: speaker statistics, evaluation on validation, the training loop), save,
evaluate (validation + test).

    python benchmarks/bench_full_mode.py [--seeds 0 1 2] [--recipe recipes/demo/full_mode.yaml]
    python benchmarks/bench_full_mode.py --base_size --seeds 0     # the short base-size run (time only)
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def parse(argv):
    p = C.parser(__doc__)
    p.add_argument("--recipe", default=str(C.REPO / "recipes" / "demo" / "full_mode.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--strategy", default="entropy")
    p.add_argument("--al", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override the recipe's al: options (e.g. warm_start=false to time AFTER's cold rounds)")
    p.add_argument("--base_size", action="store_true",
                   help="the short base-size run (time only): the backbone is Wav2Vec2Config()'s defaults (95 M, "
                        "random weights, saved once), no TAPT, --synth_utterances clips, 3 epochs of 3 s crops")
    p.add_argument("--synth_utterances", type=int, default=160, help="--base_size: the generated corpus")
    return p.parse_args(argv)


BASE_SIZE_FINETUNE = "{speaker_stats_clips: 8, min_eval_samples: 256, num_train_epochs: 3, max_train_seconds: 3.0}"


def experiment_args(args, work: Path):
    from after_hf.config import parse_args
    from after_hf.experiment import ExperimentArguments

    al = list(args.al)
    extra = []
    if args.base_size:  # a short run: no TAPT, a small corpus, 3 epochs (the recipe's other options as they are)
        extra = ["--backbone", C.saved_base(Path(args.out), "pretraining"), "--tapt_config", "",
                 "--synth_utterances", str(args.synth_utterances), "--synth_voices", "12"]
        al = [f"finetune_options={BASE_SIZE_FINETUNE}", *al]
    argv = ["--config", args.recipe, "--out", str(work), "--strategies", args.strategy,
            "--seeds", *map(str, args.seeds), *extra, *(["--al", *al] if al else [])]
    (exp,) = parse_args([ExperimentArguments], argv, prog="bench_full_mode", section="experiment")
    return exp


def prepare_inputs(exp, work: Path) -> float:
    """Corpus, manifest, TAPT and the CNN-frame cache of every clip (skipped when present); seconds spent."""
    from after_hf.al.features import FrameCache
    from after_hf.data.manifest import label_names, load_manifest
    from after_hf.experiment import data_stages, manifest_of, tapt_dir_of, tapt_stages
    from after_hf.models import load_classifier

    t0 = time.perf_counter()
    timings: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        data_stages(exp, work, timings)
        if exp.tapt_config:
            tapt_stages(exp, timings)
    manifest = load_manifest(manifest_of(exp, None))
    model = load_classifier(tapt_dir_of(exp, None), label_names(manifest))
    FrameCache(work / "cache" / "features", model).get(list(manifest["id"]), list(manifest["path"]),
                                                        list(manifest["duration"]))
    return time.perf_counter() - t0


def run_once(run) -> dict:
    from after_hf.al.loop import run_al

    shutil.rmtree(run.out, ignore_errors=True)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        state = run_al(run)
    seconds = time.perf_counter() - t0
    rounds = [r for r in state.rounds if r["metrics"]]
    return {"seconds": round(seconds, 2), "test_ua": rounds[-1]["metrics"]["test"]["ua"],
            "labelled": rounds[-1]["metrics"]["num_labelled"], "rounds": [_phases(r) for r in rounds]}


def _phases(rec: dict) -> dict:
    fit = rec["metrics"].get("fit", {})
    inside = fit.get("phase_seconds", {})
    phases = {k: round(float(v), 2) for k, v in rec["seconds"].items() if k != "annotate"}
    phases["train:speaker_stats"] = inside.get("speaker_stats", 0.0)
    phases["train:validation"] = inside.get("evaluate", 0.0)
    phases["train:loop"] = round(float(fit.get("train_seconds", 0.0)) - phases["train:speaker_stats"]
                                 - phases["train:validation"], 2)
    phases["epochs"] = fit.get("epochs")
    phases["labelled"] = rec["metrics"]["num_labelled"]
    phases["test_ua"] = rec["metrics"]["test"]["ua"]
    return phases


def mean_rounds(runs: list[dict]) -> list[dict]:
    import numpy as np

    out = []
    for k in range(min(len(r["rounds"]) for r in runs)):
        rows = [r["rounds"][k] for r in runs]
        keys = [key for key in rows[0] if all(isinstance(row.get(key), (int, float)) for row in rows)]
        out.append({key: round(float(np.mean([row[key] for row in rows])), 3) for key in keys})
    return out


def breakdown_text(rounds: list[dict]) -> str:
    """Phases summed over the rounds of a run: train (its speaker statistics and validation inside), score,
    select, I/O (model load + save), evaluate."""
    total = {k: sum(r.get(k, 0.0) for r in rounds) for k in ("train", "train:speaker_stats", "train:validation",
                                                              "score", "select", "load", "save", "evaluate")}
    return (f"train {total['train']:.0f} s (speaker statistics {total['train:speaker_stats']:.0f}, validation "
            f"{total['train:validation']:.0f}), score {total['score']:.1f}, select {total['select']:.2f}, I/O "
            f"{total['load'] + total['save']:.1f}, evaluate {total['evaluate']:.1f}")


def main(argv=None) -> dict:
    args = parse(argv)
    started = time.perf_counter()
    import numpy as np

    from after_hf.experiment import plan

    C.quiet_libraries()
    threads = C.set_threads(args.threads)
    out = Path(args.out)
    work = out / ("full_mode_base" if args.base_size else "full_mode")
    exp = experiment_args(args, work)
    prep_s = prepare_inputs(exp, work)
    runs = plan(exp)
    al_runs = [r for r in runs if r.strategy == args.strategy and r.cold_start == exp.cold_starts[0]]
    full_runs = [r for r in runs if Path(r.out).name.startswith("full_data__")]
    C.log(f"inputs ready in {prep_s:.0f} s (corpus, manifest, TAPT, CNN frames); {len(al_runs)} AL runs "
          f"({args.strategy}, {exp.al}), {len(full_runs)} full-data runs; {threads} torch threads")
    al, full = [], []
    for i, (run_al_args, run_full_args) in enumerate(zip(al_runs, full_runs)):
        order = [("al", run_al_args), ("full", run_full_args)]
        for kind, run in (order if i % 2 == 0 else order[::-1]):  # alternate which side runs first
            res = {"seed": run.seed, **run_once(run)}
            (al if kind == "al" else full).append(res)
            C.log(f"seed {run.seed} {kind:>4}: {res['labelled']} labels, {res['seconds']:.0f} s, "
                  f"test UA {res['test_ua']:.3f}")

    al_s, full_s = float(np.mean([r["seconds"] for r in al])), float(np.mean([r["seconds"] for r in full]))
    al_ua, full_ua = float(np.mean([r["test_ua"] for r in al])), float(np.mean([r["test_ua"] for r in full]))
    time_ratio, ua_ratio = al_s / full_s, al_ua / full_ua
    per_round = mean_rounds(al)
    corpus = (f"base size (95 M, random weights), {args.synth_utterances} generated clips" if args.base_size
              else "demo corpus")
    summary = (f"full-mode AL ({args.strategy}, to {100 * al[0]['labelled'] / full[0]['labelled']:.0f}% labels) / "
               f"full-data fine-tuning, {corpus}: time {time_ratio:.2f}x ({al_s:.0f} s vs {full_s:.0f} s), test UA "
               f"{ua_ratio:.3f}x ({al_ua:.3f} vs {full_ua:.3f}), mean of {len(al)} seeds; AL rounds: "
               f"{breakdown_text(per_round)}; full data: {breakdown_text(mean_rounds(full))}")
    print(summary, flush=True)
    metrics = {"time_ratio": round(time_ratio, 4), "ua_ratio": round(ua_ratio, 4), "al_seconds_mean": round(al_s, 2),
               "full_seconds_mean": round(full_s, 2), "al_test_ua_mean": round(al_ua, 4),
               "full_test_ua_mean": round(full_ua, 4),
               "al_test_ua_std": round(float(np.std([r["test_ua"] for r in al])), 4),
               "full_test_ua_std": round(float(np.std([r["test_ua"] for r in full])), 4),
               "inputs_seconds": round(prep_s, 1), "al_options": exp.al, "per_round_mean": per_round,
               "full_data_rounds_mean": mean_rounds(full), "runs": {"al": al, "full": full},
               "recipe": args.recipe}
    targets = {"time_ratio": C.target(time_ratio, "<=", 0.35)}
    if not args.base_size:  # the short base-size run has random weights: its UA means nothing
        targets["ua_ratio"] = C.target(ua_ratio, ">=", 0.97)
    name = "bench_full_mode_base" if args.base_size else "bench_full_mode"  # its own result file
    return C.finish(name, summary, metrics, targets, started, args, out)


if __name__ == "__main__":
    main()
