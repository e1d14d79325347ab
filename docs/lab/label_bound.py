"""Lab probe (docs/demo_corpus.md §5): what do the labels an AL run chose allow a classifier on *ideal* cues?

    .venv/bin/python docs/lab/label_bound.py runs/demo

The deployable model learns from the labels the AL run chose (173 of 864 training clips, 20 %). This trains the two
reference rows' classifiers (`after_hf.reference.fit_and_score`: logistic regression, speaker-normalised features)
on only those labels, for every head-only AL setting and seed of the run: the generative cue values (the ceiling's
features) and the 17 hand-made prosodic features (the acoustic baseline's, from the run's cache). It answers
whether a learned model trained on the same labels could reach 0.80 x ceiling with features as good as an F0
tracker's. Not part of the package: a lab script whose printout the notes quote.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np

from after_hf import reference as R
from after_hf.data.synth import CUES


def features(experiment):
    ids, paths, labels, speakers, splits, names = R._manifest_arrays(f"{experiment}/manifest")
    stored = np.load(f"{experiment}/cache/prosodic_features.npz")
    assert list(stored["ids"]) == list(ids), "prosodic cache is not this manifest's: run make demo first"
    with open(f"{experiment}/corpus/synth_truth.csv", newline="", encoding="utf-8") as fh:
        truth = {Path(row["file"]).stem: row for row in csv.DictReader(fh)}
    cues = np.array([[float(truth[Path(p).stem][c]) for c in CUES] for p in paths])
    # speaker normalisation over all of a speaker's clips: speaker ids are known without labels
    feats = {"generative cues": R.speaker_normalise(cues, speakers),
             "17 prosodic features": R.speaker_normalise(stored["x"], speakers)}
    return np.asarray(ids), labels, splits, names, feats


def main(experiment):
    ids, labels, splits, names, feats = features(experiment)
    runs = sorted({p.name.split("__s")[0] for p in Path(f"{experiment}/al").glob("*__s*")
                   if not p.name.startswith("full_data") and (p / "state.json").is_file()})
    for name, x in feats.items():
        full = R.fit_and_score(x, labels, splits, names)
        print(f"{name}, every training label ({(splits == 'train').sum()}): "
              f"validation {full['validation']['ua']:.3f} / test {full['test']['ua']:.3f}")
    for run in runs:
        scores = {k: [] for k in feats}
        for state_file in sorted(Path(f"{experiment}/al").glob(f"{run}__s*/state.json")):
            chosen = {i for r in json.loads(state_file.read_text())["rounds"] for i in r["labels"]}
            kept = splits.copy()
            kept[(splits == "train") & ~np.isin(ids, list(chosen))] = "unused"
            for k, x in feats.items():
                r = R.fit_and_score(x, labels, kept, names)
                scores[k].append((r["validation"]["ua"], r["test"]["ua"]))
        text = "   ".join(f"{k} {np.mean([v for v, _ in s]):.3f} / {np.mean([t for _, t in s]):.3f} "
                          f"± {np.std([t for _, t in s]):.3f}" for k, s in scores.items())
        print(f"{run:>28} ({len(chosen)} labels, {len(scores[k])} seeds): {text}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
