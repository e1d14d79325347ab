"""Simulated raters for the generated corpus: several listeners per clip who disagree where a clip is ambiguous.

A rater hears a turn's cues as deviations from the speaker's own neutral voice, in units of the profile's
within-emotion spread (``d``, one value per cue; listeners adapt to a speaker's voice), blurred by their own
perceptual noise, and answers the emotion whose prototype (the emotion's mean effect at ``prototype_scale``) is
nearest, shifted by the rater's personal preference for some answers; now and then they answer at random
(a lapse). So agreement follows the audio: a low-intensity turn of an inexpressive speaker lies near the neutral
prototype and splits the raters, a high-intensity one does not, and happy / angry (close prototypes) are confused
more than angry / sad. Every setting lives in the profile's ``raters:`` section (commented with its source).

Each clip is rated by ``per_clip`` distinct raters drawn from a panel of ``panel`` raters, in the order they
answered (a dynamic-rater oracle asks them in that order). The answers are drawn from their own random stream
(``[seed, RATER_STREAM]``), after and apart from the corpus plan, so adding, removing or changing raters never
changes the audio, the file names or ``synth_truth.csv``.

Written as CREMA-D's ``finishedResponses.csv`` (``localid``, ``queryType`` = 1 voice only, ``clipName``,
``respEmo``), which the ``cremad`` reader turns into the manifest's ``ratings`` column, like the real corpus.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Sequence

import numpy as np

RESPONSES_FILE = "finishedResponses.csv"  # corpora.cremad.RESPONSES
RATER_STREAM = 15015  # the raters' random stream, apart from the plan's ([seed, 104729]) and the voices' ([seed, 7919])
RESPONSE_LETTERS = {"neutral": "N", "happy": "H", "angry": "A", "sad": "S", "disgust": "D", "fearful": "F"}
REQUIRED = ("panel", "per_clip", "prototype_scale", "noise_sd", "noise_spread", "bias_sd", "lapse")


def _deviation(prosody: dict, profile: dict, cues: Sequence[str]) -> np.ndarray:
    """The turn's cues relative to neutral, in within-emotion standard deviations."""
    neutral, spread = profile["effects"]["neutral"], profile["spread"]
    return np.array([(prosody[c] - neutral[c]) / spread[c] for c in cues])


def prototypes(profile: dict, emotions: Sequence[str], cues: Sequence[str]) -> np.ndarray:
    """[E, cues]: each emotion's mean effect at the raters' prototype scale, in spread units (neutral = 0)."""
    scale = float(profile["raters"]["prototype_scale"])
    return np.stack([scale * _deviation(profile["effects"][e], profile, cues) for e in emotions])


def rate(jobs: Sequence, profile: dict, emotions: Sequence[str], seed: int, cues: Sequence[str]) -> list[list]:
    """Per job, its raters' answers in order: [(rater id, emotion), ...]. Deterministic in (jobs, profile, seed)."""
    spec = profile["raters"]
    rng = np.random.default_rng([seed, RATER_STREAM])
    panel, per_clip = int(spec["panel"]), int(spec["per_clip"])
    # rater traits: perceptual noise (log-normal around noise_sd) and a preference (log-prior) per answer
    noise = float(spec["noise_sd"]) * np.exp(rng.normal(0.0, float(spec["noise_spread"]), panel))
    bias = rng.normal(0.0, float(spec["bias_sd"]), (panel, len(emotions)))
    protos = prototypes(profile, emotions, cues)
    out = []
    for job in jobs:
        d = _deviation(job.prosody, profile, cues)
        raters = rng.permutation(panel)[:per_clip]
        heard = d + rng.normal(0.0, 1.0, (per_clip, len(cues))) * noise[raters, None]
        score = -0.5 * ((heard[:, None, :] - protos[None]) ** 2).sum(axis=2) + bias[raters]
        answer = score.argmax(axis=1)
        lapses = rng.random(per_clip) < float(spec["lapse"])
        answer = np.where(lapses, rng.integers(0, len(emotions), per_clip), answer)
        out.append([(f"sim{r:03d}", emotions[a]) for r, a in zip(raters.tolist(), answer.tolist())])
    return out


def check(profile: dict, emotions: Sequence[str]) -> str | None:
    """Why the profile's raters cannot be simulated (None when they can, or when the profile has none)."""
    spec = profile.get("raters")
    if not spec:
        return None
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        return f"the profile's raters: section lacks {missing}; start from recipes/demo/corpus.yaml"
    if not 1 <= int(spec["per_clip"]) <= int(spec["panel"]):
        return f"raters: per_clip ({spec['per_clip']}) must be between 1 and panel ({spec['panel']})"
    if not 0.0 <= float(spec["lapse"]) <= 1.0:
        return f"raters: lapse ({spec['lapse']}) must be a probability"
    if len(emotions) < 2:
        return "raters need at least two emotions to choose from; drop the raters: section for this corpus"
    return None


def describe(jobs: Sequence, answers: list[list]) -> str:
    """One line on the simulated crowd: answers per clip, agreement overall and per intensity level, and how often
    an answer names the intended emotion."""
    agreement = [max(Counter(e for _, e in clip).values()) / len(clip) for clip in answers]
    levels = {}
    for job, value in zip(jobs, agreement):
        levels.setdefault(job.level, []).append(value)
    by_level = ", ".join(f"{lv} {np.mean(levels[lv]):.2f}" for lv in ("LO", "MD", "HI", "XX") if lv in levels)
    intended = np.mean([e == job.true_emotion for job, clip in zip(jobs, answers) for _, e in clip])
    return (f"raters: {np.mean([len(c) for c in answers]):.1f} answers per clip, mean agreement "
            f"{np.mean(agreement):.2f} ({by_level}), {100 * intended:.0f}% of answers name the intended emotion")


def responses_csv(jobs: Sequence, answers: list[list]) -> str:
    """CREMA-D's finishedResponses.csv (the columns the cremad reader needs), one row per answer."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["localid", "queryType", "clipName", "respEmo"])
    for job, clip in zip(jobs, answers):
        stem = job.file.rsplit(".", 1)[0]
        writer.writerows([rater, 1, stem, RESPONSE_LETTERS[emotion]] for rater, emotion in clip)
    return buf.getvalue()
