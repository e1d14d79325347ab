"""Figures written as PNG files (matplotlib, no display needed): confusion matrices, the AL learning curves
(`after-hf report`'s learning_curves.png) and the test UA of rater-policy runs against the rater answers they cost
(answer_curves.png)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save_atomic(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]], label_names: Sequence[str], path: str | Path, title: str | None = None
) -> Path:
    """Row-normalised confusion matrix (each row = one reference class, so the diagonal is per-class recall),
    annotated with the recall and the raw count; written atomically to ``path``."""
    plt = _pyplot()
    counts = np.asarray(confusion, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    n = len(label_names)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.1 * n + 2))
    image = ax.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the reference class")
    ax.set_xticks(range(n), labels=list(label_names), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(label_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{recall[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center", fontsize=8,
                    color="white" if recall[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    try:
        return _save_atomic(fig, Path(path))
    finally:
        plt.close(fig)


def plot_learning_curves(results: dict, path: str | Path, baseline_prefix: str, references: dict | None = None) -> Path:
    """Test UA (mean ± std over seeds) against the share of the pool labelled, one line per AL setting of
    ``results`` (``report.aggregate``), the settings named ``baseline_prefix``... (100 % of the labels) as
    horizontal lines; written atomically to ``path``. A rater-policy setting's AUC is over rater answers (its
    x in ``results``): the legend says so (answer_curves.png plots those settings against answers).
    ``references`` (references.json: ceiling, acoustic baseline) are drawn as dotted lines, and a setting's
    ``acoustic_baseline_same_labels`` as a cross of its colour at its last point's share."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, colour in (("ceiling", "black"), ("acoustic_baseline", "dimgrey")):
        if (references or {}).get(name, {}).get("test_ua") is not None:
            ua = references[name]["test_ua"]
            ax.axhline(ua, linestyle=":", color=colour, label=f"{name.replace('_', ' ')} (100% labels): {ua:.3f}")
    crossed = False
    for setting, res in sorted(results.items()):
        pts = res["points"]
        x = np.array([p["fraction_labelled"] for p in pts]) * 100
        y = np.array([p["test_ua"] for p in pts])
        s = np.array([p["test_ua_std"] for p in pts])
        if setting.startswith(baseline_prefix):
            ax.axhline(y[-1], linestyle="--", color="grey" if setting == baseline_prefix else "lightgrey",
                       label=f"{setting} (100% labels): {y[-1]:.3f}")
            continue
        over = " over answers" if "num_answers" in pts[0] else ""
        line, = ax.plot(x, y, marker="o", label=f"{setting} (AUC{over} {res['auc_ua']:.3f})")
        ax.fill_between(x, y - s, y + s, alpha=0.15, color=line.get_color())
        same = res.get("acoustic_baseline_same_labels")
        if same is not None and not over:
            ax.plot([x[-1]], [same["test_ua"]], marker="x", markersize=8, color=line.get_color(), linestyle="none")
            crossed = True
    if crossed:  # one legend entry for every setting's cross
        ax.plot([], [], marker="x", markersize=8, color="grey", linestyle="none",
                label="x: acoustic baseline on the same labels (a setting's colour)")
    ax.set_xlabel("% of the training pool labelled")
    ax.set_ylabel("test UA (mean per-class recall)")
    ax.set_title("Active learning curves (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside: no curve hidden
    fig.tight_layout()
    try:
        return _save_atomic(fig, Path(path))
    finally:
        plt.close(fig)


def plot_answer_curves(results: dict, answers: dict, path: str | Path, policy_name=str) -> Path:
    """Test UA (mean ± std over seeds) against rater answers, one panel per rater policy, one line per strategy
    (``results``: ``report.aggregate``), with the full-data UA and the target of ``answers``
    (``report.answers_to_target``) as horizontal lines; written atomically to ``path``."""
    plt = _pyplot()
    settings = answers["settings"]
    policies = sorted({e["rater_policy"] for e in settings.values()},  # fixed:1, fixed:3, ..., then dynamic
                      key=lambda spec: (not spec.startswith("fixed:"), spec.split(":")[-1].zfill(4), spec))
    strategies = sorted({e["strategy"] for e in settings.values()})
    colours = {s: plt.get_cmap("tab10")(i) for i, s in enumerate(strategies)}
    fig, axes = plt.subplots(1, len(policies), figsize=(4.2 * len(policies) + 0.8, 4.2), sharex=True, sharey=True,
                             squeeze=False)
    for ax, spec in zip(axes[0], policies):
        for setting, entry in sorted(settings.items()):
            if entry["rater_policy"] != spec:
                continue
            points = results[setting]["points"]
            x = np.array([p["num_answers"] for p in points])
            y, s = np.array([p["test_ua"] for p in points]), np.array([p["test_ua_std"] for p in points])
            colour = colours[entry["strategy"]]
            ax.plot(x, y, marker="o", markersize=3, color=colour, label=f"{entry['strategy']} ({entry['cold_start']} "
                                                                          "cold start)")
            ax.fill_between(x, y - s, y + s, alpha=0.12, color=colour)
        ax.axhline(answers["full_data_ua"], color="grey", linewidth=1, label=f"full data {answers['full_data_ua']:.3f}")
        ax.axhline(answers["target_ua"], color="black", linestyle="-.", linewidth=1,
                   label=f"{100 * answers['fraction_of_full']:.0f} % of it {answers['target_ua']:.3f}")
        ax.set_title(policy_name(spec), fontsize=10)
        ax.set_xlabel("rater answers")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("test UA (mean ± std over seeds)")
    fig.suptitle("Test UA against the rater answers it cost", fontsize=11)
    try:
        return _save_atomic(fig, Path(path))
    finally:
        plt.close(fig)
