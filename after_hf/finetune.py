"""Fine-tune a wav2vec2-style audio classifier (full or LoRA) on a manifest; keep the best validation-UA model.

    after-hf finetune --config recipes/demo/finetune.yaml
    accelerate launch -m after_hf.finetune --config recipes/paper/finetune_iemocap_folds.yaml   # DDP / bf16 on GPUs

The loop, checkpointing, DDP and mixed precision are transformers' ``Trainer``. What is ours:
random crops of at most ``max_train_seconds`` re-drawn every epoch (full-length utterances in evaluation);
masked mean pooling (``inference.pooled_forward``, padding never enters the utterance vector);
class-weighted cross-entropy with weights ``w_c = n / (C * n_c)`` from the *current* labelled set (or, with
``soft_labels``, to each clip's vote distribution, the weights then weighting clips: ``after_hf.losses``);
evaluation = ``inference.predict`` (length-sorted, full length) + the local ``ser_metrics`` module, so the
best checkpoint is chosen on validation UA (not on the last epoch, as AFTER did) with early stopping.
``finetune()`` is the library entry the active-learning loop calls every round.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from . import SAMPLING_RATE
from .config import ConfigError, load_checked_recipe, parse_args, to_dict
from .data.manifest import label_names as manifest_label_names
from .data.manifest import ManifestError, load_manifest
from .io import atomic_write_json, check_output_dir, replace_dir
from .losses import class_weights, soft_class_weights
from .metrics import compute_ser_metrics
from .model_info import KINDS, ModelMetrics, read_metrics, write_metrics
from .models import check_source, load_classifier, load_feature_extractor, min_samples_for_masking, untrained_note

if TYPE_CHECKING:  # torch is imported by the functions that train: `after-hf finetune --help` stays light
    import torch

DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]  # attention projections of every layer


@dataclass
class FinetuneArguments:
    model: str = field(
        default="small",
        metadata={"help": "Backbone: a named config (tiny, small), a TAPT output / save_pretrained directory, or a Hub "
                          "id such as facebook/wav2vec2-base (any AutoModelForAudioClassification with a "
                          "projector+classifier head)."},
    )
    manifest: str | None = field(default=None, metadata={"help": "Manifest directory (after-hf prepare / synth)."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Run directory: the final model goes to OUTPUT_DIR/model."})
    train_split: str = field(default="train", metadata={"help": "Manifest split to train on."})
    eval_split: str = field(
        default="validation",
        metadata={"help": "Speaker-independent split for checkpoint selection; '' = none (train the fixed schedule)."},
    )
    test_split: str = field(
        default="test",
        metadata={"help": "Split scored once with the selected model at the end (CLI only); '' = skip."},
    )
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "Freeze the CNN feature encoder (AFTER, and standard practice)."})
    cache_cnn: bool = field(
        default=True, metadata={"help": "With freeze_feature_encoder: compute the frozen CNN's outputs once per "
                                        "clip (cached on disk, reused by every epoch, AL round and evaluation) and "
                                        "train the rest on them; SpecAugment applies after the CNN, so it is "
                                        "unchanged."})
    cnn_cache_dir: str = field(
        default="", metadata={"help": "Where the CNN outputs are cached ('' = OUTPUT_DIR/cache); share it between runs "
                                      "of the same backbone."})
    speaker_norm: bool = field(
        default=False, metadata={"help": "Centre each clip's pooled vector on its speaker's mean (over that "
                                         "speaker's clips, no labels needed), moved onto the population's mean; "
                                         "refreshed every epoch. Evaluation uses each evaluated "
                                         "speaker's own clips. The saved model keeps the population mean in its "
                                         "config: transformers alone scores a single clip as it is."})
    speaker_stats_clips: int = field(
        default=0, metadata={"help": "speaker_norm: each speaker's statistics come from at most this many of its clips "
                                     "(a fixed subset, the same every epoch and round; 0 = all): the refresh at each "
                                     "epoch's start then forwards speakers x this many clips, not the whole pool."})
    freeze_feature_projection: bool = field(
        default=False, metadata={"help": "Also freeze the feature projection (AFTER froze it)."})
    mask_time_prob: float = field(
        default=0.08, metadata={"help": "SpecAugment: probability of a time-mask span start per frame (AFTER 0.08)."})
    mask_time_length: int = field(default=15, metadata={"help": "SpecAugment: time-mask span in frames (AFTER 15)."})
    mask_feature_prob: float = field(
        default=0.05,
        metadata={"help": "SpecAugment: probability of a feature-mask span start per channel (AFTER 0.05)."},
    )
    mask_feature_length: int = field(
        default=64, metadata={"help": "SpecAugment: feature-mask span in channels (AFTER 64); must be <= hidden size."})
    class_weighted_loss: bool = field(
        default=True, metadata={"help": "Cross-entropy weighted by n / (C * n_c) from the current labelled set."})
    soft_labels: bool = field(
        default=False,
        metadata={"help": "Train on each clip's vote distribution (the manifest's vote_dist, from its raters) instead "
                          "of its label: cross-entropy to the votes, class weights from the expected counts; a clip "
                          "without votes counts its label as one vote. Checkpoints are still chosen on validation "
                          "UA; evaluation also scores KL / Brier against the votes."},
    )
    lora: bool = field(
        default=False,
        metadata={"help": "Train LoRA adapters (peft) + the head instead of the whole encoder; merged on export."},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        metadata={"help": "Modules that get adapters (add intermediate_dense output_dense for the feed-forward "
                          "layers)."},
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate (AFTER: Adam 1e-4, constant)."})
    lr_scheduler_type: str = field(
        default="constant", metadata={"help": "transformers scheduler name: constant, linear, cosine, ..."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (0 = Adam, as AFTER)."})
    per_device_train_batch_size: int = field(
        default=64, metadata={"help": "Utterances per batch per device (AFTER 64)."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches accumulated per optimizer step."})
    num_train_epochs: float = field(
        default=30.0, metadata={"help": "Epochs (AFTER 30); early stopping may end sooner."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0: total optimizer steps, overriding num_train_epochs."})
    max_train_seconds: float = field(
        default=10.0,
        metadata={"help": "Random crop length in training, re-drawn every epoch (AFTER truncated to 10 s). "
                          "Evaluation is always full length."},
    )
    eval_batch_seconds: float = field(
        default=160.0, metadata={"help": "Seconds of padded audio per evaluation batch (length-sorted)."})
    eval_steps: int = field(
        default=0, metadata={"help": "Evaluate (and checkpoint) every N steps; 0 = once per epoch."})
    min_eval_samples: int = field(
        default=0, metadata={"help": "Evaluate (and refresh the speaker statistics) once per epoch, or, when an epoch "
                                     "holds fewer training clips than this, every k epochs (the fewest that hold "
                                     "them, at most num_train_epochs; the epochs are rounded up to a multiple of k): "
                                     "a 43-clip AL seed round then evaluates every 6 epochs, not after every 3-step "
                                     "epoch. 0 = every epoch."})
    early_stopping_patience: int = field(
        default=5, metadata={"help": "Stop after N evaluations without a better validation UA; 0 = never."})
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field(
        default="auto",
        metadata={"help": "auto = bf16 on a GPU that supports it, else fp32 (never reduced precision on CPU)."},
    )
    seed: int = field(
        default=42,
        metadata={"help": "Seed for the head initialisation, shuffling, crops and dropout: same seed, same model."},
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "Decoding worker processes."})
    logging_steps: int = field(default=10, metadata={"help": "Log the training loss every N steps."})
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "Keep OUTPUT_DIR/checkpoints (Trainer state) after training."})
    report_to: str = field(default="none", metadata={"help": "Trainer loggers: none, tensorboard, wandb, ..."})


@dataclass
class FinetuneResult:
    model: torch.nn.Module  # best checkpoint, LoRA merged, eval mode, on the training device
    feature_extractor: object
    metrics: dict  # validation metrics of the selected model ({} when there was no validation split)
    train_seconds: float  # wall time of Trainer.train()
    wall_seconds: float  # wall time of the whole call (model loading, training, export)
    model_dir: Path  # save_pretrained directory (config, safetensors, preprocessor, training_config, metrics)
    best_step: int | None
    history: list[dict]  # Trainer log history (losses and evaluations)
    phase_seconds: dict = field(default_factory=dict)  # frames (CNN cache), speaker_stats, evaluate, save
    speaker_stats_passes: int = 0  # forward passes over the statistics clips (speaker_norm)
    speaker_stats_refreshes: int = 0  # times the statistics were set (the first may need no pass: stats_pooled)


RECIPE_OWN_KEYS = ("manifest", "output_dir", "model")  # set by the caller (AL round, deploy), not by a recipe


def recipe_options(recipe: str) -> dict:
    """The `finetune:` options of a recipe that an AL round or a deploy uses (checked; '' = the defaults), minus
    the keys the caller sets itself."""
    return load_checked_recipe(recipe, "finetune", [FinetuneArguments], drop=RECIPE_OWN_KEYS) if recipe else {}


def _loss_in_bar():
    """The Trainer's progress bar with the last loss / validation UA as its postfix: the stock one also writes every
    log dict ({'loss': ..., 'grad_norm': ...}) on its own console line (they stay in the run's log history)."""
    from transformers.trainer_callback import ProgressCallback

    class LossInBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            shown = {key: logs[key] for key in ("loss", "eval_ua") if key in (logs or {})}
            if state.is_world_process_zero and self.training_bar is not None and shown:
                self.training_bar.set_postfix({k: f"{float(v):.3g}" for k, v in shown.items()}, refresh=False)

    return LossInBar


def _trainer_class():
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from .inference import predict

    class SERTrainer(Trainer):
        """Trainer whose evaluation is full-length, length-batched ``predict`` + UA/WA/F1 (``eval_ua`` picks the
        best)."""

        def __init__(self, *a, eval_batch_seconds: float, label_names: list[str], frames: dict | None = None, **kw):
            super().__init__(*a, **kw)
            # a quiet console: a bar with the loss (tqdm on) or nothing (tqdm off), never a printed dict per log
            self.pop_callback(PrinterCallback)
            if self.pop_callback(ProgressCallback) is not None:
                self.add_callback(_loss_in_bar())
            self.eval_batch_seconds, self.class_names, self.frames = eval_batch_seconds, label_names, frames
            self.eval_by_step: dict[int, dict] = {}
            self.eval_seconds = 0.0

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
            ds = self.eval_dataset if eval_dataset is None else eval_dataset
            start = time.perf_counter()
            out = predict(self.model.model, self.processing_class, ds, batch_seconds=self.eval_batch_seconds,
                          progress=False, frames=None if self.frames is None else [self.frames[i] for i in ds["id"]])
            scores = compute_ser_metrics(out["probs"].argmax(-1), ds["label"], self.class_names)
            self.eval_by_step[self.state.global_step] = scores
            metrics = {f"{metric_key_prefix}_{k}": scores[k] for k in ("ua", "wa", "macro_f1")}
            metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 3)
            self.eval_seconds += time.perf_counter() - start
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return SERTrainer


def _check_args(args: FinetuneArguments, config) -> None:
    hidden = getattr(config, "hidden_size", None)
    if args.mask_feature_prob > 0 and hidden is not None and args.mask_feature_length > hidden:
        raise ConfigError(
            f"mask_feature_length={args.mask_feature_length} exceeds the model's hidden size {hidden}: "
            f"set mask_feature_length <= {hidden} (or mask_feature_prob: 0) in the recipe."
        )
    if args.max_train_seconds is not None and args.max_train_seconds <= 0:
        raise ConfigError("max_train_seconds must be > 0 (the crop length in seconds, e.g. 10).")


def _precision(choice: str) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    if choice == "auto":
        return {"bf16": bool(cuda and torch.cuda.is_bf16_supported())}
    if choice in ("bf16", "fp16") and not cuda:
        raise ConfigError(f"precision={choice} needs a CUDA GPU; use precision: auto or fp32 on CPU.")
    return {"bf16": choice == "bf16", "fp16": choice == "fp16"}


def _apply_lora(model, args: FinetuneArguments):
    from peft import LoraConfig, get_peft_model

    # No task_type: SEQ_CLS would make peft's wrapper feed `input_ids` to an audio model.
    config = LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, bias="none",
        target_modules=list(args.lora_target_modules), modules_to_save=["projector", "classifier"],
    )
    with warnings.catch_warnings():  # peft 0.21 still asks transformers 5 for a renamed attribute
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def _check_labels(ds, label_names: list[str], what: str) -> None:
    names = manifest_label_names(ds) if "label" in ds.features and hasattr(ds.features["label"], "names") else None
    if names is not None and names != list(label_names):
        raise ManifestError(f"{what} labels {names} differ from the label set {list(label_names)}; rebuild it with the "
                            "same labels.")
    if len(ds) == 0:
        raise ManifestError(f"{what} is empty: nothing to train or evaluate on.")


def build_model(args: FinetuneArguments, label_names: Sequence[str]):
    """(model, feature_extractor) ready to train: seeded head, SpecAugment values, freezing, LoRA wrapping."""
    from transformers import set_seed

    set_seed(args.seed)  # the new head (and, for named configs, the whole model) is initialised from this seed
    model = load_classifier(
        args.model, list(label_names),
        mask_time_prob=args.mask_time_prob, mask_time_length=args.mask_time_length,
        mask_feature_prob=args.mask_feature_prob, mask_feature_length=args.mask_feature_length,
    )
    _check_args(args, model.config)
    feature_extractor = load_feature_extractor(args.model, model.config)
    if args.freeze_feature_encoder:
        model.freeze_feature_encoder()
    if args.freeze_feature_projection:
        getattr(model, model.base_model_prefix).feature_projection.requires_grad_(False)
    if args.lora:
        model = _apply_lora(model, args)
    return model, feature_extractor


def _model_metrics(args: FinetuneArguments, label_names: list[str], num_train: int, splits: dict, best_step,
                   global_step: int, train_seconds: float) -> ModelMetrics:
    kind = "lora" if args.lora else "full"
    return ModelMetrics(splits=splits, kind=kind, description=KINDS[kind], backbone=args.model,
                        num_classes=len(label_names), num_labelled=num_train,
                        training={"best_step": best_step, "global_step": global_step,
                                  "train_seconds": round(train_seconds, 3)})


def evaluation_schedule(args: FinetuneArguments, num_train: int) -> tuple[int, float]:
    """(optimizer steps between evaluations, 0 = every epoch; epochs to train) under ``min_eval_samples``."""
    if args.eval_steps > 0 or args.min_eval_samples <= 0 or args.max_steps > 0 or num_train >= args.min_eval_samples:
        return args.eval_steps, args.num_train_epochs
    # epochs between evaluations, never more than the run's epochs: a 6-clip round with min_eval_samples 256 would
    # otherwise train 43 epochs (the rounding below) instead of its 3
    every = min(math.ceil(args.min_eval_samples / num_train), max(1, math.ceil(args.num_train_epochs)))
    per_epoch = math.ceil(num_train / (args.per_device_train_batch_size * args.gradient_accumulation_steps
                                       * int(os.environ.get("WORLD_SIZE", "1"))))
    return every * per_epoch, float(math.ceil(args.num_train_epochs / every) * every)


def training_arguments(args: FinetuneArguments, checkpoints: Path, has_eval: bool, num_train: int = 0):
    """transformers ``TrainingArguments`` of a run: best validation UA kept (when there is a validation set)."""
    import torch
    from transformers import TrainingArguments

    eval_steps, epochs = evaluation_schedule(args, num_train) if has_eval else (args.eval_steps, args.num_train_epochs)
    strategy = ("steps" if eval_steps > 0 else "epoch") if has_eval else "no"
    return TrainingArguments(
        output_dir=str(checkpoints),
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=eval_steps or None,
        save_steps=eval_steps or None,
        load_best_model_at_end=has_eval,
        metric_for_best_model="ua" if has_eval else None,
        greater_is_better=True if has_eval else None,
        save_total_limit=2,
        save_only_model=True,  # checkpoints exist for best-model selection; resuming restarts the round
        per_device_train_batch_size=args.per_device_train_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type=args.lr_scheduler_type,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        num_train_epochs=epochs,
        max_steps=args.max_steps,
        seed=args.seed,
        logging_steps=args.logging_steps,
        report_to=args.report_to,
        remove_unused_columns=False,  # the collator needs path/duration
        label_names=["labels"],
        dataloader_num_workers=args.dataloader_num_workers,
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        **_precision(args.precision),
    )


def _selected(trainer, has_eval: bool) -> tuple[dict, int | None]:
    """(validation metrics, step) of the model the trainer ended with: the best checkpoint's."""
    if not has_eval:
        return {}, None
    best_step = trainer.state.best_global_step
    if best_step is None or best_step not in trainer.eval_by_step:  # no evaluation happened: score the final model
        trainer.evaluate()
        best_step = trainer.state.global_step
    return trainer.eval_by_step[best_step], best_step


def _save_model(final, feature_extractor, output_dir: Path, training_config: dict, metrics: ModelMetrics) -> Path:
    """``output_dir/model``: safetensors + preprocessor + training_config.json + metrics.json, moved in atomically."""
    model_dir = output_dir / "model"
    tmp = output_dir / ".model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    final.save_pretrained(str(tmp))  # safetensors
    feature_extractor.save_pretrained(str(tmp))
    atomic_write_json(tmp / "training_config.json", training_config)
    write_metrics(tmp, metrics)
    replace_dir(tmp, model_dir)
    return model_dir


def _cached_frames(args: FinetuneArguments, model, output_dir: Path, datasets: list) -> dict | None:
    """id -> the frozen CNN's output of every clip of ``datasets`` (``cache_cnn`` with a frozen CNN), else None."""
    if not (args.freeze_feature_encoder and args.cache_cnn):
        return None
    from .al.features import FrameCache

    cache = FrameCache(args.cnn_cache_dir or output_dir / "cache", model)
    frames: dict = {}
    for ds in datasets:
        if ds is not None:
            rows = ds.select_columns(["id", "path", "duration"]).to_dict()
            new = [i for i, sample_id in enumerate(rows["id"]) if sample_id not in frames]  # splits may overlap
            ids = [rows["id"][i] for i in new]
            if ids:
                paths, durations = [rows["path"][i] for i in new], [rows["duration"][i] for i in new]
                frames.update(zip(ids, cache.get(ids, paths, durations)))
    return frames


def per_speaker_subset(ds, clips: int):
    """The rows of ``ds`` that give each speaker's statistics: at most ``clips`` per speaker, those whose ids hash
    lowest (a fixed choice: the same for every epoch, round and seed, independent of row order)."""
    import hashlib

    ids, speakers = ds["id"], ds["speaker"]
    rank = sorted(range(len(ids)), key=lambda i: hashlib.sha1(str(ids[i]).encode()).hexdigest())
    taken: Counter = Counter()
    keep = [i for i in rank if taken.update([speakers[i]]) or taken[speakers[i]] <= clips]
    return ds.select(sorted(keep))


def _speaker_callback(module, feature_extractor, stats_ds, frames: dict | None, batch_seconds: float,
                      first_pooled: dict | None = None):
    """A TrainerCallback that sets the speaker statistics of ``module`` from ``stats_ds`` at each epoch's start.
    ``first_pooled`` (id -> pooled vector of the starting weights, e.g. an AL round's pool scoring of the model this
    training continues) serves the first epoch's statistics without another pass over ``stats_ds``."""
    import torch
    from transformers import TrainerCallback

    from .inference import predict, set_speaker_norm, speaker_statistics

    speakers = list(stats_ds["speaker"])
    order = sorted(set(speakers))

    class SpeakerStatistics(TrainerCallback):
        """The classifier learns on clips mapped onto the population mean of its epoch's start, so the model
        keeps the one of the epoch it was selected from (``restore``), not one recomputed later."""

        def __init__(self):
            self.history: list = []  # (global step when set, population mean)
            self.seconds = 0.0
            self.passes = 0  # forward passes over stats_ds (the first may be served by first_pooled)
            self.evaluated = False  # an evaluation (a model worth keeping) since the last refresh

        def on_evaluate(self, args, state, control, **kwargs):
            self.evaluated = True

        def on_epoch_begin(self, args, state, control, **kwargs):
            # every epoch when each epoch ends in an evaluation; with evaluations every k epochs
            # (min_eval_samples), at the epoch after each, so the statistics keep pace with model selection
            if self.history and args.eval_strategy != "no" and not self.evaluated:
                return
            self.evaluated = False
            start = time.perf_counter()
            ids = stats_ds["id"]
            if not self.history and first_pooled is not None and all(i in first_pooled for i in ids):
                pooled = np.stack([first_pooled[i] for i in ids])
            else:
                pooled = predict(module.model, feature_extractor, stats_ds, batch_seconds=batch_seconds,
                                 progress=False, return_embeddings=True,
                                 frames=None if frames is None else [frames[i] for i in ids])["embeddings"]
                self.passes += 1
            stats, g_mean = speaker_statistics(torch.from_numpy(pooled), speakers)
            module.set_speakers(stats, order, g_mean)
            self.history.append((state.global_step, g_mean))
            self.seconds += time.perf_counter() - start

        def restore(self, step: int | None) -> None:
            """Store in the model's config the population statistics its training at ``step`` used."""
            used = [entry for entry in self.history if step is None or entry[0] < step] or self.history[:1]
            set_speaker_norm(module.model, used[-1][1])

    return SpeakerStatistics(), {s: i for i, s in enumerate(order)}


def _collator(args: FinetuneArguments, model, feature_extractor, frames: dict | None, speaker_index: dict | None):
    from .data.batching import CropCollator, FrameCollator

    if frames is not None:
        max_frames = int(model_frames(model, args.max_train_seconds)) if args.max_train_seconds else None
        return FrameCollator(frames, max_frames, speaker_index)
    min_samples = min_samples_for_masking(model, args.mask_time_length) if args.mask_time_prob > 0 else 0
    return CropCollator(feature_extractor, args.max_train_seconds, min_samples, speaker_index)


def model_frames(model, seconds: float) -> int:
    """CNN frames of ``seconds`` of audio for this model (50 per second for wav2vec2)."""
    from .inference import unwrap

    return int(unwrap(model)._get_feat_extract_output_lengths(int(seconds * SAMPLING_RATE)))


def vote_targets(train_ds, label_names: Sequence[str]) -> np.ndarray:
    """[N, C] soft targets of manifest rows: each clip's vote distribution, its label as one vote where it has none."""
    from .data.ratings import has_votes, vote_matrix

    labels = np.asarray(train_ds["label"], dtype=np.int64)
    if not has_votes(train_ds):
        raise ManifestError("soft_labels: the training set has no rater votes (manifest column vote_dist); prepare a "
                            "corpus with ratings, or set soft_labels: false.")
    votes, rated = vote_matrix(train_ds, label_names)
    votes[~rated] = np.eye(len(label_names))[labels[~rated]]
    return votes


def _training_targets(args: FinetuneArguments, train_ds, label_names: list[str], targets):
    """(rows, soft targets or None, class weights or None): with soft targets (given, or the manifest's votes with
    ``soft_labels``) the rows get a ``targets`` column, which the collators pass as each row's labels."""
    if targets is None and args.soft_labels:
        targets = vote_targets(train_ds, label_names)
    if targets is None:
        labels = np.asarray(train_ds["label"], dtype=np.int64)
        return train_ds, None, class_weights(labels, len(label_names)) if args.class_weighted_loss else None
    targets = np.asarray(targets, dtype=np.float32).reshape(len(train_ds), len(label_names))
    weights = soft_class_weights(targets, len(label_names)) if args.class_weighted_loss else None
    return train_ds.add_column("targets", targets.tolist()), targets, weights


def finetune(
    args: FinetuneArguments, train_ds, eval_ds, label_names: Sequence[str], output_dir: str | Path, stats_ds=None,
    targets=None, stats_pooled: dict | None = None,
) -> FinetuneResult:
    """Train ``args.model`` on the manifest rows ``train_ds``; select the best checkpoint on ``eval_ds`` UA.

    ``stats_ds``: the clips whose per-speaker statistics normalise the training speakers (``speaker_norm``; default
    ``train_ds``; an AL round passes the whole pool, labelled or not). ``targets`` [N, C]: soft targets per training
    row (an AL round passes what its oracle revealed); with ``args.soft_labels`` and no ``targets``, the manifest's
    vote distributions (``vote_targets``). ``stats_pooled``: id -> pooled vector of ``args.model``'s weights for
    (at least) the statistics clips, computed by the caller (an AL round's pool scoring), used for the first
    epoch's speaker statistics instead of a pass of its own. Writes ``output_dir/model`` (atomically) and returns
    the model, its validation metrics and timings.
    """
    import torch
    from transformers import EarlyStoppingCallback

    from .inference import PooledClassifier

    wall_start = time.perf_counter()
    label_names = list(label_names)
    output_dir = Path(output_dir)
    _check_labels(train_ds, label_names, "training set")
    if eval_ds is not None:
        _check_labels(eval_ds, label_names, "validation set")

    model, feature_extractor = build_model(args, label_names)
    labels = list(map(int, train_ds["label"]))
    train_ds, targets, weights = _training_targets(args, train_ds, label_names, targets)
    columns = ["id", "path", "duration", "label", "speaker"]
    module = PooledClassifier(model, None if weights is None else torch.from_numpy(weights))
    stats_ds = train_ds if stats_ds is None else stats_ds
    if args.speaker_norm and args.speaker_stats_clips > 0:
        stats_ds = per_speaker_subset(stats_ds, args.speaker_stats_clips)
    frames_start = time.perf_counter()
    frames = _cached_frames(args, model, output_dir, [train_ds, eval_ds, stats_ds if args.speaker_norm else None])
    phases = {"frames": time.perf_counter() - frames_start}

    has_eval = eval_ds is not None
    checkpoints = output_dir / "checkpoints"
    stopping = has_eval and args.early_stopping_patience > 0
    callbacks = [EarlyStoppingCallback(args.early_stopping_patience)] if stopping else []
    speaker_index = None
    if args.speaker_norm:
        refresh, speaker_index = _speaker_callback(module, feature_extractor, stats_ds, frames, args.eval_batch_seconds,
                                                   stats_pooled)
        callbacks.append(refresh)
    trainer = _trainer_class()(
        model=module,
        args=training_arguments(args, checkpoints, has_eval, len(train_ds)),
        train_dataset=train_ds.select_columns(columns + (["targets"] if targets is not None else [])),
        eval_dataset=eval_ds.select_columns(columns) if has_eval else None,
        data_collator=_collator(args, model, feature_extractor, frames, speaker_index),
        processing_class=feature_extractor,
        callbacks=callbacks,
        eval_batch_seconds=args.eval_batch_seconds,
        label_names=label_names,
        frames=frames,
    )
    train_start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_start
    metrics, best_step = _selected(trainer, has_eval)
    if args.speaker_norm:  # the population statistics the selected model was trained with, stored in its config
        refresh.restore(best_step if has_eval else None)

    final = module.model.merge_and_unload() if args.lora else module.model
    final.eval()
    model_dir = output_dir / "model"
    save_start = time.perf_counter()
    if trainer.is_world_process_zero():
        training_config = {
            **to_dict(args),
            "label_names": label_names,
            "class_weights": None if weights is None else weights.tolist(),
            "train_label_counts": {label_names[k]: v for k, v in sorted(Counter(labels).items())},
            "soft_labels": targets is not None,  # what training used (the option, or targets an AL round passed)
            "num_train": len(train_ds),
            "num_eval": 0 if eval_ds is None else len(eval_ds),
            "output_dir": str(output_dir),
        }
        _save_model(final, feature_extractor, output_dir, training_config,
                    _model_metrics(args, label_names, len(train_ds), {"validation": metrics} if metrics else {},
                                   best_step, trainer.state.global_step, train_seconds))
        if not args.keep_checkpoints and checkpoints.exists():
            shutil.rmtree(checkpoints)
    phases.update(speaker_stats=refresh.seconds if args.speaker_norm else 0.0, evaluate=trainer.eval_seconds,
                  save=time.perf_counter() - save_start)
    return FinetuneResult(
        model=final, feature_extractor=feature_extractor, metrics=metrics, train_seconds=train_seconds,
        wall_seconds=time.perf_counter() - wall_start, model_dir=model_dir, best_step=best_step,
        history=list(trainer.state.log_history), phase_seconds={k: round(v, 3) for k, v in phases.items()},
        speaker_stats_passes=refresh.passes if args.speaker_norm else 0,
        speaker_stats_refreshes=len(refresh.history) if args.speaker_norm else 0,
    )


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args([FinetuneArguments], argv, prog="after-hf finetune", description=__doc__, section="finetune")
    if not args.manifest or not args.output_dir:
        raise ConfigError("needs --manifest DIR and --output_dir DIR (on the command line or in the --config recipe).")
    check_output_dir(args.output_dir, "--output_dir")
    check_source(args.model)
    note = untrained_note(args.model, "--model")
    if note:
        print(note)
    train_ds = load_manifest(args.manifest, split=args.train_split)
    names = manifest_label_names(train_ds)
    eval_ds = load_manifest(args.manifest, split=args.eval_split) if args.eval_split else None
    result = finetune(args, train_ds, eval_ds, names, args.output_dir)
    print(f"model saved to {result.model_dir} (best step {result.best_step}, trained {result.train_seconds:.1f} s)")
    if result.metrics:
        print(f"validation ({args.eval_split}): UA {result.metrics['ua']:.4f}  WA {result.metrics['wa']:.4f}  "
              f"macro-F1 {result.metrics['macro_f1']:.4f}")
    if args.test_split:
        from .evaluation import evaluate_dataset, write_report

        test_ds = load_manifest(args.manifest, split=args.test_split)
        scores, rows = evaluate_dataset(result.model, result.feature_extractor, test_ds, names, args.eval_batch_seconds)
        write_report(scores, result.model_dir / f"eval_{args.test_split}",
                     title=f"{args.test_split}: {result.model_dir}", rows=rows, split=args.test_split, model=args.model)
        print(f"test ({args.test_split}): UA {scores['ua']:.4f}  WA {scores['wa']:.4f}  "
              f"macro-F1 {scores['macro_f1']:.4f}")
        saved = read_metrics(result.model_dir)
        saved.splits[args.test_split] = scores
        write_metrics(result.model_dir, saved)
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("finetune", main)
