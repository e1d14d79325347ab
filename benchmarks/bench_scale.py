"""Pool scoring at growing pool sizes: wall time and peak memory, each size in a fresh process.

The pools are built from one generated corpus (``--base_utterances`` distinct espeak-ng utterances,
made once): a pool of S rows repeats its rows with distinct ids in a saved manifest, so every row is
really decoded from disk and scored (nothing is deduplicated). Each size runs ``after_hf.inference.predict``
(``--engine predict``, the full-mode scoring pass) or a cold ``FeatureCache`` build (``--engine features``)
in a new Python process; peak RSS is sampled with psutil every 10 ms. Reported: seconds per 1000
utterances (slope of a least-squares line through the sizes), whether time is linear (the exponent k
of time ~ N^k from a log-log fit is <= 1.1; contention that changes during the run moves it), and the memory slope
(MiB per 1000 utterances) with the peak-RSS growth from the smallest to the largest pool (~flat = at
most +10%: audio is streamed batch by batch and freed memory handed back, so only the largest transient
batch matters, not the pool size).

    python benchmarks/bench_scale.py [--sizes 1000 4000 16000] [--base_utterances 1000] [--engine predict]
    python benchmarks/bench_scale.py --sizes 200 400 800 --base_utterances 200     # quick check
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


def parse(argv):
    p = C.parser(__doc__, threads_help="torch threads in the workers (0 = torch's default)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000], help="pool sizes (rows)")
    p.add_argument("--base_utterances", type=int, default=1000, help="distinct generated utterances the pools repeat")
    p.add_argument("--engine", choices=["predict", "features"], default="predict")
    p.add_argument("--batch_seconds", type=float, default=160.0)
    p.add_argument("--worker", nargs=2, metavar=("MANIFEST", "JSON_OUT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build_pool(base_manifest: Path, size: int, out: Path) -> Path:
    """A manifest of ``size`` rows: the base rows repeated, ids suffixed ``~r<k>`` (saved once)."""
    from after_hf.data.manifest import build_manifest, label_names, load_manifest, save_manifest

    target = out / f"scale_pool_{size}_of_{base_manifest.name}"
    if (target / "dataset_info.json").is_file():
        return target
    base = load_manifest(base_manifest)
    names = label_names(base)
    rows = base.remove_columns(["audio"]).to_list()
    pool = []
    for i in range(size):
        row = dict(rows[i % len(rows)])
        row["id"] = f"{row['id']}~r{i // len(rows)}"
        row["label"] = names[row["label"]]
        row["split"] = "train"
        pool.append(row)
    save_manifest(build_manifest(pool, names), target)
    return target


def worker(args) -> None:
    """One size in this fresh process: load the model, score the pool, report seconds and peak RSS."""
    import resource

    import torch

    from after_hf.data.manifest import load_manifest

    C.quiet_libraries()
    C.set_threads(args.threads)
    manifest_dir, json_out = args.worker
    ds = load_manifest(manifest_dir, check_files=False)
    if args.engine == "predict":
        from transformers import AutoModelForAudioClassification

        from after_hf.inference import predict
        from after_hf.models import load_feature_extractor

        model_dir = C.saved_classifier(Path(args.out))
        model, fe = AutoModelForAudioClassification.from_pretrained(model_dir).eval(), load_feature_extractor(model_dir)

        def run():
            return predict(model, fe, ds, batch_seconds=args.batch_seconds, progress=False)["probs"].shape
    else:
        import tempfile

        from after_hf.al.features import FeatureCache

        cache = FeatureCache(tempfile.mkdtemp(prefix="scale_cache_", dir=args.out), C.saved_backbone(Path(args.out)))
        cache._encoder()  # load it before the clock starts, like predict's model

        def run():
            return cache.get(list(ds["id"]), list(ds["path"]), list(ds["duration"])).shape
    torch.manual_seed(0)
    with C.PeakRSS() as rss:
        t0 = time.perf_counter()
        shape = run()
        seconds = time.perf_counter() - t0
    Path(json_out).write_text(json.dumps({
        "rows": len(ds), "shape": list(shape), "seconds": seconds, "rss_start_mib": C.mib(rss.start),
        "peak_rss_mib": C.mib(rss.peak), "rss_end_mib": C.mib(rss.process.memory_info().rss),
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "audio_seconds": float(sum(ds["duration"])), "load_average_1min": C.machine().get("load_average_1min"),
    }))


def fit_line(x, y):
    import numpy as np

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    r2 = 1.0 - float((residual**2).sum()) / max(float(((y - y.mean()) ** 2).sum()), 1e-12)
    return float(slope), float(intercept), r2


def main(argv=None) -> dict:
    args = parse(argv)
    if args.worker:
        worker(args)
        return {}
    import numpy as np

    started = time.perf_counter()
    out = Path(args.out)
    base = C.ensure_manifest(args.base_utterances, out)
    C.quiet_libraries()
    if args.engine == "predict":
        C.saved_classifier(out)
    else:
        C.saved_backbone(out)
    rows = []
    for size in sorted(args.sizes):
        pool = build_pool(base, size, out)
        json_out = out / f"scale_{args.engine}_{size}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(pool), str(json_out),
               "--engine", args.engine, "--batch_seconds", str(args.batch_seconds), "--threads", str(args.threads),
               "--out", str(out)]
        subprocess.run(cmd, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
        row = json.loads(json_out.read_text())
        rows.append(row)
        C.log(f"{size:>6} utterances: {row['seconds']:.1f} s ({size / row['seconds']:.1f} utt/s), "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB (start {row['rss_start_mib']:.0f}, "
              f"end {row['rss_end_mib']:.0f} MiB); "
              f"load average {row.get('load_average_1min')}")
    sizes = [r["rows"] for r in rows]
    t_slope, t_icpt, t_r2 = fit_line(sizes, [r["seconds"] for r in rows])
    m_slope, m_icpt, m_r2 = fit_line(sizes, [r["peak_rss_mib"] for r in rows])
    per_utt = [r["seconds"] / r["rows"] for r in rows]
    drift = per_utt[-1] / per_utt[0]
    exponent = fit_line(np.log(sizes), np.log([r["seconds"] for r in rows]))[0]  # time ~ N^exponent
    linear = exponent <= 1.1
    growth = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"] - 1  # largest pool vs smallest
    flat = growth <= 0.10
    summary = (f"scale ({args.engine}): {t_slope * 1000:.1f} s per 1000 utt ({'linear' if linear else 'NOT linear'}: "
               f"time ~ N^{exponent:.2f}, R^2 {t_r2:.3f}, per-utt time x{drift:.2f} from {sizes[0]} to {sizes[-1]}); "
               "peak RSS "
               f"{m_slope * 1000:+.2f} MiB per 1000 utt ({'~flat' if flat else 'grows'}: "
               f"{rows[0]['peak_rss_mib']:.0f} -> {rows[-1]['peak_rss_mib']:.0f} MiB, {100 * growth:+.1f}%)")
    print(summary, flush=True)
    metrics = {"sizes": sizes, "seconds": [round(r["seconds"], 2) for r in rows],
               "peak_rss_mib": [round(r["peak_rss_mib"], 1) for r in rows],
               "rss_start_mib": [round(r["rss_start_mib"], 1) for r in rows],
               "rss_end_mib": [round(r["rss_end_mib"], 1) for r in rows],
               "ru_maxrss_mib": [round(r["ru_maxrss_mib"], 1) for r in rows],
               "seconds_per_1000_utt": round(t_slope * 1000, 3), "time_r2": round(t_r2, 4),
               "per_utterance_time_drift": round(drift, 3), "time_exponent": round(exponent, 3), "linear": linear,
               "rss_mib_per_1000_utt": round(m_slope * 1000, 3), "peak_rss_growth": round(growth, 4),
               "memory_flat": flat,
               "load_average_1min": [r.get("load_average_1min") for r in rows], "base_utterances": args.base_utterances}
    targets = {"time_exponent": C.target(exponent, "<=", 1.1), "peak_rss_growth": C.target(growth, "<=", 0.10)}
    return C.finish("bench_scale", summary, metrics, targets, started, args, out)


if __name__ == "__main__":
    main()
