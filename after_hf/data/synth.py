"""`after-hf synth`: an offline emotional-speech corpus generated with espeak-ng, in the CREMA-D layout.

No speech corpus can be downloaded here, so the demo and the tests run on this one. Each utterance is
one sentence spoken by one of N espeak-ng voices (language variant + voice variant + a speaker-specific
base pitch, rate and timbre = a distinct speaker) with prosody drawn from per-emotion distributions that
overlap on purpose (happy/angry share high pitch and fast rate; sad/neutral share low range):

    pitch level, pitch range, rate  -> SSML <prosody> read by espeak-ng
    pauses                          -> SSML <break> between words (longer and more frequent when sad)
    spectral tilt                   -> sox ``treble`` shelf at 3 kHz (tense = brighter, sad = duller)
    loudness                        -> a small dB offset after RMS normalisation (a weak cue on purpose)

Speaker and emotion are drawn independently: the (speaker, emotion) cells are a shuffled, balanced
factorial (each cell within one utterance of the others), so no voice predicts an emotion.

Layout (a real corpus layout, read by the ``cremad`` reader like the real CREMA-D):

    OUT/AudioWAV/<actor>_<sentence>_<EMO>_<LVL>.wav   16 kHz mono 16-bit; actors 1001.., EMO in ANG/HAP/SAD/NEU
                                                      (+DIS/FEA with --emotions), LVL in LO/MD/HI/XX
    OUT/synth_truth.csv                               per file: voice, true and written emotion, prosody values
    OUT/synth_info.json                               the options used (a re-run with the same options is a no-op)

LVL scales how far the emotion departs from neutral prosody (LO 0.6, MD 0.85, HI 1.1, XX 0.85); neutral
files use all four codes too, so that 20 sentences x 4 levels = 80 distinct names per (actor, emotion).
With ``--label_noise p`` the file name carries a wrong emotion with probability p (AFTER's noisy pool);
the true one is kept in synth_truth.csv. Same options and seed -> byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from .. import SAMPLING_RATE
from ..io import atomic_write_json, atomic_write_text, replace_dir

# CREMA-D's twelve sentence codes plus eight more in the same style (a 3-letter code per sentence).
SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
    "KTD": "Kids are talking by the door.",
    "DSD": "Dogs are sitting by the door.",
    "TBC": "The bus is coming soon.",
    "WDN": "We did not see them.",
    "SHR": "She has read the letter.",
    "OTW": "Open the window, please.",
    "TKT": "The keys are on the table.",
    "NHS": "Nobody heard the sound.",
}
LEVELS = {"LO": 0.6, "MD": 0.85, "HI": 1.1, "XX": 0.85}  # CREMA-D intensity codes -> prosody scale
EMOTION_CODES = {"neutral": "NEU", "happy": "HAP", "angry": "ANG", "sad": "SAD", "disgust": "DIS", "fearful": "FEA"}

# Per-emotion prosody: (mean, standard deviation). Units: pitch = % change of the voice's base pitch,
# range = % of the voice's pitch range, rate = % of its speaking rate, pause_p = chance of a pause
# after each word, pause_ms = its length, tilt_db = treble shelf gain, volume_db = offset after normalisation.
PROSODY = {
    "neutral": dict(pitch=(0, 8), range=(100, 20), rate=(100, 7), pause_p=(0.12, 0.06), pause_ms=(90, 40), tilt_db=(0, 2.5), volume_db=(0, 2)),
    "happy": dict(pitch=(34, 12), range=(180, 40), rate=(110, 8), pause_p=(0.08, 0.05), pause_ms=(70, 30), tilt_db=(2, 2.5), volume_db=(1, 2)),
    "angry": dict(pitch=(18, 12), range=(145, 40), rate=(116, 9), pause_p=(0.10, 0.06), pause_ms=(60, 30), tilt_db=(5, 2.5), volume_db=(3, 2)),
    "sad": dict(pitch=(-24, 10), range=(45, 15), rate=(82, 8), pause_p=(0.40, 0.12), pause_ms=(200, 70), tilt_db=(-5, 2.5), volume_db=(-2, 2)),
    "disgust": dict(pitch=(-10, 10), range=(120, 30), rate=(88, 8), pause_p=(0.25, 0.10), pause_ms=(140, 60), tilt_db=(1, 2.5), volume_db=(0, 2)),
    "fearful": dict(pitch=(40, 12), range=(75, 25), rate=(120, 10), pause_p=(0.25, 0.10), pause_ms=(110, 50), tilt_db=(3, 2.5), volume_db=(-1, 2)),
}
LANGUAGES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "f2", "m3", "f1", "m4", "f3", "m2", "f4", "m5", "f5", "m6", "m7")
TARGET_DBFS = -23.0  # RMS level every utterance is normalised to before its emotion's small volume offset
FIRST_ACTOR = 1001


class SynthError(RuntimeError):
    """The corpus cannot be generated as asked; the message says what to change."""


@dataclass
class SynthArguments:
    out: str = field(metadata={"help": "Output corpus directory (CREMA-D layout: OUT/AudioWAV/*.wav)."})
    num_utterances: int = field(default=2000, metadata={"help": "Number of utterances to generate."})
    seed: int = field(default=0, metadata={"help": "Random seed: the same seed and options give byte-identical files."})
    voices: int = field(default=10, metadata={"help": "Number of distinct speakers (espeak-ng voice x variant x base pitch)."})
    emotions: str = field(default="neutral,happy,angry,sad", metadata={"help": f"Comma-separated emotions from {list(EMOTION_CODES)}."})
    noise_snr_db: Optional[float] = field(default=None, metadata={"help": "Add background noise at this SNR in dB (default: clean)."})
    label_noise: float = field(default=0.0, metadata={"help": "Probability that a file is written with a wrong emotion (true one kept in synth_truth.csv)."})
    num_workers: int = field(default=0, metadata={"help": "Parallel espeak-ng/sox jobs (0 = number of CPU cores)."})
    overwrite: bool = field(default=False, metadata={"help": "Regenerate even if OUT already holds a corpus made with the same options."})


@dataclass(frozen=True)
class Voice:
    actor: int
    espeak_voice: str  # e.g. "en-gb+f2"
    base_pitch: int  # espeak-ng -p (0-99)
    base_wpm: int  # espeak-ng -s
    tilt_db: float  # speaker timbre, added to the emotion's tilt


@dataclass(frozen=True)
class Job:
    index: int
    file: str
    voice: Voice
    sentence: str
    true_emotion: str
    written_emotion: str
    level: str
    prosody: dict
    breaks: tuple  # pause (ms) after each word, 0 = none
    lead_ms: int
    trail_ms: int


def make_voices(n: int, seed: int) -> list[Voice]:
    rng = np.random.default_rng([seed, 7919])
    voices = []
    for i in range(n):
        variant = VARIANTS[(i + i // 24) % len(VARIANTS)]  # lcm(8, 12) = 24 distinct combinations per cycle
        voices.append(
            Voice(
                actor=FIRST_ACTOR + i,
                espeak_voice=f"{LANGUAGES[i % len(LANGUAGES)]}+{variant}",
                base_pitch=int(rng.integers(32, 68)),
                base_wpm=int(rng.integers(185, 225)),
                tilt_db=float(np.round(rng.normal(0, 1.5), 2)),
            )
        )
    return voices


def _draw(rng: np.random.Generator, emotion: str, scale: float) -> dict:
    """One utterance's prosody: neutral + scale x (emotion mean - neutral mean) + noise."""
    out = {}
    for key, (mean, sd) in PROSODY[emotion].items():
        neutral_mean = PROSODY["neutral"][key][0]
        out[key] = float(neutral_mean + scale * (mean - neutral_mean) + rng.normal(0, sd))
    out["range"] = max(out["range"], 10.0)
    out["rate"] = min(max(out["rate"], 55.0), 170.0)
    out["pause_p"] = min(max(out["pause_p"], 0.0), 0.9)
    out["pause_ms"] = max(out["pause_ms"], 20.0)
    return {k: round(v, 3) for k, v in out.items()}


def plan(num_utterances: int, seed: int, voices: int, emotions: Sequence[str], label_noise: float = 0.0) -> list[Job]:
    """Every utterance's speaker, emotion, sentence, level and prosody, decided up front from the seed."""
    emotions = list(emotions)
    unknown = [e for e in emotions if e not in EMOTION_CODES]
    if unknown or len(emotions) < 2:
        raise SynthError(f"emotions {unknown or emotions} not usable: choose at least two of {list(EMOTION_CODES)}.")
    if voices < 1 or num_utterances < 1:
        raise SynthError("--voices and --num_utterances must be >= 1.")
    if not 0.0 <= label_noise < 1.0:
        raise SynthError(f"--label_noise {label_noise} must be in [0, 1).")
    rng = np.random.default_rng([seed, 104729])
    speaker_voices = make_voices(voices, seed)
    # Balanced factorial of (speaker, emotion) cells, shuffled: speaker and emotion independent.
    cells = [(s, e) for s in range(voices) for e in range(len(emotions))]
    reps = math.ceil(num_utterances / len(cells))
    design = [cells[i] for i in rng.permutation(np.tile(np.arange(len(cells)), reps))[:num_utterances]]
    written = []
    for s, e in design:
        w = e
        if label_noise and rng.random() < label_noise:
            w = int(rng.choice([k for k in range(len(emotions)) if k != e]))
        written.append(w)
    # Distinct (sentence, level) names per (actor, written emotion): the file name must be unique.
    names = [(c, lv) for c in SENTENCES for lv in LEVELS]
    per_cell: dict[tuple, list] = {}
    jobs = []
    for index, ((s, e), w) in enumerate(zip(design, written)):
        pool = per_cell.setdefault((s, w), [names[i] for i in rng.permutation(len(names))])
        if not pool:
            raise SynthError(
                f"{num_utterances} utterances over {voices} voices x {len(emotions)} emotions need more than "
                f"{len(names)} distinct file names per (voice, emotion): raise --voices to at least "
                f"{math.ceil(num_utterances / (len(names) * 0.9 * len(emotions)))}."
            )
        code, level = pool.pop()
        emotion = emotions[e]
        prosody = _draw(rng, emotion, LEVELS[level])
        words = SENTENCES[code].split()
        breaks = tuple(
            int(max(20, rng.normal(prosody["pause_ms"], prosody["pause_ms"] * 0.3))) if rng.random() < prosody["pause_p"] else 0
            for _ in words[:-1]
        )
        voice = speaker_voices[s]
        jobs.append(
            Job(
                index=index,
                file=f"{voice.actor}_{code}_{EMOTION_CODES[emotions[w]]}_{level}.wav",
                voice=voice,
                sentence=SENTENCES[code],
                true_emotion=emotion,
                written_emotion=emotions[w],
                level=level,
                prosody=prosody,
                breaks=breaks,
                lead_ms=int(rng.integers(30, 110)),
                trail_ms=int(rng.integers(30, 110)),
            )
        )
    return jobs


def ssml(job: Job) -> str:
    words = job.sentence.split()
    text = " ".join(
        escape(w) + (f' <break time="{b}ms"/>' if i < len(job.breaks) and job.breaks[i] else "")
        for i, (w, b) in enumerate(zip(words, job.breaks + (0,)))
    )
    p = job.prosody
    return (
        f'<speak><prosody pitch="{p["pitch"]:+.0f}%" range="{p["range"]:.0f}%" rate="{p["rate"]:.0f}%">'
        f"{text}</prosody></speak>"
    )


def render(job: Job, seed: int, noise_snr_db: float | None) -> np.ndarray:
    """espeak-ng (SSML) -> sox (16 kHz, tilt) -> float32; then pad, normalise, optional noise."""
    v = job.voice
    speak = subprocess.run(
        ["espeak-ng", "-v", v.espeak_voice, "-p", str(v.base_pitch), "-s", str(v.base_wpm), "-m", "--stdout", ssml(job)],
        capture_output=True, check=False,
    )
    if speak.returncode != 0 or not speak.stdout:
        raise SynthError(f"espeak-ng failed for {job.file}: {speak.stderr.decode(errors='replace')[:300]} (install espeak-ng: make setup)")
    tilt = job.prosody["tilt_db"] + v.tilt_db
    conv = subprocess.run(
        ["sox", "-t", "wav", "-", "-D", "-t", "f32", "-r", str(SAMPLING_RATE), "-c", "1", "-", "treble", f"{tilt:.2f}", "3000"],
        input=speak.stdout, capture_output=True, check=False,
    )
    if conv.returncode != 0:
        raise SynthError(f"sox failed for {job.file}: {conv.stderr.decode(errors='replace')[:300]} (install sox: make setup)")
    wave = np.frombuffer(conv.stdout, dtype=np.float32)
    wave = np.concatenate([np.zeros(job.lead_ms * 16, np.float32), wave, np.zeros(job.trail_ms * 16, np.float32)])
    active = wave[np.abs(wave) > 1e-4]
    rms = float(np.sqrt(np.mean(active**2))) if active.size else 1.0
    level = 10 ** ((TARGET_DBFS + job.prosody["volume_db"]) / 20)  # RMS of the speech after normalisation
    wave = wave * (level / max(rms, 1e-6))
    if noise_snr_db is not None:
        rng = np.random.default_rng([seed, job.index, 31337])
        noise = rng.standard_normal(wave.size).astype(np.float32)
        noise = np.convolve(noise, np.ones(4, np.float32) / 4, mode="same")  # soft low-pass: less hiss, more rumble
        noise *= level / 10 ** (noise_snr_db / 20) / float(np.sqrt(np.mean(noise**2)))
        wave = wave + noise
    peak = float(np.max(np.abs(wave)))
    if peak > 0.99:
        wave = wave * (0.99 / peak)
    return wave.astype(np.float32)


def _info(num_utterances, seed, voices, emotions, noise_snr_db, label_noise) -> dict:
    return {
        "layout": "cremad",
        "num_utterances": num_utterances,
        "seed": seed,
        "voices": voices,
        "emotions": list(emotions),
        "noise_snr_db": noise_snr_db,
        "label_noise": label_noise,
        "generator": "after_hf.data.synth v1 (espeak-ng + sox)",
    }


def synthesize(
    out_dir: str | Path,
    num_utterances: int = 2000,
    seed: int = 0,
    voices: int = 10,
    emotions: Sequence[str] = ("neutral", "happy", "angry", "sad"),
    noise_snr_db: float | None = None,
    label_noise: float = 0.0,
    num_workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Generate the corpus into ``out_dir`` (written to a temporary directory, then moved into place)."""
    out_dir = Path(out_dir)
    info = _info(num_utterances, seed, voices, emotions, noise_snr_db, label_noise)
    info_path = out_dir / "synth_info.json"
    if not overwrite and info_path.is_file():
        old = json.loads(info_path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in info} == info:
            return out_dir
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SynthError(f"`{tool}` is not installed: run `make setup` (or apt-get install espeak-ng sox).")
    jobs = plan(num_utterances, seed, voices, emotions, label_noise)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "AudioWAV").mkdir(parents=True)

    def work(job: Job) -> float:
        wave = render(job, seed, noise_snr_db)
        sf.write(tmp / "AudioWAV" / job.file, wave, SAMPLING_RATE, subtype="PCM_16", format="WAV")
        return wave.size / SAMPLING_RATE

    started = time.perf_counter()
    workers = num_workers or os.cpu_count() or 1
    # espeak-ng and sox run as child processes, so threads give real parallelism here.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        durations = list(tqdm(pool.map(work, jobs), total=len(jobs), desc="synth", unit="utt", disable=not progress))
    elapsed = time.perf_counter() - started

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    keys = list(PROSODY["neutral"])
    writer.writerow(["file", "actor", "espeak_voice", "sentence", "level", "true_emotion", "written_emotion", "duration", *keys])
    for job, dur in zip(jobs, durations):
        writer.writerow([
            f"AudioWAV/{job.file}", job.voice.actor, job.voice.espeak_voice, job.sentence, job.level,
            job.true_emotion, job.written_emotion, f"{dur:.4f}", *(job.prosody[k] for k in keys),
        ])
    atomic_write_text(tmp / "synth_truth.csv", buf.getvalue())
    atomic_write_json(tmp / "synth_info.json", info)
    replace_dir(tmp, out_dir)
    if progress:
        print(
            f"synth: {len(jobs)} utterances ({sum(durations) / 60:.1f} min of audio, mean {np.mean(durations):.2f} s), "
            f"{voices} voices, {workers} workers, {elapsed:.1f} s -> {out_dir}"
        )
    return out_dir


def main(argv: list[str] | None = None) -> int:
    from ..config import parse_args

    (args,) = parse_args([SynthArguments], argv, prog="after-hf synth", description=__doc__.split("\n")[0], section="synth")
    synthesize(
        args.out, args.num_utterances, args.seed, args.voices,
        emotions=[e.strip() for e in args.emotions.split(",") if e.strip()],
        noise_snr_db=args.noise_snr_db, label_noise=args.label_noise,
        num_workers=args.num_workers, overwrite=args.overwrite,
    )
    return 0
