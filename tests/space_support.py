"""Helpers shared by test_hub.py, test_space.py and test_browser.py: a small saved classifier and the Space app."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SPACE_DIR = REPO / "spaces_demo"
EXAMPLES = sorted((SPACE_DIR / "examples").glob("*.ogg"))
LABELS = ["neutral", "happy", "angry", "sad"]


def save_tiny_classifier(out_dir: Path, seed: int = 0) -> Path:
    """A random ``tiny`` classifier saved like ``after-hf finetune`` does (safetensors + feature extractor).

    The head's weights are scaled up so that the probabilities differ clearly between inputs (a random tiny
    model is otherwise almost uniform, which would make "the shown label is the argmax" a weak check).
    """
    from after_hf.models import feature_extractor_for, load_classifier

    torch.manual_seed(seed)
    model = load_classifier("tiny", LABELS)
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    model.save_pretrained(out_dir)
    feature_extractor_for(model.config).save_pretrained(out_dir)
    return out_dir


@functools.lru_cache(maxsize=4)
def _reference_model(model_dir: Path):
    from transformers import AutoModelForAudioClassification, Wav2Vec2FeatureExtractor

    model = AutoModelForAudioClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    return model, Wav2Vec2FeatureExtractor.from_pretrained(model_dir)


def direct_probs(model_dir: Path, wave: np.ndarray) -> np.ndarray:
    """The model's own probabilities for a 16 kHz waveform, computed with transformers only."""
    model, extractor = _reference_model(Path(model_dir))
    with torch.no_grad():
        logits = model(**extractor(wave, sampling_rate=16000, return_tensors="pt")).logits[0]
    return torch.softmax(logits, -1).numpy()


def write_model_files(model_dir: Path, metrics, provenance=None, training: dict | None = None) -> None:
    """metrics.json and after_hf_provenance.json through their one writer (``after_hf.model_info``)."""
    from after_hf.model_info import write_metrics, write_provenance

    write_metrics(model_dir, metrics)
    if provenance is not None:
        write_provenance(model_dir, provenance)
    if training is not None:
        (model_dir / "training_config.json").write_text(json.dumps(training))


def load_app_module():
    """spaces_demo/app.py as a module (it is a script, not part of the package)."""
    if "space_app" in sys.modules:
        return sys.modules["space_app"]
    spec = importlib.util.spec_from_file_location("space_app", SPACE_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["space_app"] = module
    spec.loader.exec_module(module)
    return module
