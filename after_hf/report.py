"""`after-hf report`: results table, learning curves and time table from an experiment's AL run directories.

Reads ``<experiment>/al/<run>/summary.json`` (+ ``config.json``) and writes ``results.md``,
``learning_curves.png`` and ``results.json`` into the experiment directory. Where the experiment cached its
prosodic features (``cache/prosodic_features.npz``, written with ``references.json``), each setting also gets the
acoustic baseline trained on only the labels its runs received (from each run's ``state.json``).

Runs made under a rater policy (``--rater_policy fixed|dynamic``: budgets in rater answers) are placed on their
curves by rater answers, and add the rater answers each setting needed to reach ``TARGET_OF_FULL`` x the full-data
UA (``answers_to_target``: results.md, results.json) and ``answer_curves.png`` (x = rater answers).
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
TARGET_OF_FULL = 0.97  # the rater-answers table: answers needed to reach 97 % of the full-data test UA


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
        fold = run.parent.name if run.parent != experiment / "al" else ""  # LOSO: fold<N>
        groups[setting].append({"config": config, "rounds": summary["rounds"], "run": run.name, "fold": fold,
                                "dir": str(run)})
    return groups


def _seconds(rounds: list[dict]) -> float:
    return float(sum(v for r in rounds for k, v in r["seconds"].items() if k != "annotate"))


def _auc(fractions, uas) -> float:
    """Area under a UA learning curve, normalised by its x-range (= the mean UA over the budget range)."""
    fractions, uas = np.asarray(fractions, dtype=float), np.asarray(uas, dtype=float)
    span = fractions[-1] - fractions[0] if len(fractions) > 1 else 0.0
    return float(np.sum((uas[1:] + uas[:-1]) / 2 * np.diff(fractions)) / span) if span > 0 else float(uas[0])


def rater_policy_of(config: dict) -> str | None:
    """"fixed:3" / "dynamic:3" for a run whose oracle asked raters (budgets in rater answers), else None."""
    policy = config.get("rater_policy", "label")
    return None if policy == "label" else f"{policy}:{config.get('raters_per_clip', 3)}"


def _x(config: dict, r: dict) -> float:
    """Where a round sits on its setting's curve: its rater answers under a rater policy (seeds of a dynamic policy
    label different numbers of clips for the same answers), else its labelled fraction of the pool."""
    return float(r.get("num_answers", r["num_labelled"])) if rater_policy_of(config) else round(
        r["fraction_labelled"], 4)


def _points(runs: list[dict]) -> list[dict]:
    """The setting's curve: one point per position (``_x``), each metric's mean and std over the seeds there."""
    by_x: dict[float, list[dict]] = defaultdict(list)
    for run in runs:
        for r in run["rounds"]:
            by_x[_x(run["config"], r)].append(r)
    points = []
    for x in sorted(by_x):
        rows = by_x[x]
        point = {"fraction_labelled": float(np.mean([r["fraction_labelled"] for r in rows])), "n_seeds": len(rows),
                 "num_labelled": float(np.mean([r["num_labelled"] for r in rows]))}
        if rater_policy_of(runs[0]["config"]):
            point["num_answers"] = x
        soft = ("test_kl", "test_brier") if any("test_kl" in r for r in rows) else ()  # rater votes exist
        for metric in ("test_ua", "test_wa", "test_macro_f1", *soft):
            values = np.array([r.get(metric, np.nan) for r in rows], dtype=float)
            point[metric] = float(np.nanmean(values))
            point[metric + "_std"] = float(np.nanstd(values))
        points.append(point)
    return points


def aggregate(experiment: Path, groups: dict[str, list[dict]] | None = None) -> dict:
    """Per setting: its curve (``_points``), AUC of UA over its x (normalised: the mean UA over the range), seconds
    and what it was (mode, backbone, soft labels, rater policy, strategy)."""
    out = {}
    for setting, runs in (_runs(experiment) if groups is None else groups).items():
        points = _points(runs)
        config = runs[0]["config"]
        key = "num_answers" if rater_policy_of(config) else "fraction_labelled"
        auc = _auc([p[key] for p in points], [p["test_ua"] for p in points])
        per_run = [_auc([_x(run["config"], r) for r in run["rounds"]],
                        [r.get("test_ua", np.nan) for r in run["rounds"]]) for run in runs]
        seconds = [_seconds(run["rounds"]) for run in runs]
        out[setting] = {"points": points, "auc_ua": auc, "auc_ua_std": float(np.nanstd(per_run)),
                        "seconds_mean": float(np.mean(seconds)),
                        "seconds_std": float(np.std(seconds)), "n_seeds": len(runs),
                        "mode": config.get("mode"), "backbone": config.get("backbone"),
                        "soft_labels": bool(config.get("soft_labels")), "rater_policy": rater_policy_of(config),
                        "strategy": config.get("strategy"), "cold_start": config.get("cold_start")}
    return out


def _first_hit(run: dict, target: float) -> dict | None:
    """The first round of ``run`` whose test UA is at or above ``target`` (None: it never got there)."""
    return next((r for r in run["rounds"] if r.get("test_ua", -1.0) >= target), None)


def answers_to_target(groups: dict[str, list[dict]], results: dict) -> dict | None:
    """Rater answers each rater-policy setting needed to reach ``TARGET_OF_FULL`` x the full-data test UA (the
    ``full_data`` baseline's mean over seeds; per fold for LOSO folds): per seed (and fold), the answers of its first
    round at or above the target, or None when no round reached it within the budget. None when no run used a rater
    policy or there is no baseline."""
    settings = {k: v for k, v in groups.items() if rater_policy_of(v[0]["config"]) and k in results}
    base = results.get(BASELINE_PREFIX)
    if not settings or base is None:
        return None
    by_fold = defaultdict(list)  # the baseline of each fold: folds differ in difficulty (their test sessions)
    for run in groups[BASELINE_PREFIX]:
        by_fold[run["fold"]].append(run["rounds"][-1].get("test_ua", np.nan))
    targets = {fold: TARGET_OF_FULL * float(np.nanmean(uas)) for fold, uas in by_fold.items()}
    table = {}
    for setting, runs in sorted(settings.items()):
        per_seed, clips = {}, []
        for run in sorted(runs, key=lambda r: (r["fold"], r["config"].get("seed", 0))):
            hit = _first_hit(run, targets.get(run["fold"], TARGET_OF_FULL * base["points"][-1]["test_ua"]))
            key = f"{run['fold']} s{run['config'].get('seed')}" if run["fold"] else str(run["config"].get("seed"))
            per_seed[key] = None if hit is None else int(hit.get("num_answers", 0))
            clips += [] if hit is None else [hit["num_labelled"]]
        reached = [v for v in per_seed.values() if v is not None]
        res, last = results[setting], [run["rounds"][-1].get("test_ua", np.nan) for run in runs]
        ends = [run["rounds"][-1].get("num_answers", 0) for run in runs]
        table[setting] = {
            "rater_policy": res["rater_policy"], "strategy": res["strategy"], "cold_start": res["cold_start"],
            "per_seed": per_seed, "reached": len(reached), "n_seeds": len(per_seed),
            "mean": float(np.mean(reached)) if reached else None, "std": float(np.std(reached)) if reached else None,
            "clips_at_target": float(np.mean(clips)) if clips else None,
            "budget": int(max(ends)), "fewest_at_end": int(min(ends)),  # a dynamic run may use up the pool first
            "final_ua": float(np.nanmean(last)), "final_ua_std": float(np.nanstd(last))}  # each run's last round
    return {"fraction_of_full": TARGET_OF_FULL, "full_data_ua": base["points"][-1]["test_ua"],
            "target_ua": TARGET_OF_FULL * base["points"][-1]["test_ua"], "full_data_soft_labels": base["soft_labels"],
            **({"target_ua_by_fold": dict(sorted(targets.items()))} if len(targets) > 1 else {}), "settings": table}


def same_label_baselines(experiment: Path, groups: dict[str, list[dict]]) -> dict[str, dict]:
    """Per setting (every seed and fold, one label per clip): the acoustic baseline trained on only the labels each
    run received (`after_hf.reference.acoustic_baseline_on_labels`), mean and std of its test UA. Empty without
    the experiment's prosodic-feature cache (written with references.json)."""
    from .al.state import RunState, run_path
    from .reference import PROSODIC_CACHE, acoustic_baseline_on_labels

    cache = experiment / "cache" / PROSODIC_CACHE
    if not cache.is_file():
        return {}
    by_manifest: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for runs in groups.values():
        for run in runs:
            if rater_policy_of(run["config"]) is None and run["config"].get("manifest"):
                by_manifest[run_path(run["config"], "manifest")][run["dir"]] = RunState.read(run["dir"]).labels()
    scores = {}
    for manifest, labelled in by_manifest.items():
        scores.update(acoustic_baseline_on_labels(manifest, cache, labelled))
    out = {}
    for setting, runs in groups.items():
        found = [scores[run["dir"]] for run in runs if run["dir"] in scores]
        if found and len(found) == len(runs):
            test = [f["test_ua"] for f in found]
            out[setting] = {"test_ua": float(np.mean(test)), "test_ua_std": float(np.std(test)), "n_seeds": len(test),
                            "validation_ua": float(np.mean([f["validation"]["ua"] for f in found]))}
    return out


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
    ablation: a setting whose name carries a backbone tag is not a strategy of the main grid). Under rater policies
    one sentence per policy: their curves span different answer ranges, so AUCs compare only within a policy."""
    grid = [(k, v) for k, v in ranked if not any(tag in k for tag in ("-no_tapt", "-scratch"))]
    policies = list(dict.fromkeys(v.get("rater_policy") for _, v in grid))
    if any(p is not None for p in policies):
        found = [_one_verdict([(k, v) for k, v in grid if v.get("rater_policy") == p]) for p in policies]
        return " ".join(f"{policy_name(p) if p else 'one label per clip'}: {v}" for p, v in zip(policies, found) if v)
    return _one_verdict(grid)


def _one_verdict(grid: list) -> str:
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


def policy_name(spec: str) -> str:
    """"fixed:1" -> "1 rater per clip", "fixed:3" -> "fixed, 3 raters per clip", "dynamic:3" -> "dynamic, up to 3"."""
    policy, _, n = spec.partition(":")
    if policy == "fixed":
        return "1 rater per clip" if n == "1" else f"fixed, {n} raters per clip"
    return f"dynamic, up to {n} raters per clip"


def _spec_order(entry: dict) -> tuple:
    policy, _, n = entry["rater_policy"].partition(":")
    return (policy != "fixed", int(n or 0), entry["strategy"] or "", entry["cold_start"] or "")


def _answers_verdict(entries: list[dict]) -> str:
    """Per rater policy, its best strategy by mean answers to the target (only settings that reached it in every
    seed can be ranked), and which policy needs the fewest."""
    parts, best = [], None
    for spec in dict.fromkeys(e["rater_policy"] for e in entries):
        done = [e for e in entries if e["rater_policy"] == spec and e["reached"] == e["n_seeds"]]
        if not done:
            parts.append(f"{policy_name(spec)}: no strategy reached it in every seed")
            continue
        top = min(done, key=lambda e: e["mean"])
        parts.append(f"{policy_name(spec)}: {top['strategy']}, {top['mean']:.0f} ± {top['std']:.0f} answers")
        best = top if best is None or top["mean"] < best["mean"] else best
    lead = (f"fewest rater answers to the target: **{policy_name(best['rater_policy'])} with {best['strategy']}** "
            f"({best['mean']:.0f} ± {best['std']:.0f}). " if best else "no setting reached the target in every seed. ")
    return lead + "Best strategy per policy: " + "; ".join(parts) + "."


def _span(entry: dict) -> str:
    low, high = entry.get("fewest_at_end", entry["budget"]), entry["budget"]
    return f"{high}" if low == high else f"{low}–{high}"


def _answers_section(table: dict | None) -> list[str]:
    """results.md: the rater answers each (rater policy, strategy) needed to reach the target, seed by seed."""
    if table is None:
        return []
    share = f"{100 * table['fraction_of_full']:.0f} %"
    votes = ", trained on all of each clip's rater answers" if table["full_data_soft_labels"] else ""
    folds = table.get("target_ua_by_fold")
    per_fold = (" and fold, against its fold's own baseline (" + ", ".join(f"{k} {t:.3f}" for k, t in folds.items())
                + ")") if folds else ""
    lines = ["", f"## Rater answers to reach {share} of the full-data UA", "",
             f"Target: test UA ≥ **{table['target_ua']:.3f}** = {share} of `{BASELINE_PREFIX}` "
             f"({table['full_data_ua']:.3f}: the same learner on every clip of the pool{votes}). Per seed{per_fold}, "
             "the rater answers of the first round at or above the target (test UA is noisy: a curve may dip below it "
             "again); *not reached* = no round reached it within the answers the run had. The mean ± std is over the "
             "seeds that reached it.", "",
             "| rater policy | strategy | cold start | seeds reaching | answers per seed | answers to target "
             "(mean ± std) | clips labelled then | UA at the last round |", "|---|---|---|---|---|---|---|---|"]
    entries = sorted(table["settings"].values(), key=_spec_order)
    for e in entries:
        per_seed = " / ".join("not reached" if v is None else str(v) for v in e["per_seed"].values())
        if e["mean"] is None:
            mean = f"not reached within {e['budget']}"
        else:
            mean = f"{e['mean']:.0f} ± {e['std']:.0f}" + (
                f" ({e['reached']} of {e['n_seeds']} seeds)" if e["reached"] < e["n_seeds"] else "")
        clips = "–" if e["clips_at_target"] is None else f"{e['clips_at_target']:.0f}"
        lines.append(f"| {policy_name(e['rater_policy'])} | {e['strategy']} | {e['cold_start']} | "
                     f"{e['reached']} of {e['n_seeds']} | {per_seed} | {mean} | {clips} | "
                     f"{e['final_ua']:.3f} ± {e['final_ua_std']:.3f} ({_span(e)} answers) |")
    return lines + ["", f"**Verdict:** {_answers_verdict(entries)}", "",
                    "![rater answers vs test UA](answer_curves.png)"]


def results_markdown(results: dict, experiment: Path, answers: dict | None = None, refs: dict | None = None) -> str:
    refs = load_references(experiment) if refs is None else refs
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
              "The range: the labelled fraction of the pool, or the rater answers for a rater policy.", ""]
    same_labels = any("acoustic_baseline_same_labels" in res for res in curves.values())
    if same_labels:  # the experiment's prosodic features are cached (references.json was written)
        lines += ["*Acoustic baseline, same labels*: the acoustic baseline's classifier trained on only the labels "
                  "each run received (mean ± std over its seeds; `after_hf.reference.acoustic_baseline_on_labels`): "
                  "what a classical model makes of the labels this setting chose.", ""]
    lines += ["| setting | AUC(UA) ± std over seeds | final UA |" + (" acoustic baseline, same labels |" * same_labels),
              "|---|---|---|" + "---|" * same_labels]
    ranked = sorted(curves.items(), key=lambda kv: -kv[1]["auc_ua"])
    for setting, res in ranked:
        same = res.get("acoustic_baseline_same_labels")
        cell = (f" {same['test_ua']:.3f} ± {same['test_ua_std']:.3f} |" if same else " – |") if same_labels else ""
        lines.append(f"| {setting} | {res['auc_ua']:.3f} ± {res.get('auc_ua_std', float('nan')):.3f} | "
                     f"{res['points'][-1]['test_ua']:.3f} |" + cell)
    verdict = _verdict(ranked)
    if verdict:
        lines += ["", f"**Verdict:** {verdict}"]
    lines += _answers_section(answers)
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
    from .plots import plot_answer_curves, plot_learning_curves

    experiment = Path(experiment)
    groups = _runs(experiment)
    results = aggregate(experiment, groups)
    if not results:
        raise ReportError(f"no finished AL runs under {experiment}/al/*/summary.json: run `after-hf experiment` "
                          "first.")
    for setting, same in same_label_baselines(experiment, groups).items():
        results[setting]["acoustic_baseline_same_labels"] = same
    final = read_metrics(experiment / "final" / "model" / "metrics.json")
    test = {} if final is None else final.splits.get("test", {})
    deployable = {} if final is None else {"final_model": {
        "kind": final.kind, "num_labelled": final.num_labelled, "test_ua": test.get("ua"),
        "validation_ua": final.splits.get("validation", {}).get("ua"),
        "single_clip_test_ua": test.get("single_clip", {}).get("ua"),
        "test_ua_per_speaker": {k: v["ua"] for k, v in test.get("per_speaker", {}).items()}}}
    answers = answers_to_target(groups, results)
    extra = {} if answers is None else {"answers_to_target": answers}
    refs = load_references(experiment)
    atomic_write_json(experiment / "results.json", {**results, **refs, **deployable, **extra})
    plot_learning_curves(results, experiment / "learning_curves.png", BASELINE_PREFIX, refs)
    if answers is not None:
        plot_answer_curves(results, answers, experiment / "answer_curves.png", policy_name)
    report = experiment / "results.md"
    atomic_write_text(report, results_markdown(results, experiment, answers, refs))
    return report


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args([ReportArguments], argv, prog="after-hf report", description=__doc__, section="report")
    print(f"report: {build_report(args.experiment)}")
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("report", main)
