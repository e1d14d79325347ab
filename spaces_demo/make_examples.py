"""Regenerate the Space's example clips: one short utterance per emotion from after-hf's espeak-ng corpus generator.

    python spaces_demo/make_examples.py        # writes spaces_demo/examples/<emotion>.ogg (< 100 KB in all)

The clips come from the same generator (``after_hf.data.synth``) as the demo model's training data, with its own
seed: utterances drawn from the same per-emotion prosody distributions. They are
16 kHz mono Ogg Vorbis with the edge silence trimmed: four 16-bit WAVs (or FLACs) of ~1.5-2.5 s would exceed the
100 KB budget of the examples, and the app decodes any format through FFmpeg anyway.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from after_hf.data.synth import synthesize

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
EMOTIONS = ("neutral", "happy", "angry", "sad")
SEED, UTTERANCES, VOICES = 11, 48, 3
MAX_TOTAL_BYTES = 100_000


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = synthesize(Path(tmp) / "corpus", num_utterances=UTTERANCES, seed=SEED, voices=VOICES, progress=False)
        with open(corpus / "synth_truth.csv", newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r["level"] in ("MD", "HI")]
        EXAMPLES_DIR.mkdir(exist_ok=True)
        for emotion in EMOTIONS:
            shortest = min((r for r in rows if r["true_emotion"] == emotion), key=lambda r: float(r["duration"]))
            wave, rate = sf.read(corpus / shortest["file"], dtype="int16")
            voiced = np.flatnonzero(np.abs(wave) > 0.01 * 32768)  # trim the edge silence, keep 50 ms margins
            margin = int(0.05 * rate)
            wave = wave[max(voiced[0] - margin, 0): voiced[-1] + margin]
            sf.write(EXAMPLES_DIR / f"{emotion}.ogg", wave, rate, format="OGG", subtype="VORBIS", compression_level=0.5)
            print(f"{emotion}: {shortest['file']} ({shortest['sentence']}, {float(shortest['duration']):.2f} s)")
    total = sum(p.stat().st_size for p in EXAMPLES_DIR.glob("*.ogg"))
    print(f"{total / 1000:.1f} KB in {EXAMPLES_DIR}")
    if total > MAX_TOTAL_BYTES:
        print(f"the examples exceed {MAX_TOTAL_BYTES // 1000} KB: pick a smaller UTTERANCES or another "
              "SEED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
