"""Length-bucketed dynamic batches by seconds of audio, random crops, and the collator that pads them.

Fixed-size batches of randomly ordered utterances waste most of their compute on padding (a 2 s clip
batched with a 10 s one is padded to 10 s). Here a batch is a run of utterances of similar length
whose *padded* size (``count x longest``) fits a budget of seconds, so short clips travel in large
batches and long ones in small batches, with little padding (AFTER used ~250 s per batch).

* ``DynamicBatchSampler`` is seeded and deterministic: the batches of epoch ``e`` depend only on
  ``(seed, e)``, including the random crop window of every long utterance. Its whole state is the
  number of global batches consumed, so a resumed run sees exactly the batches it would have seen.
* Under DDP every process walks the same global stream and keeps every ``num_replicas``-th batch
  (``global_number % num_replicas == rank``), so processes never share a batch and a 2-process run
  sees the same batches as a 1-process run with 2 accumulation steps.
* ``AudioWindowDataset`` decodes only the window it is asked for (``load_audio(path, start, seconds)``).
* ``AudioCollator`` normalises each utterance over its own samples (never the padding), zero-pads,
  and returns the true lengths; whether the model also gets the attention mask is the caller's choice
  (group-norm wav2vec2 must not get one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch

from .. import SAMPLING_RATE
from ..errors import AfterHFError
from .audio import load_audio


class Window(NamedTuple):
    """One item of a batch: which utterance, which part of it (None = all of it), which global batch."""

    index: int
    start: float | None
    seconds: float | None
    batch: int = -1


class BatchingError(AfterHFError, ValueError):
    """Batching options that cannot work together; the message names the option to change."""


def padded_seconds(lengths: Sequence[float]) -> float:
    """Seconds of audio a batch costs once padded to its longest item."""
    return len(lengths) * max(lengths) if len(lengths) else 0.0


def pack(order: Sequence[int], lengths: Sequence[float], batch_seconds: float,
         max_batch_size: int | None = None) -> list[list[int]]:
    """The one length-bucketing rule: walk ``order`` and close a batch when one more item would push its padded
    size (count x longest) above ``batch_seconds`` (or its count above ``max_batch_size``); a lone item always
    fits. Training walks lengths in a jittered order (``DynamicBatchSampler``), scoring longest first."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for j in order:
        new_longest = max(longest, lengths[j])
        too_big = (len(current) + 1) * new_longest > batch_seconds
        too_many = max_batch_size is not None and len(current) >= max_batch_size
        if current and (too_big or too_many):
            batches.append(current)
            current, new_longest = [], lengths[j]
        current.append(int(j))
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def length_batches(durations: Sequence[float], batch_seconds: float) -> list[np.ndarray]:
    """Scoring batches: indices longest first, packed by ``pack`` (``len(batch) * longest <= batch_seconds``)."""
    durations = np.asarray(durations, dtype=np.float64)
    return [np.asarray(b) for b in pack(np.argsort(-durations, kind="stable"), durations, batch_seconds)]


class DynamicBatchSampler:
    """Seeded, resumable, DDP-shardable batches of at most ``batch_seconds`` padded audio seconds.

    ``durations``: seconds per utterance (the manifest's ``duration`` column).
    ``max_seconds``: longer utterances are randomly cropped to this (None: never crop, e.g. scoring).
    ``min_seconds``: shorter utterances are left out and listed in ``skipped`` (never silently).
    ``shuffle``: False gives one sorted, uncropped-order pass (inference); True shuffles per epoch.
    ``length_jitter``: lengths are multiplied by exp(U(-j, j)) before sorting so the batches change
        from epoch to epoch while staying length-homogeneous.
    """

    def __init__(
        self,
        durations: Sequence[float],
        batch_seconds: float,
        max_seconds: float | None = 10.0,
        min_seconds: float = 0.0,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        length_jitter: float = 0.1,
        max_batch_size: int | None = None,
    ):
        if batch_seconds <= 0:
            raise BatchingError(f"batch_seconds must be > 0, got {batch_seconds}.")
        if max_seconds is not None and max_seconds > batch_seconds:
            raise BatchingError(
                f"max_seconds={max_seconds} exceeds batch_seconds={batch_seconds}: one crop would not fit in a "
                f"batch. Raise batch_seconds or lower max_seconds."
            )
        if not 0 <= rank < num_replicas:
            raise BatchingError(f"rank {rank} is not in [0, num_replicas={num_replicas}).")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_seconds = float(batch_seconds)
        self.max_seconds = max_seconds
        self.min_seconds = float(min_seconds)
        self.shuffle, self.seed = shuffle, int(seed)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.length_jitter = float(length_jitter)
        self.max_batch_size = max_batch_size
        usable = np.isfinite(self.durations) & (self.durations >= self.min_seconds) & (self.durations > 0)
        self.kept = np.flatnonzero(usable)
        self.skipped = [int(i) for i in np.flatnonzero(~usable)]  # callers report these (ids, reason)
        if len(self.kept) == 0:
            raise BatchingError(
                f"no utterance is at least min_seconds={self.min_seconds} long ({len(self.durations)} given); "
                f"lower min_seconds or check the manifest's duration column."
            )
        self.epoch = 0
        self.consumed = 0  # global batches consumed so far (the sampler's entire state)
        self._epoch_cache: dict[int, list[list[Window]]] = {}

    # --- the batches of one epoch (global, identical on every process) ---
    def epoch_batches(self, epoch: int) -> list[list[Window]]:
        if epoch in self._epoch_cache:
            return self._epoch_cache[epoch]
        rng = np.random.default_rng([self.seed, epoch])
        idx = self.kept
        full = self.durations[idx]
        lengths = full if self.max_seconds is None else np.minimum(full, self.max_seconds)
        if self.shuffle:
            order = rng.permutation(len(idx))  # random tie-breaking among equal (cropped) lengths
            jitter = np.exp(rng.uniform(-self.length_jitter, self.length_jitter, len(idx)))
            order = order[np.argsort((lengths * jitter)[order], kind="stable")]
            starts = rng.uniform(0.0, 1.0, len(idx)) * np.maximum(full - lengths, 0.0)
        else:
            order = np.argsort(lengths, kind="stable")
            starts = np.zeros(len(idx))
        batches = [self._windows(members, idx, full, lengths, starts)
                   for members in pack(order, lengths, self.batch_seconds, self.max_batch_size)]
        if self.shuffle:
            batches = [batches[k] for k in rng.permutation(len(batches))]
        self._epoch_cache = {epoch: batches}  # keep one epoch: the stream only moves forward
        return batches

    def _windows(self, members, idx, full, lengths, starts) -> list[Window]:
        out = []
        for j in members:
            cropped = self.max_seconds is not None and full[j] > lengths[j]
            out.append(Window(int(idx[j]), float(starts[j]) if cropped else None,
                              float(lengths[j]) if cropped else None))
        return out

    # --- the global stream: epoch after epoch, numbered batches ---
    def iter_global(self, start: int | None = None) -> Iterator[tuple[int, list[Window]]]:
        """Yield ``(global_number, batch)`` forever from batch ``start`` (default: ``consumed``)."""
        number = self.consumed if start is None else int(start)
        epoch, offset = self.locate(number)
        while True:
            batches = self.epoch_batches(epoch)
            for k in range(offset, len(batches)):
                yield number, [w._replace(batch=number) for w in batches[k]]
                number += 1
            epoch, offset = epoch + 1, 0

    def iter_replica(self, start: int | None = None) -> Iterator[list[Window]]:
        """This process's share of the global stream (forever): every ``num_replicas``-th batch."""
        for number, batch in self.iter_global(start):
            if number % self.num_replicas == self.rank:
                yield batch

    def locate(self, number: int) -> tuple[int, int]:
        """(epoch, offset within the epoch) of global batch ``number``."""
        epoch = 0
        while number >= len(self.epoch_batches(epoch)):
            number -= len(self.epoch_batches(epoch))
            epoch += 1
        return epoch, number

    # --- torch Sampler protocol: one epoch of this replica's batches (inference, pool scoring) ---
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[Window]]:
        batches = self.epoch_batches(self.epoch)
        for number in range(self.rank, len(batches), self.num_replicas):
            yield [w._replace(batch=number) for w in batches[number]]

    def __len__(self) -> int:
        return len(range(self.rank, len(self.epoch_batches(self.epoch)), self.num_replicas))

    def consumed_through(self, number: int) -> None:
        """Move the stream position past the optimiser step whose last batch on this replica was global batch
        ``number``: every replica's batches of that step are consumed (replica ``r`` holds the global batches
        ``g`` with ``g % num_replicas == r``)."""
        self.consumed = (int(number) // self.num_replicas + 1) * self.num_replicas

    # --- resumable state (JSON-serialisable) ---
    def state_dict(self) -> dict:
        return {"consumed": int(self.consumed), "seed": self.seed, "num_items": int(len(self.durations))}

    def load_state_dict(self, state: dict) -> None:
        if state.get("num_items") != len(self.durations) or state.get("seed") != self.seed:
            raise BatchingError(
                f"sampler state was saved for {state.get('num_items')} utterances / seed {state.get('seed')}, this "
                f"run has {len(self.durations)} / seed {self.seed}: resume with the same manifest split and seed, "
                f"or start a new output directory."
            )
        self.consumed = int(state["consumed"])


class AudioWindowDataset(torch.utils.data.Dataset):
    """``dataset[Window]`` -> the decoded window (mono float32 16 kHz) of that utterance."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, window: Window) -> dict:
        if isinstance(window, (int, np.integer)):
            window = Window(int(window), None, None)
        wave = load_audio(self.paths[window.index], start=window.start, seconds=window.seconds)
        return {"input_values": wave, "index": window.index, "batch": window.batch}


@dataclass
class AudioCollator:
    """Normalise each utterance on its own samples, zero-pad, and keep the true lengths.

    Returns ``input_values`` (B, T) float32, ``lengths`` (B,) int64, ``attention_mask`` (B, T) int64 only
    when ``pass_attention_mask`` (layer-norm models), ``index`` (B,) and ``batch`` (the global number).
    """

    feature_extractor: object  # a Wav2Vec2FeatureExtractor (its do_normalize / padding_value are used)
    pass_attention_mask: bool = False
    pad_to_multiple_of: int | None = None

    def __call__(self, items: list[dict]) -> dict:
        waves = [np.asarray(item["input_values"], dtype=np.float32) for item in items]
        # Feature extractor with a mask: normalisation uses each utterance's own samples, not the padding.
        features = self.feature_extractor(
            waves,
            sampling_rate=SAMPLING_RATE,
            padding="longest",
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_attention_mask=True,
            return_tensors="pt",
        )
        batch = {
            "input_values": features["input_values"],
            "lengths": torch.tensor([len(w) for w in waves], dtype=torch.long),
            "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
            "batch": int(items[0]["batch"]),
        }
        if self.pass_attention_mask:
            batch["attention_mask"] = features["attention_mask"].long()
        return batch


@dataclass
class CropCollator:
    """Fine-tuning batches from manifest rows: random windows of ``max_seconds`` from longer utterances (fresh
    each time a batch is drawn, i.e. every epoch), dynamic zero padding, per-utterance normalisation, labels."""

    feature_extractor: object
    max_seconds: float | None
    min_samples: int = 0  # pad at least this far so SpecAugment time masks fit in short batches
    speaker_index: dict | None = None  # speaker -> row of the trainer's speaker statistics (speaker_norm)

    def __call__(self, rows: list[dict]) -> dict:
        waves = []
        for row in rows:
            duration = float(row["duration"])
            if self.max_seconds and duration > self.max_seconds:
                start = float(torch.rand(()).item()) * (duration - self.max_seconds)
                waves.append(load_audio(row["path"], start=start, seconds=self.max_seconds))
            else:
                waves.append(load_audio(row["path"]))
        batch = self.feature_extractor(
            waves, sampling_rate=SAMPLING_RATE, padding=True, return_attention_mask=True, return_tensors="pt"
        )
        short = self.min_samples - batch["input_values"].shape[1]
        if short > 0:
            batch["input_values"] = torch.nn.functional.pad(batch["input_values"], (0, short))
            batch["attention_mask"] = torch.nn.functional.pad(batch["attention_mask"], (0, short))
        return with_speakers({
            "input_values": batch["input_values"],
            "attention_mask": batch["attention_mask"],
            "labels": batch_labels(rows),
        }, rows, self.speaker_index)


def pad_frames(frames: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T_i, C]`` tensors -> zero-padded ``[B, T, C]`` and the frame mask ``[B, T]`` (1 = a real frame)."""
    longest = max(f.shape[0] for f in frames)
    padded = frames[0].new_zeros(len(frames), longest, frames[0].shape[1])
    mask = torch.zeros(len(frames), longest, dtype=torch.long, device=frames[0].device)
    for i, f in enumerate(frames):
        padded[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = 1
    return padded, mask


@dataclass
class FrameCollator:
    """Fine-tuning batches from cached CNN outputs (a frozen CNN): random windows of ``max_frames`` from longer
    clips (fresh every epoch, as ``CropCollator`` does on audio), zero padding with a frame mask, labels and, for
    speaker normalisation, each clip's speaker index."""

    frames: dict  # sample id -> [T, C] array
    max_frames: int | None
    speaker_index: dict | None = None  # speaker -> row of the trainer's speaker statistics

    def __call__(self, rows: list[dict]) -> dict:
        windows = []
        for row in rows:
            f = self.frames[row["id"]]
            if self.max_frames and f.shape[0] > self.max_frames:
                start = int(torch.randint(0, f.shape[0] - self.max_frames + 1, ()).item())
                f = f[start: start + self.max_frames]
            windows.append(torch.from_numpy(np.asarray(f, dtype=np.float32)))
        frames, mask = pad_frames(windows)
        batch = {"frames": frames, "frame_mask": mask, "labels": batch_labels(rows)}
        return with_speakers(batch, rows, self.speaker_index)


def batch_labels(rows: list[dict]) -> torch.Tensor:
    """The rows' class indices [B] (long), or their soft targets [B, C] (float: each row's ``targets``, e.g. the
    raters' vote distribution) when the rows carry them; cross-entropy takes either."""
    if "targets" in rows[0]:
        return torch.tensor([list(row["targets"]) for row in rows], dtype=torch.float32)
    return torch.tensor([int(row["label"]) for row in rows], dtype=torch.long)


def with_speakers(batch: dict, rows: list[dict], speaker_index: dict | None) -> dict:
    if speaker_index is not None:
        batch["speaker_index"] = torch.tensor([speaker_index[row["speaker"]] for row in rows], dtype=torch.long)
    return batch


def audio_seconds(lengths: torch.Tensor) -> float:
    """Seconds of real (unpadded) audio in a collated batch."""
    return float(lengths.sum()) / SAMPLING_RATE


def padding_fraction(batches: Sequence[Sequence[Window]], durations: Sequence[float]) -> float:
    """Share of the padded seconds that is padding, for a list of batches (a planning statistic)."""
    real = padded = 0.0
    for batch in batches:
        lengths = [w.seconds if w.seconds is not None else durations[w.index] for w in batch]
        real += sum(lengths)
        padded += padded_seconds(lengths)
    return 0.0 if padded == 0 else 1.0 - real / padded
