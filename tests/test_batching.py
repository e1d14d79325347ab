"""Dynamic batches by seconds of audio: budget, coverage, crops, determinism, resume and DDP sharding."""

from collections import Counter
from itertools import islice

import numpy as np
import pytest
import soundfile as sf

from after_hf.data.batching import (
    AudioCollator,
    AudioWindowDataset,
    BatchingError,
    DynamicBatchSampler,
    Window,
    padded_seconds,
    padding_fraction,
)

# Log-normal lengths 0.3-20 s, like real emotional-speech corpora (IEMOCAP: mean ~4.5 s, long tail).
DURATIONS = np.clip(np.random.default_rng(0).lognormal(np.log(3.5), 0.7, 500), 0.3, 20.0).tolist()


def _lengths(batch, durations=DURATIONS):
    return [w.seconds if w.seconds is not None else durations[w.index] for w in batch]


def test_every_batch_fits_the_budget_and_every_utterance_appears_once_per_epoch():
    sampler = DynamicBatchSampler(DURATIONS, batch_seconds=60, max_seconds=10, seed=1)
    batches = sampler.epoch_batches(0)
    assert all(padded_seconds(_lengths(b)) <= 60 + 1e-9 for b in batches)
    assert Counter(w.index for b in batches for w in b) == Counter(range(len(DURATIONS)))
    # batches are nearly full: a greedy packer leaves less than one item's worth of budget unused
    fill = [padded_seconds(_lengths(b)) / 60 for b in batches]
    assert np.median(fill) > 0.85


def test_long_utterances_are_cropped_inside_the_file_and_short_ones_are_not():
    sampler = DynamicBatchSampler(DURATIONS, batch_seconds=60, max_seconds=10, seed=1)
    windows = [w for b in sampler.epoch_batches(0) for w in b]
    for w in windows:
        d = DURATIONS[w.index]
        if d > 10:
            assert w.seconds == 10 and 0 <= w.start <= d - 10 + 1e-9
        else:
            assert w.start is None and w.seconds is None
    crops = [w.start for w in windows if w.start is not None]
    assert len(crops) == sum(d > 10 for d in DURATIONS) and len(set(crops)) == len(crops)  # random offsets


def test_length_bucketing_pads_far_less_than_random_fixed_size_batches():
    sampler = DynamicBatchSampler(DURATIONS, batch_seconds=80, max_seconds=10, seed=0)
    dynamic = padding_fraction(sampler.epoch_batches(0), [min(d, 10) for d in DURATIONS])
    order = np.random.default_rng(0).permutation(len(DURATIONS))
    fixed = [[Window(int(i), None, None) for i in order[k:k + 8]] for k in range(0, len(order), 8)]
    random_padding = padding_fraction(fixed, [min(d, 10) for d in DURATIONS])
    assert dynamic < 0.1 < 0.3 < random_padding


def test_same_seed_same_batches_new_epoch_new_batches():
    a = DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=7).epoch_batches(0)
    b = DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=7).epoch_batches(0)
    c = DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=7).epoch_batches(1)
    d = DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=8).epoch_batches(0)
    assert a == b
    assert a != c and a != d


def test_resumed_stream_continues_exactly_where_it_stopped():
    full = DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=3)
    per_epoch = len(full.epoch_batches(0))
    reference = list(islice(full.iter_global(), per_epoch + 25))  # crosses an epoch boundary
    stopped = DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=3)
    stopped.consumed = per_epoch - 5
    state = stopped.state_dict()
    resumed = DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=3)
    resumed.load_state_dict(state)
    assert list(islice(resumed.iter_global(), 30)) == reference[per_epoch - 5:]


def test_resume_refuses_a_state_from_another_dataset_or_seed():
    state = DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=3).state_dict()
    with pytest.raises(BatchingError, match="same manifest split and seed"):
        DynamicBatchSampler(DURATIONS[:-1], batch_seconds=60, seed=3).load_state_dict(state)
    with pytest.raises(BatchingError, match="same manifest split and seed"):
        DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=4).load_state_dict(state)


def test_replicas_split_the_global_stream_without_overlap():
    ranks = [DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    single = list(islice(DynamicBatchSampler(DURATIONS, batch_seconds=60, seed=5).iter_global(), 40))
    shards = [list(islice(s.iter_replica(), 20)) for s in ranks]
    # rank r gets global batches r, r+2, r+4, ...: interleaving the shards gives the 1-process stream back
    interleaved = [b for pair in zip(*shards) for b in pair]
    assert interleaved == [b for _, b in single]
    # one pass of the Sampler protocol (inference): disjoint shards covering every utterance once
    seen = [w.index for s in ranks for b in s for w in b]
    assert sorted(seen) == list(range(len(DURATIONS)))


def test_too_short_utterances_are_reported_not_silently_dropped():
    durations = [0.1, 2.0, 0.05, 3.0]
    sampler = DynamicBatchSampler(durations, batch_seconds=10, max_seconds=5, min_seconds=0.2)
    assert sampler.skipped == [0, 2]
    assert sorted(w.index for b in sampler.epoch_batches(0) for w in b) == [1, 3]
    with pytest.raises(BatchingError, match="min_seconds"):
        DynamicBatchSampler([0.1], batch_seconds=10, min_seconds=0.2)


def test_a_crop_longer_than_the_budget_is_refused():
    with pytest.raises(BatchingError, match="batch_seconds"):
        DynamicBatchSampler(DURATIONS, batch_seconds=5, max_seconds=10)


def test_dataset_decodes_the_window_and_collator_pads_with_true_lengths(tmp_path):
    from after_hf.models import feature_extractor_for, load_config

    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate([1.0, 3.0]):
        p = tmp_path / f"{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(int(seconds * 16000)) + 0.5).astype(np.float32), 16000)  # DC offset 0.5
        paths.append(str(p))
    dataset = AudioWindowDataset(paths)
    items = [dataset[Window(0, None, None, 7)], dataset[Window(1, 1.0, 1.5, 7)]]
    assert len(items[0]["input_values"]) == 16000 and abs(len(items[1]["input_values"]) - 24000) <= 160
    collate = AudioCollator(feature_extractor_for(load_config("tiny")), pass_attention_mask=False)
    batch = collate(items)
    assert batch["batch"] == 7 and "attention_mask" not in batch
    assert batch["input_values"].shape == (2, int(batch["lengths"].max()))
    short = batch["input_values"][0]
    real = short[:16000]
    # each utterance normalised on its own samples (zero mean, unit variance), padding left at exactly 0
    assert abs(float(real.mean())) < 1e-3 and abs(float(real.std()) - 1) < 1e-2
    assert float(short[16000:].abs().max()) == 0.0
    with_mask = AudioCollator(feature_extractor_for(load_config("tiny")), pass_attention_mask=True)(items)
    assert with_mask["attention_mask"].sum(1).tolist() == batch["lengths"].tolist()
