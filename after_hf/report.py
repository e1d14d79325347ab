"""`after-hf report`: results table, learning curves and time table from an experiment's AL run directories.

Reads ``<experiment>/al/<run>/summary.json`` (+ ``config.json``) and writes ``results.md``,
``learning_curves.png`` and ``results.json`` into the experiment directory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import parse_args
from .errors import AfterHFError
from .io import atomic_write_json, atomic_write_text
from .model_info import read_metrics

BASELINE_PREFIX = "full_data"


class ReportError(AfterHFError, FileNotFoundError):
    """An experiment directory with nothing to report yet; the message says which command makes it."""


@dataclass
class ReportArguments:
    experiment: str = field(
        metadata={"help": "Experiment directory holding al/<run>/summary.json (written by `after-hf experiment`)."})


def _runs(experiment: Path) -> dict[str, list[dict]]:
    """Group runs by setting (strategy + cold start + backbone tag), one entry per seed and fold."""
    groups: dict[str, list[dict]] = defaultdict(list)
    # al/<run>/ or, for LOSO folds, al/fold<N>/<run>/: a setting pools its seeds (and folds)
    for summary_path in sorted((experiment / "al").rglob("summary.json")):
        run = summary_path.parent
        config = json.loads((run / "config.json").read_text())
        summary = json.loads(summary_path.read_text())
        setting = run.name.rsplit("__s", 1)[0]
        groups[setting].append({"config": config, "rounds": summary["rounds"], "run": run.name})
    return groups


def _seconds(rounds: list[dict]) -> float:
    return float(sum(v for r in rounds for k, v in r["seconds"].items() if k != "annotate"))


def _auc(fractions, uas) -> float:
    """Area under a UA learning curve, normalised by its x-range (= the mean UA over the budget range)."""
    fractions, uas = np.asarray(fractions, dtype=float), np.asarray(uas, dtype=float)
    span = fractions[-1] - fractions[0] if len(fractions) > 1 else 0.0
    return float(np.sum((uas[1:] + uas[:-1]) / 2 * np.diff(fractions)) / span) if span > 0 else float(uas[0])


def aggregate(experiment: Path) -> dict:
    out = {}
    for setting, runs in _runs(experiment).items():
        by_size: dict[float, list[dict]] = defaultdict(list)
        for run in runs:
            for r in run["rounds"]:
                by_size[round(r["fraction_labelled"], 4)].append(r)
        points = []
        for fraction in sorted(by_size):
            rows = by_size[fraction]
            point = {"fraction_labelled": fraction, "n_seeds": len(rows)}
            soft = ("test_kl", "test_brier") if any("test_kl" in r for r in rows) else ()  # rater votes exist
            for metric in ("test_ua", "test_wa", "test_macro_f1", *soft):
                values = np.array([r.get(metric, np.nan) for r in rows], dtype=float)
                point[metric] = float(np.nanmean(values))
                point[metric + "_std"] = float(np.nanstd(values))
            points.append(point)
        auc = _auc([p["fraction_labelled"] for p in points], [p["test_ua"] for p in points])
        per_run = [_auc([r["fraction_labelled"] for r in run["rounds"]],
                        [r.get("test_ua", np.nan) for r in run["rounds"]]) for run in runs]
        seconds = [_seconds(run["rounds"]) for run in runs]
        out[setting] = {"points": points, "auc_ua": auc, "auc_ua_std": float(np.nanstd(per_run)),
                        "seconds_mean": float(np.mean(seconds)),
                        "seconds_std": float(np.std(seconds)), "n_seeds": len(runs),
                        "mode": runs[0]["config"].get("mode"), "backbone": runs[0]["config"].get("backbone"),
                        "soft_labels": bool(runs[0]["config"].get("soft_labels"))}
    return out


def plot_learning_curves(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for setting, res in sorted(results.items()):
        pts = res["points"]
        x = np.array([p["fraction_labelled"] for p in pts]) * 100
        y = np.array([p["test_ua"] for p in pts])
        s = np.array([p["test_ua_std"] for p in pts])
        if setting.startswith(BASELINE_PREFIX):
            ax.axhline(y[-1], linestyle="--", color="grey" if setting == BASELINE_PREFIX else "lightgrey",
                       label=f"{setting} (100% labels): {y[-1]:.3f}")
            continue
        line, = ax.plot(x, y, marker="o", label=f"{setting} (AUC {res['auc_ua']:.3f})")
        ax.fill_between(x, y - s, y + s, alpha=0.15, color=line.get_color())
    ax.set_xlabel("% of the training pool labelled")
    ax.set_ylabel("test UA (mean per-class recall)")
    ax.set_title("Active learning curves (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_references(experiment: Path) -> dict:
    """``references.json`` (ceiling, acoustic baseline) written by the experiment, or {}."""
    from .reference import REFERENCES_FILE

    path = experiment / REFERENCES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _of_ceiling(ua: float, refs: dict) -> str:
    ceiling = refs.get("ceiling", {}).get("test_ua")
    return f"{ua / ceiling:.2f}" if ceiling else "–"


def _references_section(refs: dict) -> list[str]:
    if not refs:
        return []
    lines = ["## Reference rows (same split; test UA)", "",
             "| reference | what | validation UA | test UA | × ceiling |", "|---|---|---|---|---|"]
    for name in ("ceiling", "acoustic_baseline"):
        if name in refs:
            r = refs[name]
            lines.append(f"| {name} | {r['what']} | {r.get('validation', {}).get('ua', float('nan')):.3f} | "
                         f"{r['test_ua']:.3f} | {_of_ceiling(r['test_ua'], refs)} |")
    if "acoustic_baseline" in refs and refs["acoustic_baseline"].get("raw_test_ua") is not None:
        lines += ["", f"The same prosodic features without per-speaker normalisation: test UA "
                      f"{refs['acoustic_baseline']['raw_test_ua']:.3f}."]
    return lines + [""]


def _verdict(ranked: list) -> str:
    """Best setting vs the best random-acquisition setting, with the seed spread as the yardstick (no
    ablation: a setting whose name carries a backbone tag is not a strategy of the main grid)."""
    grid = [(k, v) for k, v in ranked if not any(tag in k for tag in ("-no_tapt", "-scratch"))]
    randoms = [(k, v) for k, v in grid if k.startswith("random")]
    if not grid or not randoms:
        return ""
    (best, b), (rand, r) = grid[0], randoms[0]
    if best == rand:
        return (f"random acquisition ({rand}, AUC {r['auc_ua']:.3f}) is the best setting here: no strategy beat it "
                "on this pool.")
    diff = b["auc_ua"] - r["auc_ua"]
    spread = max(b.get("auc_ua_std", 0.0), r.get("auc_ua_std", 0.0))
    if diff <= spread:
        return (f"{best} leads {rand} by {diff:.3f} AUC, within one seed standard deviation ({spread:.3f}): not a "
                "measurable win on this pool.")
    return f"{best} beats {rand} by {diff:.3f} AUC (more than the seed standard deviation, {spread:.3f})."


def results_markdown(results: dict, experiment: Path) -> str:
    refs = load_references(experiment)
    lines = [f"# Results: {experiment}", "", *_references_section(refs)]
    baselines = {k: v for k, v in results.items() if k.startswith(BASELINE_PREFIX)}
    curves = {k: v for k, v in results.items() if not k.startswith(BASELINE_PREFIX)}
    lines += ["## Test metrics per labelling budget (mean ± std over seeds)", "",
              "| setting | mode | % labelled | seeds | UA | × ceiling | WA | macro-F1 "
              "|", "|---|---|---|---|---|---|---|---|"]
    for setting, res in sorted(results.items()):
        for p in res["points"]:
            lines.append(f"| {setting} | {res['mode']} | {100 * p['fraction_labelled']:.1f} | {p['n_seeds']} | "
                         f"{p['test_ua']:.3f} ± {p['test_ua_std']:.3f} | {_of_ceiling(p['test_ua'], refs)} | "
                         f"{p['test_wa']:.3f} ± {p['test_wa_std']:.3f} | "
                         f"{p['test_macro_f1']:.3f} ± {p['test_macro_f1_std']:.3f} |")
    soft = [(setting, res) for setting, res in sorted(results.items()) if "test_kl" in res["points"][-1]]
    if soft:
        lines += ["", "## Against the raters' vote distributions (test; lower is better)", "",
                  "KL(votes ‖ predicted) in nats and the Brier score against each clip's vote distribution "
                  "(`after_hf/metrics/soft_labels.py`); UA / WA / F1 above score the clip's label.", "",
                  "| setting | soft labels | % labelled | KL | Brier |", "|---|---|---|---|---|"]
        for setting, res in soft:
            for p in res["points"]:
                lines.append(f"| {setting} | {'yes' if res.get('soft_labels') else 'no'} | "
                             f"{100 * p['fraction_labelled']:.1f} | {p['test_kl']:.3f} ± {p['test_kl_std']:.3f} | "
                             f"{p['test_brier']:.3f} ± {p['test_brier_std']:.3f} |")
    lines += ["", "## Area under the UA learning curve (normalised by the budget range; higher is better)", "",
              "| setting | AUC(UA) ± std over seeds | final UA |", "|---|---|---|"]
    ranked = sorted(curves.items(), key=lambda kv: -kv[1]["auc_ua"])
    for setting, res in ranked:
        lines.append(f"| {setting} | {res['auc_ua']:.3f} ± {res.get('auc_ua_std', float('nan')):.3f} | "
                     f"{res['points'][-1]['test_ua']:.3f} |")
    verdict = _verdict(ranked)
    if verdict:
        lines += ["", f"**Verdict:** {verdict}"]
    lines += ["", "## Time: active learning to its budget vs fine-tuning on all labels", "",
              "Wall seconds of train + score + select (annotation excluded; frozen-feature encoding, shared by all "
              "runs, excluded).", "",
              "| setting | final % labelled | final UA | seconds (mean ± std) | time ratio vs baseline "
              "| UA ratio vs baseline |",
              "|---|---|---|---|---|---|"]
    base = baselines.get(BASELINE_PREFIX)
    for setting, res in sorted(results.items()):
        final = res["points"][-1]
        ratio_t = f"{res['seconds_mean'] / base['seconds_mean']:.2f}" if base else "n/a"
        ratio_ua = f"{final['test_ua'] / base['points'][-1]['test_ua']:.3f}" if base else "n/a"
        lines.append(f"| {setting} | {100 * final['fraction_labelled']:.1f} | {final['test_ua']:.3f} | "
                     f"{res['seconds_mean']:.1f} ± {res['seconds_std']:.1f} | {ratio_t} | {ratio_ua} |")
    if base:
        lines += ["", f"Baseline: `{BASELINE_PREFIX}` = the same learner trained once on 100% of the training pool's "
                      "labels."]
    lines += _supervised_section(experiment)
    lines += _speaker_section(refs, experiment)
    lines += ["", "![learning curves](learning_curves.png)", ""]
    return "\n".join(lines)


def _supervised_section(experiment: Path) -> list[str]:
    """The deployable model (final/) and the 100%-label fine-tuning references (finetune/*/), when present."""
    found = [("deployable model (final)", experiment / "final" / "model" / "metrics.json")]
    found += [(f"final candidate: {p.parent.parent.name}", p)
              for p in sorted((experiment / "final" / "candidates").glob("*/model/metrics.json"))]
    found += [(p.parent.parent.name, p) for p in sorted((experiment / "finetune").glob("*/model/metrics.json"))]
    rows = []
    for name, path in found:
        m = read_metrics(path)  # after_hf.model_info: the one metrics.json schema
        if m is not None:
            test = m.splits.get("test", {})
            rows.append(f"| {name} | {m.description or 'whole classifier fine-tuned'} | {m.backbone or '?'} | "
                        f"{'?' if m.num_labelled is None else m.num_labelled} | "
                        f"{test.get('ua', float('nan')):.3f} | {test.get('wa', float('nan')):.3f} | "
                        f"{test.get('macro_f1', float('nan')):.3f} |")
    if not rows:
        return []
    return ["", "## Deployable model and whole-model fine-tuning references (test split)", "",
            "| model | kind | backbone | labels | UA | WA | macro-F1 |", "|---|---|---|---|---|---|---|", *rows]


def _speaker_section(refs: dict, experiment: Path) -> list[str]:
    """Test UA per held-out speaker: the references beside the deployable model. Learned features that fail some
    voices the speaker-normalised prosodic features handle show up here."""
    columns = {name: refs[name].get("test", {}).get("per_speaker") for name in ("ceiling", "acoustic_baseline")
               if name in refs}
    final = read_metrics(experiment / "final" / "model" / "metrics.json")
    if final is not None:
        columns["deployable model"] = final.splits.get("test", {}).get("per_speaker")
    columns = {k: v for k, v in columns.items() if v}
    speakers = sorted({s for v in columns.values() for s in v})
    if len(speakers) < 2 or "deployable model" not in columns:
        return []
    cell = lambda scores, s: f"{scores[s]['ua']:.3f}" if s in scores else "–"  # noqa: E731
    lines = ["", "## Test UA per held-out speaker", "",
             "Mean recall over the classes each speaker has clips of (`after_hf.metrics.per_speaker_scores`).", "",
             "| speaker | clips | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for s in speakers:
        clips = next(v[s]["num_samples"] for v in columns.values() if s in v)
        lines.append(f"| {s} | {clips} | " + " | ".join(cell(v, s) for v in columns.values()) + " |")
    return lines


def build_report(experiment: str | Path) -> Path:
    experiment = Path(experiment)
    results = aggregate(experiment)
    if not results:
        raise ReportError(f"no finished AL runs under {experiment}/al/*/summary.json: run `after-hf experiment` "
                          "first.")
    final = read_metrics(experiment / "final" / "model" / "metrics.json")
    test = {} if final is None else final.splits.get("test", {})
    deployable = {} if final is None else {"final_model": {
        "kind": final.kind, "num_labelled": final.num_labelled, "test_ua": test.get("ua"),
        "validation_ua": final.splits.get("validation", {}).get("ua"),
        "single_clip_test_ua": test.get("single_clip", {}).get("ua"),
        "test_ua_per_speaker": {k: v["ua"] for k, v in test.get("per_speaker", {}).items()}}}
    atomic_write_json(experiment / "results.json", {**results, **load_references(experiment), **deployable})
    plot_learning_curves(results, experiment / "learning_curves.png")
    report = experiment / "results.md"
    atomic_write_text(report, results_markdown(results, experiment))
    return report


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args([ReportArguments], argv, prog="after-hf report", description=__doc__, section="report")
    print(f"report: {build_report(args.experiment)}")
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("report", main)
