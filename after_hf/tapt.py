"""TAPT: continue wav2vec 2.0's self-supervised pre-training on the task's own audio (AFTER, stage 1).

    after-hf tapt --config recipes/demo/tapt.yaml --manifest runs/demo/manifest --output_dir runs/demo/tapt
    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml -m after_hf.tapt --config ...

The objective is wav2vec 2.0's: spans of the CNN features are masked (``_compute_mask_indices``), the
transformer must pick the quantised target of each masked frame among ``num_negatives`` distractors
drawn from the same utterance (``_sample_negative_indices``), plus a diversity loss on the codebook.
The model's loss is a *sum* over masked frames, so gradients are divided by the number of masked
frames of the whole optimiser step (all micro-batches, all processes).

Determinism: every random draw of a batch (mask spans, negatives, dropout, Gumbel noise) is seeded by
``(seed, global batch number)`` and crops come from the seeded sampler, so a run resumed from a
checkpoint repeats exactly what the uninterrupted run did, and a 2-process run computes the same
gradients as a 1-process run with 2 accumulation steps.

Output (``output_dir``): ``config.json``, ``model.safetensors`` (Wav2Vec2ForPreTraining, loads into
Wav2Vec2ForSequenceClassification), ``preprocessor_config.json``, ``tapt_args.json``, ``log.jsonl``
(one line per step), ``skipped.json`` (utterances too short to mask), ``checkpoints/step-NNNNNNN``.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import math
import os
import shutil
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from . import SAMPLING_RATE
from .config import ConfigError, parse_args, to_dict
from .data.manifest import load_manifest
from .io import OutputDirError, atomic_write_json, atomic_write_text, check_output_dir, read_json, replace_dir
from .models import (feature_extractor_for, load_config, load_pretraining_model, min_samples_for_masking,
                     uses_attention_mask)

if TYPE_CHECKING:  # torch (and the batching that needs it) are imported by the run: `--help` stays light
    import torch

    from .data.batching import DynamicBatchSampler

logger = logging.getLogger("after_hf.tapt")

CHECKPOINT_PREFIX = "step-"
TRAINER_STATE = "trainer_state.json"
LOG_FILE = "log.jsonl"


@dataclass
class TaptArguments:
    manifest: str = field(
        metadata={"help": "Manifest directory (from `after-hf prepare`) whose audio is pre-trained on."})
    output_dir: str = field(metadata={"help": "Where the TAPT model, log.jsonl and checkpoints/ are written."})
    model_name_or_path: str = field(
        default="small",
        metadata={"help": "Starting point: a Hub id (facebook/wav2vec2-base), a save_pretrained directory, "
                  "or a named config (tiny, small) initialised at random."},
    )
    config_overrides: str = field(
        default="",
        metadata={"help": "Comma-separated key=value changes to the model config, e.g. "
                  "'layerdrop=0.0,feat_extract_norm=layer,do_stable_layer_norm=true'."},
    )
    split: str = field(
        default="train", metadata={"help": "Manifest split whose audio is used (only training audio: no test leak)."})
    # --- schedule ---
    max_steps: int = field(
        default=1000, metadata={"help": "Optimiser steps (AFTER: 20000). Ignored when num_train_epochs > 0."})
    num_train_epochs: float = field(
        default=0.0, metadata={"help": "If > 0, train this many passes over the split instead of max_steps."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate (AFTER: 1e-4 with Adam)."})
    warmup_steps: int = field(
        default=100, metadata={"help": "Linear warm-up steps, then linear decay to 0 at the last step."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (AFTER: 0, plain Adam)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2 (wav2vec 2.0: 0.98)."})
    adam_epsilon: float = field(default=1e-6, metadata={"help": "AdamW epsilon (wav2vec 2.0: 1e-6)."})
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "Clip the gradient norm to this (<= 0: no clipping, norm still logged)."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimiser step (per process)."})
    # --- batches ---
    batch_seconds: float = field(
        default=250.0, metadata={"help": "Padded audio seconds per micro-batch per process (AFTER: ~250)."})
    max_seconds: float = field(
        default=10.0, metadata={"help": "Longer utterances are randomly cropped to this many seconds (AFTER: 10)."})
    min_seconds: float = field(
        default=0.0,
        metadata={"help": "Skip (and list in skipped.json) shorter utterances; raised automatically to what masking "
                          "needs."},
    )
    length_jitter: float = field(
        default=0.1,
        metadata={"help": "Random +-log-factor on lengths before bucketing, so batches change between epochs."},
    )
    dataloader_num_workers: int = field(
        default=0, metadata={"help": "Audio-decoding worker processes (0 = in the training process)."})
    # --- objective ---
    mask_time_prob: float = field(
        default=0.05,
        metadata={"help": "Share of frames that start a masked span (AFTER: 0.05; transformers' pre-training "
                          "example: 0.65)."},
    )
    mask_time_length: int = field(default=10, metadata={"help": "Masked span length in frames (20 ms each)."})
    mask_time_min_masks: int = field(
        default=2,
        metadata={"help": "At least this many spans per utterance (fairseq: 2), so short clips still train."},
    )
    num_negatives: int = field(
        default=0, metadata={"help": "Distractors per masked frame (0 = the model config's, 100 for wav2vec2-base)."})
    diversity_loss_weight: float = field(
        default=0.1, metadata={"help": "Weight of the codebook diversity loss (AFTER / wav2vec 2.0: 0.1)."})
    max_gumbel_temperature: float = field(default=2.0, metadata={"help": "Gumbel-softmax temperature at step 0."})
    min_gumbel_temperature: float = field(default=0.5, metadata={"help": "Floor of the annealed Gumbel temperature."})
    gumbel_temperature_decay: float = field(default=0.999995, metadata={"help": "Temperature multiplier per step."})
    freeze_feature_encoder: bool = field(
        default=False, metadata={"help": "Freeze the CNN feature encoder (AFTER: everything trains)."})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Trade compute for memory in the transformer (large models on small GPUs)."})
    # --- hardware ---
    mixed_precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 on a GPU that has it, else none; an accelerate config wins), no, bf16 or fp16."},
    )
    use_cpu: bool = field(
        default=False, metadata={"help": "Train on CPU even if a GPU is present (multi-process CPU uses gloo)."})
    seed: int = field(
        default=42, metadata={"help": "Seed for initialisation, batches, crops, masks, negatives and dropout."})
    # --- checkpoints and monitoring ---
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps (and always at the end)."})
    save_total_limit: int = field(default=2, metadata={"help": "Keep only the last K checkpoints."})
    resume: bool = field(
        default=False,
        metadata={"help": "Continue from the last complete checkpoint in output_dir (same step, LR, data position)."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Delete an earlier run's checkpoints/model in output_dir and start over."})
    report_to: str = field(
        default="none",
        metadata={"help": "'tensorboard' (needs `pip install tensorboard`) or 'none'; log.jsonl is always written."},
    )
    collapse_window: int = field(
        default=20, metadata={"help": "Steps averaged by the collapse detector before it warns."})


# ----------------------------------------------------------------------------------------------
# objective helpers
# ----------------------------------------------------------------------------------------------
def batch_seed(seed: int, number: int) -> int:
    """A 32-bit seed that depends only on the run seed and the global batch number."""
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


def gumbel_temperature(step: int, args: TaptArguments) -> float:
    return max(args.max_gumbel_temperature * args.gumbel_temperature_decay**step, args.min_gumbel_temperature)


def make_masks(model, lengths: torch.Tensor, num_samples: int, args: TaptArguments, num_negatives: int):
    """Mask spans and negatives restricted to each utterance's real frames (padding never enters the loss)."""
    import torch
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    seq_len = int(model._get_feat_extract_output_lengths(num_samples))
    frames = model._get_feat_extract_output_lengths(lengths).long().clamp(max=seq_len)
    real = torch.arange(seq_len)[None, :] < frames[:, None]
    mask = _compute_mask_indices(
        (len(lengths), seq_len), args.mask_time_prob, args.mask_time_length, attention_mask=real.long(),
        min_masks=args.mask_time_min_masks,
    )
    mask &= real.numpy()  # the dummy index of an all-padding row can never be a target
    negatives = _sample_negative_indices((len(lengths), seq_len), num_negatives, mask_time_indices=mask)
    return mask, negatives, int(frames.sum())


def contrastive_stats(outputs, mask: torch.Tensor, negatives: torch.Tensor) -> tuple[float, float]:
    """(masked frames whose true target scores above every distractor, sum of chance-level losses).

    The loss of a model that scores all candidates alike is log(1 + distractors that differ from the
    target): distractors equal to the target are excluded by the model, so this level falls when the
    codebook concentrates. The loss alone can thus fall without learning; accuracy cannot.
    """
    import torch

    with torch.no_grad():
        q = outputs.projected_quantized_states.float()
        c = outputs.projected_states.float()[mask]
        target = q[mask]
        distractors = q.reshape(-1, q.shape[-1])[negatives[mask]]  # (masked, K, D)
        same = (distractors == target[:, None]).all(-1)
        positive = torch.cosine_similarity(c, target, dim=-1)
        negative = torch.cosine_similarity(c[:, None], distractors, dim=-1).masked_fill(same, float("-inf"))
        correct = (positive > negative.max(-1).values).sum()
        chance = torch.log1p((~same).sum(-1).float()).sum()
    return float(correct), float(chance)


# ----------------------------------------------------------------------------------------------
# monitoring
# ----------------------------------------------------------------------------------------------
class CollapseDetector:
    """Warns (once per kind) when the recent average shows a collapsing pre-training run.

    * contrastive loss per masked frame -> 0: the task became trivial (e.g. masking switched off);
    * codevector perplexity -> number of groups: every group uses one codevector (codebook collapse);
    * gradient norm -> 0: nothing is learned any more.
    """

    def __init__(self, num_groups: int, window: int = 20, contrastive_floor: float = 0.01,
                 perplexity_margin: float = 0.1, grad_floor: float = 1e-7):
        self.num_groups, self.window = num_groups, window
        self.contrastive_floor, self.perplexity_margin = contrastive_floor, perplexity_margin
        self.grad_floor = grad_floor
        self.history: list[dict] = []
        self.warned: set[str] = set()

    def update(self, record: dict) -> list[str]:
        self.history = (self.history + [record])[-self.window:]
        if len(self.history) < self.window:
            return []
        mean = {k: float(np.nanmean([h[k] for h in self.history]))
                for k in ("contrastive_loss", "codevector_perplexity", "grad_norm")}
        found = []
        if mean["contrastive_loss"] < self.contrastive_floor:
            found.append(("contrastive", f"contrastive loss per masked frame is {mean['contrastive_loss']:.4f} "
                          "(-> 0): the task became trivial; check that masking is on (mask_time_prob > 0, "
                          "apply_spec_augment)."))
        if mean["codevector_perplexity"] < self.num_groups * (1 + self.perplexity_margin):
            found.append(("perplexity", f"codevector perplexity {mean['codevector_perplexity']:.2f} is near the "
                          f"number of groups ({self.num_groups}): the codebook collapsed; raise diversity_loss_weight "
                          "or lower the LR."))
        if mean["grad_norm"] < self.grad_floor:
            found.append(("grad_norm", f"gradient norm {mean['grad_norm']:.2e} (-> 0): nothing is being learned; "
                          "check the LR schedule and frozen parameters."))
        messages = []
        for kind, message in found:
            if kind not in self.warned:
                self.warned.add(kind)
                messages.append(f"collapse warning at step {record['step']}: {message}")
        return messages


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------
def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Complete checkpoints (they have trainer_state.json, written last), oldest first."""
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def save_checkpoint(accelerator, output_dir: Path, step: int, state: dict, keep: int) -> Path:
    """``save_state`` into a temporary directory, then rename it into place (a kill leaves the old ones intact)."""
    root = output_dir / "checkpoints"
    tmp = root / f".tmp-{CHECKPOINT_PREFIX}{step:07d}"
    final = root / f"{CHECKPOINT_PREFIX}{step:07d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / TRAINER_STATE, state)
        replace_dir(tmp, final)
        for old in checkpoint_dirs(output_dir)[:-max(keep, 1)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def has_started(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds (part of) a TAPT run: what ``--resume`` can continue."""
    out = Path(output_dir)
    return any((out / name).exists() for name in ("checkpoints", "model.safetensors", "config.json", LOG_FILE))


def prepare_output_dir(args: TaptArguments, is_main: bool) -> Path | None:
    """Return the checkpoint to resume from (or None); refuse to mix two runs in one directory."""
    out = check_output_dir(args.output_dir, "--output_dir")
    ours = [out / "checkpoints", out / "model.safetensors", out / "config.json", out / LOG_FILE]
    previous = [p for p in ours if p.exists()]
    if args.resume:
        if not previous:
            raise OutputDirError(f"--resume: {out} holds no TAPT run to continue (no checkpoints/, no log.jsonl); "
                                 f"run without --resume to start one, or check --output_dir.")
        found = checkpoint_dirs(out)
        if found:
            return found[-1]
        if is_main:
            logger.warning("--resume: %s has no complete checkpoint; starting from step 0.", out)
    elif previous:
        if not args.overwrite_output_dir:
            raise OutputDirError(
                f"{out} already holds a TAPT run ({previous[0].name}). Pass --resume to continue it, "
                f"--overwrite_output_dir to start over, or choose another --output_dir."
            )
    if is_main:
        for p in previous:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return None


def parse_config_overrides(source: str, text: str) -> dict:
    """'a=1,b=true' -> {'a': 1, 'b': True}, typed like the config's current values; unknown keys fail."""
    if not text.strip():
        return {}
    config = load_config(source)
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise ConfigError(f"config_overrides item '{item}' is not key=value (e.g. 'layerdrop=0.0').")
        key, value = (s.strip() for s in item.split("=", 1))
        if not hasattr(config, key):
            close = difflib.get_close_matches(key, list(config.to_dict()), n=1)
            raise ConfigError(f"config_overrides: '{key}' is not a {type(config).__name__} field."
                             + (f" Did you mean '{close[0]}'?" if close else ""))
        current = getattr(config, key)
        if isinstance(current, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ConfigError(f"config_overrides: '{key}' needs true/false, got '{value}'.")
            out[key] = value.lower() in ("true", "1")
        elif isinstance(current, int):
            out[key] = int(value)
        elif isinstance(current, float):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def resolve_mixed_precision(choice: str, cpu: bool) -> str | None:
    import torch

    if choice not in ("auto", "no", "bf16", "fp16"):
        raise ConfigError(f"mixed_precision must be auto, no, bf16 or fp16, got '{choice}'.")
    if choice != "auto":
        return choice
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None  # set by `accelerate launch` / its config file
    if not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log lines of steps <= ``step`` (a resumed run re-does the later ones); drop a torn last line."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _save_final_model(accelerator, model, feature_extractor, args: TaptArguments, output_dir: Path,
                      extra: dict) -> None:
    """Write the model into a temporary directory, then move its files in; model.safetensors goes last."""
    state_dict = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    tmp = output_dir / ".final.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    unwrapped.save_pretrained(tmp, state_dict=state_dict)
    feature_extractor.save_pretrained(tmp)
    atomic_write_json(tmp / "tapt_args.json", {**to_dict(args), **extra})
    files = sorted(tmp.iterdir(), key=lambda p: p.name.endswith(".safetensors"))
    for f in files:
        os.replace(f, output_dir / f.name)
    tmp.rmdir()


# ----------------------------------------------------------------------------------------------
# one optimiser step
# ----------------------------------------------------------------------------------------------
@dataclass
class StepStats:
    """Sums over one optimiser step's micro-batches (then over processes): what a log.jsonl record is made of."""

    loss: float = 0.0  # model loss (contrastive + weighted diversity), a sum over masked frames
    contrastive_loss: float = 0.0
    diversity_loss: float = 0.0
    perplexity: float = 0.0  # codevector perplexity, summed over micro-batches
    micro_batches: float = 0.0
    real_frames: float = 0.0  # CNN frames of real (unpadded) audio
    audio_samples: float = 0.0  # samples of real audio
    correct: float = 0.0  # masked frames whose true target scores above every distractor
    chance_loss: float = 0.0  # the loss of scoring all candidates alike, summed over masked frames

    def add_batch(self, outputs, real_frames: int, lengths, correct: float, chance: float) -> None:
        self.loss += outputs.loss.item()
        self.contrastive_loss += outputs.contrastive_loss.item()
        self.diversity_loss += outputs.diversity_loss.item()
        self.perplexity += outputs.codevector_perplexity.item()
        self.micro_batches += 1.0
        self.real_frames += real_frames
        self.audio_samples += float(lengths.sum())
        self.correct += correct
        self.chance_loss += chance

    def reduced(self, accelerator) -> "StepStats":
        """The sums over every process."""
        import torch

        local = torch.tensor(dataclasses.astuple(self), dtype=torch.float64, device=accelerator.device)
        return StepStats(*accelerator.reduce(local, reduction="sum").tolist())

    def record(self, step: int, masked: float, **extra) -> dict:
        """The per-step log line: losses per masked frame, accuracy against its chance level, codebook use."""
        return {
            "step": step,
            "loss": self.loss / masked,
            "contrastive_loss": self.contrastive_loss / masked,
            "chance_loss": self.chance_loss / masked,  # what scoring all candidates alike would give
            "contrastive_accuracy": self.correct / masked,  # target above every distractor (chance ~ 1 / (K + 1))
            "diversity_loss": self.diversity_loss / masked,
            "codevector_perplexity": self.perplexity / self.micro_batches,
            "masked_frames_pct": 100.0 * masked / self.real_frames,
            **extra,
        }


@dataclass
class TaptRun:
    """What a TAPT run holds between optimiser steps."""

    args: TaptArguments
    accelerator: Any
    model: Any  # as prepared by accelerate (DDP-wrapped when several processes)
    optimizer: Any
    scheduler: Any
    sampler: DynamicBatchSampler
    max_steps: int
    num_negatives: int
    pass_mask: bool
    spec_augment_was: bool  # the checkpoint's apply_spec_augment, restored in the saved config
    data: Iterator[dict] | None = None

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def batches_per_step(self) -> int:
        return self.args.gradient_accumulation_steps * self.accelerator.num_processes

    def micro_batches(self) -> list[tuple]:
        """This process's micro-batches of one step, with masks and negatives seeded by the global batch number."""
        micro = []
        for _ in range(self.args.gradient_accumulation_steps):
            batch = next(self.data)
            np.random.seed(batch_seed(self.args.seed, batch["batch"]))
            mask, negatives, real_frames = make_masks(self.unwrapped, batch["lengths"], batch["input_values"].shape[1],
                                                      self.args, self.num_negatives)
            micro.append((batch, mask, negatives, real_frames))
        return micro

    def step(self, step: int) -> dict:
        """One optimiser step (``step`` done so far); returns its log record (sums over all processes)."""
        import torch

        accelerator, args, device = self.accelerator, self.args, self.accelerator.device
        micro = self.micro_batches()
        # gradients are divided by the masked frames of the whole step (all micro-batches, all processes);
        # DDP averages over processes, hence the factor num_processes.
        local_masked = sum(int(mask.sum()) for _, mask, _, _ in micro)
        total_masked = accelerator.reduce(torch.tensor(float(local_masked), device=device), reduction="sum")
        scale = accelerator.num_processes / total_masked.clamp(min=1.0)
        temperature = gumbel_temperature(step, args)
        self.unwrapped.set_gumbel_temperature(temperature)
        stats = StepStats()
        for k, (batch, mask, negatives, real_frames) in enumerate(micro):
            torch.manual_seed(batch_seed(args.seed, batch["batch"]))  # dropout and Gumbel noise of this batch
            inputs = {
                "input_values": batch["input_values"].to(device),
                "mask_time_indices": torch.from_numpy(mask).to(device),
                "sampled_negative_indices": torch.from_numpy(negatives).long().to(device),
            }
            if self.pass_mask:
                inputs["attention_mask"] = batch["attention_mask"].to(device)
            with contextlib.nullcontext() if k == len(micro) - 1 else accelerator.no_sync(self.model):
                outputs = self.model(**inputs)
                accelerator.backward(outputs.loss * scale)
            correct, chance = contrastive_stats(outputs, inputs["mask_time_indices"],
                                                inputs["sampled_negative_indices"])
            stats.add_batch(outputs, real_frames, batch["lengths"], correct, chance)
        grad_norm = accelerator.clip_grad_norm_(self.model.parameters(),
                                                args.max_grad_norm if args.max_grad_norm > 0 else float("inf"))
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.sampler.consumed_through(micro[-1][0]["batch"])  # the stream position moves past this step's batches
        stats = stats.reduced(accelerator)
        return stats.record(step + 1, float(total_masked), gumbel_temperature=temperature, lr=lr,
                            grad_norm=float(grad_norm) if grad_norm is not None else float("nan"),
                            audio_seconds=stats.audio_samples / SAMPLING_RATE)


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
def check_args(args: TaptArguments) -> None:
    """Options that cannot work, refused before anything is loaded."""
    if args.gradient_accumulation_steps < 1:
        raise ConfigError("gradient_accumulation_steps must be >= 1.")
    if args.mask_time_length < 2 or args.mask_time_min_masks < 1:
        raise ConfigError("mask_time_length must be >= 2 and mask_time_min_masks >= 1 so every utterance has "
                          "negatives.")
    if not 0 < args.mask_time_prob < 1:
        raise ConfigError(f"mask_time_prob must be in (0, 1), got {args.mask_time_prob} (AFTER 0.05, pre-training "
                          f"example 0.65).")
    if args.report_to not in ("none", "tensorboard"):
        raise ConfigError(f"report_to must be 'none' or 'tensorboard', got '{args.report_to}'.")
    if args.report_to == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError as err:
            raise ConfigError("--report_to tensorboard needs TensorBoard: `pip install tensorboard` (or use "
                              "--report_to none).") from err


def make_accelerator(args: TaptArguments, overrides: dict):
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs

    cpu = args.use_cpu or not torch.cuda.is_available()
    layerdrop = float(overrides.get("layerdrop", getattr(load_config(args.model_name_or_path), "layerdrop", 0.0)))
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=resolve_mixed_precision(args.mixed_precision, cpu),
        step_scheduler_with_optimizer=False,  # one scheduler step per optimiser step, whatever the process count
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=layerdrop > 0)],  # LayerDrop skips layers
        log_with="tensorboard" if args.report_to == "tensorboard" else None,
        project_dir=str(args.output_dir),
    )
    if accelerator.distributed_type == "DEEPSPEED" and args.gradient_accumulation_steps > 1:
        # accelerate's DeepSpeed backward() steps the engine after every micro-batch outside accelerator.accumulate()
        raise ConfigError("under DeepSpeed use --gradient_accumulation_steps 1 (more processes or a larger "
                          "batch_seconds instead).")
    return accelerator


def load_model(args: TaptArguments, overrides: dict):
    """The pre-training model with TAPT's settings (masks applied, diversity-loss weight, optional freezing) and
    the checkpoint's own ``apply_spec_augment``."""
    model = load_pretraining_model(args.model_name_or_path, **overrides)
    spec_augment_was = getattr(model.config, "apply_spec_augment", True)
    model.config.apply_spec_augment = True  # the masks we pass are only applied when this is on
    model.config.diversity_loss_weight = args.diversity_loss_weight
    if args.freeze_feature_encoder:
        model.freeze_feature_encoder()
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, spec_augment_was


def make_sampler(args: TaptArguments, model, ds, accelerator) -> DynamicBatchSampler:
    """Length-bucketed batches of this process; utterances too short for one masked span are listed in skipped.json."""
    from .data.batching import DynamicBatchSampler

    durations, ids, paths = [float(d) for d in ds["duration"]], list(ds["id"]), list(ds["path"])
    min_seconds = max(args.min_seconds, (min_samples_for_masking(model, args.mask_time_length) + 320) / SAMPLING_RATE)
    sampler = DynamicBatchSampler(
        durations, batch_seconds=args.batch_seconds, max_seconds=args.max_seconds, min_seconds=min_seconds,
        shuffle=True, seed=args.seed, num_replicas=accelerator.num_processes, rank=accelerator.process_index,
        length_jitter=args.length_jitter,
    )
    if sampler.skipped:
        reason = f"shorter than {min_seconds:.3f} s (too short for one {args.mask_time_length}-frame masked span)"
        skipped = [{"id": ids[i], "path": paths[i], "duration": durations[i], "reason": reason}
                   for i in sampler.skipped]
        path = Path(args.output_dir) / "skipped.json"
        if accelerator.is_main_process:
            atomic_write_json(path, skipped)
        logger.warning("skipping %d of %d utterances shorter than %.3f s (listed in %s)", len(skipped), len(ds),
                       min_seconds, path)
    return sampler


def resume(run: TaptRun, checkpoint: Path | None) -> int:
    """Load a checkpoint's weights, optimiser, scheduler, RNG and data position; return its step (0: none)."""
    if checkpoint is None:
        return 0
    run.accelerator.load_state(str(checkpoint))
    state = read_json(checkpoint / TRAINER_STATE, what="TAPT checkpoint state")
    if state.get("batches_per_step") != run.batches_per_step:
        logger.warning("resuming with %d batches per step (processes x accumulation) where the checkpoint used %s: "
                       "the run continues but will not repeat the uninterrupted one exactly.",
                       run.batches_per_step, state.get("batches_per_step"))
    run.sampler.load_state_dict(state["sampler"])
    logger.info("resumed from %s at step %d", checkpoint, int(state["step"]))
    return int(state["step"])


def start(args: TaptArguments) -> tuple[TaptRun, Path | None, Any]:
    """Everything before the first step: accelerator, output directory, data, model, optimiser, schedule."""
    import torch
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    check_args(args)
    overrides = parse_config_overrides(args.model_name_or_path, args.config_overrides)
    accelerator = make_accelerator(args, overrides)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.setLevel(logging.INFO if accelerator.is_main_process else logging.WARNING)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # not 4 INFO lines per checkpoint save
    checkpoint = prepare_output_dir(args, accelerator.is_main_process)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        for stray in (Path(args.output_dir) / "checkpoints").glob(".tmp-*"):
            shutil.rmtree(stray)  # a checkpoint that a killed run never finished
    ds = load_manifest(args.manifest, split=args.split)
    set_seed(args.seed)
    model, spec_augment_was = load_model(args, overrides)
    sampler = make_sampler(args, model, ds, accelerator)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon, weight_decay=args.weight_decay,
    )
    max_steps = resolve_max_steps(args, sampler, args.gradient_accumulation_steps * accelerator.num_processes)
    scheduler = get_linear_schedule_with_warmup(optimizer, min(args.warmup_steps, max_steps), max_steps)
    prepared = accelerator.prepare(model, optimizer, scheduler)
    run = TaptRun(args, accelerator, *prepared, sampler=sampler, max_steps=max_steps,
                  num_negatives=args.num_negatives or model.config.num_negatives,
                  pass_mask=uses_attention_mask(model.config), spec_augment_was=spec_augment_was)
    return run, checkpoint, ds


def resolve_max_steps(args: TaptArguments, sampler: DynamicBatchSampler, batches_per_step: int) -> int:
    epoch_batches = len(sampler.epoch_batches(0))
    max_steps = args.max_steps
    if args.num_train_epochs > 0:
        max_steps = math.ceil(args.num_train_epochs * epoch_batches / batches_per_step)
    if max_steps < 1:
        raise ConfigError("max_steps (or num_train_epochs) must give at least one step.")
    return max_steps


def run_tapt(args: TaptArguments) -> Path:
    """Continue pre-training ``args.model_name_or_path`` on the manifest's audio; return ``args.output_dir``."""
    import torch
    from tqdm.auto import tqdm

    from .data.batching import AudioCollator, AudioWindowDataset

    run, checkpoint, ds = start(args)
    accelerator, sampler, output_dir = run.accelerator, run.sampler, Path(args.output_dir)
    max_steps = run.max_steps
    step = resume(run, checkpoint)
    if accelerator.is_main_process:
        _truncate_log(output_dir / LOG_FILE, step)
    if args.report_to == "tensorboard":
        scalars = {k: v for k, v in to_dict(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers("tapt", config=scalars)
    feature_extractor = feature_extractor_for(run.unwrapped.config)
    loader = torch.utils.data.DataLoader(
        AudioWindowDataset(list(ds["path"])),
        batch_sampler=sampler.iter_replica(sampler.consumed),
        collate_fn=AudioCollator(feature_extractor, pass_attention_mask=run.pass_mask),
        num_workers=args.dataloader_num_workers,
    )
    run.data = iter(loader)
    detector = CollapseDetector(run.unwrapped.config.num_codevector_groups, window=args.collapse_window)
    logger.info(
        "TAPT %s on %d utterances (%.0f s of audio) of %s[%s]: %d steps x %d batches of <= %.0f padded s, "
        "%d process(es), mask %.2f/%d, %s", args.model_name_or_path, len(sampler.kept),
        float(np.sum(sampler.durations[sampler.kept])), args.manifest, args.split, max_steps, run.batches_per_step,
        args.batch_seconds, accelerator.num_processes, args.mask_time_prob, args.mask_time_length,
        "attention mask" if run.pass_mask else "zero padding, no attention mask",
    )
    progress = tqdm(total=max_steps, initial=step, desc="tapt", disable=not accelerator.is_local_main_process)
    log_file = open(output_dir / LOG_FILE, "a", encoding="utf-8") if accelerator.is_main_process else None
    started = time.perf_counter()
    run.model.train()
    while step < max_steps:
        record = run.step(step)
        step = record["step"]
        record["elapsed_s"] = time.perf_counter() - started
        for message in detector.update(record):
            logger.warning(message)
            record.setdefault("warnings", []).append(message)
        if log_file is not None:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
        if args.report_to == "tensorboard":
            accelerator.log({k: v for k, v in record.items() if isinstance(v, float)}, step=step)
        progress.update(1)
        progress.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['contrastive_accuracy']:.2f}",
                             ppl=f"{record['codevector_perplexity']:.1f}", lr=f"{record['lr']:.1e}")
        if step % args.save_steps == 0 or step == max_steps:
            state = {"step": step, "max_steps": max_steps, "sampler": sampler.state_dict(), "seed": args.seed,
                     "batches_per_step": run.batches_per_step, "num_processes": accelerator.num_processes}
            save_checkpoint(accelerator, output_dir, step, state, args.save_total_limit)
    progress.close()
    if log_file is not None:
        log_file.close()
    finish(run, feature_extractor, step)
    return output_dir


def finish(run: TaptRun, feature_extractor, step: int) -> None:
    """Save the model (``apply_spec_augment`` as the starting checkpoint had it) and close the trackers."""
    accelerator, args = run.accelerator, run.args
    config = run.unwrapped.config
    config.apply_spec_augment = run.spec_augment_was
    accelerator.wait_for_everyone()
    _save_final_model(accelerator, run.model, feature_extractor, args, Path(args.output_dir),
                      {"max_steps_resolved": run.max_steps, "num_processes": accelerator.num_processes,
                       "skipped_utterances": len(run.sampler.skipped)})
    accelerator.wait_for_everyone()
    if args.report_to == "tensorboard":
        accelerator.end_training()
    logger.info("TAPT model saved to %s (step %d)", args.output_dir, step)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args(
        [TaptArguments], argv, prog="after-hf tapt",
        description="Task-adaptive continued pre-training of wav2vec 2.0 (contrastive + diversity loss) on a "
                    "manifest's audio.",
        section="tapt",
    )
    run_tapt(args)
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("tapt", main)
