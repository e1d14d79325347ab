"""Batched prediction on full-length utterances: class probabilities, pooled embeddings, MC-dropout samples.

Utterances are sorted by length and grouped into batches of at most ``batch_seconds`` of *padded* audio,
decoded whole (never truncated), padded with zeros and normalised per utterance by the feature extractor.
The CNN feature encoder runs on each clip alone (a group-norm CNN, as in wav2vec2-base, normalises over the
padded length, so padding would change the real frames), the transformer gets the frame mask and the pooling
is a *masked* mean over the real frames: a clip gets the same prediction alone (as in the Space or a
``pipeline``) and in any batch. Training uses the same ``pooled_forward`` (or ``pooled_from_frames`` on cached
CNN outputs when the CNN is frozen).

Speed: everything runs under ``torch.inference_mode``; on CUDA the forward runs under bf16 autocast (CPU
stays float32); audio is decoded batch by batch from the paths (the pool is never held in memory) and
freed heap memory is handed back after each batch, so resident memory does not grow with the pool. When
launched with several processes (``accelerate launch --num_processes N``), each process scores its share
of the length batches and the results are gathered, so every process returns the whole pool's arrays.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import SAMPLING_RATE
from .data.audio import duration_seconds, load_audio
from .data.batching import length_batches, pad_frames
from .data.normalise import population_mean, speaker_means
from .losses import cross_entropy


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (when the card supports it); a no-op context on CPU and elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


_LIBC = None


def release_memory() -> bool:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``); a no-op returning False elsewhere.

    Batches of varying shapes free large buffers that glibc's adaptive mmap threshold then keeps on the
    heap: without a trim the resident memory of a long scoring pass grows with the pool (~25 MiB per
    batch measured on 2 cores), with it the RSS stays flat. Called once per batch; it costs < 1 ms.
    """
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if not _LIBC:
        return False
    _LIBC.malloc_trim(0)
    return True


def process_group():
    """accelerate's ``PartialState`` when this process was launched as one of several, else None.

    Single-process runs never touch accelerate (and behave exactly as before); ``WORLD_SIZE`` is set by
    ``accelerate launch`` / ``torchrun`` for multi-process runs.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # CPU-only machines: gloo, one process per core
    return state if state.num_processes > 1 else None


def process_device(choice: str = "auto") -> torch.device:
    """``choice`` as a device; ``auto``: this process's under accelerate (one device each), else the GPU when there
    is one, else the CPU."""
    if choice != "auto":
        return torch.device(choice)
    group = process_group()
    if group is not None:
        return group.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft ``PeftModel`` (its LoRA layers stay in place and active)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def base_encoder(model: torch.nn.Module) -> torch.nn.Module:
    """The bare encoder (``Wav2Vec2Model`` / ``HubertModel`` / ``WavLMModel``) of a classifier, or the model itself."""
    net = unwrap(model)
    return getattr(net, net.base_model_prefix, net)


def cnn_frames(model: torch.nn.Module, input_values: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """The CNN feature encoder's output ``[T_i, C]`` of every clip, each computed on the clip alone.

    One clip at a time because group-norm CNNs (wav2vec2-base, our named configs) normalise over the whole input
    length: zero padding would change every real frame, so a clip scored in a batch would differ from the same
    clip scored alone (as the Space or a ``pipeline`` does). Clips of the same length (training crops) share a call."""
    encoder = base_encoder(model)
    lengths = [int(n) for n in attention_mask.sum(1).tolist()]
    out: list[torch.Tensor | None] = [None] * len(lengths)
    for n in sorted(set(lengths)):  # clips of equal length share one call (no padding among them)
        rows = [i for i, length in enumerate(lengths) if length == n]
        frames = encoder.feature_extractor(input_values[rows, :n]).transpose(1, 2)
        for j, i in enumerate(rows):
            out[i] = frames[j]
    return out


def encode_frames(model: torch.nn.Module, frames: torch.Tensor, frame_mask: torch.Tensor,
                  output_hidden_states: bool = False) -> tuple[torch.Tensor, tuple | None]:
    """The encoder after its CNN: feature projection, SpecAugment (training mode only), the transformer with the
    frame mask, so padded frames are never attended to. Same maths as the model's own forward on one clip.

    Returns ``(last_hidden_state, hidden_states)``; ``hidden_states`` (with ``output_hidden_states``) are the
    model's own: the input of the first transformer layer, every layer's output, the last one after the
    encoder's final layer norm (stable-layer-norm models), i.e. ``L + 1`` tensors.
    """
    encoder = base_encoder(model)
    span = int(getattr(encoder.config, "mask_time_length", 0) or 0)
    if encoder.training and getattr(encoder.config, "mask_time_prob", 0) > 0 and frames.shape[1] <= span:
        # SpecAugment's time masks need more frames than one span: pad short batches (padding is masked out)
        extra = span + 1 - frames.shape[1]
        frames = torch.nn.functional.pad(frames, (0, 0, 0, extra))
        frame_mask = torch.nn.functional.pad(frame_mask, (0, extra))
    hidden = encoder.feature_projection(frames)
    hidden = hidden[0] if isinstance(hidden, tuple) else hidden  # wav2vec2 also returns the normed CNN features
    mask = frame_mask.bool()
    hidden = encoder._mask_hidden_states(hidden, attention_mask=mask)
    layers = encoder.encoder.layers
    seen: list[torch.Tensor] = []
    hooks = []
    if output_hidden_states:  # transformers v5 records hidden states with hooks on the top-level forward only
        hooks.append(layers[0].register_forward_pre_hook(lambda _m, args, kwargs=None: seen.append(args[0]),
                                                         with_kwargs=False))
        hooks += [layer.register_forward_hook(
            lambda _m, _i, out: seen.append(out[0] if isinstance(out, tuple) else out)) for layer in layers]
    try:
        last = encoder.encoder(hidden, attention_mask=mask).last_hidden_state
    finally:
        for hook in hooks:
            hook.remove()
    states = (*seen[: len(layers)], last) if output_hidden_states else None
    return last, states


def pooled_from_frames(model: torch.nn.Module, frames: torch.Tensor,
                       frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, pooled)`` of a classifier from CNN outputs (computed live, or cached for a frozen CNN)."""
    net = unwrap(model)
    if not (hasattr(net, "projector") and hasattr(net, "classifier")):
        raise TypeError(
            f"{type(net).__name__} has no projector/classifier head; use a *ForSequenceClassification audio model "
            "(wav2vec2, HuBERT, WavLM, XLS-R, data2vec-audio)."
        )
    weighted = bool(getattr(net.config, "use_weighted_layer_sum", False))
    last, states = encode_frames(model, frames, frame_mask, output_hidden_states=weighted)
    if weighted:
        stacked = torch.stack(states, dim=1)
        hidden = (stacked * torch.softmax(net.layer_weights, dim=-1).view(1, -1, 1, 1)).sum(dim=1)
    else:
        hidden = last
    hidden = net.projector(hidden)
    mask = frame_mask.to(hidden.dtype)
    pooled = (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    return net.classifier(pooled), pooled


def pooled_forward(
    model: torch.nn.Module, input_values: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [B, C], pooled [B, P])`` of an audio classifier with a ``projector`` + ``classifier`` head
    (Wav2Vec2 / HuBERT / WavLM / Data2VecAudio ``...ForSequenceClassification``), LoRA-wrapped or not.

    ``attention_mask`` [B, samples] marks the real samples. The CNN runs on each clip alone, the transformer sees
    the frame mask and the pooling is a masked mean of the projector output (exactly what the linear classifier
    sees): a clip gets the same prediction alone and in any batch.
    """
    frames, frame_mask = pad_frames(cnn_frames(model, input_values, attention_mask))
    return pooled_from_frames(model, frames, frame_mask)


SPEAKER_NORM_KEY = "after_hf_speaker_norm"  # config entry of a speaker-normalised classifier: the population mean


def speaker_statistics(pooled: torch.Tensor, speakers: Sequence[str],
                       target: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
    """(speaker -> mean pooled vector, the population mean = the mean of the speaker means). A speaker with fewer
    than ``data.normalise.MIN_SPEAKER_CLIPS`` clips gets ``target``, the mean its clips are moved onto (default: this
    population's, as in training; a saved model's stored mean at inference), so that its clips pass unchanged."""
    rows = pooled.float().cpu().numpy()
    found = speaker_means(rows, speakers)
    stats = {s: torch.from_numpy(m).float() for s, m in found.items()}
    population = torch.from_numpy(population_mean(rows, speakers, found)).float()
    for speaker in np.unique(np.asarray(speakers)):
        stats.setdefault(str(speaker), population if target is None else target.float())
    return stats, population


def to_population(pooled: torch.Tensor, mean: torch.Tensor, global_mean: torch.Tensor) -> torch.Tensor:
    """Speaker normalisation: centre on the speaker's own mean, then move onto the population's, so the classifier
    works in the usual pooled space (a single clip of an unknown speaker passes unchanged)."""
    return pooled - mean + global_mean


def speaker_norm_of(model: torch.nn.Module) -> torch.Tensor | None:
    """The population mean of a speaker-normalised classifier (stored in its config), else None."""
    entry = getattr(unwrap(model).config, SPEAKER_NORM_KEY, None)
    if not entry:
        return None
    return torch.tensor(entry["mean"])


def set_speaker_norm(model: torch.nn.Module, global_mean: torch.Tensor) -> None:
    setattr(unwrap(model).config, SPEAKER_NORM_KEY, {"mean": torch.as_tensor(global_mean).float().cpu().tolist()})


class PooledClassifier(torch.nn.Module):
    """What fine-tuning trains: the pooled forward (from audio, or from cached CNN frames) + (class-weighted)
    cross-entropy to the labels or to soft targets (the raters' vote distributions) in one forward, so DDP wraps
    one module and padding never enters the utterance vector.

    With speaker statistics set (``set_speakers``), each pooled vector is mapped onto the population with its
    speaker's statistics (``to_population``) before the classifier; the statistics are constants (refreshed by
    the trainer each epoch from the model of that time)."""

    def __init__(self, model: torch.nn.Module, weights: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.register_buffer("class_weights", weights, persistent=False)
        self.speaker_stats: tuple | None = None  # (speaker means [S, P], population mean [P])

    def set_speakers(self, stats: dict, order: Sequence[str], global_mean: torch.Tensor):
        self.speaker_stats = (torch.stack([stats[s] for s in order]), global_mean)
        set_speaker_norm(self.model, global_mean)

    def forward(self, input_values=None, attention_mask=None, labels=None, *, frames=None, frame_mask=None,
                speaker_index=None):
        if frames is not None:
            logits, pooled = pooled_from_frames(self.model, frames, frame_mask)
        else:
            logits, pooled = pooled_forward(self.model, input_values, attention_mask)
        if self.speaker_stats is not None and speaker_index is not None:
            means, g_mean = (t.to(pooled.device) for t in self.speaker_stats)
            logits = unwrap(self.model).classifier(to_population(pooled, means[speaker_index], g_mean))
        # labels: class indices [B], or soft targets [B, C] (vote distributions; clips weighted: after_hf.losses)
        loss = None if labels is None else cross_entropy(logits, labels, self.class_weights)
        return {"loss": loss, "logits": logits}


def _sources(items) -> tuple[list, list[float]]:
    """(paths or waveforms, durations) from a manifest Dataset, a list of paths, or a list of 16 kHz arrays."""
    if hasattr(items, "column_names"):  # datasets.Dataset
        paths = list(items["path"])
        if "duration" in items.column_names:
            durations = list(items["duration"])
        else:
            durations = [duration_seconds(p) for p in paths]
        return paths, [float(d) for d in durations]
    items = list(items)
    if all(isinstance(x, (str, Path)) for x in items):
        return [str(x) for x in items], [duration_seconds(x) for x in items]
    waves = [np.asarray(x, dtype=np.float32).reshape(-1) for x in items]
    return waves, [w.size / SAMPLING_RATE for w in waves]


@contextlib.contextmanager
def _mc_dropout(model: torch.nn.Module):
    """Eval mode except the ``nn.Dropout`` layers (SpecAugment and LayerDrop stay off); restores the modes."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.train()
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.train(mode)


def _batch_pooled(model, feature_extractor, sources, frames, batch, device) -> torch.Tensor:
    """Pooled vectors of one batch: from cached CNN frames when given, else from the audio."""
    if frames is not None:
        x, mask = pad_frames([torch.as_tensor(np.asarray(frames[i], dtype=np.float32)).to(device) for i in batch])
        return pooled_from_frames(model, x, mask)[1]
    waves = [load_audio(sources[i]) if isinstance(sources[i], str) else sources[i] for i in batch]
    inputs = feature_extractor(waves, sampling_rate=SAMPLING_RATE, padding=True, return_attention_mask=True,
                               return_tensors="pt")
    return pooled_forward(model, inputs["input_values"].to(device), inputs["attention_mask"].to(device))[1]


def _classify(model, pooled: torch.Tensor, speakers, norm) -> torch.Tensor:
    """Logits from pooled vectors; a speaker-normalised classifier maps each speaker onto the population first."""
    net = unwrap(model)
    if norm is not None and speakers is not None:
        stats, _ = speaker_statistics(pooled, speakers, target=norm)  # a speaker with too few clips: unchanged
        pooled = to_population(pooled.float(), torch.stack([stats[str(s)] for s in speakers]), norm)
    with torch.inference_mode():
        return net.classifier(pooled.to(next(net.classifier.parameters()).dtype)).float()


def classify_pooled(model: torch.nn.Module, pooled: np.ndarray, speakers: Sequence[str] | None = None) -> np.ndarray:
    """Class probabilities [N, C] from ``predict(..., return_embeddings=True)``'s ``embeddings``, with or without
    speakers (a speaker-normalised model: ``None`` scores each clip alone), without running the encoder again."""
    return _softmax(_classify(model, torch.from_numpy(np.asarray(pooled)), speakers, speaker_norm_of(model)).numpy())


def predict(
    model: torch.nn.Module,
    feature_extractor,
    ds_or_paths,
    batch_seconds: float = 160.0,
    return_embeddings: bool = False,
    mc_dropout_passes: int = 0,
    seed: int = 0,
    progress: bool = True,
    frames: Sequence[np.ndarray] | None = None,
    speakers: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Predict every utterance of ``ds_or_paths`` (a manifest Dataset, audio paths, or 16 kHz float arrays).

    Returns arrays ordered like the input: ``logits`` and ``probs`` [N, C]; with ``return_embeddings``,
    ``embeddings`` [N, P] (masked-mean-pooled projector output); with ``mc_dropout_passes=T > 0``,
    ``mc_probs`` [T, N, C] from T passes with dropout active (seeded by ``seed``). ``frames``: the clips' cached
    CNN outputs (a frozen CNN), used instead of the audio. ``speakers``: the speaker of each clip; a
    speaker-normalised classifier (fine-tuned with ``speaker_norm``) then normalises each speaker's pooled
    vectors over that speaker's clips in the input (without ``speakers`` every clip is taken as it is, like a
    single clip of an unknown speaker).
    """
    sources, durations = _sources(ds_or_paths)
    n = len(sources)
    if speakers is None and hasattr(ds_or_paths, "column_names") and "speaker" in ds_or_paths.column_names:
        speakers = list(ds_or_paths["speaker"])
    norm = speaker_norm_of(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = {"embeddings": None, "mc_pooled": None}
    batches = length_batches(durations, batch_seconds)
    group = process_group()
    if group is not None:  # this process's share of the batches (contiguous, about equal padded seconds each)
        with group.split_between_processes(batches) as mine:
            batches = list(mine)
        seed = seed + 1_000_003 * group.process_index  # distinct MC-dropout streams per process
    show = progress and n > 0 and (group is None or group.is_main_process)
    bar = tqdm(total=sum(len(b) for b in batches), desc="predict", unit="utt", disable=not show)
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.inference_mode(), torch.random.fork_rng(devices=rng_devices), autocast_for(device):
            torch.manual_seed(seed)
            for batch in batches:
                pooled = _batch_pooled(model, feature_extractor, sources, frames, batch, device)
                _store(out, "embeddings", batch, pooled.float().cpu().numpy(), n)
                if mc_dropout_passes > 0:
                    with _mc_dropout(model):
                        samples = [_batch_pooled(model, feature_extractor, sources, frames, batch, device).float()
                                   for _ in range(mc_dropout_passes)]
                    _store(out, "mc_pooled", batch, torch.stack(samples).cpu().numpy(), n, axis=1)
                release_memory()
                bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    if group is not None:
        out = _gather(out, batches, n)
    if n == 0:
        raise ValueError("predict: nothing to predict (empty input).")
    logits = _classify(model, torch.from_numpy(out["embeddings"]), speakers, norm).numpy()
    result = {"logits": logits, "probs": _softmax(logits)}
    if return_embeddings:
        result["embeddings"] = out["embeddings"]
    if mc_dropout_passes > 0:
        result["mc_probs"] = np.stack([_softmax(_classify(model, torch.from_numpy(p), speakers, norm).numpy())
                                       for p in out["mc_pooled"]])
    return result


def _gather(out: dict, batches: list[np.ndarray], n: int) -> dict:
    """Every process's rows, assembled on every process (``accelerate.utils.gather_object``)."""
    from accelerate.utils import gather_object

    rows = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    mine = {key: None if value is None else (value[:, rows] if key == "mc_pooled" else value[rows])
            for key, value in out.items()}
    merged = {key: None for key in out}
    for their_rows, theirs in gather_object([(rows, mine)]):
        for key, value in theirs.items():
            if value is not None and len(their_rows):
                _store(merged, key, their_rows, value, n, axis=1 if key == "mc_pooled" else 0)
    return merged


def _store(out: dict, key: str, rows: np.ndarray, values: np.ndarray, n: int, axis: int = 0) -> None:
    if out[key] is None:
        shape = list(values.shape)
        shape[axis] = n
        out[key] = np.zeros(shape, dtype=np.float32)
    if axis == 0:
        out[key][rows] = values
    else:
        out[key][:, rows] = values


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)
