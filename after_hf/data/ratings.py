"""Rater answers -> vote columns: the vote distribution over the label set, agreement, majority (ties explicit).

Emotion labels are subjective: IEMOCAP has 3-4 evaluators per turn (plus the actors' self-evaluations), CREMA-D
~10 raters per clip, and they often disagree. The manifest keeps every answer and derives, per clip:

* ``votes``: one weight per label of the label set. Each counted answer has weight 1, split equally over the
  emotions it names (``Frustration; Anger`` gives 0.5 to each); so the weights sum to ``n_raters``.
* ``votes_other``: the weight of answers outside the label set (frustration in the 4-class set). Kept, not
  dropped, so that agreement is not inflated by forgetting the raters who chose something else.
* ``vote_dist``: ``votes`` / their sum, the distribution over the label set a soft-label learner trains on and
  ``evaluate`` scores against; all zeros when no answer falls in the label set.
* ``vote_agreement``: the share of the answer weight on the most-voted bucket, the buckets being the labels and
  one "outside the label set" bucket: 1.0 = unanimous; for 4 raters split 2/1/1, 0.5. Null without answers.
* ``vote_top``: the most-voted bucket(s), in label-set order (``_other`` last); several when they tie.
* ``vote_majority``: ``vote_top`` when it is a single bucket, else "" (a tie is reported as no majority, like
  IEMOCAP's ``xxx``; never resolved by label order). Can be ``_other``: most raters chose outside the label set.
  It is not the ``label`` column: that stays the corpus' own label (IEMOCAP's header majority, CREMA-D's
  intended emotion from the file name).
* ``n_raters``: the number of counted answers.

Self-evaluations (a speaker rating their own turn) are kept in ``ratings`` with ``self_eval`` true but not
counted unless ``prepare --count_self_evaluations`` is given: the speaker knows the intended emotion, which is
not what a listener perceives.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np

OTHER = "_other"  # the bucket of answers outside the label set ("_" so it never collides with a label "other")
TIE_TOLERANCE = 1e-6
RATING_COLUMNS = (
    "ratings", "n_raters", "votes", "votes_other", "vote_dist", "vote_agreement", "vote_majority", "vote_top", "vad",
)


def tally(answers: Iterable[Sequence[str]], label_names: Sequence[str]) -> dict:
    """Counted answers (each a list of label names or OTHER) -> the derived vote columns of one clip."""
    label_names = list(label_names)
    index = {name: i for i, name in enumerate(label_names)}
    weights = np.zeros(len(label_names) + 1)  # the labels, then the OTHER bucket
    n = 0
    for labels in answers:
        labels = list(dict.fromkeys(labels))  # "angry+angry" is one vote for angry
        if not labels:
            continue
        n += 1
        for label in labels:
            weights[index.get(label, len(label_names))] += 1.0 / len(labels)
    inside = weights[:-1].sum()
    out = {
        "n_raters": n,
        "votes": weights[:-1].tolist(),
        "votes_other": float(weights[-1]),
        "vote_dist": (weights[:-1] / inside if inside > 0 else weights[:-1]).tolist(),
        "vote_agreement": None,
        "vote_majority": "",
        "vote_top": [],
    }
    if n:
        best = weights.max()
        top = [(label_names + [OTHER])[i] for i in np.flatnonzero(weights >= best - TIE_TOLERANCE)]
        out.update(vote_agreement=float(best / n), vote_top=top, vote_majority=top[0] if len(top) == 1 else "")
    return out


def counted(ratings: Iterable[dict], count_self_evaluations: bool = False) -> list[list[str]]:
    """The label lists of the answers that count (self-evaluations only when asked)."""
    return [list(r["labels"]) for r in ratings if count_self_evaluations or not r.get("self_eval", False)]


def has_votes(ds) -> bool:
    """Whether a manifest (or a split of it) has at least one clip with answers in the label set."""
    return "vote_dist" in ds.column_names and len(ds) > 0 and any(sum(v) > 0 for v in ds["votes"])


def vote_matrix(ds, label_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distributions [N, K], rated [N] bool) with the columns in ``label_names`` order (default: the manifest's).

    Rows without answers in the label set are all-zero and ``rated`` False. Raises ValueError when votes fall on
    a manifest label missing from ``label_names`` (they could not be compared with a prediction over those).
    """
    names = list(ds.features["label"].names)
    label_names = names if label_names is None else list(label_names)
    dist = np.asarray(ds["vote_dist"], dtype=np.float64).reshape(len(ds), len(names))
    rated = dist.sum(axis=1) > 0
    lost = sorted(n for i, n in enumerate(names) if n not in label_names and dist[:, i].any())
    if lost:
        raise ValueError(f"votes fall on {lost}, which are not among {label_names}; score with a model that has these "
                         "classes.")
    out = np.zeros((len(ds), len(label_names)))
    for j, name in enumerate(label_names):
        if name in names:
            out[:, j] = dist[:, names.index(name)]
    return out, rated


def summary(ds) -> dict[str, dict]:
    """Per corpus with ratings: clips rated, answers per clip, mean agreement, ties, weight outside the label set,
    clips whose vote majority is not their label, self-evaluations kept / counted."""
    if "n_raters" not in ds.column_names:
        return {}
    names = ds.features["label"].names
    columns = ds.select_columns(["corpus", "label", "ratings", "n_raters", "votes_other", "vote_agreement",
                                 "vote_majority", "vote_top"]).to_dict()
    per: dict[str, dict] = {}
    for row in (dict(zip(columns, values)) for values in zip(*columns.values())):
        if not row["ratings"]:
            continue
        s = per.setdefault(row["corpus"], {"rated": 0, "answers": 0, "min": None, "max": 0, "agreement": 0.0, "ties": 0,
                                           "other": 0.0, "majority_differs": 0, "self_evaluations": 0,
                                           "no_counted_answer": 0})
        s["rated"] += 1
        s["self_evaluations"] += sum(bool(r["self_eval"]) for r in row["ratings"])
        n = row["n_raters"]
        if n == 0:
            s["no_counted_answer"] += 1
            continue
        s["answers"] += n
        s["min"] = n if s["min"] is None else min(s["min"], n)
        s["max"] = max(s["max"], n)
        s["agreement"] += row["vote_agreement"]
        s["other"] += row["votes_other"]
        s["ties"] += len(row["vote_top"]) > 1
        s["majority_differs"] += row["vote_majority"] not in ("", names[row["label"]])  # ties are counted apart
    clips = Counter(ds["corpus"])
    for corpus, s in per.items():
        scored = s["rated"] - s["no_counted_answer"]
        s.update(clips=clips[corpus], raters_per_clip=round(s["answers"] / max(scored, 1), 3),
                 mean_agreement=round(s["agreement"] / max(scored, 1), 4),
                 other_share=round(s["other"] / max(s["answers"], 1), 4))
        del s["agreement"], s["other"]
    return per


def format_summary(corpus: str, s: dict, count_self_evaluations: bool) -> str:
    """One line: ``ratings (iemocap): 5531/5531 clips rated, 3.2 raters per clip (2-6), mean agreement 0.81, ...``."""
    spread = f"{s['min']}-{s['max']}" if s["min"] is not None else "none counted"
    line = (f"ratings ({corpus}): {s['rated']}/{s['clips']} clips rated, {s['raters_per_clip']:.1f} raters per clip "
            f"({spread}), mean agreement {s['mean_agreement']:.2f}, {s['ties']} ties (no majority), "
            f"{100 * s['other_share']:.1f}% of answers outside the label set, a vote majority other than the label on "
            f"{s['majority_differs']} clips")
    if s["self_evaluations"]:
        line += (f"; {s['self_evaluations']} self-evaluations " +
                 ("counted" if count_self_evaluations
                  else "kept but not counted (--count_self_evaluations counts them)"))
    if s["no_counted_answer"]:
        line += f"; {s['no_counted_answer']} clips have only uncounted answers"
    return line
