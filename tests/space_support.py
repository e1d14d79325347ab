"""Helpers shared by test_hub.py, test_space.py and the browser tests: a small saved classifier, the Space app (as a
module, or served in a subprocess) and headless Chromium."""

from __future__ import annotations

import contextlib
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


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_app(root: Path, model_dir: Path, run_dir: Path | None = None, extra: list[str] = ()):
    """spaces_demo/app.py in a subprocess on 127.0.0.1 (analytics off); yields (url, log path) once it answers."""
    import os
    import subprocess
    import time
    import urllib.request

    import pytest

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "AFTER_HF_MODEL": str(model_dir),
           "AFTER_HF_RUN": str(run_dir) if run_dir else ""}
    log_path = root / "app.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, str(SPACE_DIR / "app.py"), "--server_name", "127.0.0.1",
                             "--server_port", str(port), *extra], env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=root)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 150
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"the app did not answer on {url}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def chromium():
    """Headless Debian chromium driven by Playwright (no browser download)."""
    import pytest
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: run `make setup` (it installs the apt chromium package).")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
