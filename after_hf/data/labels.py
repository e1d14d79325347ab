"""Label maps: each corpus' raw emotion code -> a canonical emotion name -> the target label set.

Target label sets:
    "4class"  neutral / happy / angry / sad (AFTER, IEMOCAP 4-class: IEMOCAP ``exc`` counts as happy)
    "native"  every corpus' own emotions under their canonical names (e.g. RAVDESS 8-class)
    a mapping {corpus: {raw code or canonical name: target}}  (from YAML); unlisted emotions are dropped
Everything a label set does not keep is returned as ``None`` and counted as dropped by ``prepare``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import yaml

from ..errors import AfterHFError
from .manifest import DEFAULT_LABELS

# raw code (as it appears in the corpus) -> canonical emotion name
CORPUS_EMOTIONS: dict[str, dict[str, str]] = {
    "iemocap": {
        "neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad", "fru": "frustrated",
        "sur": "surprised", "fea": "fearful", "dis": "disgust", "oth": "other", "xxx": "no_agreement",
    },
    "ravdess": {
        "01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful", "07": "disgust",
        "08": "surprised",
    },
    "cremad": {"NEU": "neutral", "HAP": "happy", "ANG": "angry", "SAD": "sad", "DIS": "disgust", "FEA": "fearful"},
    "emovdb": {"neutral": "neutral", "amused": "amused", "angry": "angry", "disgusted": "disgust", "sleepy": "sleepy"},
    "shemo": {"N": "neutral", "H": "happy", "A": "angry", "S": "sad", "F": "fearful", "W": "surprised"},
    "emodb": {"N": "neutral", "F": "happy", "W": "angry", "T": "sad", "A": "fearful", "E": "disgust", "L": "bored"},
    "tess": {
        "neutral": "neutral", "happy": "happy", "angry": "angry", "sad": "sad", "fear": "fearful", "disgust": "disgust",
        "ps": "surprised",
    },
    "savee": {"n": "neutral", "h": "happy", "a": "angry", "sa": "sad", "f": "fearful", "d": "disgust",
              "su": "surprised"},
}

# Free-form labels (folder names, Hub datasets) -> canonical names; anything else is kept as written (lower-case).
SYNONYMS = {
    "neu": "neutral", "neutral": "neutral", "calm": "calm",
    "hap": "happy", "happy": "happy", "happiness": "happy", "joy": "happy", "exc": "excited", "excited": "excited",
    "ang": "angry", "angry": "angry", "anger": "angry", "mad": "angry",
    "sad": "sad", "sadness": "sad",
    "fea": "fearful", "fear": "fearful", "fearful": "fearful", "afraid": "fearful",
    "dis": "disgust", "disgust": "disgust", "disgusted": "disgust",
    "sur": "surprised", "surprise": "surprised", "surprised": "surprised", "ps": "surprised",
    "fru": "frustrated", "frustrated": "frustrated", "frustration": "frustrated",
    "bored": "bored", "boredom": "bored", "sleepy": "sleepy", "amused": "amused", "contempt": "contempt",
}

# Canonical names that are not an emotion: dropped even by the "native" label set.
NOT_EMOTIONS = {"no_agreement"}

FOUR_CLASS = {"neutral": "neutral", "happy": "happy", "excited": "happy", "angry": "angry", "sad": "sad"}


class LabelError(AfterHFError, ValueError):
    """A label set or label map that cannot be applied; the message names the fix."""


def canonical(corpus: str, raw: str) -> str:
    """Canonical emotion name of a corpus' raw code (free-form corpora go through SYNONYMS)."""
    table = CORPUS_EMOTIONS.get(corpus)
    if table is not None:
        if raw not in table:
            raise LabelError(f"{corpus}: unknown emotion code '{raw}' (known: {sorted(table)}).")
        return table[raw]
    key = str(raw).strip().lower()
    return SYNONYMS.get(key, key.replace(" ", "_"))


class LabelMap:
    """Maps (corpus, raw code) to a target label, or ``None`` when the label set drops that emotion."""

    def __init__(self, spec: str | Mapping | Path = "4class"):
        self.spec = spec
        self.custom: dict[str, dict[str, str]] | None = None
        if isinstance(spec, Mapping):
            self.custom = _check_custom(spec, "label map")
        elif str(spec) not in ("4class", "native"):
            path = Path(spec)
            if not path.is_file():
                raise LabelError(f"label set '{spec}' is neither '4class', 'native' nor a YAML file "
                                 "{corpus: {raw: target}}.")
            self.custom = _check_custom(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, str(path))
        self.mode = "custom" if self.custom is not None else str(spec)

    def target(self, corpus: str, raw: str) -> str | None:
        name = canonical(corpus, raw)
        if self.mode == "4class":
            return FOUR_CLASS.get(name)
        if self.mode == "native":
            return None if name in NOT_EMOTIONS else name
        table = self.custom.get(corpus, self.custom.get("*", {}))
        return table.get(str(raw), table.get(name))

    def label_names(self, used: set[str] | None = None) -> list[str]:
        """ClassLabel names: fixed for 4class, the map's order for custom maps; for native, the ``used`` names in
        the order of CORPUS_EMOTIONS, then free-form ones sorted (so the order never depends on file listing)."""
        if self.mode == "4class":
            return list(DEFAULT_LABELS)
        if self.mode == "native":
            order = [n for corpus in CORPUS_EMOTIONS for n in CORPUS_EMOTIONS[corpus].values() if n not in NOT_EMOTIONS]
            names = list(dict.fromkeys(order))
            used = set(used or ())
            return [n for n in names if n in used] + sorted(used - set(names))
        return list(dict.fromkeys(t for table in self.custom.values() for t in table.values()))


def _check_custom(spec: Mapping, where: str) -> dict[str, dict[str, str]]:
    if not isinstance(spec, Mapping) or not all(isinstance(v, Mapping) for v in spec.values()):
        raise LabelError(
            f"{where}: a custom label map must be {{corpus: {{raw code or emotion name: target label}}}}, "
            f"e.g. {{emovdb: {{amused: happy, neutral: neutral}}}}."
        )
    out = {}
    for corpus, table in spec.items():
        if corpus != "*" and corpus in CORPUS_EMOTIONS:
            known = set(CORPUS_EMOTIONS[corpus]) | set(CORPUS_EMOTIONS[corpus].values())
            unknown = sorted(set(map(str, table)) - known)
            if unknown:
                raise LabelError(f"{where}: {corpus} has no emotion {unknown}; known codes/names: {sorted(known)}.")
        out[str(corpus)] = {str(k): str(v) for k, v in table.items()}
    return out
