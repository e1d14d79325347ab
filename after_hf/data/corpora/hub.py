"""Any dataset ``load_dataset`` can open (a Hub id, a local data folder) or a ``save_to_disk`` folder, with column
mapping. Audio stored inside the dataset (bytes) is written once to ``audio_dir`` so the manifest can point at files.

An optional ratings column (``ratings_column``) holds the raters' answers per row, as
* a string in the ``metadata.csv`` format: ``angry;angry;neutral`` or ``r1=angry;r2=sad+neutral``;
* a list with one answer per rater: strings (``"angry"``, ``"r1=sad+neutral"``) or ClassLabel indices (decoded with
  the list's ClassLabel, else the label column's);
* a list of dicts ``{"rater": ..., "label": ...}`` (``labels`` or ``emotion`` also accepted; a list value = several
  emotions in one answer).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from tqdm.auto import tqdm

from ...errors import brief
from .base import CorpusError, Rating, RatingsError, Skipped, Utterance, parse_ratings_text

if TYPE_CHECKING:
    from datasets import Dataset

NAME = "hub"


def _open(source: str, config: str | None, split: str | None) -> dict[str, Dataset]:
    from datasets import DatasetDict, load_dataset, load_from_disk  # here, so that `after-hf --help` stays light

    path = Path(source).expanduser()
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        data = load_from_disk(str(path))
    else:
        try:
            data = load_dataset(source, config, split=split)
        except Exception as err:  # offline, unknown id, no data files: say what to do
            raise CorpusError(
                f"cannot open dataset '{source}' ({type(err).__name__}: {brief(err)}). Give a local data folder, "
                f"a save_to_disk folder, or a Hub id with HF_HUB_OFFLINE=0 and network access."
            ) from err
    if isinstance(data, DatasetDict):
        if split is not None:
            if split not in data:
                raise CorpusError(f"dataset '{source}' has no split '{split}'; it has {sorted(data)}.")
            return {split: data[split]}
        return {name: data[name] for name in sorted(data)}
    return {split or "train": data}


def _write_bytes(target: Path, data: bytes) -> None:
    if target.is_file() and target.stat().st_size == len(data):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)


def _decoder(feature, label_feature, where: str):
    """A function int -> label name for ClassLabel-coded answers."""
    from datasets import ClassLabel

    inner = getattr(feature, "feature", None)
    names = inner if isinstance(inner, ClassLabel) else label_feature if isinstance(label_feature, ClassLabel) else None

    def decode(value):
        if isinstance(value, bool) or not isinstance(value, int):
            return str(value)
        if names is None:
            raise RatingsError(f"{where}: answer {value} is a number but neither the ratings nor the label column is "
                               "a ClassLabel; store label names.")
        return names.int2str(value)

    return decode


def _ratings(value, decode, where: str) -> tuple[Rating, ...]:
    """One row's ratings cell -> Ratings (see the module docstring for the accepted shapes)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return parse_ratings_text(value, where, NAME)
    if not isinstance(value, (list, tuple)):
        raise RatingsError(f"{where}: a ratings cell must be a string or a list, got {type(value).__name__}; see "
                           "--hub_ratings_column in `after-hf prepare --help`.")
    out = []
    for answer in value:
        if isinstance(answer, dict):
            rater = str(answer.get("rater") or "")
            emotions = next((answer[k] for k in ("labels", "label", "emotion") if answer.get(k) is not None), None)
            if emotions is None:
                raise RatingsError(f"{where}: answer {answer} has no 'label' (or 'labels' / 'emotion') key.")
            emotions = emotions if isinstance(emotions, (list, tuple)) else [emotions]
            out.append(Rating(f"{NAME}/{rater}" if rater else "", tuple(decode(e) for e in emotions)))
        else:
            parsed = parse_ratings_text(decode(answer), where, NAME)
            if len(parsed) != 1:
                raise RatingsError(f"{where}: list element '{answer}' must be exactly one answer (join several "
                                   "emotions with '+').")
            out.append(parsed[0])
    return tuple(out)


def read(
    source: str,
    audio_dir: str | Path,
    split: str | None = None,
    config: str | None = None,
    audio_column: str = "audio",
    label_column: str = "label",
    speaker_column: str | None = None,
    session_column: str | None = None,
    ratings_column: str | None = None,
) -> Iterator[Utterance | Skipped]:
    from datasets import Audio, ClassLabel

    audio_dir = Path(audio_dir)
    for split_name, ds in _open(source, config, split).items():
        columns = (audio_column, label_column, speaker_column, session_column, ratings_column)
        missing = [c for c in columns if c and c not in ds.column_names]
        if missing:
            raise CorpusError(
                f"dataset '{source}' split '{split_name}' has no column(s) {missing}; it has {ds.column_names}. "
                f"Map them with --hub_audio_column / --hub_label_column / --hub_speaker_column / --hub_session_column"
                f" / --hub_ratings_column."
            )
        label_feature = ds.features[label_column]
        where = f"dataset '{source}' split '{split_name}' column '{ratings_column}'"
        decode = _decoder(ds.features[ratings_column], label_feature, where) if ratings_column else None
        if audio_column in ds.features and isinstance(ds.features[audio_column], Audio):
            ds = ds.cast_column(audio_column, Audio(decode=False))
        for i, row in enumerate(tqdm(ds, desc=f"hub {split_name}", unit="row", disable=len(ds) < 1000)):
            uid = f"{NAME}/{split_name}/{i:06d}"
            audio = row[audio_column]
            if isinstance(audio, str):
                audio = {"path": audio, "bytes": None}
            original = audio.get("path") or ""
            if audio.get("bytes"):
                target = audio_dir / split_name / f"{i:06d}{Path(original).suffix.lower() or '.wav'}"
                _write_bytes(target, audio["bytes"])
                path = str(target)
            elif original and Path(original).is_file():
                path = str(Path(original).resolve())
            else:
                yield Skipped(original or uid, "row has neither audio bytes nor an existing audio file path", "missing")
                continue
            label = row[label_column]
            if isinstance(label_feature, ClassLabel):
                if label is None or label < 0:
                    yield Skipped(path, "no label (ClassLabel -1)")
                    continue
                label = label_feature.int2str(label)
            if label is None or str(label).strip() == "":
                yield Skipped(path, "empty label")
                continue
            speaker = str(row[speaker_column]) if speaker_column else f"{split_name}/{i:06d}"
            session = str(row[session_column]) if session_column else ""
            ratings = _ratings(row[ratings_column], decode, f"{where} row {i}") if ratings_column else ()
            yield Utterance(uid, path, str(label), f"{NAME}/{speaker}", NAME, session, ratings)
