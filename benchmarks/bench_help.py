"""Time ``after-hf <command> --help`` for every command, each in a fresh process, against importing the stack.

Help is built from the commands' dataclasses without importing torch, transformers or datasets; the baseline,
in the same run, is what a help that imports them pays: ``python -c "import torch, transformers, datasets"``
plus transformers' ``HfArgumentParser`` (the parser the CLI used before). Each command is timed ``--repeats``
times (the first call of a fresh machine also reads the files from disk; the median is reported, and the
slowest call). Target: every command's help in < 2 s on 2 cores.

    python benchmarks/bench_help.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common as C


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=C.REPO)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per command")
    args = parser.parse_args(argv)
    from after_hf.cli import COMMANDS

    started = time.perf_counter()
    entry = Path(sys.executable).with_name("after-hf")
    base = [str(entry)] if entry.is_file() else [sys.executable, "-c", "import sys; from after_hf.cli import main; "
                                                 "sys.exit(main(sys.argv[1:]))"]
    per_command = {}
    for name in COMMANDS:
        times = [_timed([*base, name, "--help"]) for _ in range(args.repeats)]
        per_command[name] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
        C.log(f"{name} --help: median {statistics.median(times):.2f} s, slowest {max(times):.2f} s")
    stack = [sys.executable, "-c", "import torch, transformers, datasets; from transformers import HfArgumentParser"]
    baseline = statistics.median(_timed(stack) for _ in range(args.repeats))
    interpreter = statistics.median(_timed([sys.executable, "-c", "pass"]) for _ in range(args.repeats))
    worst = max(v["median_s"] for v in per_command.values())
    slowest = max(per_command, key=lambda n: per_command[n]["median_s"])
    median = statistics.median(v["median_s"] for v in per_command.values())
    summary = (f"--help of {len(per_command)} commands: median {median:.2f} s, "
               f"slowest {slowest} {worst:.2f} s (python alone {interpreter:.2f} s) vs {baseline:.2f} s to import "
               f"torch + transformers + datasets = {baseline / worst:.1f}x faster")
    print(summary)
    return C.result("bench_help", summary, {"per_command": per_command, "stack_import_s": round(baseline, 3),
                                            "interpreter_s": round(interpreter, 3)},
                    {"slowest_help_s": C.target(worst, "<=", 2.0)}, time.perf_counter() - started,
                    {"repeats": args.repeats})


if __name__ == "__main__":
    main()
