"""What the loop trains each round, behind one interface (``Learner``):

* ``HeadLearner``: a head on cached frozen-encoder features (``head_only`` mode, seconds a round);
* ``FullLearner`` (``full_learner.py``): the whole wav2vec2 classifier re-fine-tuned from the TAPT checkpoint.

The loop calls only ``Learner``'s methods: ``embed`` (cold starts), ``fit``, ``score`` (what the query strategy
``needs``), ``evaluate``, ``save`` / ``load`` (one directory per round). ``SplitArrays`` holds one manifest
split as arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np
from safetensors.torch import load_file, save_file

from ..data.normalise import MIN_SPEAKER_CLIPS, population_mean, speaker_centre
from .features import FeatureCache, chunk_rows, is_lazy
from .head import HeadClassifier, HeadTrainingArgs

if TYPE_CHECKING:
    from datasets import Dataset


def ser_metrics(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]) -> dict:
    from ..metrics import compute_ser_metrics

    return compute_ser_metrics(y_pred, y_true, label_names)


def split_metrics(split: "SplitArrays", probs: np.ndarray, label_names: Sequence[str]) -> dict:
    """UA / WA / F1 against the split's labels and, when its clips have rater votes, ``soft_labels`` (KL, Brier, ...
    against the vote distributions; ``metrics.soft_labels``)."""
    scores = ser_metrics(split.labels, np.asarray(probs).argmax(1), label_names)
    if split.votes is not None:
        from ..metrics import compute_soft_label_metrics

        scores["soft_labels"] = compute_soft_label_metrics(probs, split.votes)
    return scores


class SplitArrays:
    """ids / paths / durations / labels / speakers of one manifest split, as arrays (``ds``: the split's rows)."""

    def __init__(self, ds: Dataset):
        self.ds = ds
        cols = ds.select_columns(["id", "path", "duration", "label", "speaker"]).to_dict()
        self.ids = np.array(cols["id"], dtype=object)
        self.paths, self.durations = cols["path"], np.asarray(cols["duration"], dtype=np.float32)
        self.labels, self.speakers = np.asarray(cols["label"], dtype=np.int64), np.array(cols["speaker"], dtype=object)
        self.position = {sample_id: i for i, sample_id in enumerate(self.ids)}
        self.votes = None  # [N, C] the raters' vote distributions (rows of 0 for unrated clips), None without votes
        from ..data.ratings import has_votes, vote_matrix

        if has_votes(ds):
            self.votes = vote_matrix(ds)[0]

    @classmethod
    def from_manifest(cls, manifest: Dataset) -> dict[str, "SplitArrays"]:
        """One SplitArrays per non-empty split of the manifest."""
        from ..inference import release_memory

        splits = np.asarray(manifest["split"])
        found = {name: cls(manifest.select(np.flatnonzero(splits == name))) for name in ("train", "validation", "test")
                 if (splits == name).any()}
        release_memory()  # the column conversions leave ~2 KB a row of freed heap behind (195 MB at 100 000 rows)
        return found

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, ids: Sequence[str]) -> np.ndarray:
        return np.array([self.position[i] for i in ids], dtype=np.int64)


class Learner(ABC):
    """The model an AL run trains round after round; ``splits["train"]`` is the pool, items are named by id."""

    mode: ClassVar[str]
    splits: dict[str, SplitArrays]
    label_names: list[str]

    @abstractmethod
    def embed(self, ids: Sequence[str]) -> np.ndarray:
        """[N, D] pooled backbone embeddings of pool items: what cold starts cluster before any model exists."""

    @abstractmethod
    def fit(self, ids: Sequence[str], labels: Sequence[int], seed: int, init_from: Path | None = None,
            targets: np.ndarray | None = None) -> dict:
        """Train on the labelled pool items (``init_from``: a saved round to continue from, i.e. a warm start;
        ``targets`` [N, C]: soft labels, e.g. the raters' vote distributions, trained on instead of ``labels``);
        returns what the fit did (JSON-serialisable: validation scores, epochs, seconds)."""

    @abstractmethod
    def score(self, ids: Sequence[str], needs: frozenset[str], mc_passes: int, seed: int) -> dict[str, np.ndarray]:
        """The arrays a query strategy ``needs`` for pool items: ``probs`` [N, C], ``mc_probs`` [T, N, C]
        (``mc_passes`` MC-dropout samples), ``embeddings`` [N, D]."""

    @abstractmethod
    def evaluate(self, split: str) -> dict:
        """UA / WA / macro-F1 / per-class recall / confusion matrix of the current model on ``split`` (+
        ``soft_labels`` when the split has rater votes: ``split_metrics``)."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the current model to ``directory`` (one per round)."""

    @abstractmethod
    def load(self, directory: Path) -> None:
        """Make the model ``save`` wrote in ``directory`` the current one."""

    def ua(self, y_true: Sequence[int], y_pred: Sequence[int]) -> float:
        """Unweighted accuracy (mean per-class recall) over this learner's classes."""
        return ser_metrics(y_true, y_pred, self.label_names)["ua"]


def in_memory_if_small(features):
    """``features`` (``CachedFeatures``) read into an array when they fit in one chunk, else left on disk."""
    return np.asarray(features) if len(features) <= chunk_rows(features) else features


def _speaker_groups(features, speakers) -> tuple[np.ndarray, np.ndarray]:
    """(float64 mean rows of the speakers with enough clips [G, ...], each row's group in them or -1), streamed."""
    names, group = np.unique(np.asarray(speakers), return_inverse=True)
    sums, counts = features.group_sums(group, len(names))
    enough = counts >= MIN_SPEAKER_CLIPS
    renumber = np.where(enough, np.cumsum(enough) - 1, -1)
    return sums[enough] / counts[enough].reshape(-1, *[1] * (sums.ndim - 1)), renumber[group]


def pool_population(features, speakers) -> np.ndarray:
    """``data.normalise.population_mean`` of an array or of rows still on disk (streamed)."""
    if not is_lazy(features):
        return population_mean(features, speakers)
    means, _ = _speaker_groups(features, speakers)
    return means.mean(0) if len(means) else features.mean(0).astype(np.float64)


def centre_speakers(features, speakers, population: np.ndarray):
    """``data.normalise.speaker_centre`` of an array, or the same centring applied as rows are read (on disk)."""
    if not is_lazy(features):
        return speaker_centre(features, speakers, population)
    means, group = _speaker_groups(features, speakers)
    return features.centred(means, population, group)


class HeadLearner(Learner):
    """Frozen backbone, encoder outputs computed once (FeatureCache), a small head trained per round."""

    mode = "head_only"

    def __init__(self, backbone: str, splits: dict[str, SplitArrays], label_names: Sequence[str],
                 cache_dir: str | Path, head_args: HeadTrainingArgs, init_seed: int = 0, speaker_norm: bool = False):
        self.splits, self.label_names = splits, list(label_names)
        self.cache = FeatureCache(cache_dir, backbone, init_seed=init_seed)
        # a split of at most CHUNK_BYTES is read into memory; a larger one stays memory-mapped (CachedFeatures) and
        # is read chunk by chunk, so a 100k-clip pool costs its id index, not N x layers x hidden floats
        self.features = {name: in_memory_if_small(self.cache.view(list(s.ids), s.paths, s.durations))
                         for name, s in splits.items()}
        self.population = None  # speaker_norm: the training pool's mean of speaker means (features' shape)
        if speaker_norm:  # each speaker centred over all its clips (no label is used), onto the pool's average speaker
            self.population = pool_population(self.features["train"], splits["train"].speakers)
            self.features = {name: centre_speakers(f, splits[name].speakers, self.population)
                             for name, f in self.features.items()}
        pool = self.features["train"]
        self.head = HeadClassifier(len(label_names), head_args, pool.mean(0), pool.std(0))
        if is_lazy(pool):  # the streamed statistics' float64 chunks: freed heap handed back
            from ..inference import release_memory

            release_memory()

    def _rows(self, ids: Sequence[str]):
        """The pool rows of ``ids``: an array, or still unread (a memory-mapped pool)."""
        feats, index = self.features["train"], self.splits["train"].index(ids)
        return feats.take(index) if is_lazy(feats) else feats[index]

    def embed(self, ids: Sequence[str]) -> np.ndarray:
        """Pooled backbone embeddings (mean over layers of the time-mean), standardised: for cold starts."""
        feats = self._rows(ids)
        mean, std = self.head.mean.numpy(), self.head.std.numpy()
        out = np.empty((len(feats), feats.shape[2]), dtype=np.float32)
        step = chunk_rows(feats)
        for start in range(0, len(feats), step):
            out[start:start + step] = ((feats[start:start + step] - mean) / std).mean(1)
            if is_lazy(feats):
                feats.release()
        return out

    def fit(self, ids: Sequence[str], labels: Sequence[int], seed: int, init_from: Path | None = None,
            targets: np.ndarray | None = None) -> dict:
        """A fresh head, or (``init_from``: a saved round) that round's head trained further (warm start)."""
        if init_from is not None:
            self.load(init_from)
        val = self.splits.get("validation")
        return self.head.fit(
            self._rows(ids), np.asarray(labels), seed,
            val_feats=self.features["validation"] if val is not None else None,
            val_labels=val.labels if val is not None else None, ua_fn=self.ua, warm_start=init_from is not None,
            targets=targets,
        )

    def score(self, ids: Sequence[str], needs: frozenset[str], mc_passes: int, seed: int) -> dict[str, np.ndarray]:
        return self.head.predict(self._rows(ids), mc_passes=mc_passes if "mc_probs" in needs else 0, seed=seed,
                                 embeddings="embeddings" in needs)

    def evaluate(self, split: str) -> dict:
        return self.evaluate_head(self.head, split)

    def evaluate_head(self, head: HeadClassifier, split: str) -> dict:
        return split_metrics(self.splits[split], head.predict(self.features[split])["probs"], self.label_names)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(directory / "head.safetensors"))

    def load(self, directory: Path) -> None:
        tensors = load_file(str(directory / "head.safetensors"))
        feats = self.features["train"]
        from .head import LayerWeightedHead

        self.head.model = LayerWeightedHead(feats.shape[1], feats.shape[2], len(self.label_names),
                                            self.head.args.proj_size, self.head.args.dropout)
        self.head.model.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        self.head.mean, self.head.std = tensors["norm.mean"], tensors["norm.std"]
