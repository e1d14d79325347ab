"""Rater policies of the simulated oracle: how many raters are asked per clip, and what their answers make.

With ``--rater_policy label`` (the default) the oracle reveals one label per clip, the manifest's, and budgets
count clips. The other policies ask the clip's raters (the manifest's ``ratings``: a real corpus' evaluators, or
``after-hf synth``'s simulated ones) one answer at a time, in the order the corpus lists them, and budgets count
**rater answers**:

* ``fixed``: ``raters_per_clip`` answers per clip (1 = one rater per clip; 3 = IEMOCAP's usual panel).
* ``dynamic`` (after Zhang et al., "On rater reliability and agreement based dynamic active learning"): ask one
  rater; stop there when the model of the previous round predicts that answer, else ask more until one label
  holds a strict majority of at least two answers, or ``raters_per_clip`` answers were given. In the seed round
  there is no model yet, so one answer stands.

The clip's label is the majority of its answers inside the label set (ties go to the earliest answer, as the
human oracle resolves several people's answers); a clip whose answers all fall outside the label set is skipped.
A round's answer budget may run out inside a clip's panel: the clip keeps the answers it got. Every answer is
stored in the run state, so ``--soft_labels`` trains on the answers asked (not on votes the run never paid for).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..data.ratings import OTHER, tally

POLICIES = ("label", "fixed", "dynamic")


def settled(answers: list[list[str]], label_names: Sequence[str], predicted: int | None) -> bool:
    """Whether the dynamic policy stops asking after ``answers`` (each a list of labels, OTHER outside the set)."""
    if not answers:
        return False
    if len(answers) == 1:
        return predicted is None or label_names[predicted] in answers[0]
    votes = tally(answers, label_names)
    top = votes["vote_top"]
    return len(top) == 1 and top[0] != OTHER and max(votes["votes"]) >= 2 and max(votes["votes"]) > len(answers) / 2


def majority(answers: list[list[str]], label_names: Sequence[str]) -> int | None:
    """The clip's label from its answers: most votes inside the label set, ties to the earliest; None: none inside."""
    weights = np.asarray(tally(answers, label_names)["votes"])
    if weights.sum() == 0:
        return None
    best = set(np.flatnonzero(weights >= weights.max() - 1e-9).tolist())
    for answer in answers:
        for label in answer:
            if label in label_names and label_names.index(label) in best:
                return label_names.index(label)
    return None  # unreachable: a label with the top weight was answered


def ask(policy: str, panel: Sequence[Sequence[str]], label_names: Sequence[str], predicted: int | None,
        per_clip: int, allowed: int) -> list[list[str]]:
    """The answers one clip gets: from its raters ``panel`` (in order), at most ``allowed`` (the round's budget)."""
    limit = min(per_clip, allowed, len(panel))
    answers: list[list[str]] = []
    while len(answers) < limit:
        answers.append(list(panel[len(answers)]))
        if policy == "dynamic" and settled(answers, label_names, predicted):
            break
    return answers


def annotate(policy: str, selected: list[dict], panels: Mapping[str, Sequence[Sequence[str]]],
             label_names: Sequence[str], per_clip: int, budget: int) -> tuple[dict, list, dict]:
    """Walk the round's ranked selection until ``budget`` answers are spent.

    Returns (labels by id, skipped ids, answers by id); clips the budget did not reach are in none of them."""
    labels, skipped, answers = {}, [], {}
    for item in selected:
        if budget <= 0:
            break
        probs = item.get("probs")
        predicted = int(np.argmax(probs)) if probs else None
        got = ask(policy, panels.get(item["id"], ()), label_names, predicted, per_clip, budget)
        if not got:  # a clip without raters: nothing to ask, nothing spent
            skipped.append(item["id"])
            answers[item["id"]] = []
            continue
        budget -= len(got)
        answers[item["id"]] = [{"labels": a} for a in got]
        label = majority(got, label_names)
        if label is None:
            skipped.append(item["id"])
        else:
            labels[item["id"]] = label
    return labels, skipped, answers


def answers_used(rounds: list[dict]) -> int:
    """Rater answers spent by the recorded rounds (rounds of the ``label`` policy count one per labelled clip)."""
    total = 0
    for rec in rounds:
        if rec.get("phase") == "selected":
            continue
        given = rec.get("answers")
        total += sum(len(a) for a in given.values()) if given is not None else len(rec.get("labels", {}))
    return total
