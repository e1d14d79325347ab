"""Lab probe (docs/demo_corpus.md §5): which generative cue does a frozen encoder's time-mean carry to unseen voices?

    .venv/bin/python docs/lab/cue_probe.py runs/demo [BACKBONE ...]   # default: runs/demo/tapt

For each cue `after-hf synth` drew (synth_truth.csv: pitch level, range, rate, pauses, tilt, loudness), a ridge
regression (alpha chosen by 5-fold CV grouped by training speaker) from speaker-centred features to the speaker-centred
cue, fitted on the training voices; R^2 on the validation and test voices. Features: every layer's time-mean of each
backbone, and the acoustic baseline's 17 prosodic features (runs/demo/cache/prosodic_features.npz). Then the
ceiling's test UA without each cue group. Not part of the package: a lab script whose printout the notes quote.
"""

import csv
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from after_hf.al.features import FeatureCache
from after_hf.data.manifest import load_manifest
from after_hf.data.synth import CUES
from after_hf.data.manifest import label_names
from after_hf.reference import fit_and_score, speaker_normalise


def centred(x, speakers):
    out = np.array(x, dtype=np.float64)
    for s in np.unique(speakers):
        out[speakers == s] -= out[speakers == s].mean(0)
    return out


def cue_r2(x, truth, speakers, split):
    """R^2 per cue on validation / test voices of a ridge fitted on the training voices (speaker-centred both)."""
    x, y = centred(x, speakers), centred(truth, speakers)
    tr = split == "train"
    cv = GroupKFold(5).split(x[tr], y[tr], speakers[tr])
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 15), cv=list(cv)))
    model.fit(x[tr], y[tr])
    return {part: [r2_score(y[split == part][:, c], model.predict(x[split == part])[:, c]) for c in range(y.shape[1])]
            for part in ("validation", "test")}


def main(experiment, backbones):
    torch.set_num_threads(2)
    ds = load_manifest(f"{experiment}/manifest")
    cols = ds.select_columns(["id", "path", "duration", "speaker", "split"]).to_dict()
    speakers, split = np.asarray(cols["speaker"]), np.asarray(cols["split"])
    truth_csv = next(Path(f"{experiment}/corpus").rglob("synth_truth.csv"))
    with open(truth_csv, newline="", encoding="utf-8") as fh:
        rows = {Path(r["file"]).stem: r for r in csv.DictReader(fh)}
    truth = np.array([[float(rows[Path(p).stem][c]) for c in CUES] for p in cols["path"]])
    sets = {"prosodic features (17)": np.load(f"{experiment}/cache/prosodic_features.npz")["x"]}
    for backbone in backbones:
        feats = np.asarray(FeatureCache(f"{experiment}/cache/features", backbone).get(
            cols["id"], cols["path"], cols["duration"]))
        sets[f"{backbone} all layers"] = feats.reshape(len(feats), -1)
    print("R^2 of each speaker-centred cue on unseen voices, validation / test")
    print(f"{'features':>34} " + " ".join(f"{c:>13}" for c in CUES))
    for name, x in sets.items():
        r2 = cue_r2(speaker_normalise(x, speakers) if x.shape[1] == 17 else x, truth, speakers, split)
        print(f"{name:>34} " + " ".join(f"{v:>6.2f}/{t:<6.2f}" for v, t in zip(r2["validation"], r2["test"])))
    # what each cue is worth to the ceiling (logistic regression on the speaker-normalised true values, as
    # after_hf.reference.ceiling, scored against the file labels)
    labels, names = np.asarray(ds["label"]), label_names(ds)
    norm = speaker_normalise(truth, speakers)
    drops = {"none": [], "pitch level + range": ["pitch_st", "range_pct"], "rate": ["rate_pct"],
             "pauses": ["pause_p", "pause_ms"], "tilt": ["tilt_db"], "loudness": ["loudness_db"]}
    print("ceiling (test UA) without a cue group:", ", ".join(
        f"{group} {fit_and_score(norm[:, [c not in drop for c in CUES]], labels, split, names)['test_ua']:.3f}"
        for group, drop in drops.items()))


if __name__ == "__main__":
    experiment = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    main(experiment, sys.argv[2:] or [f"{experiment}/tapt"])
