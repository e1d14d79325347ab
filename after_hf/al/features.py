"""Frozen-encoder features computed once per utterance, cached on disk, memory-mapped.

For each utterance we keep the time-mean of every hidden layer (``[L+1, H]``, SUPERB-style), so a head
can learn its own layer weighting. The cache is keyed by the backbone's fingerprint (its weights), then
by sample id; it grows in shards written atomically, so a killed run loses at most the shard in flight,
and it is shared by every round, strategy, seed and MC-dropout pass that uses the same backbone.

Encoding streams the audio from the manifest's paths in length-sorted batches of at most
``batch_seconds`` of padded audio (the attention mask goes in for layer-norm encoders), under
``torch.inference_mode`` and, on CUDA, bf16 autocast. A shard holds at most ``shard_size`` utterances,
so memory stays bounded whatever the pool size. Launched with several processes (``accelerate launch``),
the processes split the missing batches between them, each writes its own shards, and all of them then
read every shard. ``ENCODER_STATS`` counts encoder forward calls and utterances in this process.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.audio import load_audio
from ..inference import (autocast_for, cnn_frames, encode_frames, length_batches, pad_frames, process_device,
                         process_group, release_memory)
from ..io import atomic_write_json
from ..models import is_named, load_config, load_encoder


ENCODER_STATS = {"forward_calls": 0, "utterances": 0}  # this process's encoder work (tests and benchmarks read it)


CACHE_VERSION = "frames-v2"  # how features are computed (v2: per-clip CNN, masked transformer); part of every key


def backbone_fingerprint(source: str, init_seed: int = 0) -> str:
    """Identity of a backbone's weights: a content hash for saved models, name + init seed for named configs."""
    if is_named(source):
        return f"{source}-init{init_seed}-{CACHE_VERSION}"
    path = Path(source)
    digest = hashlib.sha256(CACHE_VERSION.encode())
    if path.is_dir():
        for name in ("config.json", "model.safetensors"):
            if (path / name).is_file():
                digest.update((path / name).read_bytes())
    else:
        digest.update(source.encode())  # a Hub id: its revision is pinned by the Hub cache
    return digest.hexdigest()[:16]


def load_backbone(source: str, init_seed: int = 0):
    """The bare encoder (``AutoModel``) of a TAPT output / Hub id, or a randomly initialised named config."""
    from transformers import AutoModel

    if is_named(source):
        torch.manual_seed(init_seed)
        return AutoModel.from_config(load_config(source))
    return load_encoder(source)


@torch.inference_mode()
def encode_layers(model, waves: list[np.ndarray]) -> np.ndarray:
    """Time-mean of every hidden layer for a batch of waveforms -> ``[B, L+1, H]`` float32.

    Each waveform is normalised over its own samples; its CNN runs on it alone and the transformer sees the frame
    mask (``inference.encode_frames``), so a clip's features do not depend on the batch it is in. The mean runs
    over each utterance's real frames only. The batch goes to the model's device (bf16 autocast on CUDA)."""
    device = next(model.parameters()).device
    lengths = torch.tensor([w.size for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for row, w in enumerate(waves):
        w = (w - w.mean()) / (w.std() + 1e-7)  # the feature extractor's per-utterance normalisation
        batch[row, : w.size] = torch.from_numpy(w)
    sample_mask = (torch.arange(batch.shape[1])[None] < lengths[:, None]).long()
    with autocast_for(device):
        frames, frame_mask = pad_frames(cnn_frames(model, batch.to(device), sample_mask.to(device)))
        _, states = encode_frames(model, frames, frame_mask, output_hidden_states=True)
    ENCODER_STATS["forward_calls"] += 1
    ENCODER_STATS["utterances"] += len(waves)
    mask = frame_mask.float()
    counts = mask.sum(1, keepdim=True)
    # one layer at a time: never materialise [B, L+1, T, H]
    pooled = torch.stack([torch.bmm(mask[:, None, :], h.float()).squeeze(1) / counts for h in states], 1)
    return pooled.cpu().numpy()


class FeatureCache:
    """``cache.get(ids, paths, durations)`` -> ``[N, L+1, H]``; computes only the ids it has not seen."""

    def __init__(self, cache_root: str | Path, backbone_source: str, init_seed: int = 0, batch_seconds: float = 60.0,
                 shard_size: int = 1024, device: str | torch.device | None = None):
        self.source, self.init_seed, self.batch_seconds = backbone_source, init_seed, batch_seconds
        self.shard_size = max(1, int(shard_size))
        self.device = torch.device(device) if device is not None else None  # None: the process's GPU if any, else CPU
        self.dir = Path(cache_root) / backbone_fingerprint(backbone_source, init_seed)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._model = None
        self._rows: dict[str, tuple[int, int]] = {}  # id -> (shard, row)
        self._shards: list[np.ndarray] = []
        self._loaded: set[str] = set()  # shard file names already indexed
        self.encoded_this_session = 0  # utterances encoded by this object (the benchmark counts them)
        self._load_index()

    def _load_index(self) -> None:
        """Index every complete shard not yet indexed (a shard without its id list, or a mismatched one, is skipped)."""
        for shard_path in sorted(self.dir.glob("shard_*.npy")):
            if shard_path.name in self._loaded:
                continue
            ids_path = shard_path.with_suffix(".ids.json")
            if not ids_path.is_file():  # a shard without its id list was never completed: ignore it
                continue
            try:
                ids = json.loads(ids_path.read_text())
                shard = np.load(shard_path, mmap_mode="r")
            except (ValueError, OSError):  # unreadable leftovers of a killed writer
                continue
            if len(ids) != shard.shape[0]:
                continue
            self._add_shard(shard_path.name, shard, ids)

    def _add_shard(self, name: str, shard: np.ndarray, ids: list[str]) -> None:
        index = len(self._shards)
        self._shards.append(shard)
        self._loaded.add(name)
        for row, sample_id in enumerate(ids):
            self._rows[sample_id] = (index, row)

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def _encoder(self):
        if self._model is None:
            device = self.device if self.device is not None else process_device()
            self._model = load_backbone(self.source, self.init_seed).to(device).eval()
        return self._model

    def _encode(self, model, waves: list[np.ndarray]) -> list[np.ndarray]:
        return list(encode_layers(model, waves))

    def _write_shard(self, ids: list[str], rows: list[np.ndarray]) -> None:
        """shard_<n>-<token>.npy then its id list; a reader only trusts a shard whose id list exists and matches."""
        shard = self.dir / f"shard_{len(self._shards):05d}-{uuid.uuid4().hex[:8]}.npy"
        tmp = shard.with_name(f".{shard.name}.tmp.npy")
        np.save(tmp, np.stack(rows).astype(np.float32))
        tmp.replace(shard)
        atomic_write_json(shard.with_suffix(".ids.json"), ids)
        self._add_shard(shard.name, np.load(shard, mmap_mode="r"), ids)

    def _compute(self, ids: list[str], paths: list[str], durations: list[float], group=None) -> None:
        batches = length_batches(durations, self.batch_seconds)
        if group is not None:  # this process's share of the batches
            with group.split_between_processes(batches) as mine:
                batches = list(mine)
        if not batches:
            return
        model = self._encoder()
        show = group is None or group.is_main_process
        bar = tqdm(total=sum(len(b) for b in batches), desc="encoding pool (cached once)", unit="utt", leave=False,
                   disable=None if show else True)  # None: shown on a terminal, not in logs
        pending_ids: list[str] = []
        pending: list[np.ndarray] = []
        for number, batch in enumerate(batches):
            waves = [load_audio(paths[i]) for i in batch]
            pending.extend(self._encode(model, waves))
            pending_ids.extend(ids[i] for i in batch)
            del waves
            release_memory()
            bar.update(len(batch))
            if len(pending_ids) >= self.shard_size or number == len(batches) - 1:
                self._write_shard(pending_ids, pending)
                self.encoded_this_session += len(pending_ids)
                pending_ids, pending = [], []
        bar.close()

    def get(self, ids: Sequence[str], paths: Sequence[str], durations: Sequence[float]) -> np.ndarray:
        self._ensure(ids, paths, durations)
        return self._gather(ids)

    def _ensure(self, ids: Sequence[str], paths: Sequence[str], durations: Sequence[float]) -> None:
        """Compute (and write to shards) the rows of ``ids`` the cache does not hold yet."""
        group = process_group()
        if group is not None:  # every process sees the same shards before deciding what is missing
            group.wait_for_everyone()
            self._load_index()
        missing = [i for i, s in enumerate(ids) if s not in self._rows]
        if missing:
            self._compute([ids[i] for i in missing], [paths[i] for i in missing],
                          [float(durations[i]) for i in missing], group)
        if group is not None:
            group.wait_for_everyone()
            self._load_index()  # the shards the other processes wrote
            late = [i for i, s in enumerate(ids) if s not in self._rows]
            if late:  # should not happen; computed here rather than failing
                self._compute([ids[i] for i in late], [paths[i] for i in late], [float(durations[i]) for i in late])

    def view(self, ids: Sequence[str], paths: Sequence[str], durations: Sequence[float]) -> "CachedFeatures":
        """Like ``get`` (computes what is missing), but the rows stay in the memory-mapped shards: a
        ``CachedFeatures`` reads them on demand, so memory does not grow with the pool."""
        self._ensure(ids, paths, durations)
        return CachedFeatures(self._shards, self._where(ids))

    def _where(self, ids: Sequence[str]) -> np.ndarray:
        where = np.array([self._rows[i] for i in ids], dtype=np.int64).reshape(-1, 2)
        if not len(where):
            raise ValueError("FeatureCache.get: no ids given.")
        return where

    def _gather(self, ids: Sequence[str]) -> np.ndarray:
        return CachedFeatures(self._shards, self._where(ids))[:]


CHUNK_BYTES = 64 * 2**20  # rows read per streamed step: ~64 MiB of float32 whatever the pool size


def chunk_rows(features) -> int:
    """Rows of ``features`` ([N, ...], an array or ``CachedFeatures``) in ``CHUNK_BYTES`` of float32."""
    row_bytes = 4 * int(np.prod(features.shape[1:]))
    return max(1, CHUNK_BYTES // max(row_bytes, 1))


def rows_per_release(features) -> int:
    """Rows read at random between two ``release()`` calls so that the pages they touch (each row its own page or
    two) stay within ``CHUNK_BYTES`` whatever the pool size."""
    row_bytes = 4 * int(np.prod(features.shape[1:]))
    return max(1, CHUNK_BYTES // (row_bytes + mmap.PAGESIZE))


def is_lazy(features) -> bool:
    """True for rows still on disk (``CachedFeatures``), False for an in-memory array."""
    return isinstance(features, CachedFeatures)


class CachedFeatures:
    """``[N, L, H]`` feature rows that stay in the cache's memory-mapped shards until asked for.

    ``features[rows]`` (an int, slice or index array) reads those rows into a float32 array (speaker-centred when
    made by ``centred``); ``chunks()`` walks all rows ``CHUNK_BYTES`` at a time; ``mean`` / ``std`` / ``group_sums``
    are streamed in float64; ``release()`` hands the pages read so far back (``madvise(MADV_DONTNEED)``: they stay
    in the page cache, not in this process's resident memory). A pool of any size thus costs its id index and one
    chunk, never N x L x H floats. ``np.asarray(features)`` reads every row."""

    def __init__(self, shards: list[np.ndarray], where: np.ndarray, centre: tuple | None = None):
        self._shards, self._where, self._centre = shards, where, centre
        self.shape = (len(where), *shards[where[0, 0]].shape[1:]) if len(where) else (0,)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def centred(self, means: np.ndarray, population: np.ndarray, group: np.ndarray) -> "CachedFeatures":
        """The same rows, row ``r`` read as ``row - means[group[r]] + population`` (float64, then float32, as
        ``data.normalise.speaker_centre``); rows with ``group[r] < 0`` unchanged."""
        return CachedFeatures(self._shards, self._where, (np.asarray(means, dtype=np.float64),
                                                          np.asarray(population, dtype=np.float64),
                                                          np.asarray(group, dtype=np.int64)))

    def take(self, rows) -> "CachedFeatures":
        """A view of the rows ``rows`` (an index array), still unread."""
        rows = np.asarray(rows, dtype=np.int64)
        centre = None if self._centre is None else (*self._centre[:2], self._centre[2][rows])
        return CachedFeatures(self._shards, self._where[rows], centre)

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self[np.array([rows])][0]
        index = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        where = self._where[index]
        out = np.empty((len(index), *self.shape[1:]), dtype=np.float32)
        for shard in np.unique(where[:, 0]):
            take = np.flatnonzero(where[:, 0] == shard)
            out[take] = self._shards[shard][where[take, 1]]
        if self._centre is not None:
            means, population, group = self._centre
            moved = np.flatnonzero(group[index] >= 0)
            out[moved] = out[moved] - means[group[index[moved]]] + population
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    @property
    def chunk_rows(self) -> int:
        return chunk_rows(self)

    def chunks(self):
        """(start, stop, rows[start:stop]) over all rows, ``chunk_rows`` at a time; pages handed back after each."""
        for start in range(0, len(self), self.chunk_rows):
            stop = min(start + self.chunk_rows, len(self))
            yield start, stop, self[start:stop]
            self.release()

    def group_sums(self, group: np.ndarray, num_groups: int) -> tuple[np.ndarray, np.ndarray]:
        """(float64 sums of the rows of each group [G, L, H], rows per group [G]), streamed."""
        group = np.asarray(group, dtype=np.int64)
        sums = np.zeros((num_groups, *self.shape[1:]))
        for start, stop, block in self.chunks():
            np.add.at(sums, group[start:stop], block.astype(np.float64))
        return sums, np.bincount(group, minlength=num_groups)

    def _moments(self, axis) -> tuple[np.ndarray, np.ndarray, int]:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        if 0 not in axes:
            raise ValueError("CachedFeatures: statistics are over the rows (axis 0, optionally more)")
        total = squares = 0.0
        count = 0
        for _, _, block in self.chunks():
            block = block.astype(np.float64)
            total, squares = total + block.sum(axis=axes), squares + (block * block).sum(axis=axes)
            count += int(np.prod([block.shape[a] for a in axes]))
        return total, squares, count

    def mean(self, axis=0) -> np.ndarray:
        total, _, count = self._moments(axis)
        return (total / count).astype(np.float32)

    def std(self, axis=0) -> np.ndarray:
        total, squares, count = self._moments(axis)
        mean = total / count
        return np.sqrt(np.maximum(squares / count - mean * mean, 0.0)).astype(np.float32)

    def release(self) -> None:
        """Drop the pages of every shard from this process's resident memory (they stay in the page cache)."""
        for shard in self._shards:
            handle = getattr(shard, "_mmap", None)
            if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
                handle.madvise(mmap.MADV_DONTNEED)


@torch.inference_mode()
def encode_frames_of(model, waves: list[np.ndarray]) -> list[np.ndarray]:
    """The CNN feature encoder's output ``[T, C]`` of each waveform, computed on the waveform alone (float16)."""
    device = next(model.parameters()).device
    out = []
    for w in waves:
        x = torch.from_numpy((w - w.mean()) / (w.std() + 1e-7)).float()[None].to(device)
        with autocast_for(device):
            frames = model.feature_extractor(x)[0].transpose(0, 1)  # model: the bare encoder
        out.append(frames.float().cpu().numpy().astype(np.float16))
    ENCODER_STATS["forward_calls"] += 1
    ENCODER_STATS["utterances"] += len(waves)
    return out


def cnn_fingerprint(model) -> str:
    """Identity of a model's CNN feature encoder: a hash of its weights (shared by a TAPT output and every
    classifier loaded from it, distinct for two random initialisations)."""
    from ..inference import base_encoder

    digest = hashlib.sha256(CACHE_VERSION.encode())
    for name, tensor in sorted(base_encoder(model).feature_extractor.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class FrameCache(FeatureCache):
    """The frozen CNN's outputs ``[T_i, C]`` per utterance, cached once: ``cache.get(ids, paths, durations)`` -> a
    list of float32 arrays. Fine-tuning with a frozen CNN (AFTER's setting) then trains only the projection and the
    transformer, every epoch and every AL round reusing them (SpecAugment masks after the CNN, so it still applies).

    ``model`` is the model whose CNN is cached (a classifier or a bare encoder); the cache is keyed by its CNN
    weights. Shards hold the rows of several utterances back to back (float16, memory-mapped); the id list of a
    shard is ``{"ids": [...], "stops": [...]}`` (row ``k`` spans ``stops[k-1]:stops[k]``)."""

    def __init__(self, cache_root: str | Path, model, batch_seconds: float = 60.0, shard_size: int = 1024):
        from ..inference import base_encoder

        self.source, self.init_seed, self.batch_seconds = "model", 0, batch_seconds
        self.shard_size = max(1, int(shard_size))
        self.device = next(model.parameters()).device
        self.dir = Path(cache_root) / "cnn_frames" / cnn_fingerprint(model)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._model = base_encoder(model)
        self._rows, self._shards, self._loaded = {}, [], set()
        self.encoded_this_session = 0
        self._load_index()

    def _encode(self, model, waves: list[np.ndarray]) -> list[np.ndarray]:
        return encode_frames_of(model, waves)

    def _load_index(self) -> None:
        for shard_path in sorted(self.dir.glob("shard_*.npy")):
            ids_path = shard_path.with_suffix(".ids.json")
            if shard_path.name in self._loaded or not ids_path.is_file():
                continue
            try:
                meta = json.loads(ids_path.read_text())
                shard = np.load(shard_path, mmap_mode="r")
            except (ValueError, OSError):
                continue
            if (not isinstance(meta, dict) or len(meta["ids"]) != len(meta["stops"])
                    or meta["stops"][-1] != shard.shape[0]):
                continue
            self._add_shard(shard_path.name, shard, meta["ids"])
            self._stops[len(self._shards) - 1] = [0, *meta["stops"]]

    @property
    def _stops(self) -> dict[int, list[int]]:
        if not hasattr(self, "_stops_by_shard"):
            self._stops_by_shard: dict[int, list[int]] = {}
        return self._stops_by_shard

    def _write_shard(self, ids: list[str], rows: list[np.ndarray]) -> None:
        shard = self.dir / f"shard_{len(self._shards):05d}-{uuid.uuid4().hex[:8]}.npy"
        tmp = shard.with_name(f".{shard.name}.tmp.npy")
        np.save(tmp, np.concatenate(rows).astype(np.float16))
        tmp.replace(shard)
        stops = np.cumsum([r.shape[0] for r in rows]).tolist()
        atomic_write_json(shard.with_suffix(".ids.json"), {"ids": ids, "stops": stops})
        self._add_shard(shard.name, np.load(shard, mmap_mode="r"), ids)
        self._stops[len(self._shards) - 1] = [0, *stops]

    def _gather(self, ids: Sequence[str]) -> list[np.ndarray]:
        out = []
        for sample_id in ids:
            shard, row = self._rows[sample_id]
            stops = self._stops[shard]
            out.append(np.asarray(self._shards[shard][stops[row]: stops[row + 1]], dtype=np.float32))
        return out
