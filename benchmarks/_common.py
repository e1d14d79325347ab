"""Shared pieces of the benchmarks: the generated corpus and manifest, the saved small model, timing,
peak memory, machine facts and the result record every benchmark returns.

A benchmark's ``main(argv=None) -> dict`` returns ``result(...)``: ``benchmark``, ``summary`` (the one
line it prints), ``metrics`` (numbers), ``targets`` ({name: {value, target, met}}), ``seconds`` and
``machine``. ``run_all.py`` tabulates these; dicts of another shape are shown by their printed line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/x.py` from anywhere, without installing
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # one concise line per stage instead of progress bars

DEFAULT_OUT = REPO / "runs" / "bench"
LABELS = ("neutral", "happy", "angry", "sad")


def log(msg: str) -> None:
    print(f"  . {msg}", file=sys.stderr, flush=True)


def quiet_libraries() -> None:
    """No per-batch progress bars or load reports from datasets / transformers in benchmark output."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def ensure_manifest(num_utterances: int, out: Path = DEFAULT_OUT, voices: int = 10, seed: int = 0) -> Path:
    """A generated corpus of ``num_utterances`` (espeak-ng; made once, reused) and its prepared manifest."""
    from after_hf.data.prepare import prepare
    from after_hf.data.synth import synthesize

    corpus = Path(out) / f"corpus_{num_utterances}"
    manifest = Path(out) / f"manifest_{num_utterances}"
    if not (corpus / "synth_info.json").is_file():
        log(f"generating {num_utterances} utterances with espeak-ng (once; reused by later runs) -> {corpus}")
    t0 = time.perf_counter()
    synthesize(corpus, num_utterances=num_utterances, seed=seed, voices=voices, progress=False)
    stale = (manifest / "dataset_info.json").is_file() and \
        manifest.stat().st_mtime < (corpus / "synth_info.json").stat().st_mtime
    if not (manifest / "dataset_info.json").is_file() or stale:
        prepare({"cremad": str(corpus)}, str(manifest), seed=seed, verbose=False)
        log(f"corpus + manifest ready in {time.perf_counter() - t0:.0f} s")
    return manifest


def saved_backbone(out: Path = DEFAULT_OUT, name: str = "small", seed: int = 0) -> str:
    """The named encoder (random init, seeded) saved once as a directory: one content-hashed feature cache
    for every seed, as a TAPT checkpoint would be."""
    from after_hf.al.features import load_backbone

    path = Path(out) / "models" / f"{name}_backbone_init{seed}"
    if not (path / "model.safetensors").is_file():
        load_backbone(name, seed).save_pretrained(path)
    return str(path)


def saved_classifier(out: Path = DEFAULT_OUT, name: str = "small", seed: int = 0) -> str:
    """A ``Wav2Vec2ForSequenceClassification`` of the named config + its feature extractor, saved once."""
    import torch

    from after_hf.models import feature_extractor_for, load_classifier

    path = Path(out) / "models" / f"{name}_classifier_init{seed}"
    if not (path / "model.safetensors").is_file():
        torch.manual_seed(seed)
        model = load_classifier(name, list(LABELS))
        model.save_pretrained(path)
        feature_extractor_for(model.config).save_pretrained(path)
    return str(path)


def base_config(num_labels: int = len(LABELS)):
    """wav2vec2-base's architecture: ``Wav2Vec2Config()``'s defaults (95 M parameters), our 4 labels."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(num_labels=num_labels, id2label=dict(enumerate(LABELS)),
                          label2id={name: i for i, name in enumerate(LABELS)})


def saved_base(out: Path = DEFAULT_OUT, kind: str = "classifier", seed: int = 0) -> str:
    """The base-size ``Wav2Vec2ForSequenceClassification`` (``kind="classifier"``, with its feature extractor) or
    ``Wav2Vec2ForPreTraining`` (``"pretraining"``), random weights (seeded), saved once (~380 MB each)."""
    import torch
    from transformers import Wav2Vec2ForPreTraining, Wav2Vec2ForSequenceClassification

    from after_hf.models import feature_extractor_for

    path = Path(out) / "models" / f"base_{kind}_init{seed}"
    if not (path / "model.safetensors").is_file():
        torch.manual_seed(seed)
        config = base_config()
        model = (Wav2Vec2ForSequenceClassification if kind == "classifier" else Wav2Vec2ForPreTraining)(config)
        model.save_pretrained(path)
        feature_extractor_for(config).save_pretrained(path)
    return str(path)


def parser(doc: str, threads_help: str = "torch threads (0 = torch's default)", threads: int = 0):
    """A benchmark's ``argparse`` parser: the first line of its docstring ``doc`` as the description, the rest as the
    epilog, and the two options every benchmark has, ``--threads`` (torch threads) and ``--out`` (work directory)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0], epilog=doc.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=threads, help=threads_help)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="work directory (corpus, models, results)")
    return p


def set_threads(threads: int) -> int:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def machine() -> dict:
    import torch

    info = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)  # > cpu_count: timings are contended
    except OSError:
        pass
    return info


def target(value: float, op: str, goal: float) -> dict:
    met = value >= goal if op == ">=" else value <= goal
    return {"value": round(float(value), 4), "target": f"{op} {goal:g}", "met": bool(met)}


def result(benchmark: str, summary: str, metrics: dict, targets: dict, seconds: float, config: dict) -> dict:
    return {"benchmark": benchmark, "summary": summary, "metrics": metrics, "targets": targets,
            "seconds": round(seconds, 1), "config": config, "machine": machine()}


def start(args) -> tuple[Path, Path]:
    """A benchmark's prologue: quiet libraries, ``args.threads`` torch threads, and (``args.out``, the manifest of
    ``args.utterances`` generated utterances shared by the benchmarks)."""
    quiet_libraries()
    set_threads(args.threads)
    out = Path(args.out)
    return out, ensure_manifest(args.utterances, out)


def finish(benchmark: str, summary: str, metrics: dict, targets: dict, started: float, args, out: Path) -> dict:
    """The result record (``result``), saved to ``out`` and returned."""
    res = result(benchmark, summary, metrics, targets, time.perf_counter() - started, vars(args))
    save_result(res, out)
    return res


def save_result(res: dict, out: Path) -> None:
    path = Path(out) / f"{res['benchmark']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str))


class PeakRSS:
    """Peak resident memory of this process (psutil, sampled every ``interval`` s in a thread)."""

    def __init__(self, interval: float = 0.01):
        import psutil

        self.process, self.interval = psutil.Process(), interval
        self.peak = self.start = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def mib(num_bytes: float) -> float:
    return num_bytes / 2**20


def matmul_flops_per_second(n: int = 2048, repeats: int = 5, device="cpu", dtype=None) -> float:
    """The matmul rate (float32 unless ``dtype``) this machine reaches on ``device`` with torch's current threads
    (best of ``repeats``)."""
    import torch

    dtype = dtype or torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.matmul(a, b)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best
