"""after-hf: speech emotion recognition with the fewest labels (TAPT + active learning, AFTER)."""

__version__ = "0.1.0"

SAMPLING_RATE = 16_000  # every stage works on mono float32 audio at 16 kHz
