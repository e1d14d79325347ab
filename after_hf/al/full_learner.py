"""Full mode: every round re-fine-tunes the whole wav2vec2 classifier from the backbone (the TAPT
checkpoint), as AFTER does, through ``after_hf.finetune.finetune``; pool scoring uses ``after_hf.inference.predict``.
MC dropout here re-runs the whole encoder T times (the stock head has no dropout of its own)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ..finetune import FinetuneArguments, evaluation_schedule, finetune, recipe_options
from ..inference import predict
from ..models import load_classifier, load_feature_extractor
from .features import FeatureCache
from .learners import Learner, SplitArrays, split_metrics

def warm_epochs(epochs: float, labelled: int, before: int) -> int:
    """Epochs of a warm-started round: ``epochs`` x (new labels / labelled set), rounded, at least 1. Round r of
    a 5 %-step schedule then trains on as many new-label passes as one full-data epoch schedule would on them:
    4 rounds to 20 % cost about one fine-tuning on 20 % of the labels, not four."""
    return max(1, int(round(float(epochs) * max(labelled - before, 0) / max(labelled, 1))))


def previous_size(model_dir: Path) -> int:
    """How many clips the saved round in ``model_dir`` was trained on (its training_config.json)."""
    return int(json.loads((Path(model_dir) / "training_config.json").read_text())["num_train"])


class FullLearner(Learner):
    mode = "full"

    def __init__(self, backbone: str, splits: dict[str, SplitArrays], label_names: Sequence[str],
                 models_dir: Path, finetune_config: str, cache_dir: str | Path, scale_warm_epochs: bool = False,
                 options: dict | None = None):
        self.backbone, self.splits, self.label_names = backbone, splits, list(label_names)
        self.scale_warm_epochs = scale_warm_epochs
        self.models_dir = Path(models_dir)
        self.options = {**recipe_options(finetune_config), **(options or {})}  # the recipe, then al's overrides
        self.cache_dir = Path(cache_dir)
        self.cache = FeatureCache(cache_dir, backbone)
        self.model = self.feature_extractor = None
        self._frames: dict | None = None  # id -> cached CNN output of every clip (a frozen CNN: shared by all rounds)
        self._loaded: Path | None = None  # the saved round the current model was loaded from (None: just trained)
        # id -> pooled vector of the loaded round's pool scoring (reset with the model): the next round continuing
        # that saved round takes its first speaker statistics from them instead of a pass of its own
        self._pooled: dict | None = None

    def embed(self, ids: Sequence[str]) -> np.ndarray:
        train = self.splits["train"]
        feats = self.cache.get(list(train.ids), train.paths, train.durations)[train.index(ids)]
        return ((feats - feats.mean(0)) / (feats.std(0) + 1e-5)).mean(1)

    def fit(self, ids: Sequence[str], labels: Sequence[int], seed: int, init_from: Path | None = None,
            targets: np.ndarray | None = None) -> dict:
        """Fine-tune from the backbone (AFTER: the TAPT checkpoint every round) or from a saved round (warm start;
        with ``scale_warm_epochs`` for the recipe's epochs x the share of the labels that are new, at least 1)."""
        train = self.splits["train"]
        options = dict(self.options)
        if init_from is not None and self.scale_warm_epochs:
            epochs = options.get("num_train_epochs", FinetuneArguments.num_train_epochs)
            options["num_train_epochs"] = warm_epochs(epochs, len(ids), previous_size(init_from))
        args = FinetuneArguments(**{"cnn_cache_dir": str(self.cache_dir), **options,
                                    "model": str(init_from or self.backbone), "seed": seed})
        val = self.splits.get("validation")
        work = self.models_dir / "training"
        shared = self._pooled if init_from is not None and self._loaded == Path(init_from) else None
        # the whole pool (labelled or not) gives each training speaker's statistics (speaker_norm)
        result = finetune(args, train.ds.select(train.index(ids)), val.ds if val is not None else None,
                          self.label_names, work, stats_ds=train.ds, targets=targets, stats_pooled=shared)
        self.model, self.feature_extractor, self._trained_dir = result.model, result.feature_extractor, result.model_dir
        self._loaded = self._pooled = None
        return {"val": result.metrics, "best_step": result.best_step, "train_seconds": result.train_seconds,
                "epochs": evaluation_schedule(args, len(ids))[1], "phase_seconds": result.phase_seconds,
                "speaker_stats_passes": result.speaker_stats_passes,
                "speaker_stats_refreshes": result.speaker_stats_refreshes}

    def _frames_of(self, ds) -> list | None:
        """The cached CNN outputs of ``ds``'s clips when the model's CNN is frozen and cached (else None)."""
        if not (self.options.get("freeze_feature_encoder", True) and self.options.get("cache_cnn", True)):
            return None
        if self._frames is None:
            from .features import FrameCache

            cache = FrameCache(self.options.get("cnn_cache_dir") or self.cache_dir, self.model)
            self._frames = {}
            for split in self.splits.values():
                self._frames.update(zip(split.ids, cache.get(list(split.ids), split.paths, split.durations)))
        return [self._frames[i] for i in ds["id"]]

    def _probe(self, ds, needs=frozenset(), mc_passes: int = 0, seed: int = 0) -> dict:
        return predict(self.model, self.feature_extractor, ds, return_embeddings="embeddings" in needs,
                       mc_dropout_passes=mc_passes if "mc_probs" in needs else 0, seed=seed, progress=False,
                       frames=self._frames_of(ds))

    def score(self, ids: Sequence[str], needs: frozenset[str], mc_passes: int, seed: int) -> dict:
        """Scores the whole pool (each speaker normalised over all of its clips), returns the rows of ``ids``."""
        train = self.splits["train"]
        if needs <= {"embeddings"} and self._pooled is not None:
            # the pool was just scored with these weights (e.g. CoreSet's labelled centres after its pool scores)
            return {"embeddings": np.stack([self._pooled[i] for i in ids])}
        rows = train.index(ids)
        out = self._probe(train.ds, needs | {"embeddings"}, mc_passes, seed)  # pooled vectors: no extra cost
        if self._loaded is not None:  # kept for the next round's first speaker statistics (see fit)
            self._pooled = dict(zip(train.ids, out["embeddings"]))
        return {k: v[:, rows] if k == "mc_probs" else v[rows] for k, v in out.items()
                if k != "embeddings" or "embeddings" in needs}

    def evaluate(self, split: str) -> dict:
        data = self.splits[split]
        return split_metrics(data, self._probe(data.ds)["probs"], self.label_names)

    def save(self, directory: Path) -> None:
        if directory.exists():
            shutil.rmtree(directory)
        shutil.copytree(self._trained_dir, directory)

    def load(self, directory: Path) -> None:
        from ..inference import process_device

        # on the device this process trains on: pool scoring runs there too, not on the CPU
        self.model = load_classifier(str(directory), self.label_names).to(process_device()).eval()
        self.feature_extractor = load_feature_extractor(str(directory))
        self._loaded, self._pooled = Path(directory), None
