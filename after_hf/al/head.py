"""Head-only mode: a small classifier on cached frozen-encoder features, retrained every round in seconds.

The head learns a softmax weighting of the encoder's layers (SUPERB-style), then
Linear -> ReLU -> Dropout -> Linear. Its dropout makes MC-dropout samples cost head passes only;
the stock wav2vec2 classification head has none, so full-model BALD must re-run the encoder T times.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..losses import class_weights, cross_entropy, soft_class_weights
from .features import chunk_rows, is_lazy, rows_per_release


class LayerWeightedHead(nn.Module):
    def __init__(self, num_layers: int, hidden_size: int, num_labels: int, proj_size: int = 128, dropout: float = 0.3,
                 linear: bool = False):
        super().__init__()
        # no ReLU: then the head equals wav2vec2's own (weighted layer sum -> projector -> classifier)
        self.linear = linear
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.proj = nn.Linear(hidden_size, proj_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(proj_size, num_labels)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats`` [B, L, H] -> (logits [B, C], penultimate embedding [B, P] = the input of the last layer)."""
        pooled = (torch.softmax(self.layer_logits, 0)[None, :, None] * feats).sum(1)
        embedding = self.proj(pooled) if self.linear else torch.relu(self.proj(pooled))
        return self.out(self.dropout(embedding)), embedding


@dataclass
class HeadTrainingArgs:
    epochs: int = 60
    learning_rate: float = 2e-3
    weight_decay: float = 1e-3
    batch_size: int = 32
    proj_size: int = 128
    dropout: float = 0.3
    eval_every: int = 5  # epochs between validation checks (best-UA checkpoint is kept)
    linear: bool = False  # a linear head (exportable into Wav2Vec2ForSequenceClassification, see deploy.py)


class HeadClassifier:
    """Fit / predict on feature arrays; standardisation statistics come from the whole (unlabelled) pool."""

    def __init__(self, num_labels: int, args: HeadTrainingArgs, feature_mean: np.ndarray, feature_std: np.ndarray):
        self.num_labels, self.args = num_labels, args
        self.mean = torch.from_numpy(np.asarray(feature_mean, dtype=np.float32))
        self.std = torch.from_numpy(np.asarray(feature_std, dtype=np.float32) + 1e-5)
        self.model: LayerWeightedHead | None = None

    def _norm(self, feats: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(np.asarray(feats, dtype=np.float32)) - self.mean) / self.std

    def fit(self, feats, labels, seed: int, val_feats=None, val_labels=None, ua_fn=None,
            warm_start: bool = False, targets=None) -> dict:
        """Train on ``feats`` [N, L, H]; ``warm_start`` continues from the current head instead of a fresh one.

        ``targets`` [N, C] (rows summing to 1, e.g. the raters' vote distributions): soft-label training, the
        cross-entropy to each row instead of to ``labels`` (then unused), each clip weighted by its expected class
        weight (``after_hf.losses``: the class balance without biasing the targets). Checkpoints are still chosen
        on validation UA."""
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        num_layers, hidden = feats.shape[1], feats.shape[2]
        if not (warm_start and self.model is not None):
            self.model = LayerWeightedHead(num_layers, hidden, self.num_labels, self.args.proj_size, self.args.dropout,
                                           self.args.linear)
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.args.learning_rate,
                                weight_decay=self.args.weight_decay)
        # rows still on disk (CachedFeatures: a large pool) are read batch by batch, never all at once
        x = None if is_lazy(feats) else self._norm(feats)
        if targets is None:
            y = torch.as_tensor(labels, dtype=torch.long)
            weights = class_weights(np.asarray(labels), self.num_labels)
        else:  # vote distributions: clips weighted by their expected class weight (losses.cross_entropy)
            y = torch.as_tensor(np.asarray(targets, dtype=np.float32).reshape(len(feats), self.num_labels))
            weights = soft_class_weights(targets, self.num_labels)
        weights = torch.from_numpy(weights)
        best, best_state, history = -1.0, None, []
        # rows on disk: the pages read are handed back every chunk's worth of rows, so memory stays at one chunk
        release_every = max(1, rows_per_release(feats) // self.args.batch_size)
        for epoch in range(1, self.args.epochs + 1):
            self.model.train()
            for number, batch in enumerate(torch.randperm(len(feats), generator=gen).split(self.args.batch_size)):
                if x is None and number % release_every == release_every - 1:
                    feats.release()
                logits, _ = self.model(x[batch] if x is not None else self._norm(feats[batch.numpy()]))
                loss = cross_entropy(logits, y[batch], weights)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if val_feats is not None and (epoch % self.args.eval_every == 0 or epoch == self.args.epochs):
                ua = ua_fn(val_labels, self.predict(val_feats)["probs"].argmax(1))
                history.append({"epoch": epoch, "loss": float(loss.detach()), "val_ua": ua})
                if ua > best:
                    best, best_state = ua, copy.deepcopy(self.model.state_dict())
        if best_state is not None:
            self.model.load_state_dict(best_state)
        if is_lazy(feats):
            feats.release()
        return {"best_val_ua": best, "history": history}

    @torch.inference_mode()
    def predict(self, feats, mc_passes: int = 0, seed: int = 0, embeddings: bool = True) -> dict[str, np.ndarray]:
        """``probs`` [N, C], ``embeddings`` [N, P] (unless ``embeddings=False``) and with ``mc_passes`` T ``mc_probs``
        [T, N, C] (dropout on, seeded), ``feats`` read ``chunk_rows`` at a time (one chunk: all at once)."""
        self.model.eval()
        step = chunk_rows(feats)
        parts = []
        for number, start in enumerate(range(0, len(feats), step)):
            parts.append(self._predict_rows(feats[start:start + step], mc_passes, seed + 7919 * number, embeddings))
            if is_lazy(feats):
                feats.release()  # the chunk's pages back: memory stays at one chunk
        if is_lazy(feats):
            from ..inference import release_memory

            release_memory()  # and the chunks' freed heap
        if len(parts) == 1:
            return parts[0]
        return {key: np.concatenate([p[key] for p in parts], axis=1 if key == "mc_probs" else 0) for key in parts[0]}

    def _predict_rows(self, feats: np.ndarray, mc_passes: int, seed: int, embeddings: bool) -> dict[str, np.ndarray]:
        x = self._norm(feats)
        logits, embedding = self.model(x)
        out = {"probs": torch.softmax(logits, -1).numpy()}
        if embeddings:
            out["embeddings"] = embedding.numpy()
        if mc_passes:
            torch.manual_seed(seed)
            self.model.dropout.train()  # dropout on, everything else deterministic
            out["mc_probs"] = np.stack([torch.softmax(self.model(x)[0], -1).numpy() for _ in range(mc_passes)])
            self.model.dropout.eval()
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{f"head.{k}": v for k, v in self.model.state_dict().items()},
                "norm.mean": self.mean, "norm.std": self.std}
