"""Pool scoring throughput: our engine vs per-file ``transformers.pipeline("audio-classification")``.

Same saved small classifier (the ``small`` named config, 4 labels), same generated pool, same torch threads,
measured in one run:
  baseline   ``pipeline("audio-classification", model=DIR, feature_extractor=FE)`` called once per file path
             (the pipeline decodes each file itself, one forward per utterance), on a seeded random subset
             of the pool (--baseline_utterances, default 300; 0 = all); the same pipeline on waveforms we
             decoded beforehand is also timed, to split the gain into decoding and batching
  predict    ``after_hf.inference.predict``: length-sorted batches of <= batch_seconds of padded audio,
             decoded batch by batch from the manifest, inference_mode (full-mode AL scores the pool this way)
  features   the head-only path's one-time cost: ``FeatureCache`` encoding the pool (every hidden layer's
             time-mean) into a fresh cache
  round      a head-only AL round after that: memory-mapped cached features + head forward (what every
             round, strategy, seed and MC pass pays once the cache exists)
Also the achieved model FLOP/s of ``predict`` (FlopCounterMode on one batch, scaled by the padded audio
seconds of all batches; matmul/conv FLOPs only) against the float32 matmul rate of this CPU (2048^3 matmul).

    python benchmarks/bench_scoring.py [--utterances 1000] [--baseline_utterances 300] [--threads 0]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def parse(argv):
    p = C.parser(__doc__, threads_help="torch threads (0 = torch's default, one per core)")
    p.add_argument("--utterances", type=int, default=1000, help="generated corpus size (the pool is all of it)")
    p.add_argument("--baseline_utterances", type=int, default=300,
                   help="the per-file pipeline's throughput is measured on this many utterances, a seeded random "
                        "subset of the same pool (its cost is per file); 0 = the whole pool")
    p.add_argument("--batch_seconds", type=float, default=160.0, help="predict: padded audio seconds per batch")
    return p.parse_args(argv)


def model_flops(model, fe, manifest, batch_seconds: float) -> tuple[float, float, float]:
    """(FLOPs of one median batch, its padded audio seconds, padded audio seconds of all batches)."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from after_hf import SAMPLING_RATE
    from after_hf.data.audio import load_audio
    from after_hf.inference import length_batches, pooled_forward

    durations = np.asarray(manifest["duration"], dtype=np.float64)
    batches = length_batches(durations, batch_seconds)
    padded_total = float(sum(len(b) * durations[b].max() for b in batches))
    batch = batches[len(batches) // 2]
    paths = manifest.select(batch.tolist())["path"]
    inputs = fe([load_audio(p) for p in paths], sampling_rate=SAMPLING_RATE, padding=True,
                return_attention_mask=True, return_tensors="pt")
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:  # (inference_mode trips weight_norm here)
        pooled_forward(model, inputs["input_values"].to(device), inputs["attention_mask"].to(device))
    padded = inputs["input_values"].shape[0] * inputs["input_values"].shape[1] / SAMPLING_RATE
    return float(counter.get_total_flops()), padded, padded_total


def main(argv=None) -> dict:
    args = parse(argv)
    started = time.perf_counter()
    import numpy as np
    from transformers import AutoModelForAudioClassification, pipeline

    from after_hf.al.features import ENCODER_STATS, FeatureCache
    from after_hf.al.head import HeadClassifier, HeadTrainingArgs
    from after_hf.data.audio import load_audio
    from after_hf.data.manifest import load_manifest
    from after_hf.inference import predict
    from after_hf.models import load_feature_extractor

    C.quiet_libraries()
    threads = C.set_threads(args.threads)
    out = Path(args.out)
    manifest = load_manifest(C.ensure_manifest(args.utterances, out))
    model_dir = C.saved_classifier(out)
    model = AutoModelForAudioClassification.from_pretrained(model_dir).eval()
    fe = load_feature_extractor(model_dir)
    n, audio_seconds = len(manifest), float(np.sum(manifest["duration"]))
    C.log(f"pool {n} utterances ({audio_seconds / 60:.1f} min of audio), {threads} torch threads, model {model_dir}")

    # ours: batched predict over the manifest (warm-up on 8 utterances first, not timed)
    predict(model, fe, manifest.select(range(min(8, n))), batch_seconds=args.batch_seconds, progress=False)
    t0 = time.perf_counter()
    ours = predict(model, fe, manifest, batch_seconds=args.batch_seconds, progress=False)
    predict_s = time.perf_counter() - t0
    C.log(f"predict: {n / predict_s:.1f} utt/s ({predict_s:.1f} s)")

    # ours, head-only path: encode the pool into a fresh feature cache, then one AL round's scoring
    cache_root = Path(tempfile.mkdtemp(prefix="bench_scoring_cache_", dir=out))
    try:
        ids, paths, durations = list(manifest["id"]), list(manifest["path"]), list(manifest["duration"])
        backbone = C.saved_backbone(out)
        calls_before = ENCODER_STATS["utterances"]
        t0 = time.perf_counter()
        feats = FeatureCache(cache_root, backbone).get(ids, paths, durations)
        features_s = time.perf_counter() - t0
        encoded = ENCODER_STATS["utterances"] - calls_before
        labels = np.asarray(manifest["label"])
        head = HeadClassifier(len(C.LABELS), HeadTrainingArgs(epochs=1), feats.mean(0), feats.std(0))
        head.fit(feats[:64], labels[:64], seed=0)
        t0 = time.perf_counter()
        again = FeatureCache(cache_root, backbone).get(ids, paths, durations)  # next round: memory-mapped reads
        head.predict(again, mc_passes=0)
        round_s = time.perf_counter() - t0
        round_calls = ENCODER_STATS["utterances"] - calls_before - encoded
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)
    C.log(f"features (cold cache): {n / features_s:.1f} utt/s; a head-only round on the warm cache: "
          f"{n / round_s:.0f} utt/s")

    # baseline: the per-file pipeline on the same model directory
    pipe = pipeline("audio-classification", model=model_dir, feature_extractor=fe, device="cpu")
    rng = np.random.default_rng(0)
    subset = np.arange(n)
    if args.baseline_utterances > 0:
        subset = np.sort(rng.choice(n, min(n, args.baseline_utterances), replace=False))
    base_paths = [paths[i] for i in subset]
    for p in base_paths[:3]:
        pipe(p)  # warm-up
    t0 = time.perf_counter()
    base_out = [pipe(p, top_k=len(C.LABELS)) for p in base_paths]
    pipeline_s = time.perf_counter() - t0
    pipe_utt_s = len(subset) / pipeline_s
    C.log(f"pipeline per file: {pipe_utt_s:.1f} utt/s ({pipeline_s:.1f} s for {len(subset)})")
    waves = [load_audio(p) for p in base_paths]
    t0 = time.perf_counter()
    for w in waves:
        pipe(w, top_k=len(C.LABELS))
    pipe_arrays_utt_s = len(subset) / (time.perf_counter() - t0)
    del waves
    C.log(f"pipeline on pre-decoded waveforms: {pipe_arrays_utt_s:.1f} utt/s")
    label_index = {name: int(k) for k, name in model.config.id2label.items()}
    base_probs = np.zeros((len(subset), len(C.LABELS)), dtype=np.float32)
    for row, preds in enumerate(base_out):
        for pred in preds:
            base_probs[row, label_index[pred["label"]]] = pred["score"]
    agree = float((base_probs.argmax(1) == ours["probs"][subset].argmax(1)).mean())
    max_prob_diff = float(np.abs(base_probs - ours["probs"][subset]).max())

    # roofline-style: achieved model FLOP/s of predict vs this CPU's matmul FLOP/s
    flops_batch, padded_batch, padded_total = model_flops(model, fe, manifest, args.batch_seconds)
    achieved = flops_batch / padded_batch * padded_total / predict_s
    peak = C.matmul_flops_per_second()

    predict_utt_s, features_utt_s, round_utt_s = n / predict_s, n / features_s, n / round_s
    speedup = predict_utt_s / pipe_utt_s
    summary = (f"scoring: predict {predict_utt_s:.1f} utt/s = {speedup:.1f}x per-file pipeline "
               f"({pipe_utt_s:.1f} utt/s); "
               f"feature cache build {features_utt_s / pipe_utt_s:.1f}x; head-only round on cached features "
               f"{round_utt_s / pipe_utt_s:.0f}x; predict vs pipeline on pre-decoded audio "
               f"{predict_utt_s / pipe_arrays_utt_s:.1f}x; model FLOP/s {achieved / 1e9:.2f} G = "
               f"{100 * achieved / peak:.0f}% "
               f"of matmul peak {peak / 1e9:.1f} G; top-1 agreement {100 * agree:.1f}%")
    print(summary, flush=True)
    metrics = {
        "pool_utterances": n, "pool_audio_seconds": round(audio_seconds, 1), "baseline_utterances": int(len(subset)),
        "predict_utt_per_s": round(predict_utt_s, 2), "pipeline_utt_per_s": round(pipe_utt_s, 2),
        "speedup_predict_vs_pipeline": round(speedup, 2), "pipeline_predecoded_utt_per_s": round(pipe_arrays_utt_s, 2),
        "speedup_predict_vs_pipeline_predecoded": round(predict_utt_s / pipe_arrays_utt_s, 2),
        "features_cold_utt_per_s": round(features_utt_s, 2),
        "speedup_features_cold_vs_pipeline": round(features_utt_s / pipe_utt_s, 2),
        "head_round_utt_per_s": round(round_utt_s, 1),
        "speedup_head_round_vs_pipeline": round(round_utt_s / pipe_utt_s, 1),
        "encoder_utterances_cold": int(encoded), "encoder_utterances_warm_round": int(round_calls),
        "audio_seconds_per_s_predict": round(audio_seconds / predict_s, 1),
        "model_gflop_per_padded_audio_s": round(flops_batch / padded_batch / 1e9, 4),
        "padding_overhead": round(padded_total / audio_seconds - 1, 4),
        "achieved_gflop_per_s": round(achieved / 1e9, 3), "matmul_peak_gflop_per_s": round(peak / 1e9, 2),
        "fraction_of_matmul_peak": round(achieved / peak, 4),
        "top1_agreement_with_pipeline": round(agree, 4), "max_prob_diff_vs_pipeline": round(max_prob_diff, 5),
        "seconds": {"predict": round(predict_s, 2), "features_cold": round(features_s, 2),
                    "head_round": round(round_s, 3), "pipeline": round(pipeline_s, 2)},
    }
    targets = {"predict_vs_pipeline_speedup": C.target(speedup, ">=", 5.0)}
    return C.finish("bench_scoring", summary, metrics, targets, started, args, out)


if __name__ == "__main__":
    main()
