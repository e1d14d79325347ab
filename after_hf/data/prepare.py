"""`after-hf prepare`: read one or more corpora into one manifest with labels, durations and splits.

    after-hf prepare --corpus iemocap=/data/IEMOCAP_full_release --corpus cremad=/data/CREMA-D --out runs/manifest
    after-hf prepare --config recipes/demo/prepare.yaml

Every file is accounted for: kept (per label x corpus), dropped (emotion outside the label set, per raw code),
excluded by design (e.g. RAVDESS song, hidden files), not fitting the corpus layout, or bad audio (with the
reason: undecodable, empty, zero frames, NaN, shorter than --min_seconds, digital silence, or a second file
with the same id); per corpus, seen = kept + dropped + excluded + bad. The table is printed and saved, with the
options and timings, in ``<out>/prepare_report.json``.
Where a corpus ships per-rater labels (IEMOCAP's C- lines, CREMA-D's rating files, a metadata.csv / Hub ratings
column) every answer goes into the manifest with the vote distribution, agreement and majority derived from it
(``after_hf.data.ratings``), and one summary line per rated corpus is printed.
Several corpora make one merged pool (AFTER's noisy pool: with ``--protocol loso`` the corpora without
sessions all go to train, IEMOCAP gives validation and test).
"""

from __future__ import annotations

import argparse
import difflib
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Mapping, Optional, Sequence

from tqdm.auto import tqdm

from .. import SAMPLING_RATE
from ..io import atomic_write_json, check_output_dir
from .audio import MIN_SECONDS, AudioError, load_audio
from .corpora import READERS, CorpusError, Skipped, Utterance
from .labels import LabelError, LabelMap
from .manifest import SPLITS, build_manifest, save_manifest
from .ratings import OTHER, format_summary, summary
from .splits import assign_splits

if TYPE_CHECKING:
    from datasets import Dataset

REPORT_NAME = "prepare_report.json"


class _ReplaceThenExtend(argparse.Action):
    """``--corpus a=1 --corpus b=2`` -> [a=1, b=2]; the first flag replaces a recipe's list instead of adding to it."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest) if getattr(self, "_used", False) else []
        setattr(namespace, self.dest, list(current) + list(values))
        self._used = True


@dataclass
class PrepareArguments:
    out: str = field(
        metadata={"help": "Output manifest directory (datasets save_to_disk); prepare_report.json is written inside "
                          "it."},
    )
    corpus: list[str] = field(
        default_factory=list,
        metadata={"help": f"NAME=PATH, repeatable; NAME in {list(READERS)} (hub: PATH is a dataset id or a local "
                          "dataset folder).", "action": _ReplaceThenExtend},
    )
    label_set: str = field(
        default="4class",
        metadata={"help": "4class (neutral/happy/angry/sad), native (each corpus' own emotions) or a YAML file "
                          "{corpus: {raw: target}}."},
    )
    protocol: Literal["auto", "loso", "speaker", "utterance"] = field(
        default="auto",
        metadata={"help": "loso: IEMOCAP leave-one-session-out; speaker: seeded speaker-independent split per "
                          "corpus; utterance: seeded split of the utterances for corpora with too few speakers "
                          "(TESS: 2), speaker-DEPENDENT (optimistic scores, warned and recorded); auto: loso when "
                          "iemocap is given."},
    )
    fold: int = field(default=1, metadata={"help": "loso: the test session (1-5)."})
    loso_validation: Literal["speaker", "session"] = field(
        default="speaker",
        metadata={"help": "loso: validation = one speaker of the next session, or that whole session."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the speaker hash that decides the speaker splits."})
    validation_fraction: float = field(
        default=0.1,
        metadata={"help": "speaker / utterance protocol: fraction of each corpus' speakers / utterances held out for "
                          "validation (at least one)."},
    )
    test_fraction: float = field(
        default=0.2,
        metadata={"help": "speaker / utterance protocol: fraction of each corpus' speakers / utterances held out for "
                          "test (at least one)."},
    )
    eval_corpora: Optional[str] = field(
        default=None,
        metadata={"help": "Comma-separated corpora that give validation/test speakers; the others go to train "
                          "(default: all, or the session corpora for loso)."},
    )
    on_bad_audio: Literal["skip", "error"] = field(
        default="skip",
        metadata={"help": "skip: leave bad files out and list them with the reason; error: stop and list them."},
    )
    min_seconds: float = field(
        default=MIN_SECONDS, metadata={"help": "Files shorter than this (after decoding) are bad audio."})
    num_workers: int = field(default=2, metadata={"help": "Threads that decode audio for the checks."})
    hub_split: Optional[str] = field(default=None, metadata={"help": "hub: the split to read (default: all splits)."})
    hub_config: Optional[str] = field(default=None, metadata={"help": "hub: the dataset configuration name."})
    hub_audio_column: str = field(default="audio", metadata={"help": "hub: the audio column."})
    hub_label_column: str = field(default="label", metadata={"help": "hub: the emotion column (ClassLabel or string)."})
    hub_speaker_column: Optional[str] = field(
        default=None, metadata={"help": "hub: the speaker column (without one every row is its own speaker)."})
    hub_session_column: Optional[str] = field(
        default=None, metadata={"help": "hub: the session column (for --protocol loso)."})
    hub_ratings_column: Optional[str] = field(
        default=None,
        metadata={"help": "hub: a column of rater answers: 'angry;angry;neutral' / 'r1=angry;r2=sad+neutral', a list "
                          "of answers, or a list of {rater, label}."},
    )
    hub_audio_dir: Optional[str] = field(
        default=None,
        metadata={"help": "hub: where audio stored inside the dataset is written (default: <out>_hub_audio)."},
    )
    count_self_evaluations: bool = field(
        default=False,
        metadata={"help": "Count speakers' ratings of their own turns (IEMOCAP C-F1/C-M1 lines) in the votes, "
                          "agreement and majority. Default: kept in the ratings column, flagged self_eval, not "
                          "counted (the speaker knows the intended emotion)."},
    )


def parse_corpora(specs: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(specs, Mapping):
        pairs = list(specs.items())
    else:
        pairs = []
        for spec in specs:
            if "=" not in spec:
                raise CorpusError(f"--corpus '{spec}' must be NAME=PATH, e.g. --corpus "
                                  "iemocap=/data/IEMOCAP_full_release.")
            pairs.append(tuple(spec.split("=", 1)))
    if not pairs:
        raise CorpusError(f"no corpus given: add --corpus NAME=PATH with NAME in {list(READERS)} (or run "
                          "`after-hf synth` first).")
    out = {}
    for name, path in pairs:
        name = name.strip().lower()
        if name not in READERS:
            close = difflib.get_close_matches(name, list(READERS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise CorpusError(f"unknown corpus '{name}'{hint}; readers: {list(READERS)}.")
        if name in out:
            raise CorpusError(f"corpus '{name}' given twice; merge its folders or give it once.")
        out[name] = str(path)
    return out


def _read(name: str, path: str, args: PrepareArguments) -> list[Utterance | Skipped]:
    if name == "hub":
        return list(READERS["hub"](
            path, audio_dir=args.hub_audio_dir or f"{args.out.rstrip('/')}_hub_audio", split=args.hub_split,
            config=args.hub_config, audio_column=args.hub_audio_column, label_column=args.hub_label_column,
            speaker_column=args.hub_speaker_column, session_column=args.hub_session_column,
            ratings_column=args.hub_ratings_column,
        ))
    return list(READERS[name](path))


def _rating_targets(item: Utterance, label_map: LabelMap, unknown: dict[str, Counter]) -> list[dict]:
    """An utterance's rater answers with each emotion mapped by the label map (OTHER where it drops it)."""
    out = []
    for rating in item.ratings:
        labels = []
        for raw in rating.emotions:
            try:
                target = label_map.target(item.corpus, raw)
            except LabelError:
                unknown[item.corpus][raw] += 1
                target = None
            labels.append(OTHER if target is None else target)
        out.append({"rater": rating.rater, "labels": labels, "raw": list(rating.emotions),
                    "self_eval": rating.self_eval})
    return out


def _check_audio(paths: list[str], min_seconds: float, workers: int) -> tuple[dict[str, float], dict[str, str]]:
    """Decode every file (mono 16 kHz): path -> duration for good files, path -> reason for bad ones."""

    def one(path: str):
        try:
            wave = load_audio(path, min_seconds=min_seconds)
        except AudioError as err:
            return path, None, err.reason
        if not wave.any():  # digital silence: nothing to hear, whatever the label says
            return path, None, "silent (every sample is 0)"
        return path, wave.size / SAMPLING_RATE, None

    durations, bad = {}, {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        checked = tqdm(pool.map(one, paths), total=len(paths), desc="check audio", unit="file",
                       disable=len(paths) < 500)
        for path, dur, reason in checked:
            if reason is None:
                durations[path] = dur
            else:
                bad[path] = reason
    return durations, bad


def _read_corpora(corpora: dict[str, str], args: PrepareArguments, label_map: LabelMap):
    """Every file of every corpus, sorted into rows (kept, with their target label), bad, excluded and dropped
    (per raw emotion); rater answers outside a corpus' vocabulary are counted per corpus."""
    rows, bad, excluded = [], [], []
    dropped: dict[str, Counter] = defaultdict(Counter)
    unknown_answers: dict[str, Counter] = defaultdict(Counter)  # corpus -> rater category outside its vocabulary -> n
    owner: dict[str, str] = {}  # id -> the path that took it (x.wav and x.flac would share one)
    for name, path in corpora.items():
        for item in _read(name, path, args):
            if isinstance(item, Skipped):
                entry = {"corpus": name, "path": item.path, "reason": item.reason}
                if item.kind == "missing":
                    entry["missing"] = True  # a label without its file: reported, not counted as a file seen
                (excluded if item.kind == "excluded" else bad).append(entry)
                continue
            if item.id in owner:
                bad.append({"corpus": name, "path": item.path,
                            "reason": f"same sample id {item.id} as {owner[item.id]} (keep one of the two)"})
                continue
            owner[item.id] = item.path
            try:
                target = label_map.target(item.corpus, item.emotion_raw)
            except LabelError as err:
                bad.append({"corpus": name, "path": item.path, "reason": str(err)})
                continue
            if target is None:
                dropped[name][item.emotion_raw] += 1
                continue
            rows.append({**item.__dict__, "label": target,
                         "ratings": _rating_targets(item, label_map, unknown_answers)})
    return rows, bad, excluded, dropped, unknown_answers


def run(args: PrepareArguments, verbose: bool = True) -> Dataset:
    check_output_dir(args.out, "--out")
    corpora = parse_corpora(args.corpus)
    label_map = LabelMap(args.label_set)
    protocol = args.protocol if args.protocol != "auto" else ("loso" if "iemocap" in corpora else "speaker")
    started = time.perf_counter()
    rows, bad, excluded, dropped, unknown_answers = _read_corpora(corpora, args, label_map)
    read_seconds = time.perf_counter() - started

    started = time.perf_counter()
    durations, bad_audio = _check_audio([r["path"] for r in rows], args.min_seconds, args.num_workers)
    check_seconds, n_checked = time.perf_counter() - started, len(rows)
    for r in rows:
        if r["path"] in bad_audio:
            bad.append({"corpus": r["corpus"], "path": r["path"], "reason": bad_audio[r["path"]]})
    if bad_audio and args.on_bad_audio == "error":
        listing = "\n".join(f"  {p}: {why}" for p, why in sorted(bad_audio.items()))
        raise AudioError(
            f"{len(bad_audio)} files", f"bad audio:\n{listing}\n",
            "Fix or delete them, or re-run with --on_bad_audio skip to leave them out (they are listed in the report).",
        )
    rows = [{**r, "duration": durations[r["path"]]} for r in rows if r["path"] in durations]
    if not rows:
        raise CorpusError(f"nothing kept from {corpora}: every file was dropped or bad (see the table above); check "
                          "--label_set.")

    splits, notes = assign_splits(
        rows, protocol=protocol, fold=args.fold, seed=args.seed, validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction, loso_validation=args.loso_validation,
        eval_corpora=[c.strip() for c in args.eval_corpora.split(",")] if args.eval_corpora else None,
    )
    for r, s in zip(rows, splits):
        r["split"] = s
    per_corpus_speakers = Counter(r["corpus"] for r in {(r["corpus"], r["speaker"]): r for r in rows}.values())
    for corpus, n in Counter(r["corpus"] for r in rows).items():
        if n > 1 and per_corpus_speakers[corpus] == n:
            notes.append(f"{corpus}: no speaker information, every utterance is its own speaker (split is per "
                         "utterance, not speaker-independent)")
    names = label_map.label_names({r["label"] for r in rows})
    # an answer's emotion the label set keeps but no kept clip has (possible with "native") is outside it
    for r in rows:
        r["ratings"] = [{**a, "labels": [t if t in names else OTHER for t in a["labels"]]} for a in r["ratings"]]
    notes += [f"{corpus}: {sum(n.values())} rater answers name categories the corpus does not define "
              f"({dict(sorted(n.items()))}); counted as outside the label set"
              for corpus, n in sorted(unknown_answers.items())]
    ds = build_manifest(rows, names, count_self_evaluations=args.count_self_evaluations)
    save_manifest(ds, args.out)

    report = _report(args, corpora, protocol, names, rows, dropped, excluded, bad, notes, read_seconds, check_seconds,
                     n_checked)
    report["ratings"] = summary(ds)
    atomic_write_json(Path(args.out) / REPORT_NAME, report)
    if verbose:
        print(format_report(report))
    return ds


def _report(args, corpora, protocol, names, rows, dropped, excluded, bad, notes, read_seconds, check_seconds,
            n_checked) -> dict:
    kept = {label: {c: 0 for c in corpora} for label in names}
    kept_raw: dict[str, dict[str, dict[str, int]]] = {c: {} for c in corpora}  # corpus -> label -> raw code -> n
    for r in rows:
        kept[r["label"]][r["corpus"]] += 1
        per = kept_raw[r["corpus"]].setdefault(r["label"], {})
        per[r["emotion_raw"]] = per.get(r["emotion_raw"], 0) + 1
    splits = {s: {"utterances": 0, "speakers": set(), "labels": Counter(), "hours": 0.0} for s in SPLITS}
    for r in rows:
        entry = splits[r["split"]]
        entry["utterances"] += 1
        entry["speakers"].add(r["speaker"])
        entry["labels"][r["label"]] += 1
        entry["hours"] += r["duration"] / 3600
    accounting = {c: {"seen": 0, "kept": 0, "dropped": sum(dropped.get(c, {}).values()), "excluded": 0, "bad": 0,
                      "missing": 0} for c in corpora}
    for r in rows:
        accounting[r["corpus"]]["kept"] += 1
    for e in excluded:
        accounting[e["corpus"]]["excluded"] += 1
    for b in bad:
        accounting[b["corpus"]]["missing" if b.get("missing") else "bad"] += 1
    for a in accounting.values():
        a["seen"] = a["kept"] + a["dropped"] + a["excluded"] + a["bad"]
    return {
        "corpora": corpora,
        "files": accounting,
        "options": {f.name: getattr(args, f.name) for f in fields(args)},
        "protocol": protocol,
        "label_names": names,
        "kept": kept,
        "kept_total": len(rows),
        "kept_raw": kept_raw,
        "dropped": {c: dict(sorted(cnt.items())) for c, cnt in sorted(dropped.items())},
        "excluded": excluded,
        "bad": sorted(bad, key=lambda b: b["path"]),
        "splits": {
            s: {"utterances": e["utterances"], "speakers": sorted(e["speakers"]),
                "labels": {n: e["labels"][n] for n in names}, "hours": round(e["hours"], 4)}
            for s, e in splits.items()
        },
        "notes": notes,
        "timing": {
            "read_seconds": round(read_seconds, 3),
            "audio_check_seconds": round(check_seconds, 3),
            "files_checked": n_checked,
            "audio_check_seconds_per_1000_files": round(1000 * check_seconds / max(n_checked, 1), 3),
        },
    }


def format_report(report: dict) -> str:
    corpora = list(report["corpora"])
    width = max([len("kept"), *map(len, report["label_names"])]) + 2
    col = max(8, *map(len, corpora)) + 2
    lines = [f"{'kept':<{width}}" + "".join(f"{c:>{col}}" for c in corpora) + f"{'total':>{col}}"]
    for label, per in report["kept"].items():
        lines.append(f"{label:<{width}}" + "".join(f"{per[c]:>{col}}" for c in corpora) + f"{sum(per.values()):>{col}}")
    totals = "".join(f"{sum(p[c] for p in report['kept'].values()):>{col}}" for c in corpora)
    lines.append(f"{'total':<{width}}" + totals + f"{report['kept_total']:>{col}}")
    for corpus, a in report["files"].items():
        missing = f" ({a['missing']} labelled files missing)" if a["missing"] else ""
        lines.append(f"files ({corpus}): {a['seen']} seen = {a['kept']} kept + {a['dropped']} dropped + "
                     f"{a['excluded']} excluded + {a['bad']} bad{missing}")
    for corpus, per_label in report["kept_raw"].items():
        merged = [f"{label} = " + " + ".join(f"{raw} {n}" for raw, n in sorted(raws.items()))
                  for label, raws in per_label.items() if len(raws) > 1]
        if merged:  # e.g. IEMOCAP happy = exc + hap
            lines.append(f"merged ({corpus}): " + "; ".join(merged))
    label_set = report["options"]["label_set"]
    for corpus, counts in report["dropped"].items():
        lines.append(f"dropped ({corpus}, not in label set {label_set}): "
                     + ", ".join(f"{raw} {n}" for raw, n in counts.items()))
    if report["excluded"]:
        reasons = Counter((e["corpus"], e["reason"]) for e in report["excluded"])
        lines += [f"excluded ({corpus}): {n} x {reason}" for (corpus, reason), n in sorted(reasons.items())]
    if report["bad"]:
        lines.append(f"bad or unusable files ({len(report['bad'])}, left out):")
        lines += [f"  {b['path']}: {b['reason']}" for b in report["bad"][:50]]
        if len(report["bad"]) > 50:
            lines.append(f"  ... {len(report['bad']) - 50} more in {REPORT_NAME}")
    for split, e in report["splits"].items():
        labels = " ".join(f"{n}={c}" for n, c in e["labels"].items())
        lines.append(f"{split:<11} {e['utterances']:>6} utt {len(e['speakers']):>4} speakers {e['hours']:7.2f} h  "
                     f"{labels}")
    self_evaluations = report["options"].get("count_self_evaluations", False)
    lines += [format_summary(corpus, s, self_evaluations) for corpus, s in report.get("ratings", {}).items()]
    lines += [f"note: {n}" for n in report["notes"]]
    t = report["timing"]
    lines.append(f"audio check: {t['files_checked']} files in {t['audio_check_seconds']:.1f} s "
                 f"({t['audio_check_seconds_per_1000_files']:.1f} s per 1000 files)")
    return "\n".join(lines)


def prepare(corpora: Mapping[str, str] | Sequence[str], out: str | Path, verbose: bool = True, **opts) -> Dataset:
    """Library entry point: ``prepare({"cremad": path}, out_dir, label_set="4class", seed=0, ...)`` -> the manifest.

    ``opts`` are PrepareArguments fields (see ``after-hf prepare --help``)."""
    known = {f.name for f in fields(PrepareArguments)} - {"out", "corpus"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise TypeError(f"prepare() got unknown options {unknown}; valid: {sorted(known)}.")
    specs = [f"{k}={v}" for k, v in parse_corpora(corpora).items()]
    return run(PrepareArguments(out=str(out), corpus=specs, **opts), verbose=verbose)


def main(argv: list[str] | None = None) -> int:
    from ..config import parse_args

    (args,) = parse_args([PrepareArguments], argv, prog="after-hf prepare", description=__doc__.split("\n")[0],
                         section="prepare")
    run(args)
    return 0
