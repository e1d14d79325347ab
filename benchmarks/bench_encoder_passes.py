"""Frozen-encoder passes per utterance over whole AL runs: the feature cache vs re-encoding on every use.

Runs, on one fresh feature cache, head_only AL with several strategies (default: entropy, bald with
20 MC-dropout passes, random; 5% seed, +5% a round, up to 20%: 4 rounds each) plus the full-data
baseline, for each seed, and counts in the same run:
  ours       encoder forward work: utterances through the encoder (a forward hook on every encoder the
             cache loads), divided by the distinct utterances of the manifest (pool + validation + test)
             -> target 1.0
  baselines  (counted in the same runs) a loop that re-encodes pool + validation + test once per round
             (= the number of rounds), and one without any feature reuse: every use of frozen-encoder
             outputs by the heads, counted as they consume them (each training epoch's rows, each validation
             check, each scoring pass and each MC-dropout pass over the pool, each evaluation)

    python benchmarks/bench_encoder_passes.py [--utterances 1000] [--strategies entropy bald random] [--seeds 0]
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
    p.add_argument("--strategies", nargs="+", default=["entropy", "bald", "random"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--mc_passes", type=int, default=20)
    p.add_argument("--head_epochs", type=int, default=60)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    started = time.perf_counter()
    from after_hf.al import features
    from after_hf.al.head import HeadClassifier
    from after_hf.al.loop import ALArguments, run_al
    from after_hf.data.manifest import load_manifest
    from after_hf.experiment import ALL_OF_POOL

    out, manifest_dir = C.start(args)
    manifest = load_manifest(manifest_dir)
    backbone = C.saved_backbone(out)
    work = out / "encoder_passes"
    shutil.rmtree(work, ignore_errors=True)

    # ours: utterances through the encoder (a forward hook on the transformer of every backbone the cache loads: the
    # cache runs the CNN and the transformer itself, per clip, so a hook on the whole model would never fire)
    encoded = {"forwards": 0, "utterances": 0}
    real_load = features.load_backbone

    def hooked(source, init_seed=0):
        model = real_load(source, init_seed)

        def count(module, args, kwargs, output):
            encoded["forwards"] += 1
            encoded["utterances"] += (args[0] if args else kwargs["hidden_states"]).shape[0]

        model.encoder.register_forward_hook(count, with_kwargs=True)
        return model

    # baseline: frozen-encoder rows the heads consume (each would be an encoder forward without the cache)
    used = {"fit": 0, "predict": 0, "mc": 0}
    real_fit, real_predict = HeadClassifier.fit, HeadClassifier.predict

    def counting_fit(self, feats, labels, seed, *a, **kw):
        used["fit"] += len(feats) * self.args.epochs
        return real_fit(self, feats, labels, seed, *a, **kw)

    def counting_predict(self, feats, mc_passes=0, seed=0, **kw):
        used["predict"] += len(feats)
        used["mc"] += len(feats) * mc_passes
        return real_predict(self, feats, mc_passes=mc_passes, seed=seed, **kw)

    features.load_backbone, HeadClassifier.fit, HeadClassifier.predict = hooked, counting_fit, counting_predict
    runs = []
    try:
        common = dict(manifest=str(manifest_dir), backbone=backbone, mode="head_only", cache_dir=str(work / "cache"),
                      head_epochs=args.head_epochs, mc_passes=args.mc_passes)
        plan = []
        for seed in args.seeds:
            for strategy in args.strategies:
                plan.append(ALArguments(out=str(work / f"{strategy}__s{seed}"), strategy=strategy, cold_start="kmeans",
                                        seed=seed, **common))
            plan.append(ALArguments(out=str(work / f"full_data__s{seed}"), strategy="random", cold_start="random",
                                    seed=seed, seed_size=ALL_OF_POOL, step_size=ALL_OF_POOL, budget=ALL_OF_POOL,
                                    **common))
        for run_args in plan:
            t0 = time.perf_counter()
            before = encoded["utterances"]
            with contextlib.redirect_stdout(io.StringIO()):
                state = run_al(run_args)
            runs.append({"run": Path(run_args.out).name, "rounds": len(state.rounds),
                         "encoded_utterances": encoded["utterances"] - before,
                         "seconds": round(time.perf_counter() - t0, 2)})
            C.log(f"{runs[-1]['run']}: {runs[-1]['rounds']} round(s), encoder utterances "
                  f"{runs[-1]['encoded_utterances']}, {runs[-1]['seconds']:.1f} s")
    finally:
        features.load_backbone, HeadClassifier.fit, HeadClassifier.predict = real_load, real_fit, real_predict

    distinct = len(manifest)
    ours = encoded["utterances"] / distinct
    uses = sum(used.values())
    baseline = uses / distinct
    rounds = sum(r["rounds"] for r in runs)
    summary = (f"encoder_passes: {ours:.2f} encoder pass per utterance over {len(runs)} runs / {rounds} rounds "
               f"({', '.join(args.strategies)} + full-data; {distinct} utterances) vs {rounds} re-encoding every round "
               f"({rounds / max(ours, 1e-9):.0f}x) and {baseline:.0f} re-encoding at every use "
               f"({baseline / max(ours, 1e-9):.0f}x)")
    print(summary, flush=True)
    metrics = {"distinct_utterances": distinct, "encoder_utterances": encoded["utterances"],
               "encoder_forwards": encoded["forwards"],
               "passes_per_utterance": round(ours, 4), "uses_of_encoder_outputs": uses, "uses_by_kind": used,
               "passes_per_utterance_without_cache": round(baseline, 1),
               "passes_per_utterance_reencoding_each_round": rounds, "runs": runs, "rounds": rounds}
    targets = {"passes_per_utterance": C.target(ours, "<=", 1.0)}
    return C.finish("bench_encoder_passes", summary, metrics, targets, started, args, out)


if __name__ == "__main__":
    main()
