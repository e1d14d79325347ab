"""wav2vec2-base size (95 M parameters): pool scoring vs transformers' pipeline, achieved FLOP/s, TAPT step throughput.

The architecture is ``Wav2Vec2Config()``'s defaults (wav2vec2-base: 12 layers, hidden 768, group-norm CNN) with
random weights and 4 labels, saved once with ``save_pretrained`` (no download). Same clips (a seeded subset of
the generated corpus), same torch threads, every arm in this one run:

  ours            ``after_hf.inference.predict`` on the manifest rows (length-sorted batches of <= 160 padded
                  seconds, each clip's CNN on the clip alone, masked transformer, masked mean pooling)
  per-file        ``pipeline("audio-classification")`` called once per file path (decodes with FFmpeg, one
                  forward per clip)
  pipeline, well  the same pipeline used as its docs advise for many inputs: a dataset (a ``datasets`` Audio
                  column, decoded by torchcodec), ``batch_size`` and ``num_workers`` (a DataLoader decodes ahead)
Top-1 of every arm is compared with the per-file pipeline's (a clip alone: the reference). A batched pipeline
pads clips with zeros and gives a group-norm CNN no mask, so its outputs change with the batch (measured).

FLOP/s: FlopCounterMode counts the matmul/conv FLOPs of one median batch of ``predict``, scaled by padded
audio seconds to all batches, over the wall time of ``predict``; divided by the float32 matmul rate this CPU
reaches (2048^3, best of 5). Variants tried on the same clips (time, top-1 agreement with float32, largest
probability difference): eager attention instead of SDPA, bf16 autocast (with the bf16 matmul rate), one
thread, and with ``--compile`` ``torch.compile`` of the CNN and the transformer.

TAPT: ``bench_tapt_batching``'s loop (our masks, negatives, loss per masked frame, AdamW) on the base-size
``Wav2Vec2ForPreTraining``: our length-bucketed batches of <= ``--tapt_batch_seconds`` padded seconds vs the
loop settings of transformers' ``run_wav2vec2_pretraining_no_trainer.py`` (shuffled, 8 utterances a batch,
padded to the longest), the same utterances (IEMOCAP-like lengths, 10 s crops) once each; audio-s per s.

    python benchmarks/bench_base_size.py [--clips 16] [--tapt_audio_seconds 40] [--device cpu|cuda] [--compile]
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import torch.utils.data

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def parse(argv):
    p = C.parser(__doc__, threads_help="torch threads (0 = torch's default, one per core)")
    p.add_argument("--utterances", type=int, default=1000, help="generated corpus the clips are drawn from (shared)")
    p.add_argument("--clips", type=int, default=16, help="clips scored by every arm (a seeded subset)")
    p.add_argument("--pipeline_batch_size", type=int, default=8, help="the batched pipeline's batch_size")
    p.add_argument("--pipeline_num_workers", type=int, default=1,
                   help="the batched pipeline's DataLoader workers (decoding ahead of the model)")
    p.add_argument("--batch_seconds", type=float, default=160.0, help="ours: padded audio seconds per batch")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compilation on CPU)")
    p.add_argument("--tapt_audio_seconds", type=float, default=40.0,
                   help="real audio seconds each TAPT arm trains on (0 = skip the TAPT comparison)")
    p.add_argument("--tapt_batch_seconds", type=float, default=32.0, help="ours: padded seconds per TAPT batch")
    p.add_argument("--example_batch_size", type=int, default=8,
                   help="the example's per_device_train_batch_size (its default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the GPU script: bf16 autocast on CUDA)")
    return p.parse_args(argv)


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def probs_of_pipeline(outputs, label_index: dict, num_labels: int):
    import numpy as np

    probs = np.zeros((len(outputs), num_labels), dtype=np.float32)
    for row, preds in enumerate(outputs):
        for pred in preds:
            probs[row, label_index[pred["label"]]] = pred["score"]
    return probs


def agreement(a, b) -> tuple[float, float]:
    """(share of equal top-1, largest absolute probability difference)."""
    import numpy as np

    return float((a.argmax(1) == b.argmax(1)).mean()), float(np.abs(a - b).max())


class DecodedAudio(torch.utils.data.Dataset):
    """A ``datasets`` Audio column as the ``{"raw", "sampling_rate"}`` items the pipeline takes (a torch map-style
    dataset: DataLoader workers decode ahead). Needed because the audio-classification pipeline of transformers
    5.23 turns the column's own items (torchcodec ``AudioDecoder``) into a ``[channels, samples]`` tensor and
    then refuses it ("We expect a numpy ndarray or torch tensor as input"), so ``KeyDataset(ds, "audio")`` fails."""

    def __init__(self, column):
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, i: int) -> dict:
        samples = self.column[i]["audio"].get_all_samples()
        return {"raw": samples.data.mean(0).numpy(), "sampling_rate": samples.sample_rate}


def score_pipelines(model_dir: str, fe, paths: list[str], args, device) -> dict:
    """The per-file pipeline and the pipeline used well on the same clips: {name: (probs, seconds)}."""
    from datasets import Audio, Dataset
    from transformers import pipeline

    pipe = pipeline("audio-classification", model=model_dir, feature_extractor=fe, device=device)
    labels = len(pipe.model.config.id2label)
    index = {name: int(k) for k, name in pipe.model.config.id2label.items()}
    pipe(paths[0])  # warm-up
    per_file, per_file_s = timed(lambda: [pipe(p, top_k=labels) for p in paths])
    audio = Dataset.from_dict({"audio": paths}).cast_column("audio", Audio(sampling_rate=16000))
    batched, batched_s = timed(lambda: list(pipe(DecodedAudio(audio), batch_size=args.pipeline_batch_size,
                                                 num_workers=args.pipeline_num_workers, top_k=labels)))
    pipe = None  # free the model before the next arm
    return {"per_file": (probs_of_pipeline(per_file, index, labels), per_file_s),
            "batched": (probs_of_pipeline(batched, index, labels), batched_s)}


def variants(model_dir: str, fe, clips, reference, args, device) -> dict:
    """Ecosystem options on the same clips: {name: {seconds, top1_vs_fp32, max_prob_diff}}."""
    import torch
    from transformers import AutoModelForAudioClassification

    from after_hf.inference import predict

    def run(model, ctx=contextlib.nullcontext):
        with ctx():
            predict(model, fe, clips.select(range(2)), batch_seconds=args.batch_seconds, progress=False)  # warm-up
            out, seconds = timed(lambda: predict(model, fe, clips, batch_seconds=args.batch_seconds, progress=False))
        top1, diff = agreement(out["probs"], reference)
        return {"seconds": round(seconds, 3), "top1_vs_fp32": round(top1, 4), "max_prob_diff": round(diff, 5)}

    found = {}
    eager = AutoModelForAudioClassification.from_pretrained(model_dir, attn_implementation="eager").to(device).eval()
    found["eager_attention"] = run(eager)
    del eager
    model = AutoModelForAudioClassification.from_pretrained(model_dir).to(device).eval()
    found["bf16_autocast"] = run(model, lambda: torch.autocast(device.type, dtype=torch.bfloat16))
    if device.type == "cpu":
        threads = torch.get_num_threads()
        if threads > 1:
            torch.set_num_threads(1)
            found["one_thread"] = run(model)
            torch.set_num_threads(threads)
    if args.compile:
        from after_hf.inference import base_encoder

        encoder = base_encoder(model)
        t0 = time.perf_counter()
        encoder.feature_extractor.compile(dynamic=True)
        encoder.encoder.compile(dynamic=True)
        found["compiled"] = run(model)
        found["compiled"]["seconds_with_compilation"] = round(time.perf_counter() - t0, 1)
    return found


def tapt_comparison(args, out: Path) -> dict:
    """bench_tapt_batching on the base-size pre-training model, against the example's padded batches of 8."""
    import bench_tapt_batching as T

    model_dir = C.saved_base(out, "pretraining")
    res = T.main(["--utterances", str(args.utterances), "--audio_seconds", str(args.tapt_audio_seconds),
                  "--model", model_dir, "--batch_seconds", str(args.tapt_batch_seconds),
                  "--padded_batch_size", str(args.example_batch_size), "--repeats", "1",
                  "--threads", str(args.threads), "--out", str(out)])
    return res["metrics"]


def main(argv=None) -> dict:
    args = parse(argv)
    started = time.perf_counter()
    import numpy as np
    import torch
    from transformers import AutoModelForAudioClassification

    from after_hf.data.manifest import load_manifest
    from after_hf.inference import predict
    from after_hf.models import load_feature_extractor

    import bench_scoring

    C.quiet_libraries()
    threads = C.set_threads(args.threads)
    device = torch.device(args.device)
    out = Path(args.out)
    manifest = load_manifest(C.ensure_manifest(args.utterances, out))
    rows = np.sort(np.random.default_rng(0).choice(len(manifest), min(args.clips, len(manifest)), replace=False))
    clips = manifest.select(rows.tolist())
    paths, audio_seconds = list(clips["path"]), float(np.sum(clips["duration"]))
    peak = C.matmul_flops_per_second(device=device, repeats=10)  # before any model or worker exists
    peak_bf16 = C.matmul_flops_per_second(device=device, dtype=torch.bfloat16, repeats=10)
    model_dir = C.saved_base(out, "classifier")
    model = AutoModelForAudioClassification.from_pretrained(model_dir).to(device).eval()
    fe = load_feature_extractor(model_dir)
    params = sum(p.numel() for p in model.parameters())
    C.log(f"{len(clips)} clips ({audio_seconds:.0f} s of audio), model {params / 1e6:.1f} M parameters "
          f"(Wav2Vec2Config() defaults, random weights), {threads} torch threads, device {device}")

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    predict(model, fe, clips.select(range(2)), batch_seconds=args.batch_seconds, progress=False)  # warm-up
    ours, ours_s = timed(lambda: predict(model, fe, clips, batch_seconds=args.batch_seconds, progress=False))
    C.log(f"ours: {len(clips) / ours_s:.2f} clips/s ({ours_s:.1f} s)")
    arms = score_pipelines(model_dir, fe, paths, args, device)
    per_file, per_file_s = arms["per_file"]
    batched, batched_s = arms["batched"]
    C.log(f"pipeline per file {len(clips) / per_file_s:.2f} clips/s; pipeline batch_size "
          f"{args.pipeline_batch_size}, num_workers {args.pipeline_num_workers}: {len(clips) / batched_s:.2f} clips/s")
    ours_top1, ours_diff = agreement(ours["probs"], per_file)
    batched_top1, batched_diff = agreement(batched, per_file)

    with autocast:
        flops_batch, padded_batch, padded_total = bench_scoring.model_flops(model, fe, clips, args.batch_seconds)
    achieved = flops_batch / padded_batch * padded_total / ours_s
    model = None  # free it: the variants load their own
    found = variants(model_dir, fe, clips, ours["probs"], args, device)
    for name, v in found.items():
        rate = peak_bf16 if name == "bf16_autocast" else peak
        v["fraction_of_matmul_peak"] = round(achieved * ours_s / v["seconds"] / rate, 4)
        C.log(f"variant {name}: {v['seconds']:.2f} s (ours fp32 {ours_s:.2f} s), top-1 vs fp32 "
              f"{100 * v['top1_vs_fp32']:.0f}%, max prob diff {v['max_prob_diff']:.1e}")

    tapt = tapt_comparison(args, out) if args.tapt_audio_seconds > 0 else None

    speed_file, speed_batched = per_file_s / ours_s, batched_s / ours_s
    summary = (f"base size ({params / 1e6:.0f} M): scoring {len(clips) / ours_s:.2f} clips/s = {speed_file:.1f}x "
               f"per-file pipeline, {speed_batched:.1f}x pipeline(batch_size={args.pipeline_batch_size}, dataset, "
               f"num_workers={args.pipeline_num_workers}); top-1 = per-file on {100 * ours_top1:.0f}% (batched "
               f"pipeline {100 * batched_top1:.0f}%); model FLOP/s {achieved / 1e9:.0f} G = "
               f"{100 * achieved / peak:.0f}% of fp32 matmul {peak / 1e9:.0f} G")
    if "bf16_autocast" in found:
        bf = found["bf16_autocast"]
        summary += (f" (bf16 autocast {ours_s / bf['seconds']:.2f}x faster, top-1 {100 * bf['top1_vs_fp32']:.0f}% "
                    f"of fp32)")
    if tapt:
        summary += (f"; TAPT {tapt['dynamic_audio_s_per_s']:.2f} audio-s/s = {tapt['ratio']:.2f}x the example's "
                    f"padded batches of {args.example_batch_size} ({tapt['padded_audio_s_per_s']:.2f})")
    print(summary, flush=True)
    metrics = {
        "parameters": params, "clips": len(clips), "audio_seconds": round(audio_seconds, 1),
        "ours_clips_per_s": round(len(clips) / ours_s, 3),
        "pipeline_per_file_clips_per_s": round(len(clips) / per_file_s, 3),
        "pipeline_batched_clips_per_s": round(len(clips) / batched_s, 3),
        "speedup_vs_per_file": round(speed_file, 3), "speedup_vs_batched_pipeline": round(speed_batched, 3),
        "top1_ours_vs_per_file": round(ours_top1, 4), "max_prob_diff_ours_vs_per_file": round(ours_diff, 6),
        "top1_batched_vs_per_file": round(batched_top1, 4),
        "max_prob_diff_batched_vs_per_file": round(batched_diff, 6),
        "model_gflop_per_padded_audio_s": round(flops_batch / padded_batch / 1e9, 3),
        "padding_overhead": round(padded_total / audio_seconds - 1, 4),
        "achieved_gflop_per_s": round(achieved / 1e9, 2), "matmul_fp32_gflop_per_s": round(peak / 1e9, 1),
        "matmul_bf16_gflop_per_s": round(peak_bf16 / 1e9, 1), "fraction_of_matmul_peak": round(achieved / peak, 4),
        "variants": found, "tapt": tapt,
        "seconds": {"ours": round(ours_s, 2), "pipeline_per_file": round(per_file_s, 2),
                    "pipeline_batched": round(batched_s, 2)},
    }
    targets = {"speedup_vs_batched_pipeline": C.target(speed_batched, ">=", 1.0),
               "top1_ours_vs_per_file": C.target(ours_top1, ">=", 1.0),
               "fraction_of_matmul_peak": C.target(achieved / peak, ">=", 0.5)}
    if tapt:
        targets["tapt_vs_example"] = C.target(tapt["ratio"], ">=", 1.0)
    return C.finish("bench_base_size", summary, metrics, targets, started, args, out)


if __name__ == "__main__":
    main()
