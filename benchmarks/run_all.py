"""Run every benchmark (``make bench``), each in its own process, then print and save a summary table.

Each benchmark prints one line of ratios measured in the same run (ours vs a named baseline) and returns
a dict from ``main(argv)``. The table goes to stdout, runs/bench/results.json (every returned dict, the
machine, the load average) and runs/bench/results.md (for the README). Benchmarks whose script is
missing are listed as skipped. Timings on a busy machine are contended: the load average is recorded.

    python benchmarks/run_all.py                  # defaults (see the README for the wall time on 2 quiet cores)
    python benchmarks/run_all.py --quick          # small sizes, to check that everything runs (~6 min)
    python benchmarks/run_all.py --only bench_scale --args bench_scale="--sizes 200 400 800 --base_utterances 200"
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as C  # noqa: E402

# (script, what it compares, arguments of --quick); run in this order
BENCHMARKS = [
    ("bench_scoring", "pool scoring: predict / feature cache vs per-file transformers pipeline",
     ["--utterances", "200", "--baseline_utterances", "100"]),
    ("bench_encoder_passes", "encoder passes per utterance over AL runs: cache vs re-encoding",
     ["--utterances", "200", "--strategies", "entropy", "bald"]),
    ("bench_al_vs_full", "AL to 20% labels vs full-data training: time and UA",
     ["--utterances", "200", "--seeds", "0"]),
    ("bench_scale", "scoring time and peak RSS vs pool size",
     ["--sizes", "200", "400", "800", "--base_utterances", "200"]),
    ("bench_tapt_batching", "TAPT throughput: dynamic length batches vs fixed-size padded batches",
     ["--utterances", "200", "--audio_seconds", "120", "--repeats", "1"]),
    ("bench_strategies", "query strategy selection time", ["--n", "1000"]),
    ("bench_manifest_ratings", "prepare time and manifest size with vs without per-rater columns (IEMOCAP layout)",
     ["--turns", "200", "--repeats", "1"]),
    ("bench_help", "after-hf <command> --help in a fresh process vs importing torch + transformers + datasets",
     ["--repeats", "1"]),
    ("bench_base_size", "wav2vec2-base size: scoring vs per-file and batched pipeline, FLOP/s, TAPT vs the example",
     ["--clips", "4", "--tapt_audio_seconds", "12"]),
    ("bench_large_pool", "head-only AL on a 100k-clip pool: round time, selection, peak RSS; encoding 1 vs 2 processes",
     ["--sizes", "2000", "4000", "--encode_utterances", "40", "--strategies", "entropy", "coreset",
      "--cold_starts", "random"]),
    ("bench_full_mode", "full-mode AL to 20% vs full-data fine-tuning on the demo corpus: time, UA, per-round phases",
     ["--seeds", "0"]),
    ("bench_full_mode_base", "full-mode AL to 20% vs full-data fine-tuning at base size (95 M, random weights, "
     "160 clips, 3 epochs): time, per-round phases", ["--synth_utterances", "48"]),
]
DEFAULT_CORPUS, QUICK_CORPUS = 1000, 200


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", default=[], help="run only these benchmarks (script names)")
    p.add_argument("--skip", nargs="+", default=[], help="skip these benchmarks")
    p.add_argument("--quick", action="store_true",
                   help="small sizes: a check that every benchmark runs, not a measurement")
    p.add_argument("--args", nargs="+", default=[], metavar="NAME=ARGS",
                   help='extra arguments, e.g. bench_scale="--sizes 500 1000"')
    p.add_argument("--out", default=str(C.DEFAULT_OUT), help="results directory")
    p.add_argument("--child", nargs=2, metavar=("NAME", "JSON_OUT"), help=argparse.SUPPRESS)
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child(name: str, json_out: str, argv: list[str]) -> None:
    """In the benchmark's own process: call its main(argv) and save the returned dict."""
    result = importlib.import_module(name).main(argv)
    Path(json_out).write_text(json.dumps(result, indent=2, default=str))


def run_one(name: str, argv: list[str], out: Path) -> dict:
    json_out = out / f".{name}.result.json"
    json_out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, str(json_out), "--", *argv]
    print(f"\n== {name} {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.strip():
            lines.append(line.rstrip("\n"))
    code = proc.wait()
    seconds = time.perf_counter() - t0
    result = json.loads(json_out.read_text()) if code == 0 and json_out.is_file() else None
    json_out.unlink(missing_ok=True)
    line = headline(result)
    return {"status": "ok" if code == 0 else f"failed (exit {code})", "seconds": round(seconds, 1), "argv": argv,
            "line": line or (lines[-1] if lines else ""), "result": result}


def headline(result) -> str | None:
    """The benchmark's own one-line ``summary``; for a dict of per-item timings, the slowest items."""
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("summary"), str):
        return result["summary"]
    timed = {k: v["wall_s"] for k, v in result.items()
             if isinstance(v, dict) and isinstance(v.get("wall_s"), (int, float))}
    if timed:
        slowest = sorted(timed.items(), key=lambda kv: -kv[1])[:4]
        return (f"{len(timed)} items, wall s: " + ", ".join(f"{k} {v:.3g}" for k, v in slowest)
                + f"; median {sorted(timed.values())[len(timed) // 2]:.3g}")
    return None


def targets_text(result) -> str:
    if not isinstance(result, dict) or not isinstance(result.get("targets"), dict):
        return "-"
    parts = []
    for key, t in result["targets"].items():
        parts.append(f"{key} {t['value']:g} ({t['target']}: {'met' if t['met'] else 'NOT met'})")
    return "; ".join(parts)


def markdown(rows: dict, header: dict) -> str:
    lines = [
        f"Benchmarks ({'quick sizes, not a measurement' if header['quick'] else 'default sizes'}), {header['date']}; "
        f"{header['machine'].get('cpu_count')} CPU cores, {header['machine'].get('torch_threads')} torch threads, "
        f"GPU: {header['machine'].get('cuda') or 'none'}; load average {header['load_start']} at start, "
        f"{header['load_end']} at the end (above the core count = contended timings). "
        "Every ratio is ours vs the named baseline, measured in the same run.",
        "",
        "| Benchmark | Result (one line, same run) | Targets | Wall time |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        text = row["line"] if row["status"] == "ok" else row["status"]
        text = text.replace("|", "/")
        lines.append(f"| `{name}` | {text} | {targets_text(row.get('result'))} | {row['seconds']:.0f} s |")
    return "\n".join(lines) + "\n"


def load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv=None) -> dict:
    args = parse(argv)
    if args.child:
        rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        child(args.child[0], args.child[1], rest)
        return {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = {}
    for item in args.args:
        name, _, value = item.partition("=")
        extra[name] = shlex.split(value)
    chosen = [(n, d, q) for n, d, q in BENCHMARKS if (not args.only or n in args.only) and n not in args.skip]
    header = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
              "load_start": load_average(), "machine": C.machine()}
    started = time.perf_counter()
    ours = [n for n, _, q in chosen if q is not None and (HERE / f"{n}.py").is_file()]
    if ours:  # generate the shared corpus first, so no benchmark's wall time includes it
        t0 = time.perf_counter()
        C.ensure_manifest(QUICK_CORPUS if args.quick else DEFAULT_CORPUS, out)
        header["corpus_seconds"] = round(time.perf_counter() - t0, 1)
    rows = {}
    for name, description, quick in chosen:
        if not (HERE / f"{name}.py").is_file():
            rows[name] = {"status": "skipped (script not present)", "seconds": 0.0, "line": "", "result": None}
            continue
        argv = (list(quick or []) if args.quick else []) + extra.get(name, [])
        rows[name] = run_one(name, argv, out)
        rows[name]["description"] = description
    header["load_end"] = load_average()
    header["total_seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps({**header, "benchmarks": rows}, indent=2, default=str))
    md = markdown(rows, header)
    (out / "results.md").write_text(md)
    print(f"\n== summary ({header['total_seconds']:.0f} s; results in {out / 'results.json'} and {out / 'results.md'})")
    width = max(len(n) for n in rows) if rows else 10
    for name, row in rows.items():
        print(f"{name:<{width}}  {row['seconds']:>6.0f} s  {row['line'] if row['status'] == 'ok' else row['status']}")
        if isinstance(row.get("result"), dict) and row["result"].get("targets"):
            print(f"{'':<{width}}            targets: {targets_text(row['result'])}")
    failed = [n for n, r in rows.items() if r["status"].startswith("failed")]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return {**header, "benchmarks": rows, "failed": failed}


if __name__ == "__main__":
    sys.exit(1 if main().get("failed") else 0)
