"""Any dataset ``load_dataset`` can open (a Hub id, a local data folder) or a ``save_to_disk`` folder, with column
mapping. Audio stored inside the dataset (bytes) is written once to ``audio_dir`` so the manifest can point at files."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from datasets import Audio, ClassLabel, Dataset, DatasetDict, load_dataset, load_from_disk
from tqdm.auto import tqdm

from .base import CorpusError, Skipped, Utterance

NAME = "hub"


def _open(source: str, config: str | None, split: str | None) -> dict[str, Dataset]:
    path = Path(source).expanduser()
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        data = load_from_disk(str(path))
    else:
        try:
            data = load_dataset(source, config, split=split)
        except Exception as err:  # offline, unknown id, no data files: say what to do
            raise CorpusError(
                f"cannot open dataset '{source}' ({type(err).__name__}: {str(err)[:300]}). Give a local data folder, "
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


def read(
    source: str,
    audio_dir: str | Path,
    split: str | None = None,
    config: str | None = None,
    audio_column: str = "audio",
    label_column: str = "label",
    speaker_column: str | None = None,
    session_column: str | None = None,
) -> Iterator[Utterance | Skipped]:
    audio_dir = Path(audio_dir)
    for split_name, ds in _open(source, config, split).items():
        missing = [c for c in (audio_column, label_column, speaker_column, session_column) if c and c not in ds.column_names]
        if missing:
            raise CorpusError(
                f"dataset '{source}' split '{split_name}' has no column(s) {missing}; it has {ds.column_names}. "
                f"Map them with --hub_audio_column / --hub_label_column / --hub_speaker_column / --hub_session_column."
            )
        label_feature = ds.features[label_column]
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
            yield Utterance(uid, path, str(label), f"{NAME}/{speaker}", NAME, session)
