"""Lab probe (docs/demo_corpus.md §5): do speed-perturbed copies of the training voices, each a new voice, help the
frozen encoder's features generalise to unseen voices?

    .venv/bin/python docs/lab/speaker_augment.py runs/demo [BACKBONE]   # default backbone: runs/demo/tapt

Settings fixed before the first run, from practice, not tuned: Kaldi's speed perturbation (factors 0.9 and 1.1:
Ko et al. 2015, "Audio augmentation for speech recognition"), each perturbed copy of a training voice treated as a
new voice with its own speaker statistics (speaker augmentation: Yamamoto et al. 2019, Interspeech). Only the
training clips are copied; validation and test voices are untouched. For 100 % of the training labels and for the
173 labels entropy-kmeans seed 0 chose: logistic regression (encoder_probes' probe) and the project's linear head
(the AL runs' learner, 3 seeds, its standardisation from the training rows), speaker-centred time-means of every
layer, validation / test UA, without and with the copies. Not part of the package: a lab script whose printout
the notes quote.
"""

import json
import sys

import numpy as np
import torch
import torchaudio

from after_hf.al.features import FeatureCache, encode_layers, load_backbone
from after_hf.al.head import HeadClassifier, HeadTrainingArgs
from after_hf.al.learners import SplitArrays
from after_hf.data.audio import load_audio
from after_hf.data.manifest import label_names, load_manifest
from after_hf.data.normalise import population_mean, speaker_centre
from after_hf.metrics import compute_ser_metrics

sys.path.insert(0, "docs/lab")
from encoder_probes import probe  # noqa: E402

FACTORS = (0.9, 1.1)  # Kaldi's speed perturbation
SEEDS = (0, 1, 2)  # the linear head's initialisation and batch order


def perturbed_features(model, paths, factor, batch=16):
    """Time-mean of every layer of each clip played ``factor`` times faster (pitch and tempo together: sox speed)."""
    rows = []
    for start in range(0, len(paths), batch):
        waves = []
        for path in paths[start:start + batch]:
            wave = torch.from_numpy(load_audio(path))
            # samples read as if recorded at 16 kHz x factor, resampled to 16 kHz: duration / factor, pitch x factor
            waves.append(torchaudio.functional.resample(wave, int(16000 * factor), 16000).numpy())
        rows.append(encode_layers(model, waves))
    return np.concatenate(rows)


def head_ua(train_x, train_y, train_spk, evals, names, seed=0):
    """The AL runs' learner: speaker-centred features, linear LayerWeightedHead, selection on validation UA."""
    pop = population_mean(train_x.reshape(len(train_x), -1), train_spk).reshape(train_x.shape[1:])
    centre = {k: speaker_centre(x.reshape(len(x), -1), spk, pop.reshape(-1)).reshape(x.shape)
              for k, (x, spk, _) in evals.items()}
    train_c = speaker_centre(train_x.reshape(len(train_x), -1), train_spk, pop.reshape(-1)).reshape(train_x.shape)
    head = HeadClassifier(len(names), HeadTrainingArgs(linear=True), train_c.mean(0), train_c.std(0))
    ua = lambda y, p: compute_ser_metrics(p, y, names)["ua"]  # noqa: E731  (the learners' ua_fn order)
    head.fit(train_c, train_y, seed=seed, val_feats=centre["validation"], val_labels=evals["validation"][2], ua_fn=ua)
    return [ua(evals[k][2], head.predict(centre[k], embeddings=False)["probs"].argmax(1))
            for k in ("validation", "test")]


def main(experiment, backbone):
    torch.set_num_threads(2)
    ds = load_manifest(f"{experiment}/manifest")
    names, splits = label_names(ds), SplitArrays.from_manifest(ds)
    cache = FeatureCache(f"{experiment}/cache/features", backbone)
    feats = {k: np.asarray(cache.get(list(s.ids), s.paths, s.durations)) for k, s in splits.items()}
    model = load_backbone(backbone).eval()
    tr = splits["train"]
    copies = [perturbed_features(model, list(tr.paths), f) for f in FACTORS]
    chosen = json.load(open(f"{experiment}/al/entropy-kmeans__s0/state.json"))
    al_ids = {i for r in chosen["rounds"] for i in r["labels"]}
    subsets = {"100 %": np.ones(len(tr.ids), bool), f"{len(al_ids)} AL labels": np.isin(list(tr.ids), list(al_ids))}
    evals = {k: (feats[k], np.asarray(splits[k].speakers), splits[k].labels) for k in ("validation", "test")}
    for name, keep in subsets.items():
        spk = np.asarray(tr.speakers)[keep]
        plain = (feats["train"][keep], tr.labels[keep], spk)
        aug = (np.concatenate([feats["train"][keep]] + [c[keep] for c in copies]),
               np.concatenate([tr.labels[keep]] * (1 + len(copies))),
               np.concatenate([spk] + [np.char.add(spk.astype(str), f"@{f}") for f in FACTORS]))
        for label, (x, y, s) in (("plain", plain), ("+ speed copies", aug)):
            p_splits = {"train": type("S", (), {"speakers": s, "labels": y})(),
                        **{k: splits[k] for k in ("validation", "test")}}
            lr = probe({"train": x, **{k: feats[k] for k in ("validation", "test")}}, p_splits, names)
            head = np.array([head_ua(x, y, s, evals, names, seed) for seed in SEEDS])
            mean, std = head.mean(0), head.std(0)
            print(f"{name:>15} {label:>15}: logistic {lr[0]:.3f} / {lr[1]:.3f}   linear head (seeds {SEEDS}) "
                  f"{mean[0]:.3f} ± {std[0]:.3f} / {mean[1]:.3f} ± {std[1]:.3f}   ({len(y)} training rows)", flush=True)


if __name__ == "__main__":
    experiment = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    main(experiment, sys.argv[2] if len(sys.argv) > 2 else f"{experiment}/tapt")
