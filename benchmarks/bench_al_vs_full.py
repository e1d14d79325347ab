"""Active learning up to 20% of the labels vs full-data training: wall time and test UA, measured in one run.

  ours       ``after-hf al`` (``run_al``), head_only mode, entropy after a k-means seed set:
             5% seed, +5% a round, up to 20% of the pool's labels (4 rounds: select, label, train, evaluate)
  baseline   "full-data": the same learner (same frozen backbone, same head and training settings, same
             validation-based checkpoint choice) trained once on 100% of the pool's labels, built exactly
             as ``after_hf.experiment.plan`` builds its baseline: one round with
             seed_size = step_size = budget = ALL_OF_POOL (strategy random, cold start random)
Both read the same frozen-encoder feature cache. It is built once, timed on its own, before either side
runs: the main ratio counts it on neither side; the line also gives the ratio with both sides paying it
once each ("both pay"). UA = unweighted accuracy on the speaker-independent test split; ratios use the
means over seeds. Backbone (``--backbone auto``): the demo's TAPT encoder (runs/demo/tapt) when ``make demo``
has made it, else the ``small`` named encoder with random weights (seed 0) saved to a directory; the
line names it. Also reported: the last AL round's training time over the full-data training time (a
single fit on 20% vs 100% of the labels, the comparison AFTER's "79% less time" suggests).

    python benchmarks/bench_al_vs_full.py [--utterances 1000] [--seeds 0 1 2] [--strategy entropy]
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
    p.add_argument("--utterances", type=int, default=1000, help="generated corpus size")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one AL run and one full-data run per seed")
    p.add_argument("--strategy", default="entropy")
    p.add_argument("--cold_start", default="kmeans")
    p.add_argument("--seed_size", type=float, default=0.05)
    p.add_argument("--step_size", type=float, default=0.05)
    p.add_argument("--budget", type=float, default=0.20)
    p.add_argument("--backbone", default="auto",
                   help="encoder dir / Hub id; auto = the demo's TAPT output runs/demo/tapt if `make demo` made it, "
                        "else the small named encoder (random init, seed 0) saved to a directory")
    p.add_argument("--head_epochs", type=int, default=60, help="head training epochs per round (the loop's default)")
    return p.parse_args(argv)


def _final(state) -> dict:
    last = [r for r in state.rounds if r["metrics"]][-1]
    seconds = {}
    for rec in state.rounds:
        for k, v in rec["seconds"].items():
            seconds[k] = seconds.get(k, 0.0) + float(v)
    return {"test_ua": last["metrics"]["test"]["ua"], "labelled": last["metrics"]["num_labelled"],
            "fraction": last["metrics"]["fraction_labelled"], "rounds": len(state.rounds),
            "phase_seconds": {k: round(v, 2) for k, v in seconds.items()},
            "last_round_train_seconds": round(float(last["seconds"].get("train", float("nan"))), 2)}


def main(argv=None) -> dict:
    args = parse(argv)
    started = time.perf_counter()
    import numpy as np

    from after_hf.al.features import ENCODER_STATS, FeatureCache
    from after_hf.al.loop import ALArguments, run_al
    from after_hf.data.manifest import load_manifest
    from after_hf.experiment import ALL_OF_POOL
    from after_hf.models import is_named

    out, manifest_dir = C.start(args)
    demo_tapt = C.REPO / "runs" / "demo" / "tapt"
    if args.backbone == "auto":
        backbone = str(demo_tapt) if (demo_tapt / "model.safetensors").is_file() else C.saved_backbone(out)
    else:
        backbone = args.backbone
    work = out / "al_vs_full"
    shutil.rmtree(work, ignore_errors=True)
    cache_dir = work / "cache"
    manifest = load_manifest(manifest_dir)
    n_train = int(np.sum(np.asarray(manifest["split"]) == "train"))
    C.log(f"{len(manifest)} utterances ({n_train} in the pool), backbone {backbone}, seeds {args.seeds}")

    # the feature cache, built once and timed apart (every split: pool, validation, test)
    t0 = time.perf_counter()
    for seed in sorted(set(args.seeds)):  # a named backbone's fingerprint depends on the seed; a directory's does not
        FeatureCache(cache_dir, backbone, init_seed=seed).get(list(manifest["id"]), list(manifest["path"]),
                                                              list(manifest["duration"]))
        if not is_named(backbone):
            break
    cache_s = time.perf_counter() - t0
    encoded_after_cache = ENCODER_STATS["utterances"]
    C.log(f"feature cache built in {cache_s:.1f} s")

    common = dict(manifest=str(manifest_dir), backbone=backbone, mode="head_only", cache_dir=str(cache_dir),
                  head_epochs=args.head_epochs)
    al, full = [], []
    for seed in args.seeds:
        runs = {
            "al": ALArguments(out=str(work / f"al_{args.strategy}__s{seed}"), strategy=args.strategy,
                              cold_start=args.cold_start, seed=seed, seed_size=args.seed_size,
                              step_size=args.step_size, budget=args.budget, **common),
            "full": ALArguments(out=str(work / f"full_data__s{seed}"), strategy="random", cold_start="random",
                                seed=seed, seed_size=ALL_OF_POOL, step_size=ALL_OF_POOL, budget=ALL_OF_POOL, **common),
        }
        for kind, run_args in runs.items():
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                state = run_al(run_args)
            info = {"seed": seed, "seconds": time.perf_counter() - t0, **_final(state)}
            (al if kind == "al" else full).append(info)
            C.log(f"seed {seed} {kind:>4}: {info['labelled']} labels in {info['rounds']} round(s), "
                  f"{info['seconds']:.1f} s, test UA {info['test_ua']:.3f}")
    extra_encodes = ENCODER_STATS["utterances"] - encoded_after_cache

    al_s, full_s = float(np.mean([r["seconds"] for r in al])), float(np.mean([r["seconds"] for r in full]))
    al_ua, full_ua = float(np.mean([r["test_ua"] for r in al])), float(np.mean([r["test_ua"] for r in full]))
    time_ratio, ua_ratio = al_s / full_s, al_ua / full_ua
    both_pay = (al_s + cache_s) / (full_s + cache_s)
    last_fit_ratio = float(np.mean([r["last_round_train_seconds"] for r in al])
                           / np.mean([r["phase_seconds"]["train"] for r in full]))
    backbone_name = "demo TAPT encoder" if backbone == str(demo_tapt) else Path(backbone).name
    label_fraction = float(np.mean([r["fraction"] for r in al]))
    summary = (f"al_vs_full: {args.strategy} AL to {100 * label_fraction:.0f}% labels / full-data (same head learner, "
               f"100% labels): time {time_ratio:.2f}x ({al_s:.1f} s vs {full_s:.1f} s; cache build {cache_s:.1f} s "
               f"counted on neither side; both pay: {both_pay:.2f}x; last fit alone {last_fit_ratio:.2f}x), "
               f"test UA {ua_ratio:.3f}x "
               f"({al_ua:.3f} vs {full_ua:.3f}, mean of {len(args.seeds)} seeds; backbone {backbone_name})")
    print(summary, flush=True)
    metrics = {
        "pool_utterances": n_train, "label_fraction": round(label_fraction, 4),
        "al_seconds_mean": round(al_s, 2), "full_seconds_mean": round(full_s, 2),
        "cache_build_seconds": round(cache_s, 2),
        "time_ratio": round(time_ratio, 4), "time_ratio_both_pay_cache": round(both_pay, 4),
        "last_fit_time_ratio": round(last_fit_ratio, 4), "backbone": backbone,
        "al_test_ua_mean": round(al_ua, 4), "full_test_ua_mean": round(full_ua, 4), "ua_ratio": round(ua_ratio, 4),
        "al_test_ua_std": round(float(np.std([r["test_ua"] for r in al])), 4),
        "full_test_ua_std": round(float(np.std([r["test_ua"] for r in full])), 4),
        "encoder_utterances_during_runs": int(extra_encodes),
        "runs": {"al": al, "full": full},
        "baseline": "full-data = same head_only learner on 100% of the pool's labels, one round "
                    "(experiment.ALL_OF_POOL)",
        "cache_accounting": "feature-cache build timed separately; time_ratio counts it on neither side, "
                            "time_ratio_both_pay_cache adds it once to each side",
    }
    targets = {"time_ratio": C.target(time_ratio, "<=", 0.21), "ua_ratio": C.target(ua_ratio, ">=", 0.97)}
    return C.finish("bench_al_vs_full", summary, metrics, targets, started, args, out)


if __name__ == "__main__":
    main()
