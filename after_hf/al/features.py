"""Frozen-encoder features computed once per utterance, cached on disk, memory-mapped.

For each utterance we keep the time-mean of every hidden layer (``[L+1, H]``, SUPERB-style), so a head
can learn its own layer weighting. The cache is keyed by the backbone's fingerprint (its weights), then
by sample id; it grows in shards written atomically, so a killed run loses at most the shard in flight,
and it is shared by every round, strategy, seed and MC-dropout pass that uses the same backbone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.audio import load_audio
from ..inference import length_batches
from ..io import atomic_write_json
from ..models import check_weights, is_named, load_config, uses_attention_mask


def backbone_fingerprint(source: str, init_seed: int = 0) -> str:
    """Identity of a backbone's weights: a content hash for saved models, name + init seed for named configs."""
    if is_named(source):
        return f"{source}-init{init_seed}"
    path = Path(source)
    digest = hashlib.sha256()
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
    load_config(source)  # names a directory without config.json
    check_weights(source)  # names a directory without (safetensors) weights
    return AutoModel.from_pretrained(source, use_safetensors=True, trust_remote_code=False)


@torch.inference_mode()
def encode_layers(model, waves: list[np.ndarray], use_mask: bool) -> np.ndarray:
    """Time-mean of every hidden layer for a batch of waveforms -> ``[B, L+1, H]`` float32."""
    lengths = torch.tensor([w.size for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for row, w in enumerate(waves):
        w = (w - w.mean()) / (w.std() + 1e-7)  # the feature extractor's per-utterance normalisation
        batch[row, : w.size] = torch.from_numpy(w)
    sample_mask = (torch.arange(batch.shape[1])[None] < lengths[:, None]).long()
    out = model(batch, attention_mask=sample_mask if use_mask else None, output_hidden_states=True)
    frames = model._get_feat_extract_output_lengths(lengths)
    hidden = torch.stack(out.hidden_states, dim=1)  # [B, L+1, T, H]
    frame_mask = (torch.arange(hidden.shape[2])[None] < frames[:, None]).to(hidden.dtype)  # [B, T]
    pooled = (hidden * frame_mask[:, None, :, None]).sum(2) / frame_mask.sum(1)[:, None, None]
    return pooled.float().numpy()


class FeatureCache:
    """``cache.get(ids, paths, durations)`` -> ``[N, L+1, H]``; computes only the ids it has not seen."""

    def __init__(self, cache_root: str | Path, backbone_source: str, init_seed: int = 0, batch_seconds: float = 60.0):
        self.source, self.init_seed, self.batch_seconds = backbone_source, init_seed, batch_seconds
        self.dir = Path(cache_root) / backbone_fingerprint(backbone_source, init_seed)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._model = None
        self._rows: dict[str, tuple[int, int]] = {}  # id -> (shard, row)
        self._shards: list[np.ndarray] = []
        self.encoded_this_session = 0  # encoder passes made by this object (the benchmark counts them)
        self._load_index()

    def _load_index(self) -> None:
        for shard_path in sorted(self.dir.glob("shard_*.npy")):
            ids_path = shard_path.with_suffix(".ids.json")
            if not ids_path.is_file():  # a shard without its id list was never completed: ignore it
                continue
            ids = json.loads(ids_path.read_text())
            shard = np.load(shard_path, mmap_mode="r")
            if len(ids) != shard.shape[0]:
                continue
            index = len(self._shards)
            self._shards.append(shard)
            for row, sample_id in enumerate(ids):
                self._rows[sample_id] = (index, row)

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._rows

    def _encoder(self):
        if self._model is None:
            self._model = load_backbone(self.source, self.init_seed).eval()
        return self._model

    def _compute(self, ids: list[str], paths: list[str], durations: list[float]) -> None:
        model = self._encoder()
        use_mask = uses_attention_mask(model.config)
        out: list[np.ndarray | None] = [None] * len(ids)
        batches = length_batches(durations, self.batch_seconds)
        for batch in tqdm(batches, desc="encoding pool (cached once)", unit="batch", leave=False):
            waves = [load_audio(paths[i]) for i in batch]
            for i, feats in zip(batch, encode_layers(model, waves, use_mask)):
                out[i] = feats
        array = np.stack(out).astype(np.float32)
        shard = self.dir / f"shard_{len(self._shards):05d}.npy"
        tmp = shard.with_name(f".{shard.name}.tmp.npy")
        np.save(tmp, array)
        tmp.replace(shard)
        atomic_write_json(shard.with_suffix(".ids.json"), ids)
        index = len(self._shards)
        self._shards.append(np.load(shard, mmap_mode="r"))
        for row, sample_id in enumerate(ids):
            self._rows[sample_id] = (index, row)
        self.encoded_this_session += len(ids)

    def get(self, ids: Sequence[str], paths: Sequence[str], durations: Sequence[float]) -> np.ndarray:
        missing = [i for i, s in enumerate(ids) if s not in self._rows]
        if missing:
            self._compute([ids[i] for i in missing], [paths[i] for i in missing], [float(durations[i]) for i in missing])
        return np.stack([self._shards[s][r] for s, r in (self._rows[i] for i in ids)])
