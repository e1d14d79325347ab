"""Head-only AL on a 100 000-clip pool (MSP-Podcast size): time per round, every strategy's selection, peak memory
at two pool sizes; and multi-process feature encoding under accelerate (1 vs 2 CPU processes).

Pool of N clips: the generated corpus (``--base_utterances``, shared with the other benchmarks) is encoded once, for
real, by ``FeatureCache`` with the ``small`` encoder (random weights, saved to a directory); a pool of N train rows
repeats its train clips under new ids (``<id>~r<k>``) in a saved manifest (validation and test as they are), and
its feature cache is filled through the cache's own shard writer with each repeated clip's encoded row times
(1 + 1 % Gaussian noise), so no two rows are equal. Encoding N clips is not repeated (its cost per clip is the
"encoding" line); everything after it is the real path: shards on disk, the id index, memory-mapped reads.

Each size runs in a fresh process: ``run_al`` in head_only mode (entropy, random seed set, 5 % seed + 5 % a round
up to ``--budget``), its per-round phases from the run's state (score, select, train, evaluate); peak resident
memory sampled every 10 ms (psutil), and its anonymous part (``RssAnon``: memory the process owns, not file pages).
At the largest size every query strategy and cold start then selects one round (k = 5 % of the pool) from that
run's last model's scores of the whole unlabelled pool (probs, 20 MC-dropout passes, head embeddings).

Encoding: ``FeatureCache.get`` of ``--encode_utterances`` clips into an empty cache, launched with
``accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml`` (2 processes, 1 torch thread each: torchrun's
default) and with ``--num_processes 1`` (1 process, torch's default threads); the time from the first process's
start of ``get`` to its end, and the whole launch.

    python benchmarks/bench_large_pool.py [--sizes 50000 100000] [--budget 0.15] [--encode_utterances 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

STRATEGIES = ("random", "entropy", "least_confidence", "margin", "bald", "power_entropy", "power_bald",
              "disagreement", "class_balanced:entropy", "speaker_diverse:bald", "coreset", "badge", "batchbald")
COLD_STARTS = ("random", "kmeans", "typiclust")


def parse(argv):
    p = C.parser(__doc__, threads_help="torch threads in the AL workers (0 = torch's default)")
    p.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000],
                   help="pool sizes (train rows; both above the 64 MiB a split may take in memory)")
    p.add_argument("--base_utterances", type=int, default=1000, help="generated corpus the pools repeat (shared)")
    p.add_argument("--budget", type=float, default=0.15, help="AL to this fraction of the pool (5 %% steps)")
    p.add_argument("--strategies", nargs="*", default=list(STRATEGIES), help="query strategies timed at the largest N")
    p.add_argument("--cold_starts", nargs="*", default=list(COLD_STARTS), help="cold starts timed at the largest N")
    p.add_argument("--kmeans_clusters", type=int, default=0,
                   help="kmeans cold start: clusters (0 = one per seed item, AFTER's rule)")
    p.add_argument("--encode_utterances", type=int, default=300,
                   help="clips encoded at 1 and 2 processes (0 = skip the comparison)")
    p.add_argument("--worker", nargs=3, metavar=("MANIFEST", "CACHE", "JSON_OUT"), help=argparse.SUPPRESS)
    p.add_argument("--encode_worker", nargs=3, metavar=("MANIFEST", "CACHE", "JSON_OUT"), help=argparse.SUPPRESS)
    p.add_argument("--select", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def memory_parts() -> dict:
    """This process's resident memory now, MiB: total, anonymous (owned) and file-backed (mapped files)."""
    parts = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            parts[key] = int(value.split()[0]) / 1024
    return parts


class PeakMemory(C.PeakRSS):
    """``C.PeakRSS`` that also keeps the peak of the anonymous part (RssAnon)."""

    def __init__(self, interval: float = 0.01):
        super().__init__(interval)
        self.peak_anon = memory_parts().get("RssAnon", 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.peak_anon = max(self.peak_anon, memory_parts().get("RssAnon", 0.0))
            self._stop.wait(self.interval)


def build_pool(base_dir: Path, size: int, out: Path) -> Path:
    """A manifest of ``size`` train rows (the base's train rows repeated, ids ``<id>~r<k>``) + the base's validation
    and test rows; saved once."""
    from after_hf.data.manifest import MANIFEST_COLUMNS, build_manifest, label_names, load_manifest, save_manifest

    target = out / f"large_pool_{size}_of_{base_dir.name}"
    if (target / "dataset_info.json").is_file():
        return target
    base = load_manifest(base_dir)
    names = label_names(base)
    keep = [c for c in MANIFEST_COLUMNS if c != "audio" and c in base.column_names]
    rows = base.select_columns(keep).to_list()
    for row in rows:
        row["label"] = names[row["label"]]
    train = [r for r in rows if r["split"] == "train"]
    pool = [{**train[i % len(train)], "id": f"{train[i % len(train)]['id']}~r{i // len(train)}"} for i in range(size)]
    save_manifest(build_manifest(pool + [r for r in rows if r["split"] != "train"], names), target)
    return target


def fill_cache(pool_dir: Path, base_dir: Path, backbone: str, cache_root: Path, work: Path) -> float:
    """The pool's feature cache: the base clips encoded for real (shared cache), each pool row written as its clip's
    row x (1 + 1 % noise) through the cache's shard writer. Returns the seconds spent writing."""
    import numpy as np

    from after_hf.al.features import FeatureCache
    from after_hf.data.manifest import load_manifest

    base = load_manifest(base_dir)
    encoded = FeatureCache(work / "large_pool_base_cache", backbone).get(list(base["id"]), list(base["path"]),
                                                                          list(base["duration"]))
    row_of = {sample_id: i for i, sample_id in enumerate(base["id"])}
    cache = FeatureCache(cache_root, backbone)
    pool_ids = [i for i in load_manifest(pool_dir, check_files=False)["id"] if i not in cache]
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    for start in range(0, len(pool_ids), cache.shard_size):
        ids = pool_ids[start:start + cache.shard_size]
        rows = encoded[[row_of[i.split("~r")[0]] for i in ids]]
        noisy = rows * (1.0 + 0.01 * rng.standard_normal(rows.shape, dtype=np.float32))
        cache._write_shard(ids, list(noisy))  # the writer every encoding uses: atomic shard + id list
    return time.perf_counter() - t0


def round_phases(state) -> list[dict]:
    return [{"round": rec["round"], "labelled": rec["metrics"]["num_labelled"],
             **{k: round(float(v), 3) for k, v in rec["seconds"].items()}} for rec in state.rounds if rec["metrics"]]


def time_selections(args, manifest_dir: str, cache: str, run_dir: Path, backbone: str) -> dict:
    """Every strategy's and cold start's ``select`` of one round (k = 5 % of the pool) on the run's last scores."""
    import numpy as np

    from after_hf.al.head import HeadTrainingArgs
    from after_hf.al.learners import HeadLearner, SplitArrays
    from after_hf.al.strategies import LabelledView, PoolView, get_cold_start, get_strategy
    from after_hf.data.manifest import label_names, load_manifest

    manifest = load_manifest(manifest_dir, check_files=False)
    splits = SplitArrays.from_manifest(manifest)
    train = splits["train"]
    learner = HeadLearner(backbone, splits, label_names(manifest), cache, HeadTrainingArgs())
    state = json.loads((run_dir / "state.json").read_text())
    last = max(r["round"] for r in state["rounds"] if r.get("metrics"))
    learner.load(run_dir / "models" / f"round_{last}")
    asked = {s["id"] for r in state["rounds"] for s in r["selected"]}
    candidates = [i for i in train.ids if i not in asked]
    k = int(round(0.05 * len(train)))
    t0 = time.perf_counter()
    arrays = learner.score(candidates, frozenset({"probs", "mc_probs", "embeddings"}), 20, seed=0)
    score_s = time.perf_counter() - t0
    labels = {i: v for r in state["rounds"] for i, v in r.get("labels", {}).items()}
    lab_ids = sorted(labels)
    lab = learner.score(lab_ids, frozenset({"embeddings"}), 0, seed=0)["embeddings"]
    pool = PoolView(ids=np.array(candidates, dtype=object), speakers=train.speakers[train.index(candidates)], **arrays)
    known = LabelledView(ids=np.array(lab_ids, dtype=object), labels=np.array([labels[i] for i in lab_ids]),
                         embeddings=lab, speakers=train.speakers[train.index(lab_ids)])
    timings = {}
    for name in args.strategies:
        t0 = time.perf_counter()
        chosen = get_strategy(name).select(pool, known, k, np.random.default_rng(0))
        timings[name] = round(time.perf_counter() - t0, 3)
        assert len(set(map(str, chosen))) == k
        C.log(f"  {name}: {timings[name]:.2f} s for k = {k} of {len(candidates)}")
    embedded = learner.embed(candidates)
    for name in args.cold_starts:
        options = {"num_clusters": args.kmeans_clusters} if name == "kmeans" and args.kmeans_clusters else {}
        cold_pool = PoolView(ids=np.array(candidates, dtype=object), embeddings=embedded)
        t0 = time.perf_counter()
        get_cold_start(name, **options).select(cold_pool, LabelledView.empty(), k, np.random.default_rng(0))
        timings[f"cold:{name}"] = round(time.perf_counter() - t0, 3)
        C.log(f"  cold start {name}: {timings[f'cold:{name}']:.2f} s for k = {k}")
    return {"k": k, "candidates": len(candidates), "score_all_needs_s": round(score_s, 3), "select_s": timings}


def worker(args) -> None:
    """One pool size in this fresh process: an AL run to the budget (phases per round, peak memory)."""
    import contextlib
    import io

    from after_hf.al.loop import ALArguments, run_al

    manifest_dir, cache, json_out = args.worker
    C.quiet_libraries()
    C.set_threads(args.threads)
    run_dir = Path(json_out).with_suffix(".run")
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    before = memory_parts()
    backbone = C.saved_backbone(Path(args.out))
    run = ALArguments(manifest=manifest_dir, out=str(run_dir), backbone=backbone, mode="head_only", cache_dir=cache,
                      strategy="entropy", cold_start="random", seed=0, seed_size=0.05, step_size=0.05,
                      budget=args.budget)
    with PeakMemory() as peak:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            state = run_al(run)
        al_s = time.perf_counter() - t0
    result = {"al_seconds": al_s, "rounds": round_phases(state), "rss_before_mib": before,
              "peak_rss_mib": C.mib(peak.peak), "peak_anon_mib": peak.peak_anon, "rss_end_mib": memory_parts(),
              "load_average_1min": C.machine().get("load_average_1min")}
    if args.select:
        with PeakMemory() as peak:
            result["selection"] = time_selections(args, manifest_dir, cache, run_dir, backbone)
        result["selection"]["peak_rss_mib"] = C.mib(peak.peak)
        result["selection"]["peak_anon_mib"] = peak.peak_anon
    Path(json_out).write_text(json.dumps(result, indent=2))


def encode_worker(args) -> None:
    """Under accelerate: encode the manifest's clips into an empty cache; the main process writes the timings."""
    import torch

    from after_hf.al.features import FeatureCache
    from after_hf.data.manifest import load_manifest
    from after_hf.inference import process_group

    manifest_dir, cache_dir, json_out = args.encode_worker
    C.quiet_libraries()
    ds = load_manifest(manifest_dir)
    group = process_group()
    cache = FeatureCache(cache_dir, C.saved_backbone(Path(args.out)))
    cache._encoder(group)  # loaded before the clock, as every benchmark's model
    if group is not None:
        group.wait_for_everyone()
    t0 = time.perf_counter()
    cache.get(list(ds["id"]), list(ds["path"]), list(ds["duration"]))
    seconds = time.perf_counter() - t0
    if group is None or group.is_main_process:
        Path(json_out).write_text(json.dumps({"seconds": seconds, "processes": 1 if group is None else
                                              group.num_processes, "torch_threads": torch.get_num_threads(),
                                              "clips": len(ds), "audio_seconds": float(sum(ds["duration"]))}))


def encoding_comparison(args, base_dir: Path, out: Path) -> dict:
    """Encode ``--encode_utterances`` clips with 1 and with 2 accelerate processes (fresh caches)."""
    import shutil

    from after_hf.data.manifest import load_manifest, save_manifest

    subset = out / f"encode_{args.encode_utterances}_of_{base_dir.name}"
    if not (subset / "dataset_info.json").is_file():
        ds = load_manifest(base_dir)
        save_manifest(ds.select(range(min(args.encode_utterances, len(ds)))), subset)
    C.saved_backbone(out)
    config = C.REPO / "recipes" / "accelerate" / "cpu_2proc.yaml"
    found = {}
    for processes in (1, 2):
        cache, json_out = out / f"encode_cache_{processes}p", out / f"encode_{processes}p.json"
        shutil.rmtree(cache, ignore_errors=True)
        json_out.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
               "--num_processes", str(processes), str(Path(__file__).resolve()), "--encode_worker", str(subset),
               str(cache), str(json_out), "--out", str(out)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "TQDM_DISABLE": "1"}, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        found[processes] = {**json.loads(json_out.read_text()), "launch_seconds": time.perf_counter() - t0}
        shutil.rmtree(cache, ignore_errors=True)
        C.log(f"encoding {found[processes]['clips']} clips, {processes} process(es) x "
              f"{found[processes]['torch_threads']} thread(s): {found[processes]['seconds']:.1f} s "
              f"({found[processes]['launch_seconds']:.1f} s with the launch)")
    return found


def main(argv=None) -> dict:
    args = parse(argv)
    if args.worker:
        worker(args)
        return {}
    if args.encode_worker:
        encode_worker(args)
        return {}
    started = time.perf_counter()
    out = Path(args.out)
    C.quiet_libraries()
    base = C.ensure_manifest(args.base_utterances, out)
    backbone = C.saved_backbone(out)
    sizes = sorted(args.sizes)
    runs = {}
    for size in sizes:
        pool = build_pool(base, size, out)
        cache = out / f"large_pool_cache_{size}"
        written = fill_cache(pool, base, backbone, cache, out)
        json_out = out / f"large_pool_{size}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(pool), str(cache), str(json_out),
               "--budget", str(args.budget), "--threads", str(args.threads), "--out", str(out),
               "--kmeans_clusters", str(args.kmeans_clusters), "--strategies", *args.strategies,
               "--cold_starts", *args.cold_starts] + (["--select"] if size == sizes[-1] else [])
        subprocess.run(cmd, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
        runs[size] = {**json.loads(json_out.read_text()), "cache_write_seconds": round(written, 2)}
        r = runs[size]
        C.log(f"{size} clips: AL to {args.budget:.0%} in {r['al_seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB "
              f"(anonymous {r['peak_anon_mib']:.0f} MiB)")
    encoding = encoding_comparison(args, base, out) if args.encode_utterances else None

    small, large = runs[sizes[0]], runs[sizes[-1]]
    rounds = [r for r in large["rounds"] if r["round"] > 0]
    per_round = {k: sum(r.get(k, 0.0) for r in rounds) / len(rounds) for k in ("score", "select", "train", "evaluate")}
    round_s = sum(per_round.values())
    slope = (large["peak_rss_mib"] - small["peak_rss_mib"]) / (sizes[-1] - sizes[0]) * 1000
    slope_anon = (large["peak_anon_mib"] - small["peak_anon_mib"]) / (sizes[-1] - sizes[0]) * 1000
    feature_mib = C.mib(4 * 5 * 128) * 1000  # small encoder: 5 layers x 128 floats per clip, per 1000 clips
    selection = large.get("selection", {})
    times = selection.get("select_s", {})
    slowest = sorted(times.items(), key=lambda kv: -kv[1])[:3]
    summary = (f"large pool ({sizes[-1]:,} clips, head-only, entropy): a round {round_s:.1f} s (score "
               f"{per_round['score']:.1f}, select {per_round['select']:.2f}, train {per_round['train']:.1f}, evaluate "
               f"{per_round['evaluate']:.2f}); peak RSS {small['peak_rss_mib']:.0f} MiB at {sizes[0]:,} -> "
               f"{large['peak_rss_mib']:.0f} MiB at {sizes[-1]:,} = {slope:+.2f} MiB per 1000 clips (features: "
               f"{feature_mib:.2f} MiB per 1000, never resident)")
    if times:
        summary += (f"; one round's selection, k = {selection['k']:,}: " + ", ".join(
            f"{name} {sec:.1f} s" for name, sec in slowest) + f", the other {len(times) - 3} < {slowest[-1][1]:.1f} s")
    if encoding:
        speedup = encoding[1]["seconds"] / encoding[2]["seconds"]
        summary += f"; encoding {encoding[1]['clips']} clips: 2 processes {speedup:.2f}x 1 process"
    print(summary, flush=True)
    metrics = {"sizes": sizes, "runs": runs, "per_round_seconds": {k: round(v, 3) for k, v in per_round.items()},
               "round_seconds": round(round_s, 3), "rss_mib_per_1000_clips": round(slope, 3),
               "anon_rss_mib_per_1000_clips": round(slope_anon, 3), "feature_mib_per_1000_clips": round(feature_mib, 3),
               "selection": selection, "encoding": encoding}
    targets = {"rss_growth_per_1000_vs_features": C.target(slope / feature_mib, "<=", 0.5)}
    if encoding:
        targets["encoding_2proc_speedup"] = C.target(encoding[1]["seconds"] / encoding[2]["seconds"], ">=", 1.0)
    return C.finish("bench_large_pool", summary, metrics, targets, started, args, out)


if __name__ == "__main__":
    main()
