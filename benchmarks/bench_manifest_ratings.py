"""What the per-rater columns cost: `prepare` time and manifest size with and without IEMOCAP rater lines.

Builds an IEMOCAP-layout tree of N turns (hard links to one 2-s tone, so both arms decode the same audio) whose
EmoEvaluation files hold, per turn, 3 evaluators (a 4th on every third turn), a two-category answer on every
third turn, the actor's self-evaluation on every other turn and the A- lines; the baseline arm is the same tree
with the C- lines removed (so its manifest has empty rater columns), and "no rater columns" is that manifest
saved without them (the format before the columns existed). Reports the median of ``--repeats`` runs.

    python benchmarks/bench_manifest_ratings.py [--turns 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

CATEGORIES = [("neu", "Neutral"), ("hap", "Happiness"), ("exc", "Excited"), ("ang", "Anger"), ("sad", "Sadness")]


def rater_lines(i: int, word: str, gender: str) -> list[str]:
    lines = [f"C-E1:\t{word};\t()", f"C-E2:\t{word};\t()",
             f"C-E3:\t{word}; Frustration;\t()" if i % 3 == 0 else "C-E3:\tNeutral;\t()"]
    if i % 3 == 1:
        lines.append(f"C-E4:\t{word};\t()")
    if i % 2 == 0:
        lines.append(f"C-{gender}1:\t{word};\t()")
    return lines + [f"A-E{k}:\tval 3; act 2; dom  2;\t()" for k in (1, 2, 3)]


def make_tree(root: Path, turns: int, tone: Path, with_raters: bool) -> Path:
    """IEMOCAP_full_release/Session{1..5}: ``turns`` turns spread over 5 sessions x 4 dialogs."""
    root = root / "IEMOCAP_full_release"
    per_dialog = -(-turns // 20)
    made = 0
    for s in range(1, 6):
        session = root / f"Session{s}"
        (session / "dialog" / "EmoEvaluation").mkdir(parents=True)
        for d in range(4):
            dialog = f"Ses0{s}F_impro0{d + 1}"
            lines = []
            for i in range(per_dialog):
                if made == turns:
                    break
                gender = "FM"[i % 2]
                code, word = CATEGORIES[(i + d) % len(CATEGORIES)]
                utt = f"{dialog}_{gender}{i:03d}"
                lines.append(f"[{i * 3.1:.4f} - {i * 3.1 + 2.5:.4f}]\t{utt}\t{code}\t[2.5000, 3.0000, 2.5000]")
                lines += rater_lines(i, word, gender) if with_raters else ["A-E1:\tval 3; act 2; dom  2;\t()"]
                lines.append("")
                wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                os.link(tone, wav)
                made += 1
            (session / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines))
    return root


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    C.quiet_libraries()
    import numpy as np
    import soundfile as sf

    from after_hf.data.manifest import load_manifest, save_manifest
    from after_hf.data.prepare import prepare
    from after_hf.data.ratings import RATING_COLUMNS

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench_ratings_"))
    try:
        tone = work / "tone.wav"
        t = np.arange(32000) / 16000
        sf.write(tone, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, subtype="PCM_16")
        trees = {arm: make_tree(work / arm, args.turns, tone, arm == "raters") for arm in ("raters", "baseline")}
        seconds = {arm: [] for arm in trees}
        reads = {arm: [] for arm in trees}
        loads = {arm: [] for arm in (*trees, "no_columns")}
        for r in range(args.repeats):
            for arm, tree in trees.items():
                out = work / f"m_{arm}_{r}"
                t0 = time.perf_counter()
                ds = prepare({"iemocap": tree}, out, verbose=False)
                seconds[arm].append(time.perf_counter() - t0)
                report = __import__("json").loads((out / "prepare_report.json").read_text())
                reads[arm].append(report["timing"]["read_seconds"])
                if arm == "baseline" and r == 0:
                    save_manifest(ds.remove_columns(list(RATING_COLUMNS)), work / "m_no_columns")
            for arm in loads:
                path = work / (f"m_{arm}_{r}" if arm != "no_columns" else "m_no_columns")
                t0 = time.perf_counter()
                loaded = load_manifest(path, split="train")
                _ = loaded["label"], loaded["path"]
                loads[arm].append(time.perf_counter() - t0)
        n_answers = sum(len(x) for x in load_manifest(work / "m_raters_0", check_files=False)["ratings"])
        sizes = {"raters": du(work / "m_raters_0"), "baseline": du(work / "m_baseline_0"),
                 "no_columns": du(work / "m_no_columns")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {arm: statistics.median(v) for arm, v in seconds.items()}
    med_read = {arm: statistics.median(v) for arm, v in reads.items()}
    med_load = {arm: statistics.median(v) for arm, v in loads.items()}
    summary = (f"{args.turns} turns, {n_answers} rater answers: prepare {med['raters']:.2f} s with raters vs "
               f"{med['baseline']:.2f} s "
               f"without ({med['raters'] / med['baseline']:.2f}x; reading the label files {med_read['raters']:.2f} vs "
               f"{med_read['baseline']:.2f} s); manifest {C.mib(sizes['raters']) * 1024:.0f} KiB vs "
               f"{C.mib(sizes['baseline']) * 1024:.0f} KiB "
               f"(empty rater columns) vs {C.mib(sizes['no_columns']) * 1024:.0f} KiB (no rater columns); "
               "load_manifest "
               f"{med_load['raters']:.3f} / {med_load['baseline']:.3f} / {med_load['no_columns']:.3f} s")
    print(summary)
    metrics = {"turns": args.turns, "answers": n_answers, "prepare_seconds": med, "read_seconds": med_read,
               "load_seconds": med_load, "manifest_bytes": sizes}
    return C.result("bench_manifest_ratings", summary, metrics, {}, time.perf_counter() - started,
                    {"turns": args.turns, "repeats": args.repeats})


if __name__ == "__main__":
    main()
