"""A deployable classifier from head-only active learning, without fine-tuning the encoder.

A *linear* layer-weighted head trained on the cached per-layer time-means is exactly wav2vec2's own
``use_weighted_layer_sum`` head: softmax-weighted sum of the hidden states -> ``projector`` -> mean over
time -> ``classifier`` (all linear, so the time-mean commutes). The feature standardisation is shared
across layers (one mean/std per channel), so it folds into the projector's weights and bias. The result
is a plain ``Wav2Vec2ForSequenceClassification`` directory that `after-hf evaluate`, the Space and the
Hub load like any fine-tuned model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..io import replace_dir
from ..models import is_named, load_classifier, load_feature_extractor
from .features import load_backbone
from .head import HeadClassifier, HeadTrainingArgs
from .learners import HeadLearner


def train_linear_head(learner: HeadLearner, ids: Sequence[str], labels: Sequence[int], seed: int,
                      epochs: int = 200) -> HeadClassifier:
    """A linear head on ``learner``'s cached features, channel statistics shared across layers."""
    pool = learner.features["train"]  # [N, L, H], memory-mapped
    mean, std = pool.mean(axis=(0, 1)), pool.std(axis=(0, 1))  # [H]: foldable into the projector
    args = HeadTrainingArgs(epochs=epochs, learning_rate=learner.head.args.learning_rate, dropout=0.0,
                            proj_size=learner.head.args.proj_size, linear=True)
    head = HeadClassifier(len(learner.label_names), args, mean, std)
    val = learner.splits.get("validation")
    head.fit(pool[learner.splits["train"].index(ids)], np.asarray(labels), seed,
             val_feats=learner.features["validation"] if val is not None else None,
             val_labels=val.labels if val is not None else None, ua_fn=learner._ua)
    return head


def export_linear_head(head: HeadClassifier, backbone: str, label_names: Sequence[str], out_dir: str | Path,
                       init_seed: int = 0) -> Path:
    """Write ``backbone`` + ``head`` as a ``save_pretrained`` audio classifier (safetensors) into ``out_dir``.

    ``init_seed``: for a named (randomly initialised) backbone, the seed its cached features were computed with."""
    net = head.model
    if not net.linear:
        raise ValueError("only a linear head (HeadTrainingArgs(linear=True)) equals wav2vec2's classification head")
    model = load_classifier(backbone, list(label_names), use_weighted_layer_sum=True,
                            classifier_proj_size=net.proj.out_features)
    if is_named(backbone):  # the encoder the features came from, not a fresh random one
        encoder = getattr(model, model.base_model_prefix)
        encoder.load_state_dict(load_backbone(backbone, init_seed).state_dict())
    std, mean = head.std.double(), head.mean.double()
    with torch.no_grad():
        weight = net.proj.weight.double() / std  # W (x - mu) / sd = (W / sd) x - (W / sd) mu
        model.layer_weights.copy_(net.layer_logits)
        model.projector.weight.copy_(weight.float())
        model.projector.bias.copy_((net.proj.bias.double() - weight @ mean).float())
        model.classifier.weight.copy_(net.out.weight)
        model.classifier.bias.copy_(net.out.bias)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    load_feature_extractor(backbone, model.config).save_pretrained(tmp)
    replace_dir(tmp, out_dir)
    return out_dir
