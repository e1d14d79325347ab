"""Speaker-independent, seeded splits that do not depend on file-listing order.

    loso     IEMOCAP leave-one-session-out: fold k tests on Session k; validation is one speaker of the next
             session (``loso_validation="speaker"``, seeded) or that whole session (``"session"``); never a
             part of the test session. Corpora without sessions (a merged pool) go to train (AFTER's setup).
    speaker  every evaluated corpus' speakers are ordered by a seeded hash and cut into test / validation /
             train by speaker counts (at least one speaker each), so no speaker is in two splits.
    utterance  for corpora with too few speakers (TESS: 2): every evaluated corpus' *utterances* are ordered
             by a seeded hash of their id and cut by the same fractions. Speaker-DEPENDENT (the same voices in
             train and test, so scores are optimistic); prepare prints a warning and records the protocol.

Only speakers (and sessions, or utterance ids) decide a split, so the same corpus listed in any order gets
the same splits.
Corpora outside ``eval_corpora`` (and corpora with fewer than 3 speakers in a merged pool) go to train.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Iterable, Sequence

from ..errors import AfterHFError


class SplitError(AfterHFError, ValueError):
    """The data cannot be split as asked; the message names the option to change."""


def speaker_hash(speaker: str, seed: int) -> int:
    return int(hashlib.sha256(f"{seed}:{speaker}".encode()).hexdigest()[:16], 16)


def speaker_split(
    speakers: Iterable[str], seed: int = 0, validation_fraction: float = 0.1, test_fraction: float = 0.2
) -> dict[str, str]:
    """speaker -> split for one corpus; fractions are of speakers, each non-zero split gets at least one."""
    return _cut(set(speakers), seed, validation_fraction, test_fraction, "speakers")


def _cut(items: set[str], seed: int, validation_fraction: float, test_fraction: float, what: str) -> dict[str, str]:
    """item -> split: items ordered by a seeded hash, the first ``test_fraction`` to test, then validation."""
    ordered = sorted(items, key=lambda s: (speaker_hash(s, seed), s))
    n = len(ordered)
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
    n_val = max(1, round(validation_fraction * n)) if validation_fraction > 0 else 0
    if n_test + n_val >= n:
        fix = ("lower --test_fraction / --validation_fraction, add corpora" if n >= 3 else
               "add corpora with more speakers") if what == "speakers" else "add utterances"
        if what == "speakers":
            fix += (", or use --protocol utterance (a speaker-dependent split of the utterances: the same voices "
                    "in train and test, so scores are optimistic)")
        raise SplitError(f"{n} {what} cannot give {n_test} test + {n_val} validation {what} and keep one for "
                         f"training (each split takes at least one): {fix}.")
    out = {s: "test" for s in ordered[:n_test]}
    out.update({s: "validation" for s in ordered[n_test : n_test + n_val]})
    out.update({s: "train" for s in ordered[n_test + n_val :]})
    return out


UTTERANCE_WARNING = ("WARNING protocol utterance: a speaker-DEPENDENT split (the same voices in train, validation and "
                     "test), so test scores are optimistic and not comparable with speaker-independent results")


def utterance_splits(rows: Sequence[dict], evaluated: Sequence[str], seed: int, validation_fraction: float,
                     test_fraction: float) -> list[str]:
    """A split per row, cutting each evaluated corpus' utterances (by a seeded hash of their id) by the fractions."""
    split_of: dict[str, str] = {}
    for corpus in sorted({r["corpus"] for r in rows}):
        ids = {r["id"] for r in rows if r["corpus"] == corpus}
        if corpus in evaluated:
            try:
                split_of.update(_cut(ids, seed, validation_fraction, test_fraction, "utterances"))
            except SplitError as err:
                raise SplitError(f"{corpus}: {err}") from None
        else:
            split_of.update({i: "train" for i in ids})
    return [split_of[r["id"]] for r in rows]


def loso_split(speaker_sessions: dict[str, str], fold: int, seed: int = 0,
               validation: str = "speaker") -> dict[str, str]:
    """speaker -> split for a corpus with sessions (IEMOCAP): Session ``fold`` = test."""
    sessions = sorted(set(speaker_sessions.values()), key=lambda s: (len(s), s))
    test_session = f"Session{fold}"
    if test_session not in sessions:
        raise SplitError(f"--fold {fold}: there is no {test_session} (sessions found: {sessions}); pick a fold in "
                         f"1..{len(sessions)}.")
    if len(sessions) < 3:
        raise SplitError(f"leave-one-session-out needs at least 3 sessions, found {sessions}; use --protocol speaker.")
    val_session = sessions[(sessions.index(test_session) + 1) % len(sessions)]
    val_speakers = sorted((s for s, sess in speaker_sessions.items() if sess == val_session),
                          key=lambda s: (speaker_hash(s, seed), s))
    if validation == "speaker":
        if len(val_speakers) < 2:
            raise SplitError(f"{val_session} has a single speaker: use --loso_validation session.")
        val_speakers = val_speakers[:1]
    elif validation != "session":
        raise SplitError(f"--loso_validation must be 'speaker' or 'session', got '{validation}'.")
    out = {}
    for speaker, session in speaker_sessions.items():
        out[speaker] = "test" if session == test_session else "validation" if speaker in val_speakers else "train"
    return out


def assign_splits(
    rows: Sequence[dict],
    protocol: str = "speaker",
    fold: int = 1,
    seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    loso_validation: str = "speaker",
    eval_corpora: Sequence[str] | None = None,
) -> tuple[list[str], list[str]]:
    """A split per row (rows need ``corpus``, ``speaker``, ``session``) and notes for the report."""
    by_corpus: dict[str, dict[str, str]] = defaultdict(dict)  # corpus -> speaker -> session
    for r in rows:
        by_corpus[r["corpus"]][r["speaker"]] = r.get("session") or ""
    notes: list[str] = []
    if protocol == "loso":
        session_corpora = sorted(c for c, spk in by_corpus.items() if all(spk.values()))
        if not session_corpora:
            raise SplitError("--protocol loso needs a corpus with sessions (IEMOCAP); use --protocol speaker.")
        evaluated = list(eval_corpora) if eval_corpora else session_corpora
    elif protocol in ("speaker", "utterance"):
        evaluated = list(eval_corpora) if eval_corpora else sorted(by_corpus)
    else:
        raise SplitError(f"--protocol must be 'loso', 'speaker' or 'utterance', got '{protocol}'.")
    unknown = sorted(set(evaluated) - set(by_corpus))
    if unknown:
        raise SplitError(f"--eval_corpora names {unknown}, which are not among the corpora read ({sorted(by_corpus)}).")
    if protocol == "utterance":
        notes.append(UTTERANCE_WARNING)
        return utterance_splits(rows, evaluated, seed, validation_fraction, test_fraction), notes
    split_of: dict[tuple[str, str], str] = {}
    for corpus, speakers in sorted(by_corpus.items()):
        if corpus not in evaluated:
            assignment = {s: "train" for s in speakers}
            notes.append(f"{corpus}: all {len(speakers)} speakers in train (not an evaluation corpus)")
        elif protocol == "loso":
            if not all(speakers.values()):
                raise SplitError(f"{corpus} has no sessions, so it cannot be split leave-one-session-out; use "
                                 "--protocol speaker.")
            assignment = loso_split(speakers, fold, seed, loso_validation)
        elif len(speakers) < 3 and len(by_corpus) > 1:
            assignment = {s: "train" for s in speakers}
            notes.append(f"{corpus}: only {len(speakers)} speakers, all in train (a speaker-independent 3-way split "
                         "needs 3)")
        else:
            try:
                assignment = speaker_split(speakers, seed, validation_fraction, test_fraction)
            except SplitError as err:
                raise SplitError(f"{corpus}: {err}") from None
        split_of.update({(corpus, s): split for s, split in assignment.items()})
    splits = [split_of[(r["corpus"], r["speaker"])] for r in rows]
    wanted = {"test": protocol == "loso" or test_fraction > 0,
              "validation": protocol == "loso" or validation_fraction > 0}
    for name, want in wanted.items():
        if want and name not in splits:
            raise SplitError(f"no speaker ended up in '{name}': add corpora with more speakers or check "
                             "--eval_corpora.")
    return splits, notes
