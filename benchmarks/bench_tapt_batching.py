"""TAPT throughput: length-bucketed dynamic batches (ours) vs fixed-size padded batches (transformers' pre-training
example).

Both arms train the same model from the same initial weights with the same objective (after_hf.tapt's
masks and negatives, AdamW) over the same utterances, each exactly once, so the same seconds of real
audio. Only the batching differs:
  ours      DynamicBatchSampler: utterances of similar length, at most --batch_seconds of *padded* audio a batch
  baseline  random order, a fixed count per batch, each padded to its longest utterance, as
            run_wav2vec2_pretraining_no_trainer.py does; the count is chosen so that a batch holds the same
            real audio on average as ours (--batch_seconds / mean length), the fairest fixed count
Throughput = real audio seconds / wall seconds of the training loop (collate + masks + forward + backward +
optimiser step); audio is decoded and cropped once beforehand, identically for both arms.

Lengths: the generated clips are all ~1-5 s, far more uniform than real corpora, so by default
(--lengths iemocap) clips of the generated corpus are joined into utterances with IEMOCAP-like lengths
(log-normal, median 3.5 s, long tail to 20 s, then AFTER's 10 s crops). --lengths synth uses the clips as they are.

    python benchmarks/bench_tapt_batching.py [--utterances 1000] [--audio_seconds 300] [--lengths iemocap|synth]
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SR = 16000


def parse(argv):
    p = C.parser(__doc__, threads=1, threads_help="torch threads (0 = torch's default; 1 = robust on shared cores, "
                                                  "the ratio is about batching)")
    p.add_argument("--utterances", type=int, default=1000,
                   help="generated corpus size (shared with the other benchmarks)")
    p.add_argument("--audio_seconds", type=float, default=600.0, help="real audio seconds each arm trains on")
    p.add_argument("--lengths", choices=["iemocap", "synth"], default="iemocap",
                   help="iemocap: clips joined to IEMOCAP-like lengths; synth: the generated clips as they are")
    p.add_argument("--model", default="small", help="named config (tiny, small) or a save_pretrained directory")
    p.add_argument("--batch_seconds", type=float, default=32.0,
                   help="ours: padded seconds per batch (the demo's TAPT value)")
    p.add_argument("--padded_batch_size", type=int, default=0,
                   help="baseline: utterances per batch (0 = batch_seconds / mean length)")
    p.add_argument("--max_seconds", type=float, default=10.0,
                   help="crop length (AFTER: 10 s), applied once, the same for both arms")
    p.add_argument("--mask_time_prob", type=float, default=0.65, help="as recipes/demo/tapt.yaml")
    p.add_argument("--repeats", type=int, default=2,
                   help="alternate the arms this many times; the median throughput is kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    return p.parse_args(argv)


def make_utterances(paths, clip_durations, lengths: str, audio_seconds: float, max_seconds: float,
                    rng) -> list[np.ndarray]:
    """Waveforms totalling ~``audio_seconds`` after cropping to ``max_seconds`` (crop offsets drawn once)."""
    from after_hf.data.audio import load_audio

    def clip_stream():
        for i in rng.permutation(len(paths)):
            yield load_audio(paths[i])
        raise SystemExit(f"the corpus has too little audio for --audio_seconds {audio_seconds:g}: raise --utterances")

    clips = clip_stream()
    waves, total = [], 0.0
    while total < audio_seconds:
        if lengths == "synth":
            wave = next(clips)
        else:  # IEMOCAP-like: log-normal length, clips joined with 0.15 s pauses until it is reached
            want = float(np.clip(rng.lognormal(np.log(3.5), 0.7), 0.5, 20.0))
            parts, have = [], 0.0
            while have < want:
                clip = next(clips)
                parts += [clip, np.zeros(int(0.15 * SR), np.float32)]
                have += (len(clip) + 0.15 * SR) / SR
            wave = np.concatenate(parts)[: int(want * SR)]
        if len(wave) > max_seconds * SR:
            start = int(rng.integers(0, len(wave) - int(max_seconds * SR) + 1))
            wave = wave[start:start + int(max_seconds * SR)]
        waves.append(wave)
        total += len(wave) / SR
    return waves


def train_pass(model, optimizer, waves, batches, collate, mask_args, num_negatives, seed) -> tuple[float, float, float]:
    """One pass over ``batches``; returns (real audio seconds, padded seconds, wall seconds)."""
    import torch

    from after_hf.tapt import batch_seed, make_masks

    model.train()
    device = next(model.parameters()).device
    real = padded = 0.0
    started = time.perf_counter()
    for number, batch in enumerate(batches):
        items = [{"input_values": waves[i], "index": i, "batch": number} for i in batch]
        b = collate(items)
        np.random.seed(batch_seed(seed, number))
        torch.manual_seed(batch_seed(seed, number))
        mask, negatives, _ = make_masks(model, b["lengths"], b["input_values"].shape[1], mask_args, num_negatives)
        out = model(input_values=b["input_values"].to(device), mask_time_indices=torch.from_numpy(mask).to(device),
                    sampled_negative_indices=torch.from_numpy(negatives).long().to(device))
        (out.loss / max(int(mask.sum()), 1)).backward()  # per masked frame, as tapt.py
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        real += float(b["lengths"].sum()) / SR
        padded += b["input_values"].numel() / SR
    if device.type == "cuda":
        torch.cuda.synchronize()
    return real, padded, time.perf_counter() - started


def main(argv=None) -> dict:
    args = parse(argv)
    started = time.perf_counter()
    import torch

    from after_hf.data.batching import AudioCollator, DynamicBatchSampler
    from after_hf.data.manifest import load_manifest
    from after_hf.models import feature_extractor_for, load_pretraining_model, uses_attention_mask
    from after_hf.models import min_samples_for_masking
    from after_hf.tapt import TaptArguments

    C.quiet_libraries()
    threads = C.set_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    train = load_manifest(C.ensure_manifest(args.utterances, Path(args.out)), split="train")
    waves = make_utterances(list(train["path"]), list(train["duration"]), args.lengths, args.audio_seconds,
                            args.max_seconds, rng)
    durations = [len(w) / SR for w in waves]

    torch.manual_seed(args.seed)
    model = load_pretraining_model(args.model).to(args.device)
    model.config.apply_spec_augment = True
    mask_args = TaptArguments(manifest="", output_dir="", mask_time_prob=args.mask_time_prob)
    shortest = min_samples_for_masking(model, mask_args.mask_time_length) + 320  # what TAPT keeps (tapt.make_sampler)
    keep = [i for i, w in enumerate(waves) if len(w) >= shortest]
    waves, durations = [waves[i] for i in keep], [durations[i] for i in keep]
    collate = AudioCollator(feature_extractor_for(model.config), pass_attention_mask=uses_attention_mask(model.config))
    initial = copy.deepcopy(model.state_dict())

    # ours: length buckets of <= batch_seconds padded seconds; baseline: random order, fixed count
    dynamic = [[w.index for w in b] for b in DynamicBatchSampler(
        durations, batch_seconds=args.batch_seconds, max_seconds=None, seed=args.seed).epoch_batches(0)]
    count = args.padded_batch_size or max(1, round(args.batch_seconds / float(np.mean(durations))))
    order = np.random.default_rng(args.seed + 1).permutation(len(waves))
    padded = [order[k:k + count].tolist() for k in range(0, len(order), count)]
    arms = {"dynamic": dynamic, "padded": padded}
    C.log(f"{len(waves)} utterances, {sum(durations):.0f} s of audio (mean {np.mean(durations):.2f} s, max "
          f"{max(durations):.1f} s); dynamic: {len(dynamic)} batches of <= {args.batch_seconds:g} padded s; padded: "
          f"{len(padded)} batches of {count}; model {args.model}, {threads} torch threads")

    def fresh():
        model.load_state_dict(initial)
        return torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)

    train_pass(model, fresh(), waves, dynamic[:2], collate, mask_args, model.config.num_negatives, args.seed)  # warm-up
    runs = {name: [] for name in arms}
    for r in range(args.repeats):
        for name in (arms if r % 2 == 0 else reversed(list(arms))):  # alternate, so contention hits both alike
            real, pad, wall = train_pass(model, fresh(), waves, arms[name], collate, mask_args,
                                         model.config.num_negatives, args.seed)
            runs[name].append({"real_s": real, "padded_s": pad, "wall_s": wall})
            C.log(f"{name}: {real:.0f} audio-s ({pad:.0f} padded) in {wall:.1f} s = {real / wall:.1f} audio-s/s")

    rate = {name: float(np.median([x["real_s"] / x["wall_s"] for x in rs])) for name, rs in runs.items()}
    pad_share = {name: 1 - rs[0]["real_s"] / rs[0]["padded_s"] for name, rs in runs.items()}
    ratio = rate["dynamic"] / rate["padded"]
    summary = (f"tapt_batching: dynamic {rate['dynamic']:.1f} audio-s/s, padded {rate['padded']:.1f} audio-s/s, "
               f"ratio {ratio:.2f}x (target >= 1.3x); padding {pad_share['dynamic']:.0%} vs {pad_share['padded']:.0%}, "
               f"{sum(durations):.0f} audio-s per arm, {args.lengths} lengths, model {args.model}")
    print(summary, flush=True)
    metrics = {"dynamic_audio_s_per_s": round(rate["dynamic"], 2), "padded_audio_s_per_s": round(rate["padded"], 2),
               "ratio": round(ratio, 3), "padding_dynamic": round(pad_share["dynamic"], 4),
               "padding_padded": round(pad_share["padded"], 4), "audio_seconds_per_arm": round(sum(durations), 1),
               "batches_dynamic": len(dynamic), "batches_padded": len(padded), "padded_batch_size": count,
               "runs": runs}
    return C.result("bench_tapt_batching", summary, metrics, {"ratio": C.target(ratio, ">=", 1.3)},
                    time.perf_counter() - started, vars(args))


if __name__ == "__main__":
    main()
