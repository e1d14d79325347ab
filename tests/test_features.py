"""The frozen-encoder feature cache (after_hf.al.features) and the scoring engine's process sharding.

Cache hit = no encoder call; cached == freshly computed; a run killed mid-shard loses only the shard in
flight; features do not depend on which utterances share a batch (layer-norm encoder + attention mask);
audio is decoded batch by batch; several processes split the work without overlap.
"""

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from after_hf.al import features
from after_hf.al.features import FeatureCache, encode_layers
from after_hf.data.audio import load_audio
from after_hf.data.manifest import load_manifest
from after_hf.models import load_config
from tones import make_tone_manifest

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """20 tone utterances of 0.4-1.6 s (all lengths differ): ids, paths, durations."""
    root = make_tone_manifest(tmp_path_factory.mktemp("tones"), {"train": 10}, seconds=(0.4, 1.6))
    ds = load_manifest(root)
    return list(ds["id"]), list(ds["path"]), [float(d) for d in ds["duration"]]


@pytest.fixture
def forward_calls(monkeypatch):
    """Counts the encoder's forward calls (a forward hook on the transformer of every backbone the cache loads)."""
    calls = {"batches": 0, "utterances": 0}
    real = features.load_backbone

    def hooked(source, init_seed=0):
        model = real(source, init_seed)

        def count(module, args, kwargs, output):
            calls["batches"] += 1
            calls["utterances"] += (args[0] if args else kwargs["hidden_states"]).shape[0]

        model.encoder.register_forward_hook(count, with_kwargs=True)
        return model

    monkeypatch.setattr(features, "load_backbone", hooked)
    return calls


@pytest.fixture(scope="module")
def layer_norm_backbone(tmp_path_factory):
    """A saved tiny encoder with a layer-norm feature encoder (it takes the attention mask)."""
    from transformers import AutoModel

    torch.manual_seed(0)
    config = load_config("tiny", feat_extract_norm="layer", do_stable_layer_norm=True)
    out = tmp_path_factory.mktemp("ln") / "backbone"
    AutoModel.from_config(config).save_pretrained(out)
    return str(out)


def test_a_second_round_is_a_cache_hit(pool, tmp_path, forward_calls):
    ids, paths, durations = pool
    first = FeatureCache(tmp_path, "tiny", batch_seconds=4.0).get(ids, paths, durations)
    assert first.shape == (len(ids), 3, 32)  # [N, L+1, H] of the tiny config
    assert forward_calls["utterances"] == len(ids) and forward_calls["batches"] > 1
    before = dict(forward_calls)
    stats_before = dict(features.ENCODER_STATS)
    # the next round / another strategy / another seed: a new cache object on the same directory
    again = FeatureCache(tmp_path, "tiny", batch_seconds=4.0)
    order = np.random.default_rng(0).permutation(len(ids))
    subset = again.get([ids[i] for i in order], [paths[i] for i in order], [durations[i] for i in order])
    assert forward_calls == before and features.ENCODER_STATS == stats_before  # no encoder call at all
    assert again._model is None  # the encoder was not even loaded
    np.testing.assert_array_equal(subset, first[order])
    assert again.encoded_this_session == 0


def test_cached_features_equal_a_fresh_computation(pool, tmp_path):
    ids, paths, durations = pool
    cached = FeatureCache(tmp_path / "a", "tiny", batch_seconds=4.0, shard_size=5)
    cached.get(ids, paths, durations)
    reread = FeatureCache(tmp_path / "a", "tiny").get(ids, paths, durations)  # memory-mapped from disk
    assert len(list((tmp_path / "a").glob("*/shard_*.npy"))) > 1  # spread over several shards
    fresh = FeatureCache(tmp_path / "b", "tiny", batch_seconds=4.0, shard_size=10_000).get(ids, paths, durations)
    np.testing.assert_array_equal(reread, fresh)
    # and the same as encoding each length batch by hand
    model = features.load_backbone("tiny").eval()
    by_hand = np.concatenate([encode_layers(model, [load_audio(paths[i]) for i in batch])
                              for batch in features.length_batches(durations, 4.0)])
    order = np.concatenate(features.length_batches(durations, 4.0))
    np.testing.assert_allclose(fresh[order], by_hand, atol=1e-6)


def test_a_run_killed_mid_shard_loses_only_that_shard(pool, tmp_path, monkeypatch, forward_calls):
    ids, paths, durations = pool
    # batch_seconds=0: one utterance per batch, so batch composition cannot differ between the runs
    expected = FeatureCache(tmp_path / "clean", "tiny", batch_seconds=0.0).get(ids, paths, durations)
    forward_calls.update(batches=0, utterances=0)
    real_encode, seen = features.encode_layers, {"batches": 0}

    def dies_on_the_eleventh_batch(*a, **kw):
        seen["batches"] += 1
        if seen["batches"] == 11:
            raise KeyboardInterrupt  # the process is killed while a shard is being filled
        return real_encode(*a, **kw)

    monkeypatch.setattr(features, "encode_layers", dies_on_the_eleventh_batch)
    with pytest.raises(KeyboardInterrupt):
        FeatureCache(tmp_path / "run", "tiny", batch_seconds=0.0, shard_size=4).get(ids, paths, durations)
    monkeypatch.setattr(features, "encode_layers", real_encode)
    encoded_before_the_kill = forward_calls["utterances"]
    cache_dir = next((tmp_path / "run").iterdir())
    done = sum(len(json.loads(p.read_text())) for p in cache_dir.glob("shard_*.ids.json"))
    assert done == 8 and encoded_before_the_kill == 10  # two full shards kept, the shard in flight lost
    # leftovers of a writer killed mid-write: a shard without its id list, a torn temp file, a short id list
    (cache_dir / "shard_00097-deadbeef.npy").write_bytes(b"\x93NUMPY torn")
    (cache_dir / ".shard_00098-deadbeef.npy.tmp.npy").write_bytes(b"partial")
    np.save(cache_dir / "shard_00099-deadbeef.npy", np.zeros((3, 3, 32), np.float32))
    (cache_dir / "shard_00099-deadbeef.ids.json").write_text(json.dumps(ids[:2]))
    resumed = FeatureCache(tmp_path / "run", "tiny", batch_seconds=0.0, shard_size=4)
    assert len(resumed) == done  # only the complete shards count
    out = resumed.get(ids, paths, durations)
    assert resumed.encoded_this_session == len(ids) - done  # nothing kept is encoded again
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(FeatureCache(tmp_path / "run", "tiny").get(ids, paths, durations), out)


def test_features_do_not_depend_on_batch_composition(pool, tmp_path, layer_norm_backbone):
    """Layer-norm encoder + attention mask + masked time mean: padding never changes an utterance's features."""
    ids, paths, durations = pool
    alone = FeatureCache(tmp_path / "alone", layer_norm_backbone, batch_seconds=0.0).get(ids, paths, durations)
    padded = FeatureCache(tmp_path / "padded", layer_norm_backbone, batch_seconds=100.0).get(ids, paths, durations)
    np.testing.assert_allclose(padded, alone, atol=1e-4)
    # the longest and the shortest utterance in one batch, in either order
    model = features.load_backbone(layer_norm_backbone).eval()
    short, long = int(np.argmin(durations)), int(np.argmax(durations))
    pair = encode_layers(model, [load_audio(paths[long]), load_audio(paths[short])])
    np.testing.assert_allclose(pair, alone[[long, short]], atol=1e-4)


def test_audio_is_decoded_batch_by_batch(pool, tmp_path, monkeypatch):
    ids, paths, durations = pool
    decoded_since_forward, worst = [0], [0]
    real_load, real_encode = features.load_audio, features.encode_layers

    def counting_load(path, *a, **kw):
        decoded_since_forward[0] += 1
        return real_load(path, *a, **kw)

    def counting_encode(model, waves):
        worst[0] = max(worst[0], decoded_since_forward[0])
        decoded_since_forward[0] = 0
        return real_encode(model, waves)

    monkeypatch.setattr(features, "load_audio", counting_load)
    monkeypatch.setattr(features, "encode_layers", counting_encode)
    FeatureCache(tmp_path, "tiny", batch_seconds=4.0).get(ids, paths, durations)
    assert worst[0] == max(len(b) for b in features.length_batches(durations, 4.0)) < len(ids)


class FakeGroup:
    """The part of accelerate's PartialState the cache uses, for one rank of ``size``."""

    def __init__(self, rank: int, size: int):
        self.process_index, self.num_processes = rank, size
        self.is_main_process, self.device = rank == 0, torch.device("cpu")

    @contextmanager
    def split_between_processes(self, items):
        per = -(-len(items) // self.num_processes)
        yield items[self.process_index * per:(self.process_index + 1) * per]

    def wait_for_everyone(self):
        pass


def test_processes_split_the_missing_batches_without_overlap(pool, tmp_path, forward_calls):
    ids, paths, durations = pool
    ranks = [FeatureCache(tmp_path, "tiny", batch_seconds=2.0) for _ in range(2)]
    for rank, cache in enumerate(ranks):
        cache._compute(ids, paths, durations, group=FakeGroup(rank, 2))
    counts = [cache.encoded_this_session for cache in ranks]
    assert sum(counts) == len(ids) and min(counts) > 0 and forward_calls["utterances"] == len(ids)
    merged = FeatureCache(tmp_path, "tiny")
    assert len(merged) == len(ids)
    single = FeatureCache(tmp_path / "single", "tiny", batch_seconds=2.0).get(ids, paths, durations)
    np.testing.assert_array_equal(merged.get(ids, paths, durations), single)  # same batches, same numbers


def test_two_real_processes_share_the_work(pool, tmp_path):
    """torchrun with 2 CPU processes (gloo): each encodes its share, both return the whole pool."""
    ids, paths, durations = pool
    script = tmp_path / "worker.py"
    script.write_text(
        "import json, sys, numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "from after_hf.al.features import FeatureCache\n"
        "from after_hf.inference import process_group\n"
        "ids, paths, durations = json.load(open(sys.argv[1]))\n"
        "cache = FeatureCache(sys.argv[2], 'tiny', batch_seconds=2.0)\n"
        "feats = cache.get(ids, paths, durations)\n"
        "rank = process_group().process_index\n"
        "np.save(f'{sys.argv[2]}/out{rank}.npy', feats)\n"
        "json.dump(cache.encoded_this_session, open(f'{sys.argv[2]}/n{rank}.json', 'w'))\n"
    )
    (tmp_path / "pool.json").write_text(json.dumps([ids, paths, durations]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
                    str(script), str(tmp_path / "pool.json"), str(tmp_path / "cache")],
                   check=True, env=env, cwd=REPO, capture_output=True, timeout=300)
    counts = [json.loads((tmp_path / "cache" / f"n{r}.json").read_text()) for r in (0, 1)]
    assert sum(counts) == len(ids) and min(counts) > 0
    single = FeatureCache(tmp_path / "single", "tiny", batch_seconds=2.0).get(ids, paths, durations)
    for rank in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / "cache" / f"out{rank}.npy"), single)


def test_frame_cache_holds_each_clips_cnn_output_once(pool, tmp_path, monkeypatch):
    """Frozen-CNN fine-tuning reads the CNN outputs from disk: equal to the live CNN on the clip alone, computed
    once."""
    from after_hf.al.features import FrameCache
    from after_hf.inference import cnn_frames

    ids, paths, durations = pool
    model = features.load_backbone("tiny").eval()
    frames = FrameCache(tmp_path, model, shard_size=7).get(ids, paths, durations)
    for i in (0, 5, 19):
        wave = load_audio(paths[i])
        wave = (wave - wave.mean()) / (wave.std() + 1e-7)
        with torch.no_grad():
            live = cnn_frames(model, torch.from_numpy(wave)[None], torch.ones(1, wave.size, dtype=torch.long))[0]
        assert frames[i].shape == tuple(live.shape)
        assert frames[i].shape[0] == model._get_feat_extract_output_lengths(wave.size)
        np.testing.assert_allclose(frames[i], live.numpy(), rtol=2e-3, atol=2e-3)  # stored as float16
    monkeypatch.setattr(features, "encode_frames_of", lambda *a: pytest.fail("a cached clip was encoded again"))
    again = FrameCache(tmp_path, model).get(ids[::-1], paths[::-1], durations[::-1])
    assert all(np.array_equal(a, b) for a, b in zip(again, frames[::-1]))
    other = features.load_backbone("tiny", init_seed=1)  # another initialisation: another CNN, another cache
    assert FrameCache(tmp_path, other).dir != FrameCache(tmp_path, model).dir


def test_a_pool_larger_than_a_chunk_stays_on_disk_and_gives_the_in_memory_results(synth_manifest, tmp_path,
                                                                                   monkeypatch):
    """Above CHUNK_BYTES a split stays memory-mapped (CachedFeatures): speaker centring, statistics, embeddings,
    scores and training equal those of the same split read into memory, and a chunk is all that is ever read."""
    from after_hf.al.head import HeadClassifier, HeadTrainingArgs
    from after_hf.al.learners import HeadLearner, SplitArrays
    from after_hf.data.manifest import label_names

    manifest = load_manifest(synth_manifest)
    names, splits = label_names(manifest), SplitArrays.from_manifest(manifest)
    args = HeadTrainingArgs(epochs=6, eval_every=2)
    in_memory = HeadLearner("tiny", splits, names, tmp_path, args, init_seed=3, speaker_norm=True)
    row_bytes = 4 * int(np.prod(in_memory.features["train"].shape[1:]))
    monkeypatch.setattr(features, "CHUNK_BYTES", 7 * row_bytes)  # 7 rows a chunk
    read = []
    real_getitem = features.CachedFeatures.__getitem__
    monkeypatch.setattr(features.CachedFeatures, "__getitem__",
                        lambda self, rows: read.append(len(real_getitem(self, rows))) or real_getitem(self, rows))
    on_disk = HeadLearner("tiny", splits, names, tmp_path, args, init_seed=3, speaker_norm=True)

    assert all(features.is_lazy(f) for f in on_disk.features.values())
    assert max(read) <= 7  # streamed statistics and centring never read more than a chunk
    np.testing.assert_allclose(on_disk.population, in_memory.population, rtol=1e-6)
    for name in splits:  # the same centred rows
        np.testing.assert_allclose(np.asarray(on_disk.features[name]), in_memory.features[name], atol=1e-5)
    np.testing.assert_allclose(on_disk.head.mean, in_memory.head.mean, atol=1e-5)
    np.testing.assert_allclose(on_disk.head.std, in_memory.head.std, rtol=1e-4)
    ids = list(splits["train"].ids[::2])
    np.testing.assert_allclose(on_disk.embed(ids), in_memory.embed(ids), atol=1e-4)

    # training reads the labelled rows batch by batch: the same head as training on them in memory
    labels, rows = splits["train"].labels[::2], splits["train"].index(ids)
    heads = []
    for feats in (on_disk.features["train"].take(rows), in_memory.features["train"][rows]):
        head = HeadClassifier(len(names), args, in_memory.head.mean.numpy(), in_memory.head.std.numpy())
        head.fit(feats, labels, seed=0)
        heads.append(head)
    for a, b in zip(heads[0].model.parameters(), heads[1].model.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-5)
    read.clear()
    scored = heads[0].predict(on_disk.features["train"])  # chunk by chunk
    assert max(read) <= 7
    np.testing.assert_allclose(scored["probs"], heads[0].predict(in_memory.features["train"])["probs"], atol=1e-5)
    on_disk.head, in_memory.head = heads
    assert on_disk.evaluate("test")["ua"] == pytest.approx(in_memory.evaluate("test")["ua"])
    mc = on_disk.score(ids, frozenset({"mc_probs"}), mc_passes=3, seed=0)["mc_probs"]
    assert mc.shape == (3, len(ids), len(names)) and np.allclose(mc.sum(-1), 1.0)
