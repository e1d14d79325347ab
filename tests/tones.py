"""A trivially learnable generated corpus for the tiny model: class 'low' = 150-250 Hz tones, 'high' = 0.9-1.3 kHz,
both with noise and random lengths, speakers drawn independently of the class. Written as WAV + a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from after_hf.data.manifest import build_manifest, save_manifest

TONE_LABELS = ("low", "high")
BANDS = {"low": (150.0, 250.0), "high": (900.0, 1300.0)}


def tone(label: str, seconds: float, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    freq = rng.uniform(*BANDS[label])
    wave = rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return (wave + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def make_tone_manifest(root: str | Path, per_class: dict[str, int] | None = None, seed: int = 0,
                       seconds: tuple[float, float] = (0.5, 1.5), extra: list[tuple[str, str, float]] = (),
                       ratings: Callable[[int, str, str], list[dict]] | None = None) -> Path:
    """Manifest dir under ``root``; ``extra`` adds (split, label, seconds) rows, e.g. one 12-s test utterance;
    ``ratings(i, split, label)`` gives row i's rater answers (manifest ``ratings`` format)."""
    root = Path(root)
    per_class = per_class or {"train": 12, "validation": 6, "test": 6}
    rng = np.random.default_rng(seed)
    specs = [(split, label, rng.uniform(*seconds))
             for split, k in per_class.items() for label in TONE_LABELS for _ in range(k)]
    rows = []
    for i, (split, label, dur) in enumerate([*specs, *extra]):
        path = root / "wav" / f"{split}_{label}_{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(label, dur, rng), 16000)
        rows.append(dict(id=f"tones/{path.stem}", path=str(path), label=label, emotion_raw=label,
                         speaker=f"spk{rng.integers(4)}", corpus="tones", session="1", duration=float(dur), split=split,
                         ratings=ratings(i, split, label) if ratings else []))
    return save_manifest(build_manifest(rows, TONE_LABELS), root / "manifest")
