"""Predict the emotion of recordings nobody has labelled: one CSV row per clip, with every class's probability.

    after-hf predict --model runs/demo/final/model --audio_dir my_recordings --out predictions.csv
    after-hf predict --model USER/NAME --manifest data/manifest --split test --out predictions.csv

A speaker-normalised model (`deploy`'s and the demo's: its card says so) centres each clip on its speaker's mean
over that speaker's clips, so it needs to know who speaks: a manifest's `speaker` column, or with --audio_dir the
folder each file sits in (`--speakers folder`: one folder per speaker, at least 5 clips each). `--speakers none`
scores each clip alone, as `pipeline` and the Space do, which is less accurate (the card gives both figures). Audio
is scored at full length, up to --max_seconds. Files that cannot be decoded or are longer are listed with their
reason and left out of the CSV; no file is dropped silently.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import ConfigError, parse_args
from .io import atomic_write_text

SPEAKER_SOURCES = ("folder", "none")


@dataclass
class PredictArguments:
    model: str = field(metadata={"help": "Trained classifier: a save_pretrained directory (e.g. RUN/final/model) "
                                         "or a Hub id."})
    out: str = field(metadata={"help": "CSV file to write (path, speaker, predicted label, one probability column "
                                       "per class); written atomically."})
    audio_dir: str = field(default="", metadata={
        "help": "Folder of recordings (searched recursively: wav, flac, mp3, ogg, ...). Give this or --manifest."})
    manifest: str = field(default="", metadata={
        "help": "Manifest directory (after-hf prepare); its labels are not used."})
    split: str = field(default="", metadata={"help": "With --manifest: only this split (default: every row)."})
    speakers: str = field(default="folder", metadata={
        "choices": SPEAKER_SOURCES,
        "help": "Who speaks in each file, for a speaker-normalised model. folder: with --audio_dir, the file's parent "
                "folder is its speaker (with --manifest, its speaker column); none: each clip scored alone."})
    max_seconds: float = field(default=60.0, metadata={
        "help": "Longer recordings are left out and listed: the model was trained on utterances of a few seconds, and "
                "attention grows with the square of the length; split long recordings into utterances first."})
    batch_seconds: float = field(
        default=160.0, metadata={"help": "Seconds of padded audio per batch (lower it if memory runs out)."})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available), cpu or cuda[:N]."})


def audio_files(folder: str | Path) -> tuple[list[Path], int]:
    """(every audio file under ``folder``, recursively and through linked folders, sorted; the number of hidden
    ones skipped). A link to nothing is kept: decoding then names it."""
    import os

    from .data.corpora.base import AUDIO_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"--audio_dir {folder}: no such folder.")
    found, hidden, seen = [], 0, set()
    for here, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a link back up the tree: walked once
            dirs[:] = []
            continue
        seen.add(real)
        for name in files:
            path = Path(here) / name
            if path.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                hidden += 1
            else:
                found.append(path)
    if not found:
        raise ConfigError(f"--audio_dir {folder}: no audio files in it (looked for "
                          f"{', '.join(sorted(AUDIO_EXTENSIONS))}).")
    return sorted(found), hidden


def _too_long(seconds: float, max_seconds: float) -> str:
    return f"{seconds:.0f} s long, over --max_seconds {max_seconds:g}: split it into utterances"


def decodable(paths: list[Path], max_seconds: float) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(the files that decode to usable 16 kHz audio of at most ``max_seconds``, [(file, reason)] for the others),
    one file in memory at a time."""
    from tqdm.auto import tqdm

    from . import SAMPLING_RATE
    from .data.audio import AudioError, load_audio

    good, bad = [], []
    for path in tqdm(paths, desc="checking audio", unit="file", leave=False):
        try:
            seconds = load_audio(path).size / SAMPLING_RATE
        except AudioError as err:
            bad.append((path, err.reason))
            continue
        if seconds > max_seconds:
            bad.append((path, _too_long(seconds, max_seconds)))
        else:
            good.append(path)
    return good, bad


def _inputs(args: PredictArguments) -> tuple[list[str], list[str] | None, list[tuple[Path, str]], int]:
    """(audio paths, their speakers or None, undecodable files with reasons, hidden files skipped) from --audio_dir
    or --manifest."""
    if args.manifest:
        from .data.manifest import load_manifest

        ds = load_manifest(args.manifest, split=args.split or None)
        long = [(Path(p), _too_long(d, args.max_seconds)) for p, d in zip(ds["path"], ds["duration"])
                if d > args.max_seconds]
        if long:
            ds = ds.filter(lambda d: d <= args.max_seconds, input_columns="duration")
        keep = args.speakers != "none" and "speaker" in ds.column_names
        return list(ds["path"]), list(ds["speaker"]) if keep else None, long, 0
    found, hidden = audio_files(args.audio_dir)
    good, bad = decodable(found, args.max_seconds)
    if not good:
        raise ConfigError(f"--audio_dir {args.audio_dir}: none of its {len(bad)} audio files could be decoded "
                          f"(e.g. {bad[0][0]}: {bad[0][1]}).")
    speakers = [str(p.parent.relative_to(args.audio_dir)) for p in good] if args.speakers == "folder" else None
    return [str(p) for p in good], speakers, bad, hidden


def predictions_csv(paths: list[str], speakers: list[str] | None, probs: np.ndarray, names: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "speaker", "predicted", *[f"p_{name}" for name in names]])
    for row, path in enumerate(paths):
        writer.writerow([path, "" if speakers is None else speakers[row], names[int(probs[row].argmax())],
                         *[f"{p:.4f}" for p in probs[row]]])
    return buf.getvalue()


def _speaker_note(speakers: list[str] | None, normalised: bool) -> str | None:
    """What the console should say about speaker normalisation for these inputs, if anything."""
    from .data.normalise import MIN_SPEAKER_CLIPS

    if not normalised:
        return None
    if speakers is None:
        return ("note: this model normalises each speaker, but no speakers were given: every clip was scored alone "
                "(less accurate; the model card gives both figures). Use --speakers folder or a manifest.")
    counts = Counter(speakers)
    if len(counts) == 1 and len(speakers) >= MIN_SPEAKER_CLIPS:
        return (f"note: all {len(speakers)} clips were taken as one speaker ('{speakers[0]}'); if several people "
                "speak, put each person's files in a folder of their own, or use a manifest with a speaker column.")
    few = sorted(s for s, n in counts.items() if n < MIN_SPEAKER_CLIPS)
    if few:
        return (f"note: {len(few)} of {len(counts)} speakers have fewer than {MIN_SPEAKER_CLIPS} clips (e.g. "
                f"'{few[0]}'); their clips were scored alone.")
    return None


def _check_options(args: PredictArguments) -> None:
    """Everything that can be wrong with the options, before any model or audio is loaded."""
    if bool(args.audio_dir) == bool(args.manifest):
        raise ConfigError("give exactly one of --audio_dir FOLDER and --manifest DIR.")
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {args.out} is a folder: name the CSV file to write, e.g. {args.out}/predictions.csv.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {args.out}: its folder cannot be created ({err.strerror}); choose another path.") \
            from err


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args([PredictArguments], argv, prog="after-hf predict", description=__doc__, section="predict")
    from .evaluation import load_model_for_eval
    from .inference import predict, process_device, speaker_norm_of

    _check_options(args)
    model, feature_extractor, names = load_model_for_eval(args.model, process_device(args.device))
    paths, speakers, bad, hidden = _inputs(args)
    probs = predict(model, feature_extractor, paths, batch_seconds=args.batch_seconds, speakers=speakers)["probs"]
    atomic_write_text(Path(args.out), predictions_csv(paths, speakers, probs, names))
    counts = np.bincount(probs.argmax(1), minlength=len(names))
    print(f"{len(paths)} clips -> {args.out}: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts)))
    for path, reason in bad:
        print(f"left out: {path}: {reason}")
    if hidden:
        print(f"left out: {hidden} hidden audio files (names or folders starting with '.')")
    note = _speaker_note(speakers, speaker_norm_of(model) is not None)
    if note:
        print(note)
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("predict", main)
