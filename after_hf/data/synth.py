"""`after-hf synth`: an offline emotional-speech pool generated with espeak-ng, in the CREMA-D layout.

No speech corpus can be downloaded here, so the demo and the tests run on this one. What it draws is a
*profile* (``recipes/demo/corpus.yaml``: every value commented with its source), read once and fixed:

    speakers     sex, base F0 (semitones from the espeak-ng variant), speaking rate, timbre (HF shelf), recording
                 gain and noise, and how expressive the speaker is (overall and per cue)
    turns        IEMOCAP-like lengths (log-normal, several sentences per turn), sentences repeated across
                 speakers as in CREMA-D, a CREMA-D intensity level
    emotion      a deviation from the speaker's own neutral voice per cue (pitch level, pitch range, rate,
                 pauses, spectral tilt, loudness) = level scale x speaker expressiveness x the emotion's mean
                 + within-emotion noise, so emotions overlap: low-intensity turns of inexpressive speakers
                 sound nearly neutral.

Speaker and emotion are drawn independently: every speaker gets the profile's class shares (largest remainder),
so no voice predicts an emotion, and the pool's classes are as imbalanced as the profile says.

Layout (read by the ``cremad`` reader like the real CREMA-D):

    OUT/AudioWAV/<actor>_<SSS>_<EMO>_<LVL>.wav   16 kHz mono 16-bit; SSS = code of the turn's first sentence
    OUT/synth_truth.csv                          per file: speaker, text, level and every generative value
    OUT/synth_info.json                          options + profile used (a re-run with the same ones is a no-op)
    OUT/finishedResponses.csv                    simulated raters' answers (profile ``raters:``), CREMA-D's format

With a ``raters:`` section in the profile, every clip also gets several simulated listeners' answers
(``synth_raters``: they disagree where the clip is ambiguous), which ``prepare`` reads into the manifest's
``ratings`` like CREMA-D's crowd votes. They come from their own random stream: the audio, the file names and
synth_truth.csv are the same with or without them, and a re-run that changes only the raters rewrites only them.

The generative values in synth_truth.csv are what the experiment's *ceiling* classifier reads. With
``--label_noise p`` a file name carries a wrong emotion with probability p (AFTER's noisy pool; the truth stays
in synth_truth.csv). Same options, profile and seed -> byte-identical files.
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
from typing import Any, Optional, Sequence
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
import yaml
from tqdm.auto import tqdm

from .. import SAMPLING_RATE
from ..errors import AfterHFError, brief
from ..io import atomic_write_json, atomic_write_text, replace_dir
from . import synth_raters

# CREMA-D's twelve sentences (their codes) and 24 more in the same register: turns repeat them across speakers.
SENTENCES = {
    "IEO": "It's eleven o'clock.", "TIE": "That is exactly what happened.", "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.", "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.", "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.", "ITS": "I think I've seen this before.", "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.", "KTD": "Kids are talking by the door.",
    "DSD": "Dogs are sitting by the door.", "TBC": "The bus is coming soon.", "WDN": "We did not see them.",
    "SHR": "She has read the letter.", "OTW": "Open the window, please.", "TKT": "The keys are on the table.",
    "NHS": "Nobody heard the sound.", "YSC": "You said you would call me back.",
    "WTL": "We talked about it last night.",
    "HLS": "He left the station an hour ago.", "ICS": "I can see the lights from here.",
    "TMR": "They moved the meeting to Friday.", "WHO": "Who told you about the party?",
    "ANA": "All of them are waiting outside.", "SKN": "She knows the way to the house.",
    "TRC": "The rain came down all afternoon.", "YNT": "You never told me that before.",
    "IFB": "I found the book under the bed.", "WWT": "We will take the early train.",
    "MSW": "My sister works at the hospital.", "THC": "The house was completely empty.",
    "LAT": "Let's ask them about the tickets.", "TDN": "That doesn't make any sense.",
}
# A small grammar (subject | verb | object | adverbial; '' = none) for varied, emotion-free read sentences.
GRAMMAR = (
    "the old man|my neighbour|a small child|the teacher|our manager|the doctor|her brother|this company|the driver|"
    "everyone here|the students|his parents|the farmer|a young woman|the committee|nobody in town|the engineer|"
    "my cousin|the waiter|their daughter|the new pilot|a tall stranger|the baker|your friend",
    "walked past|looked at|talked about|waited for|read|painted|carried|opened|cleaned|found|remembered|described|"
    "repaired|visited|ordered|noticed|sold|borrowed|moved|counted|measured|photographed|followed|packed",
    "the red house|a long letter|the kitchen table|the river bank|an empty bottle|the morning train|the garden gate|"
    "a heavy box|the city library|the blue car|two old chairs|the village square|a paper map|the wooden bridge|"
    "the last bus|a quiet office|the winter coats|the front window|a broken clock|the tall tower",
    "|yesterday|after lunch|in the evening|before the storm|on Monday|near the station|without a word|for an hour|"
    "every summer|at the market|last week|in the morning|across the street|during the break",
)
LEVEL_CODES = ("LO", "MD", "HI", "XX")  # CREMA-D intensity codes
EMOTION_CODES = {"neutral": "NEU", "happy": "HAP", "angry": "ANG", "sad": "SAD", "disgust": "DIS", "fearful": "FEA"}
CUES = ("pitch_st", "range_pct", "rate_pct", "pause_p", "pause_ms", "tilt_db", "loudness_db")
# espeak-ng accents whose `+variant` suffix works in 1.51 (plain `en-gb+f2` silently ignores the variant)
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = {"female": ("f1", "f2", "f3", "f4", "f5"), "male": ("m1", "m2", "m3", "m4", "m6", "m7", "m8")}
ST_PER_PITCH_UNIT = 0.155  # espeak-ng -p: measured ~ 2.3 semitones per 15 units around the default 50 (1.51)
TARGET_DBFS = -26.0  # RMS of a neutral turn's speech before the speaker gain and the emotion's loudness
FIRST_ACTOR = 1001
DEFAULT_PROFILE = "recipes/demo/corpus.yaml"


class SynthError(AfterHFError, RuntimeError):
    """The corpus cannot be generated as asked; the message says what to change."""


@dataclass
class SynthArguments:
    out: str = field(metadata={"help": "Output corpus directory (CREMA-D layout: OUT/AudioWAV/*.wav)."})
    num_utterances: int = field(default=1200, metadata={"help": "Number of turns (clips) to generate."})
    seed: int = field(
        default=0, metadata={"help": "Random seed: the same seed, options and profile give byte-identical files."})
    voices: int = field(
        default=32, metadata={"help": "Number of distinct speakers (espeak-ng accent x variant x F0 x rate x timbre)."})
    profile: str = field(
        default=DEFAULT_PROFILE,
        metadata={"help": "YAML profile: class shares, per-emotion effects, speakers, intensity levels, lengths (see "
                          "the default, commented with its sources)."},
    )
    emotions: str = field(
        default="",
        metadata={"help": "Comma-separated subset of the profile's emotions ('' = every emotion with a class share)."},
    )
    noise_snr_db: Optional[float] = field(
        default=None, metadata={"help": "Override the profile's per-speaker noise: one SNR in dB for every clip."})
    label_noise: float = field(
        default=0.0,
        metadata={"help": "Probability that a file is written with a wrong emotion (the true one is kept in "
                          "synth_truth.csv)."},
    )
    num_workers: int = field(default=0, metadata={"help": "Parallel espeak-ng/sox jobs (0 = number of CPU cores)."})
    overwrite: bool = field(
        default=False, metadata={"help": "Regenerate even if OUT already holds a corpus made with the same options."})


def load_profile(profile: str | Path | dict | None = None, **overrides: Any) -> dict:
    """The profile as a dict: a YAML path (relative to the working directory or to the repository), or a dict.

    ``overrides`` replace top-level sections key by key, e.g. ``lengths={"median_s": 1.5}``."""
    if isinstance(profile, dict):
        data = json.loads(json.dumps(profile))
    else:
        path = Path(profile or DEFAULT_PROFILE)
        if not path.is_file() and not path.is_absolute():
            path = Path(__file__).resolve().parents[2] / path  # the repository's recipes/ next to the package
        if not path.is_file():
            raise SynthError(f"synth profile {profile} not found: pass --profile PATH (e.g. {DEFAULT_PROFILE}).")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    missing = [k for k in ("emotions", "effects", "spread", "speakers", "intensity", "lengths") if k not in data]
    if missing:
        raise SynthError(f"synth profile {profile} lacks the sections {missing}; start from {DEFAULT_PROFILE}.")
    return data


@dataclass(frozen=True)
class Voice:
    actor: int
    sex: str
    espeak_voice: str  # e.g. "en-gb-scotland+f2"
    pitch: int  # espeak-ng -p (0-99): the speaker's F0 offset
    f0_offset_st: float
    wpm: int  # espeak-ng -s
    tilt_db: float  # timbre, added to the emotion's tilt
    gain_db: float
    snr_db: float | None
    expressiveness: float
    cue_expressiveness: tuple  # per cue in CUES


@dataclass(frozen=True)
class Job:
    index: int
    file: str
    voice: Voice
    codes: tuple  # sentence codes of the turn
    sentences: tuple  # their texts
    true_emotion: str
    written_emotion: str
    level: str
    intensity: float  # scale of the emotion's deviation (level x jitter), before the speaker's expressiveness
    prosody: dict  # realised deviation per cue
    breaks: tuple  # per word boundary of the whole turn: pause in ms (0 = none)
    lead_ms: int
    trail_ms: int

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def make_voices(n: int, seed: int, speakers: dict) -> list[Voice]:
    rng = np.random.default_rng([seed, 7919])
    voices = []
    females = set(rng.permutation(n)[: int(round(speakers["female_share"] * n))].tolist())
    for i in range(n):
        sex = "female" if i in females else "male"
        variants = VARIANTS[sex]
        f0 = speakers["f0_offset_st"][sex] + rng.normal(0, speakers["f0_sd_st"])
        snr = speakers.get("snr_db")
        voices.append(Voice(
            actor=FIRST_ACTOR + i, sex=sex,
            espeak_voice=f"{ACCENTS[i % len(ACCENTS)]}+{variants[(i // 2 + i // 16) % len(variants)]}",
            pitch=int(np.clip(round(50 + f0 / ST_PER_PITCH_UNIT), 0, 99)), f0_offset_st=round(float(f0), 3),
            wpm=int(round(speakers["rate_wpm"] * (1 + rng.normal(0, speakers["rate_sd_pct"] / 100)))),
            tilt_db=round(float(rng.normal(0, speakers["tilt_sd_db"])), 2),
            gain_db=round(float(rng.normal(0, speakers["gain_sd_db"])), 2),
            snr_db=None if snr is None else round(float(rng.uniform(*snr)), 1),
            expressiveness=round(float(np.exp(rng.normal(0, speakers["expressiveness_sd"]))), 3),
            cue_expressiveness=tuple(round(float(v), 3)
                                     for v in np.exp(rng.normal(0, speakers["cue_expressiveness_sd"], len(CUES)))),
        ))
    return voices


def _class_counts(n: int, shares: dict[str, float]) -> dict[str, int]:
    """Largest-remainder counts of ``n`` items over the shares (which need not sum to 1)."""
    total = sum(shares.values())
    exact = {e: n * s / total for e, s in shares.items()}
    counts = {e: int(math.floor(x)) for e, x in exact.items()}
    for e in sorted(exact, key=lambda e: (counts[e] - exact[e], e))[: n - sum(counts.values())]:
        counts[e] += 1
    return counts


def _prosody(rng, profile: dict, emotion: str, scale: float, voice: Voice) -> dict:
    """One turn's cue values: neutral + scale x speaker expressiveness x (emotion mean - neutral mean) + noise."""
    neutral, target, spread = profile["effects"]["neutral"], profile["effects"][emotion], profile["spread"]
    out = {}
    for k, cue in enumerate(CUES):
        gain = scale * voice.expressiveness * voice.cue_expressiveness[k]
        out[cue] = neutral[cue] + gain * (target[cue] - neutral[cue]) + rng.normal(0, spread[cue])
    out["range_pct"] = max(out["range_pct"], 15.0)
    out["rate_pct"] = float(np.clip(out["rate_pct"], 60.0, 160.0))
    out["pause_p"] = float(np.clip(out["pause_p"], 0.0, 0.8))
    out["pause_ms"] = max(out["pause_ms"], 40.0)
    return {k: round(float(v), 3) for k, v in out.items()}


def sentence_bank(profile: dict) -> dict[str, str]:
    """code -> sentence: the CREMA-D-style bank, or ``sentences: {generated: N}`` varied read-speech sentences
    composed from a small grammar (for a generic, emotion-free pre-training corpus)."""
    spec = profile.get("sentences")
    if not spec:
        return SENTENCES
    rng = np.random.default_rng([int(spec.get("seed", 0)), 271])
    parts = [p.split("|") for p in GRAMMAR]
    bank: dict[str, str] = {}
    while len(bank) < int(spec["generated"]):
        words = [options[int(rng.integers(len(options)))] for options in parts]
        text = " ".join(w for w in words if w) + "."
        text = text[0].upper() + text[1:]
        if text in bank.values():
            continue
        n = len(bank)
        bank[chr(65 + n // 676 % 26) + chr(65 + n // 26 % 26) + chr(65 + n % 26)] = text
    return bank


def _turn_codes(rng, first: str, bank: dict, lengths: dict, voice: Voice, rate_pct: float) -> tuple:
    """Sentences of one turn: ``first`` then random others until the spoken length reaches a log-normal target."""
    target = float(np.clip(rng.lognormal(math.log(lengths["median_s"]), lengths["sigma"]),
                           lengths["min_s"], lengths["max_s"]))
    seconds_per_word = 60.0 / (voice.wpm * rate_pct / 100)
    codes, spoken = [first], len(bank[first].split()) * seconds_per_word
    others = [c for c in bank if c != first]
    while spoken < target * 0.9 and len(codes) < 12:
        code = others[int(rng.integers(len(others)))]
        codes.append(code)
        spoken += len(bank[code].split()) * seconds_per_word + np.mean(lengths["sentence_gap_ms"]) / 1000
    return tuple(codes)


def _breaks(rng, sentences: tuple, prosody: dict, gap_ms: Sequence[float]) -> tuple:
    """Pause after every word but the last: a sentence gap between sentences, an emotion pause inside them."""
    out = []
    for s, sentence in enumerate(sentences):
        words = sentence.split()
        for w in range(len(words)):
            if w < len(words) - 1:
                pause = rng.random() < prosody["pause_p"]
                out.append(int(max(20, rng.normal(prosody["pause_ms"], prosody["pause_ms"] * 0.3))) if pause else 0)
            elif s < len(sentences) - 1:
                out.append(int(rng.uniform(*gap_ms) * (1 + max(prosody["pause_ms"] - 150, 0) / 300)))
    return tuple(out)


def _check(num_utterances: int, voices: int, emotions: Sequence[str], label_noise: float, profile: dict) -> None:
    unknown = [e for e in emotions if e not in EMOTION_CODES or e not in profile["effects"]]
    if unknown or not emotions:
        raise SynthError(f"emotions {unknown or list(emotions)} not usable: choose from "
                         f"{[e for e in EMOTION_CODES if e in profile['effects']]} (one = a generic, emotion-free "
                         "corpus).")
    if voices < 1 or num_utterances < 1:
        raise SynthError("--voices and --num_utterances must be >= 1.")
    if not 0.0 <= label_noise < 1.0 or (label_noise and len(emotions) < 2):
        raise SynthError(f"--label_noise {label_noise} must be in [0, 1) and needs at least two emotions.")
    problem = synth_raters.check(profile, emotions)
    if problem:
        raise SynthError(f"synth profile: {problem}.")


def corpus_emotions(emotions: Sequence[str] | None, profile: dict) -> list[str]:
    """The emotions generated: those asked for, else every emotion with a class share in the profile."""
    return list(emotions or [e for e, s in profile["emotions"].items() if s > 0])


def plan(num_utterances: int, seed: int, voices: int, emotions: Sequence[str] | None = None, label_noise: float = 0.0,
         profile: dict | None = None) -> list[Job]:
    """Every turn's speaker, emotion, level, sentences and cue values, decided up front from the seed."""
    profile = profile or load_profile()
    emotions = corpus_emotions(emotions, profile)
    _check(num_utterances, voices, emotions, label_noise, profile)
    rng = np.random.default_rng([seed, 104729])
    speaker_voices = make_voices(voices, seed, profile["speakers"])
    shares = {e: float(profile["emotions"].get(e, 0.0)) or 1.0 / len(emotions) for e in emotions}
    # the pool's class counts (largest remainder), dealt to the speakers in turn: every speaker gets the same
    # shares up to one clip, so speaker and emotion are independent and the pool is as imbalanced as the profile
    counts = _class_counts(num_utterances, shares)
    labels = [e for e in emotions for _ in range(counts[e])]
    design = [(i % voices, e) for i, e in enumerate(labels)]
    design = [design[i] for i in rng.permutation(len(design))]
    levels = profile["intensity"]
    level_names = [lv for lv in LEVEL_CODES if lv in levels]
    level_p = np.array([levels[lv]["share"] for lv in level_names], dtype=float)
    bank = sentence_bank(profile)
    firsts: dict[tuple, list] = {}
    jobs = []
    for index, (s, emotion) in enumerate(design):
        written = emotion
        if label_noise and rng.random() < label_noise:
            written = emotions[int(rng.choice([k for k, e in enumerate(emotions) if e != emotion]))]
        level = level_names[int(rng.choice(len(level_names), p=level_p / level_p.sum()))]
        pool = firsts.setdefault((s, written, level), [list(bank)[i] for i in rng.permutation(len(bank))])
        if not pool:
            raise SynthError(f"{num_utterances} turns over {voices} voices need more than {len(bank)} distinct file "
                             "names per (voice, emotion, level): raise --voices to at least "
                             f"{math.ceil(voices * 1.5)}.")
        voice = speaker_voices[s]
        intensity = max(0.1, levels[level]["scale"] + rng.normal(0, levels.get("jitter_sd", 0.0)))
        prosody = _prosody(rng, profile, emotion, intensity, voice)
        codes = _turn_codes(rng, pool.pop(), bank, profile["lengths"], voice, prosody["rate_pct"])
        sentences = tuple(bank[c] for c in codes)
        jobs.append(Job(
            index=index, file=f"{voice.actor}_{codes[0]}_{EMOTION_CODES[written]}_{level}.wav", voice=voice,
            codes=codes, sentences=sentences, true_emotion=emotion, written_emotion=written, level=level,
            intensity=round(float(intensity), 3),
            prosody=prosody, breaks=_breaks(rng, sentences, prosody, profile["lengths"]["sentence_gap_ms"]),
            lead_ms=int(rng.integers(60, 250)), trail_ms=int(rng.integers(60, 250)),
        ))
    return jobs


def ssml(job: Job) -> str:
    words = job.text.split()
    text = " ".join(escape(w) + (f' <break time="{b}ms"/>' if i < len(job.breaks) and job.breaks[i] else "")
                    for i, (w, b) in enumerate(zip(words, job.breaks + (0,))))
    p = job.prosody
    pitch_pct = (2 ** (p["pitch_st"] / 12) - 1) * 100
    return (f'<speak><prosody pitch="{pitch_pct:+.0f}%" range="{p["range_pct"]:.0f}%" rate="{p["rate_pct"]:.0f}%">'
            f"{text}</prosody></speak>")


def render(job: Job, seed: int, noise_snr_db: float | None = None) -> np.ndarray:
    """espeak-ng (SSML) -> sox (16 kHz, HF shelf) -> float32; then pad, level, room noise."""
    v = job.voice
    speak = subprocess.run(
        ["espeak-ng", "-v", v.espeak_voice, "-p", str(v.pitch), "-s", str(v.wpm), "-m", "--stdout", ssml(job)],
        capture_output=True, check=False,
    )
    if speak.returncode != 0 or not speak.stdout:
        raise SynthError(f"espeak-ng failed for {job.file}: {brief(speak.stderr.decode(errors='replace'), 300)} "
                         "(install espeak-ng: make setup)")
    tilt = job.prosody["tilt_db"] + v.tilt_db
    conv = subprocess.run(
        ["sox", "-t", "wav", "-", "-D", "-t", "f32", "-r", str(SAMPLING_RATE), "-c", "1", "-",
         "treble", f"{tilt:.2f}", "3000"],
        input=speak.stdout, capture_output=True, check=False,
    )
    if conv.returncode != 0:
        raise SynthError(f"sox failed for {job.file}: {brief(conv.stderr.decode(errors='replace'), 300)} "
                         "(install sox: make setup)")
    wave = np.frombuffer(conv.stdout, dtype=np.float32)
    wave = np.concatenate([np.zeros(job.lead_ms * 16, np.float32), wave, np.zeros(job.trail_ms * 16, np.float32)])
    active = wave[np.abs(wave) > 1e-4]
    rms = float(np.sqrt(np.mean(active**2))) if active.size else 1.0
    level = 10 ** ((TARGET_DBFS + v.gain_db + job.prosody["loudness_db"]) / 20)
    wave = wave * (level / max(rms, 1e-6))
    snr = noise_snr_db if noise_snr_db is not None else v.snr_db
    if snr is not None:  # room noise at the speaker's SNR, relative to a neutral turn's level
        rng = np.random.default_rng([seed, job.index, 31337])
        noise = np.convolve(rng.standard_normal(wave.size).astype(np.float32), np.ones(4, np.float32) / 4, mode="same")
        neutral_level = 10 ** ((TARGET_DBFS + v.gain_db) / 20)
        wave = wave + noise * (neutral_level / 10 ** (snr / 20) / float(np.sqrt(np.mean(noise**2))))
    peak = float(np.max(np.abs(wave)))
    if peak > 0.99:
        wave = wave * (0.99 / peak)
    return wave.astype(np.float32)


TRUTH_COLUMNS = ("file", "actor", "sex", "espeak_voice", "speaker_f0_st", "speaker_wpm", "speaker_tilt_db",
                 "speaker_gain_db", "speaker_snr_db", "speaker_expressiveness", "text", "num_sentences", "level",
                 "intensity",
                 "true_emotion", "written_emotion", "duration", *CUES)


def _truth_csv(jobs: list[Job], durations: list[float]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TRUTH_COLUMNS)
    for job, dur in zip(jobs, durations):
        v = job.voice
        writer.writerow([f"AudioWAV/{job.file}", v.actor, v.sex, v.espeak_voice, v.f0_offset_st, v.wpm, v.tilt_db,
                         v.gain_db, v.snr_db, v.expressiveness, job.text, len(job.codes), job.level, job.intensity,
                         job.true_emotion, job.written_emotion, f"{dur:.4f}", *(job.prosody[c] for c in CUES)])
    return buf.getvalue()


def _same_audio(old: dict, info: dict) -> bool:
    """Whether a corpus made with ``old`` options has the audio, names and truth ``info`` asks for (raters apart)."""
    new = json.loads(json.dumps(info))
    old = {k: old.get(k) for k in new}
    old["profile"] = {k: v for k, v in (old["profile"] or {}).items() if k != "raters"}
    new["profile"] = {k: v for k, v in new["profile"].items() if k != "raters"}
    return old == new


def _write_raters(out_dir: Path, jobs: list[Job], profile: dict, emotions: list[str], seed: int) -> str:
    """OUT/finishedResponses.csv from the profile's raters (removed when the profile has none); a summary line."""
    path = out_dir / synth_raters.RESPONSES_FILE
    if not profile.get("raters"):
        path.unlink(missing_ok=True)
        return ""
    answers = synth_raters.rate(jobs, profile, emotions, seed, CUES)
    atomic_write_text(path, synth_raters.responses_csv(jobs, answers))
    return synth_raters.describe(jobs, answers)


def synthesize(
    out_dir: str | Path,
    num_utterances: int = 1200,
    seed: int = 0,
    voices: int = 32,
    emotions: Sequence[str] | None = None,
    noise_snr_db: float | None = None,
    label_noise: float = 0.0,
    num_workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    profile: str | Path | dict | None = None,
) -> Path:
    """Generate the corpus into ``out_dir`` (written to a temporary directory, then moved into place)."""
    out_dir = Path(out_dir)
    profile_data = load_profile(profile)
    info = {"layout": "cremad", "num_utterances": num_utterances, "seed": seed, "voices": voices,
            "emotions": list(emotions) if emotions else None, "noise_snr_db": noise_snr_db, "label_noise": label_noise,
            "profile": profile_data, "generator": "after_hf.data.synth v2 (espeak-ng + sox)"}
    info_path = out_dir / "synth_info.json"
    jobs = plan(num_utterances, seed, voices, emotions, label_noise, profile_data)
    if not overwrite and info_path.is_file():
        old = json.loads(info_path.read_text(encoding="utf-8"))
        same = _same_audio(old, info)
        if same and old.get("profile", {}).get("raters") != info["profile"].get("raters"):
            crowd = _write_raters(out_dir, jobs, profile_data, corpus_emotions(emotions, profile_data), seed)
            atomic_write_json(info_path, info)  # after the answers: a killed rewrite is redone
            if progress:
                print(f"synth: only the raters changed; rewrote {out_dir / synth_raters.RESPONSES_FILE} ({crowd})")
        if same:
            return out_dir
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SynthError(f"`{tool}` is not installed: run `make setup` (or apt-get install espeak-ng sox).")
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
    atomic_write_text(tmp / "synth_truth.csv", _truth_csv(jobs, durations))
    crowd = _write_raters(tmp, jobs, profile_data, corpus_emotions(emotions, profile_data), seed)
    atomic_write_json(tmp / "synth_info.json", info)
    replace_dir(tmp, out_dir)
    if progress:
        print(f"synth: {len(jobs)} turns ({sum(durations) / 60:.1f} min of audio, mean {np.mean(durations):.2f} s, "
              f"max {np.max(durations):.1f} s), {voices} voices, {workers} workers, {elapsed:.1f} s -> {out_dir}")
        if crowd:
            print(f"synth: {crowd}")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    from ..config import parse_args

    (args,) = parse_args([SynthArguments], argv, prog="after-hf synth", description=__doc__.split("\n")[0],
                         section="synth")
    synthesize(
        args.out, args.num_utterances, args.seed, args.voices,
        emotions=[e.strip() for e in args.emotions.split(",") if e.strip()] or None,
        noise_snr_db=args.noise_snr_db, label_noise=args.label_noise,
        num_workers=args.num_workers, overwrite=args.overwrite, profile=args.profile,
    )
    return 0
