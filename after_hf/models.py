"""Where backbones come from: a named small config (offline demo/tests), a local directory, or a Hub id.

Real recipes name ``facebook/wav2vec2-base`` (or large / XLS-R / HuBERT / WavLM). Offline, the named
configs below are built from ``Wav2Vec2Config`` and pre-trained by our own TAPT.
"""

from __future__ import annotations

import logging
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from . import SAMPLING_RATE
from .errors import AfterHFError, brief

if TYPE_CHECKING:  # transformers is imported by the functions that load a model: `--help` stays light
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining

logger = logging.getLogger("after_hf.models")

_CONV = dict(conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))  # 20 ms frames, as wav2vec2
NAMED_CONFIGS: dict[str, dict] = {
    # ~0.1 M parameters: unit tests (seconds per step on 2 cores).
    "tiny": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        num_codevector_groups=2, num_codevectors_per_group=16, codevector_dim=32, proj_codevector_dim=32,
        classifier_proj_size=32, **_CONV,
    ),
    # ~0.7 M parameters: the offline demo (hidden 128, 4 layers; learns the generated corpus on CPU).
    "small": dict(
        hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
        conv_dim=(64,) * 7, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=8,
        num_codevector_groups=2, num_codevectors_per_group=64, codevector_dim=64, proj_codevector_dim=64,
        classifier_proj_size=64, **_CONV,
    ),
}
# Shared by the named configs: wav2vec2-base's group-norm feature encoder (so no attention mask),
# no LayerDrop (it leaves unused parameters under DDP), fine-tuning masks as in AFTER.
_NAMED_COMMON = dict(
    feat_extract_norm="group", do_stable_layer_norm=False, layerdrop=0.0,
    mask_time_prob=0.05, mask_time_length=10, num_negatives=20, diversity_loss_weight=0.1,
    hidden_dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, feat_proj_dropout=0.0,
    final_dropout=0.1,
)


class ModelError(AfterHFError, OSError):
    """A model directory that cannot (or must not) be loaded; the message says what is missing and what to do."""


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def is_named(source: str) -> bool:
    return source in NAMED_CONFIGS


def untrained_note(source: str, option: str) -> str | None:
    """One line for a CLI whose backbone ``source`` is a named config (random weights), else None: `al` and
    `finetune` default to one (`small`), fine for a smoke test but not for results."""
    if not is_named(source):
        return None
    return (f"note: {option} {source} is a randomly initialised wav2vec2 (no pre-training): fine for a smoke test; "
            f"for results pass a pre-trained model (facebook/wav2vec2-base, or your `after-hf tapt` output).")


def check_weights(source: str) -> None:
    """A local model directory must hold safetensors weights: pickled ``*.bin`` / ``*.pt`` files are refused
    (unpickling can run arbitrary code), and a directory without weights is named as such. Hub ids pass
    (``from_pretrained(..., use_safetensors=True)`` enforces the same there)."""
    path = Path(source)
    if is_named(source) or not path.is_dir() or any((path / name).is_file() for name in WEIGHT_FILES):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelError(
            f"{path} holds its weights only as {pickles} (pickle files, which can run code when loaded); after-hf "
            f"loads safetensors only. Re-export the model with save_pretrained (it writes model.safetensors), or, "
            f"only if you trust the file, convert it once: load it with the class that wrote it and "
            f"from_pretrained('{path}', use_safetensors=False), then .save_pretrained('{path}')."
        )
    present = sorted(p.name for p in path.iterdir())
    raise ModelError(
        f"{path} has no model weights: model.safetensors is missing (the directory holds {present}). Pass the "
        f"directory a finished run wrote (`after-hf finetune`: OUTPUT_DIR/model; `after-hf tapt`: its output dir); "
        f"a run stopped before saving has none, so run it again (tapt continues with --resume)."
    )


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")  # NAME or USER/NAME
_KINDS = "a directory written by `save_pretrained` (a TAPT output, RUN/model), a Hub id such as facebook/wav2vec2-base"


def check_source(source: str) -> None:
    """Refuse, with what to pass instead, a model source that is neither a named config, a model directory
    nor a possible Hub id: a missing local path would otherwise reach the Hub client as a malformed repo id."""
    if is_named(source):
        return
    path = Path(source).expanduser()
    if path.is_file():
        raise ModelError(f"{source} is a file, not a model: pass {_KINDS}, or a named config {sorted(NAMED_CONFIGS)}.")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{source} has no config.json: pass {_KINDS}, or one of the named configs "
                             f"{sorted(NAMED_CONFIGS)}.")
        return
    if not HUB_ID.match(source):
        raise ModelError(f"{source}: no such directory, and not a Hub id (USER/NAME): pass {_KINDS}, or a named "
                         f"config {sorted(NAMED_CONFIGS)}.")


QUIET_BARS = ("Loading weights", "Writing model shards")  # transformers' bars per model load / save: noise in a run
# that loads and saves dozens of models (an experiment); the Trainer's bar and Hub downloads keep theirs


def _weight_bars_off(factory, args, kwargs):
    return factory(*args, **({**kwargs, "disable": True} if kwargs.get("desc") in QUIET_BARS else kwargs))


def quiet_weight_bars() -> None:
    """transformers' "Loading weights" / "Writing model shards" progress bars off (a tqdm hook: every other
    transformers bar unchanged). Called by ``load_config``, so by every model this package builds or loads."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.set_tqdm_hook(_weight_bars_off)
    if previous not in (None, _weight_bars_off):  # someone else's hook: theirs stays
        hf_logging.set_tqdm_hook(previous)


def load_config(source: str, **overrides) -> Wav2Vec2Config:
    """Config for a named small model, a local directory or a Hub id (never remote code)."""
    from transformers import AutoConfig, Wav2Vec2Config

    quiet_weight_bars()
    if is_named(source):
        return Wav2Vec2Config(**{**_NAMED_COMMON, **NAMED_CONFIGS[source], **overrides})
    check_source(source)
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=False, **overrides)
    except OSError as err:  # not a local directory: a Hub id that is unknown, or not cached while offline
        raise ModelError(f"{source}: no such directory, and it could not be loaded as a Hub id "
                         f"({brief(err)}). Pass {_KINDS} (online, or cached for HF_HUB_OFFLINE=1), or a "
                         f"named config {sorted(NAMED_CONFIGS)}.") from err


def uses_attention_mask(config) -> bool:
    """Layer-norm feature encoders (large, XLS-R) take an attention mask; group-norm ones (base) must not."""
    return getattr(config, "feat_extract_norm", "layer") == "layer"


def min_samples_for_masking(model, mask_length: int) -> int:
    """Fewest audio samples whose CNN output has more frames than one masked span of ``mask_length`` frames.

    The one mask-span rule (``_compute_mask_indices`` needs more frames than the span): TAPT leaves shorter
    utterances out, fine-tuning pads shorter batches up to it so SpecAugment's time masks fit.
    """
    net = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft-wrapped classifier
    lo, hi = 1, SAMPLING_RATE * 60
    while lo < hi:
        mid = (lo + hi) // 2
        if int(net._get_feat_extract_output_lengths(mid)) > mask_length:
            hi = mid
        else:
            lo = mid + 1
    return lo


def feature_extractor_for(config) -> Wav2Vec2FeatureExtractor:
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLING_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=uses_attention_mask(config),
    )


def load_feature_extractor(source: str, config=None) -> Wav2Vec2FeatureExtractor:
    """The saved feature extractor of a directory / Hub id, else one matching the config."""
    from transformers import Wav2Vec2FeatureExtractor

    if not is_named(source):
        try:
            return Wav2Vec2FeatureExtractor.from_pretrained(source)
        except (OSError, ValueError):
            pass
    return feature_extractor_for(config or load_config(source))


def load_pretraining_model(source: str, **config_overrides) -> Wav2Vec2ForPreTraining:
    """``Wav2Vec2ForPreTraining`` from random init (named config) or pre-trained weights (dir / Hub id)."""
    from transformers import Wav2Vec2ForPreTraining

    config = load_config(source, **config_overrides)
    if is_named(source):
        return Wav2Vec2ForPreTraining(config)
    check_weights(source)
    return Wav2Vec2ForPreTraining.from_pretrained(
        source, config=config, use_safetensors=True, trust_remote_code=False
    )


def load_classifier(source: str, label_names: list[str], **config_overrides):
    """An audio classifier (wav2vec2 / HuBERT / WavLM / XLS-R ...) with string id2label/label2id.

    A TAPT output (``Wav2Vec2ForPreTraining`` weights) loads into ``Wav2Vec2ForSequenceClassification``:
    the shared ``wav2vec2.*`` encoder weights are kept, the head is newly initialised.
    """
    from transformers import AutoModelForAudioClassification

    id2label = {str(i): name for i, name in enumerate(label_names)}
    label2id = {name: str(i) for i, name in enumerate(label_names)}
    kwargs = dict(num_labels=len(label_names), id2label=id2label, label2id=label2id, **config_overrides)
    if is_named(source):
        config = load_config(source, **kwargs)
        return AutoModelForAudioClassification.from_config(config)
    load_config(source)  # a directory without config.json is named before anything else
    check_weights(source)
    with _quiet_load_report():
        model, info = AutoModelForAudioClassification.from_pretrained(
            source, use_safetensors=True, trust_remote_code=False, ignore_mismatched_sizes=True,
            output_loading_info=True, **kwargs
        )
    report_loading(model, source, info)
    return model


def load_encoder(source: str):
    """The bare encoder (``AutoModel``) of a checkpoint directory / Hub id: a pre-training or classification
    checkpoint's head is dropped silently (expected); encoder weights missing from it are named in a warning."""
    from transformers import AutoModel

    load_config(source)  # names a directory without config.json
    check_weights(source)  # names a directory without (safetensors) weights
    with _quiet_load_report():
        model, info = AutoModel.from_pretrained(source, use_safetensors=True, trust_remote_code=False,
                                                output_loading_info=True)
    missing = sorted(info["missing_keys"]) + sorted(key for key, *_ in info["mismatched_keys"])
    if missing:
        logger.warning("%s: %d encoder weights are not in the checkpoint (initialised at random), e.g. %s; check "
                       "that it is the architecture you meant.", source, len(missing), ", ".join(missing[:5]))
    return model


class _NoLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextmanager
def _quiet_load_report():
    """transformers' per-load table of unexpected / missing keys off (a filter: raising the logger's level would
    switch on its tensor-parallel warnings); ``report_loading`` says what matters instead."""
    modeling_logger = logging.getLogger("transformers.modeling_utils")
    drop = _NoLoadReport()
    modeling_logger.addFilter(drop)
    try:
        yield
    finally:
        modeling_logger.removeFilter(drop)


def report_loading(model, source: str, info: dict) -> None:
    """One line when the checkpoint's head differs from the model's (a pre-training checkpoint becoming a
    classifier: expected); a warning naming the keys when encoder weights are missing, unused or re-initialised."""
    prefix = f"{model.base_model_prefix}."
    missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
    mismatched = sorted(key for key, *_ in info["mismatched_keys"])
    unused_mask = [k for k in unexpected if k.endswith("masked_spec_embed")]  # SpecAugment off: its vector unused
    real = [k for k in missing + unexpected if k.startswith(prefix) and k not in unused_mask] + mismatched
    if real:
        logger.warning("%s: %d weights do not match %s (initialised at random or left unused), e.g. %s; check that "
                       "the checkpoint is the architecture and label set you meant.", source, len(real),
                       type(model).__name__, ", ".join(real[:5]))
    new_head = sorted({k.split(".")[0] for k in missing if not k.startswith(prefix)})
    dropped = sorted({k.split(".")[0] for k in unexpected if not k.startswith(prefix)})
    if new_head or dropped:
        print(f"{source}: encoder loaded into {type(model).__name__}; new head "
              f"({', '.join(new_head) or 'none'}) initialised" + (f", the checkpoint's {', '.join(dropped)} not used"
                                                                    if dropped else ""), file=sys.stderr)
