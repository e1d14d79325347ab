"""Lab probe (docs/demo_corpus.md §4): what a frozen encoder's features can give, on a finished `make demo` run.

    .venv/bin/python docs/lab/encoder_probes.py runs/demo [BACKBONE ...]   # default: runs/demo/tapt

For each backbone: logistic regression (balanced, C=0.01, every training label) on the speaker-centred time-mean
of each layer and of all layers, then time-mean + time-std pooling; validation / test UA. Not part of the package:
a lab script whose printout the notes quote.
"""

import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from after_hf.al.features import FeatureCache, load_backbone
from after_hf.al.learners import SplitArrays
from after_hf.data.audio import load_audio
from after_hf.data.batching import pad_frames
from after_hf.data.manifest import label_names, load_manifest
from after_hf.data.normalise import population_mean, speaker_centre
from after_hf.inference import cnn_frames, encode_frames
from after_hf.metrics import compute_ser_metrics


def mean_std_layers(model, paths):
    """[N, L, 2H]: time-mean and time-std of every hidden state, one clip at a time (no padding)."""
    rows = []
    for path in paths:
        wave = load_audio(path)
        x = torch.from_numpy((wave - wave.mean()) / (wave.std() + 1e-7))[None]
        with torch.inference_mode():
            frames, mask = pad_frames(cnn_frames(model, x, torch.ones_like(x, dtype=torch.long)))
            _, states = encode_frames(model, frames, mask, output_hidden_states=True)
        h = torch.stack(states, 1)[0]
        rows.append(torch.cat([h.mean(1), h.std(1)], -1).numpy())
    return np.stack(rows)


def probe(features, splits, names, C=0.01):
    centred = {k: speaker_centre(v.reshape(len(v), -1), splits[k].speakers,
                                 population_mean(features["train"].reshape(len(features["train"]), -1),
                                                 splits["train"].speakers)) for k, v in features.items()}
    scaler = StandardScaler().fit(centred["train"])
    clf = LogisticRegression(max_iter=3000, C=C, class_weight="balanced").fit(scaler.transform(centred["train"]),
                                                                             splits["train"].labels)
    return [compute_ser_metrics(clf.predict(scaler.transform(centred[k])), splits[k].labels, names)["ua"]
            for k in ("validation", "test")]


def main(experiment, backbones):
    torch.set_num_threads(2)
    ds = load_manifest(f"{experiment}/manifest")
    names, splits = label_names(ds), SplitArrays.from_manifest(ds)
    for backbone in backbones:
        cache = FeatureCache(f"{experiment}/cache/features", backbone)
        mean = {k: np.asarray(cache.get(list(s.ids), s.paths, s.durations)) for k, s in splits.items()}
        print(f"{backbone}: layers x hidden = {mean['train'].shape[1:]}")
        for layer in range(mean["train"].shape[1]):
            print("  layer %d time-mean: validation / test UA %.3f / %.3f" % (layer, *probe(
                {k: v[:, [layer]] for k, v in mean.items()}, splits, names)))
        print("  all layers time-mean: %.3f / %.3f" % tuple(probe(mean, splits, names)))
        model = load_backbone(backbone).eval()
        stats = {k: mean_std_layers(model, s.paths) for k, s in splits.items()}
        print("  all layers time-mean + time-std: %.3f / %.3f" % tuple(probe(stats, splits, names)))


if __name__ == "__main__":
    experiment = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
    main(experiment, sys.argv[2:] or [f"{experiment}/tapt"])
