"""Head-only AL -> a deployable model: a linear layer-weighted head exported into Wav2Vec2ForSequenceClassification
predicts what the head predicts on the cached features (exactly, utterance by utterance)."""

import numpy as np
import pytest
import torch

from after_hf.al.export import export_linear_head, train_linear_head
from after_hf.al.features import encode_layers, load_backbone
from after_hf.al.learners import HeadLearner, SplitData
from after_hf.al.head import HeadTrainingArgs
from after_hf.data.audio import load_audio
from after_hf.data.manifest import label_names, load_manifest
from after_hf.evaluation import load_model_for_eval
from after_hf.inference import predict


@pytest.mark.parametrize("backbone", ["tiny"])
def test_exported_linear_head_equals_the_head(synth_manifest, tmp_path, backbone):
    torch.set_num_threads(1)
    manifest = load_manifest(synth_manifest)
    names = label_names(manifest)
    splits = SplitData.from_manifest(manifest)
    learner = HeadLearner(backbone, splits, names, tmp_path / "cache", HeadTrainingArgs(), init_seed=3)
    train = splits["train"]
    ids = list(train.ids[:40])
    head = train_linear_head(learner, ids, train.labels[:40], seed=0, epochs=30)
    out = export_linear_head(head, backbone, names, tmp_path / "model", init_seed=3)

    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    model, fe, model_names = load_model_for_eval(str(out))
    assert model_names == names and model.config.use_weighted_layer_sum

    # utterance by utterance (no padding anywhere): the exported model's probabilities = the head's
    test = splits["test"]
    encoder = load_backbone(backbone, 3).eval()
    waves = [load_audio(p) for p in test.paths[:12]]
    feats = np.concatenate([encode_layers(encoder, [w], use_mask=False) for w in waves])
    expected = head.predict(feats)["probs"]
    got = predict(model, fe, list(test.paths[:12]), batch_seconds=0.1, progress=False)["probs"]
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # and the head learned something the export keeps: not a constant prediction
    assert len(set(expected.argmax(1))) > 1
