#!/usr/bin/env bash
# The base-size benchmarks on a GPU (issue 14, point 4): one prepared script, well under 10 minutes on a recent GPU,
# bf16 autocast on CUDA (inference.autocast_for). Run it on a machine with a CUDA GPU after `make setup`:
#   bash benchmarks/gpu_base.sh            # -> runs/bench_gpu/bench_base_size.json + one summary line
# Record the printed line, the date and the GPU name (first line) in the README's performance table.
# Needs what `make setup` and `make apt` install (datasets, torchcodec, FFmpeg, espeak-ng). On a bare GPU image
# without them (no network to install), generate runs/bench_gpu/corpus_* on a CPU machine and carry it, carry
# the missing packages as wheels, and note that the per-file pipeline arm needs the ffmpeg binary.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bench_gpu}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
date -u +%Y-%m-%dT%H:%MZ
# 64 clips for scoring, 300 s of audio per TAPT arm: seconds on a GPU, what 2 CPU cores do in hours
"$PY" benchmarks/bench_base_size.py --device cuda --clips 64 --pipeline_batch_size 16 --pipeline_num_workers 4 \
  --tapt_audio_seconds 300 --tapt_batch_seconds 64 --out "$OUT"
