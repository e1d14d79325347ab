"""Awkward and broken audio: each file decodes to mono float32 16 kHz or is reported by `prepare` with its reason,
and nothing disappears silently. Also: manifest errors name the problem."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from after_hf.cli import run as cli_main
from after_hf.data.audio import AudioError, load_audio
from after_hf.data.manifest import ManifestError, build_manifest, check_manifest, load_manifest
from after_hf.data.prepare import prepare

SR = 16000
UNICODE_NAME = "ça va 日本 ü.wav"


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


# name (under angry/) -> expected: ("ok", seconds) or ("bad", words of the reason)
EXPECTED = {
    "empty.wav": ("bad", "empty file"),
    "not_audio.wav": ("bad", "not decodable"),
    "zero_frames.wav": ("bad", "zero audio frames"),
    "truncated_header.wav": ("bad", "not decodable"),
    "nan.wav": ("bad", "NaN"),
    "click_10ms.wav": ("bad", "too short"),
    "silence_10min.wav": ("bad", "silent"),
    "dup.wav": ("bad", "same sample id"),  # dup.flac came first (sorted) and owns the id angry/dup
    "u8_stereo_22k.wav": ("ok", 0.5),
    "tone_48k.wav": ("ok", 0.5),
    "dup.flac": ("ok", 0.3),
    "tone.mp3": ("ok", 0.3),
    "LOUD.WAV": ("ok", 0.3),
    UNICODE_NAME: ("ok", 0.3),
}


def make_corpus(root: Path) -> list[Path]:
    """A folder corpus (label = folder name) with every case above, plus 3 good sad files, 1 calm, 1 hidden."""
    angry, tone = root / "angry", sine(440, 0.3, SR)
    angry.mkdir(parents=True)
    sf.write(angry / "tone_src.wav", tone, SR, subtype="PCM_16")
    (angry / "empty.wav").write_bytes(b"")
    (angry / "not_audio.wav").write_text("id,label\n1,angry\n" * 20)
    sf.write(angry / "zero_frames.wav", np.zeros(0, np.float32), SR, subtype="PCM_16")
    (angry / "truncated_header.wav").write_bytes((angry / "tone_src.wav").read_bytes()[:30])
    nan = tone.copy()
    nan[1000:1100] = np.nan
    sf.write(angry / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(angry / "click_10ms.wav", tone[: SR // 100], SR)
    sf.write(angry / "silence_10min.wav", np.zeros(600 * SR, np.int16), SR, subtype="PCM_16")
    left = sine(440, 0.5, 22050)  # stereo: the tone on the left, silence on the right
    sf.write(angry / "u8_stereo_22k.wav", np.stack([left, np.zeros_like(left)], 1), 22050, subtype="PCM_U8")
    sf.write(angry / "tone_48k.wav", sine(1000, 0.5, 48000), 48000, subtype="PCM_16")
    sf.write(angry / "dup.flac", tone, SR, format="FLAC")
    shutil.copy(angry / "tone_src.wav", angry / "dup.wav")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(angry / "tone_src.wav"),
                    str(angry / "tone.mp3")], check=True)
    (angry / "tone_src.wav").rename(angry / "LOUD.WAV")
    shutil.copy(angry / "LOUD.WAV", angry / UNICODE_NAME)
    (root / "sad").mkdir()
    for i in range(3):
        sf.write(root / "sad" / f"s{i}.wav", sine(200, 0.3, SR), SR)
    (root / "calm").mkdir()
    shutil.copy(angry / "LOUD.WAV", root / "calm" / "c0.wav")
    shutil.copy(angry / "LOUD.WAV", angry / "._LOUD.WAV")  # macOS resource fork
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert sorted(p.name for p in files if p.parent == angry) == sorted([*EXPECTED, "._LOUD.WAV"])
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "corpus"
    return root, make_corpus(root)


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    root, _ = corpus
    out = tmp_path_factory.mktemp("bad_out") / "manifest"
    ds = prepare({"folder": root}, out, verbose=False)
    return ds, json.loads((out / "prepare_report.json").read_text())


@pytest.mark.parametrize("name", [n for n, (kind, _) in EXPECTED.items() if kind == "ok"])
def test_good_files_decode_to_mono_float32_16k(corpus, name):
    root, _ = corpus
    wave = load_audio(root / "angry" / name)
    seconds = EXPECTED[name][1]
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - seconds * SR) <= 0.02 * SR  # resampled to 16 kHz (mp3: encoder delay trimmed)
    middle = wave[wave.size // 4: 3 * wave.size // 4]
    peak = 0.25 if name.startswith("u8_stereo") else 0.5  # stereo: channels averaged, not summed or picked
    assert np.abs(middle).max() == pytest.approx(peak, abs=0.03)
    freq = 1000 if name == "tone_48k.wav" else 440
    spectrum = np.abs(np.fft.rfft(middle))
    assert abs(np.argmax(spectrum) * SR / middle.size - freq) < 20  # the pitch survived resampling


def test_windowed_decoding_and_min_seconds(corpus):
    root, _ = corpus
    full = load_audio(root / "angry" / "LOUD.WAV")
    window = load_audio(root / "angry" / "LOUD.WAV", start=0.1, seconds=0.15)
    assert window.size == pytest.approx(0.15 * SR, abs=2)
    assert np.allclose(window, full[int(0.1 * SR): int(0.1 * SR) + window.size], atol=1e-4)
    assert load_audio(root / "angry" / "click_10ms.wav", min_seconds=0.005).size == SR // 100
    with pytest.raises(AudioError, match="no audio in the window"):
        load_audio(root / "angry" / "LOUD.WAV", start=5.0, seconds=1.0)


def test_libsndfile_fast_path_gives_ffmpegs_samples(corpus, tmp_path):
    from after_hf.data.audio import _read_ffmpeg

    root, _ = corpus
    loud = sine(440, 0.5, SR, amp=0.9)
    sf.write(tmp_path / "stereo16k.wav", np.stack([loud, loud], 1), SR, subtype="PCM_24")
    for path in (root / "angry" / "LOUD.WAV", root / "angry" / "dup.flac", tmp_path / "stereo16k.wav"):
        ffmpeg = _read_ffmpeg(path, None, None).mean(axis=1)
        assert np.array_equal(load_audio(path), ffmpeg)
        for start, seconds in ((0.0, 0.2), (0.0123, 0.1111), (0.17, 5.0), (0.05, None)):
            window = _read_ffmpeg(path, start, seconds).mean(axis=1)
            assert np.array_equal(load_audio(path, start=start, seconds=seconds, check=False), window), (path, start)
    assert np.abs(load_audio(tmp_path / "stereo16k.wav")).max() == pytest.approx(0.9, abs=1e-3)  # averaged, not 1.27


def test_prepare_reports_every_bad_file_with_its_reason(prepared, corpus):
    ds, report = prepared
    root, files = corpus
    bad = {Path(b["path"]).name: b["reason"] for b in report["bad"]}
    for name, (kind, what) in EXPECTED.items():
        if kind == "bad":
            assert what in bad.pop(name), name
    assert bad == {}
    kept = {Path(p).name for p in ds["path"]}
    assert kept == {n for n, (kind, _) in EXPECTED.items() if kind == "ok"} | {"s0.wav", "s1.wav", "s2.wav"}
    for path, dur in zip(ds["path"], ds["duration"]):
        name = Path(path).name
        assert dur == pytest.approx(EXPECTED.get(name, ("ok", 0.3))[1], abs=0.02)
    assert "folder/angry/ça va 日本 ü" in ds["id"]
    assert report["dropped"] == {"folder": {"calm": 1}}
    assert [Path(e["path"]).name for e in report["excluded"]] == ["._LOUD.WAV"]
    # nothing silently dropped: every audio file is kept, dropped, excluded or bad
    audio = [p for p in files if p.suffix.lower() in (".wav", ".flac", ".mp3")]
    counts = report["files"]["folder"]
    assert counts["seen"] == len(audio) == len(ds) + 1 + len(report["excluded"]) + len(report["bad"])
    assert (counts["kept"], counts["dropped"], counts["excluded"], counts["bad"]) == (len(ds), 1, 1, len(report["bad"]))


def test_printed_report_names_bad_files(corpus, tmp_path, capsys):
    root, _ = corpus
    small = tmp_path / "small"
    for name in ("LOUD.WAV", "empty.wav", UNICODE_NAME):
        (small / "angry").mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "angry" / name, small / "angry" / name)
    for i in range(3):
        shutil.copy(root / "sad" / f"s{i}.wav", small / "angry" / f"x{i}.wav")
    prepare({"folder": small}, tmp_path / "m", verbose=True)
    printed = capsys.readouterr().out
    assert f"{small / 'angry' / 'empty.wav'}: empty file" in printed
    assert "files (folder): 6 seen = 5 kept + 0 dropped + 0 excluded + 1 bad" in printed


def test_on_bad_audio_error_names_files_and_fix(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "m"
    with pytest.raises(AudioError) as info:
        cli_main(["prepare", "--corpus", f"folder={root}", "--out", str(out), "--on-bad-audio", "error"])
    message = str(info.value)
    for name, (kind, what) in EXPECTED.items():
        if kind == "bad" and name != "dup.wav":  # a duplicate id is a layout problem, not bad audio
            assert f"{name}: " in message and what in message, name
    assert "--on_bad_audio skip" in message and not out.exists()


# ---------------------------------------------------------------- manifest errors

def _rows(root: Path, n: int = 3) -> list[dict]:
    rows = []
    for i in range(n):
        path = root / f"u{i}.wav"
        sf.write(path, sine(300, 0.2, SR), SR)
        rows.append(dict(id=f"c/u{i}", path=str(path), label="sad", emotion_raw="sad", speaker=f"c/s{i}", corpus="c",
                         session="", duration=0.2, split=("train", "validation", "test")[i % 3]))
    return rows


def test_manifest_errors_name_the_problem(tmp_path):
    from after_hf.data.manifest import save_manifest

    rows = _rows(tmp_path)
    with pytest.raises(ManifestError, match=r"c/u1 lacks columns \['speaker'\]"):
        build_manifest([rows[0], {k: v for k, v in rows[1].items() if k != "speaker"}])
    with pytest.raises(ManifestError, match=r"duplicated sample ids \['c/u0'\]"):
        build_manifest([rows[0], rows[1], {**rows[2], "id": "c/u0"}])
    ds = build_manifest(rows)
    with pytest.raises(ManifestError, match=r"missing columns \['speaker'\].*after-hf prepare"):
        check_manifest(ds.remove_columns("speaker"), where="m")
    with pytest.raises(ManifestError, match="label 'glad' is not in the label set"):
        build_manifest([{**rows[0], "label": "glad"}])
    out = save_manifest(ds, tmp_path / "manifest")
    loaded = load_manifest(out)
    assert loaded.features == ds.features and loaded.column_names == ds.column_names
    # the manifest points at the audio, it does not copy it (save_to_disk embeds Audio files unless told otherwise)
    assert [a["bytes"] for a in loaded.data.column("audio").to_pylist()] == [None] * 3
    assert sum(f.stat().st_size for f in out.rglob("*")) < sum(Path(r["path"]).stat().st_size for r in rows)
    Path(rows[1]["path"]).unlink()
    with pytest.raises(ManifestError, match=r"1 audio files are missing, e\.g\. .*u1\.wav"):
        load_manifest(out)
    with pytest.raises(ManifestError, match="not a manifest directory"):
        load_manifest(tmp_path)
