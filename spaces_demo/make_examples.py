"""Refresh the Space's bundled demo model and its example clips from a finished `make demo`.

    python spaces_demo/make_examples.py --experiment runs/demo

* ``spaces_demo/model/``: a copy of the experiment's deployable model (``final/model``: safetensors, config,
  preprocessor, metrics.json and provenance, no evaluation folders), so the Space serves a trained model before
  anyone runs `make demo`, and `after-hf push-space` bundles the same folder.
* ``spaces_demo/examples/<emotion>.ogg``: per emotion, one **held-out test clip** (a voice the model never heard)
  that the model classifies correctly **as a single clip** — what the Space does with one upload, without the
  per-speaker centring the test scores use. Whole clips as they are in the corpus (no trimming), the shortest
  correct one of at least ``MIN_SECONDS``; 16 kHz mono Ogg Vorbis, < 100 KB in all. The examples are chosen
  *because* the model gets them right: they show what the model does, not how often it is right (the Space's
  "About this model" panel shows the test scores).
* ``spaces_demo/examples/examples.json``: where each clip came from and what the model said.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"
MODEL_DIR = HERE / "model"
EMOTIONS = ("neutral", "happy", "angry", "sad")
MIN_SECONDS = 2.0  # long enough to hear the prosody
MAX_TOTAL_BYTES = 100_000
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "metrics.json",
               "after_hf_provenance.json")


def copy_model(source: Path) -> None:
    missing = [name for name in MODEL_FILES[:3] if not (source / name).is_file()]
    if missing:
        raise SystemExit(f"{source} lacks {missing}: run `make demo` first (it writes runs/demo/final/model).")
    tmp = HERE / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in MODEL_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, tmp / name)
    shutil.rmtree(MODEL_DIR, ignore_errors=True)
    tmp.rename(MODEL_DIR)


def pick_examples(experiment: Path) -> dict:
    """emotion -> the shortest test clip of at least MIN_SECONDS that the model classifies correctly as a single
    clip, both as it is and once written as Ogg Vorbis (examples/<emotion>.ogg, what the Space plays)."""
    import soundfile as sf

    from after_hf.data.audio import load_audio
    from after_hf.data.manifest import load_manifest
    from after_hf.evaluation import load_model_for_eval
    from after_hf.inference import predict

    model, fe, names = load_model_for_eval(str(MODEL_DIR))
    test = load_manifest(experiment / "manifest", split="test")
    probs = predict(model, fe, list(test["path"]), progress=False)["probs"]  # one clip at a time: no speakers
    EXAMPLES_DIR.mkdir(exist_ok=True)
    for old in EXAMPLES_DIR.glob("*.ogg"):
        old.unlink()
    chosen = {}
    for i in sorted(range(len(test)), key=lambda i: test[i]["duration"]):
        row = test[i]
        truth = names[int(row["label"])]
        wanted = truth in EMOTIONS and truth not in chosen and row["duration"] >= MIN_SECONDS
        if not wanted or probs[i].argmax() != row["label"]:
            continue
        ogg = EXAMPLES_DIR / f"{truth}.ogg"
        sf.write(ogg, load_audio(row["path"]), 16000, format="OGG", subtype="VORBIS")
        again = predict(model, fe, [str(ogg)], progress=False)["probs"][0]
        if again.argmax() != row["label"]:  # the lossy copy is classified otherwise: try the next clip
            ogg.unlink()
            continue
        chosen[truth] = {"speaker": row["speaker"], "duration_s": round(row["duration"], 2),
                         "probability": round(float(again.max()), 3)}
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="runs/demo", help="a finished `after-hf experiment` directory")
    args = parser.parse_args(argv)
    experiment = Path(args.experiment)
    copy_model(experiment / "final" / "model")
    chosen = pick_examples(experiment)

    from after_hf.io import atomic_write_json

    for emotion, info in chosen.items():
        print(f"{emotion}: test speaker {info['speaker']}, {info['duration_s']} s, p = {info['probability']}")
    missing = [e for e in EMOTIONS if e not in chosen]
    if missing:
        print(f"no correctly classified test clip of >= {MIN_SECONDS} s for {missing}: no example for them",
              file=sys.stderr)
    atomic_write_json(EXAMPLES_DIR / "examples.json", {
        "source": "held-out test clips of `make demo` (speakers unseen in training), classified as single clips",
        "selection": f"per emotion, the shortest correctly classified clip of at least {MIN_SECONDS} s",
        "clips": {f"{e}.ogg": info for e, info in chosen.items()}})
    total = sum(p.stat().st_size for p in EXAMPLES_DIR.glob("*.ogg"))
    print(f"{total / 1000:.1f} KB of examples in {EXAMPLES_DIR}; model copied to {MODEL_DIR}")
    if total > MAX_TOTAL_BYTES:
        print(f"the examples exceed {MAX_TOTAL_BYTES // 1000} KB: lower MIN_SECONDS", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
