"""Decode any audio file to mono float32 at 16 kHz, or say exactly why it cannot be used.

Files that need work (another rate, MP3/OGG/M4A, broken headers) go through torchcodec (FFmpeg), the decoder
``datasets.Audio`` uses, so WAV of any bit depth, FLAC, MP3, OGG and 8-48 kHz all arrive at 16 kHz. Files
already at 16 kHz in a lossless container (WAV, FLAC, AIFF) are read with libsndfile instead: the same
samples, but opening an FFmpeg decoder costs ~7 ms per file and libsndfile ~0.2 ms (it matters when
every training batch decodes its crops). Channels are averaged here rather than by FFmpeg, whose
stereo->mono downmix scales each channel by 0.707 (a clip at 0.9 in both channels would come out at 1.27).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf

from .. import SAMPLING_RATE
from ..errors import AfterHFError, brief

MIN_SECONDS = 0.1  # below this wav2vec2's CNN yields < 5 frames: nothing to classify
LOSSLESS = {"WAV", "WAVEX", "W64", "RF64", "FLAC", "AIFF", "CAF"}  # libsndfile formats read without FFmpeg


class AudioError(AfterHFError, ValueError):
    """An audio file that cannot be used; ``reason`` is short (for skip reports), the message names the fix."""

    def __init__(self, path: str | Path, reason: str, fix: str = ""):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}." + (f" {fix}" if fix else ""))


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found", "Check the path or re-run `after-hf prepare`.")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)", "Delete it or replace it with the recording.")
    return path


def _native_info(path: Path):
    """libsndfile's header for a 16 kHz lossless file, else None (FFmpeg decides, including on broken files)."""
    try:
        info = sf.info(str(path))
    except Exception:
        return None
    return info if info.format in LOSSLESS and info.frames >= 0 else None


def _frame(seconds: float) -> int:
    return int(math.floor(seconds * SAMPLING_RATE + 0.5))  # the frame FFmpeg's window starts/stops at


def _read_native(path: Path, start: float | None, seconds: float | None) -> np.ndarray | None:
    """(frames, channels) float32 through libsndfile, or None when the file needs FFmpeg."""
    info = _native_info(path)
    if info is None or info.samplerate != SAMPLING_RATE:
        return None
    begin = 0 if start is None else min(_frame(start), info.frames)
    stop = info.frames if seconds is None else min(_frame((start or 0.0) + seconds), info.frames)
    try:
        data, _ = sf.read(str(path), start=begin, stop=max(begin, stop), dtype="float32", always_2d=True)
    except Exception:
        return None
    return data


def _decoder(path: str | Path):
    from torchcodec.decoders import AudioDecoder

    path = _existing(path)
    try:
        return AudioDecoder(str(path), sample_rate=SAMPLING_RATE)
    except Exception as err:  # torchcodec raises RuntimeError/ValueError for non-audio or broken headers
        raise AudioError(path, f"not decodable audio ({type(err).__name__})",
                         "Convert it with `ffmpeg -i FILE -ar 16000 -ac 1 out.wav`.") from err


def _read_ffmpeg(path: Path, start: float | None, seconds: float | None) -> np.ndarray:
    decoder = _decoder(path)
    try:
        if start is None and seconds is None:
            samples = decoder.get_all_samples()
        else:
            begin = float(start or 0.0)
            samples = decoder.get_samples_played_in_range(begin, None if seconds is None else begin + seconds)
    except Exception as err:
        if "No audio frames" in str(err):  # torchcodec's words for a stream without samples (or a window past the end)
            return np.zeros((0, 1), np.float32)
        raise AudioError(path, f"decoding failed ({type(err).__name__}: {brief(err, 200)})",
                         "The file is truncated or corrupt: re-export it.") from err
    return samples.data.numpy().T  # (frames, channels)


def load_audio(
    path: str | Path, start: float | None = None, seconds: float | None = None, check: bool = True,
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Mono float32 samples at 16 kHz; ``start``/``seconds`` decode only that window (cheap random crops)."""
    path = _existing(path)
    data = _read_native(path, start, seconds)
    if data is None:
        data = _read_ffmpeg(path, start, seconds)
    if data.shape[0] == 0 and (start is not None or seconds is not None):
        raise AudioError(path, f"no audio in the window from {start or 0.0:.2f} s",
                         "Crop windows must start inside the file.")
    wave = (data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)).astype(np.float32, copy=False)
    if check:
        check_waveform(wave, path, min_seconds)
    return np.ascontiguousarray(wave)


def check_waveform(wave: np.ndarray, path: str | Path, min_seconds: float = MIN_SECONDS) -> None:
    if wave.size == 0:
        raise AudioError(path, "zero audio frames", "The file has a header but no samples: re-export it.")
    if not np.isfinite(wave).all():
        raise AudioError(path, "NaN or infinite samples", "The file is corrupt: re-export it as 16-bit PCM.")
    if wave.size < min_seconds * SAMPLING_RATE:
        raise AudioError(path, f"too short ({wave.size / SAMPLING_RATE * 1000:.0f} ms < {min_seconds * 1000:.0f} ms)",
                         "Drop it or merge it with its neighbour.")


def duration_seconds(path: str | Path) -> float:
    """Duration from the header when it is there, else by decoding."""
    path = _existing(path)
    info = _native_info(path)
    if info is not None and info.frames > 0:
        return info.frames / info.samplerate
    meta = _decoder(path).metadata
    dur = getattr(meta, "duration_seconds_from_header", None) or getattr(meta, "duration_seconds", None)
    if dur is None or not math.isfinite(dur) or dur <= 0:
        return load_audio(path, check=False).size / SAMPLING_RATE
    return float(dur)
