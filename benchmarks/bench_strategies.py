"""Time one ``select`` call per query strategy on a synthetic pool of the size AFTER's AL rounds see.

Defaults: N = 10 000 pool items, C = 4 classes, T = 20 MC-dropout passes, D = 768 (wav2vec2-base pooled
features), k = 100, 200 labelled items. Inputs are synthetic (the timings do not depend on the model):
clustered embeddings, MC samples drawn around a per-item softmax. Prints one line per strategy and
``main`` returns ``{name: {"wall_s": …, "cpu_s": …}}``. Single-threaded BLAS unless ``--threads``;
wall-clock times on a shared machine vary with the load (printed first); CPU time varies less.

    python benchmarks/bench_strategies.py [--n 10000] [--k 100] [--only badge coreset]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DEFAULT_STRATEGIES = (
    "random", "entropy", "least_confidence", "margin", "bald", "batchbald", "coreset", "badge",
    "power_entropy", "power_bald", "class_balanced:entropy", "class_balanced:badge", "speaker_diverse:bald",
)
DEFAULT_COLD_STARTS = ("random", "kmeans", "kmeans_silhouette", "typiclust")
VARIANTS = {  # bench name -> (registry name, keyword arguments)
    "batchbald_full_greedy": ("batchbald", {"lazy": False}),  # slow (~40 s CPU): only with --only
    "kmeans_silhouette": ("kmeans", {"num_clusters": "silhouette"}),
}


def make_inputs(n, num_classes, num_mc, dim, num_labelled, seed):
    """(pool, labelled): clustered embeddings; MC softmax samples = softmax(item logits + dropout noise)."""
    import numpy as np

    from after_hf.al.strategies import LabelledView, PoolView

    rng = np.random.default_rng(seed)
    total = n + num_labelled
    centres = rng.normal(size=(40, dim)).astype(np.float32)
    cluster = rng.integers(0, len(centres), total)
    embeddings = centres[cluster] + rng.normal(scale=0.7, size=(total, dim)).astype(np.float32)
    logits = rng.normal(scale=2.0, size=(total, num_classes))
    noisy = logits[None, :n] + rng.normal(scale=rng.uniform(0.1, 2.0, (1, n, 1)), size=(num_mc, n, num_classes))
    mc = np.exp(noisy - noisy.max(-1, keepdims=True))
    mc /= mc.sum(-1, keepdims=True)
    speakers = rng.integers(0, 10, total).astype(str)
    ids = np.array([f"utt{i:06d}" for i in range(total)])
    pool = PoolView(ids=ids[:n], probs=mc.mean(0), mc_probs=mc, embeddings=embeddings[:n], speakers=speakers[:n])
    labelled = LabelledView(ids=ids[n:], labels=rng.integers(0, num_classes, num_labelled),
                            embeddings=embeddings[n:], speakers=speakers[n:])
    return pool, labelled


def main(argv=None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="pool size")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--mc", type=int, default=20, help="MC-dropout passes T")
    parser.add_argument("--dim", type=int, default=768, help="embedding size D")
    parser.add_argument("--k", type=int, default=100, help="batch size")
    parser.add_argument("--labelled", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads")
    parser.add_argument("--only", nargs="*", help=f"strategy names (cold starts as cold:NAME); also {sorted(VARIANTS)}")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    with threadpool_limits(args.threads):  # BLAS and OpenMP (k-means) pools; restored afterwards
        return _run(args)


def _run(args) -> dict[str, dict[str, float]]:
    import numpy as np

    from after_hf.al.strategies import LabelledView, get_cold_start, get_strategy

    names = args.only or [*DEFAULT_STRATEGIES, *(f"cold:{c}" for c in DEFAULT_COLD_STARTS)]
    pool, labelled = make_inputs(args.n, args.classes, args.mc, args.dim, args.labelled, args.seed)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# strategies: N={args.n} C={args.classes} T={args.mc} D={args.dim} k={args.k} "
          f"labelled={args.labelled}; {args.threads} thread(s), {os.cpu_count()} cores, load {load:.1f}")
    results = {}
    for name in names:
        cold = name.startswith("cold:")
        base, kwargs = VARIANTS.get(name.removeprefix("cold:"), (name.removeprefix("cold:"), {}))
        if cold:  # cold starts: nothing labelled yet
            strategy, known = get_cold_start(base, **kwargs), LabelledView.empty()
        else:
            strategy, known = get_strategy(base, **kwargs), labelled
        start, cpu = time.perf_counter(), time.process_time()
        picked = strategy.select(pool, known, args.k, np.random.default_rng(args.seed))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert len(set(picked)) == args.k
        results[name] = {"wall_s": wall, "cpu_s": cpu}
        print(f"{name:<26} {wall:8.3f} s wall {cpu:8.3f} s CPU  select k={args.k} from N={args.n}")
    return results


if __name__ == "__main__":
    main()
