"""`after-hf prepare` on fake corpora laid out exactly like the real ones (REFERENCE.md §1), with known counts.

Every fake corpus is a tree of hard links to two 0.3 s tones (16 kHz, and 48 kHz for RAVDESS), so building
all eight costs a few hundred links. Expected counts below are written from the corpus documentation, not
from the readers: e.g. IEMOCAP keeps neu/hap/exc/ang/sad with exc merged into happy.
"""

import os
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from after_hf.cli import main as cli_main
from after_hf.data.corpora import READERS, CorpusError, Utterance
from after_hf.data.labels import LabelError
from after_hf.data.manifest import load_manifest
from after_hf.data.prepare import prepare
from after_hf.data.splits import SplitError, assign_splits

FOUR = ("neutral", "happy", "angry", "sad")


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    out = {}
    for sr in (16000, 48000):
        t = np.arange(int(0.3 * sr)) / sr
        out[sr] = root / f"tone{sr}.wav"
        sf.write(out[sr], (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, subtype="PCM_16")
    return out


def put(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.link(src, dst)


# ---------------------------------------------------------------- corpus builders (layouts from REFERENCE.md)

IEMOCAP_SPEC = [  # (speaker gender letter, category) spoken in every session; session n adds n extra M neu
    ("F", "neu"), ("F", "hap"), ("F", "exc"), ("F", "ang"), ("F", "sad"), ("F", "fru"), ("F", "xxx"),
    ("M", "neu"), ("M", "exc"), ("M", "ang"), ("M", "sad"), ("M", "sur"), ("M", "oth"),
]


IEMOCAP_WORDS = {"neu": "Neutral", "hap": "Happiness", "exc": "Excited", "ang": "Anger", "sad": "Sadness",
                 "fru": "Frustration", "sur": "Surprise", "oth": "Other", "dis": "Disgust", "fea": "Fear",
                 "xxx": "Anger"}


def iemocap_rater_lines(session: int, i: int, gender: str, cat: str) -> list[tuple[str, tuple | None]]:
    """The C-/A- lines written under turn ``i`` and, per line, the (rater, codes, self_eval) it must become.

    Two evaluators always; every even turn a third who names two categories (with a ';' inside the comment); every
    third turn the speaker's self-evaluation; turn 1 of each dialog an 'Other:text' answer and a 'Neutral state';
    turn 3 two more evaluators who say Neutral (a 2-2 tie unless the turn is neutral); turn 4 three more who say
    Sadness (outvoting the header's category); turn 0 of session 5 a category IEMOCAP does not define."""
    word = IEMOCAP_WORDS[cat]
    code = "ang" if cat == "xxx" else cat
    lines = [(f"C-E1:\t{word};\t()", ("iemocap/E1", (code,), False)),
             (f"C-E2:\t{word};\t(mildly {word.lower()})", ("iemocap/E2", (code,), False))]
    if i % 2 == 0:
        lines.append((f"C-E3:\t{word}; Frustration;\t(tense; ready)", ("iemocap/E3", (code, "fru"), False)))
    if i == 1:
        lines.append(("C-E4:\tOther:sarcastic; Neutral state;\t()", ("iemocap/E4", ("oth", "neu"), False)))
    if i == 3:
        lines += [(f"C-E{k}:\tNeutral;\t()", (f"iemocap/E{k}", ("neu",), False)) for k in (5, 6)]
    if i == 4:
        lines += [(f"C-E{k}:\tSadness;\t()", (f"iemocap/E{k}", ("sad",), False)) for k in (4, 5, 6)]
    if i == 0 and session == 5:
        lines.append(("C-E6:  Neutral state; Bored;  ()", ("iemocap/E6", ("neu", "Bored"), False)))  # spaces, not tabs
    if i % 3 == 0:
        lines.append((f"C-{gender}1:\tSadness;\t(self)", (f"iemocap/Ses0{session}{gender}", ("sad",), True)))
    lines += [("A-E1:\tval 3; act 2; dom  2;\t()", None), (f"A-{gender}1:\tval 2; act 3; dom  3;\t()", None)]
    return lines


def make_iemocap(root: Path, tone: Path) -> Path:
    """Session{n}/dialog/EmoEvaluation/<dialog>.txt + Session{n}/sentences/wav/<dialog>/<utt>.wav, one impro and
    one script dialog per session; plus the clutter of the real release (Categorical/, a ._ file)."""
    root = root / "IEMOCAP_full_release"
    for n in range(1, 6):
        spec = IEMOCAP_SPEC + [("M", "neu")] * n
        spec += ([("F", "dis")] if n == 3 else []) + ([("M", "fea")] if n == 4 else [])
        dialogs = {f"Ses0{n}F_impro01": spec[: len(spec) // 2], f"Ses0{n}M_script01_1": spec[len(spec) // 2:]}
        session = root / f"Session{n}"
        for dialog, utts in dialogs.items():
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for i, (gender, cat) in enumerate(utts):
                utt = f"{dialog}_{gender}{i:03d}"
                lines += [f"[{i * 3.1:.4f} - {i * 3.1 + 2.5:.4f}]\t{utt}\t{cat}\t[{2 + i % 3:.4f}, 3.0000, {n}.5000]"]
                lines += [text for text, _ in iemocap_rater_lines(n, i, gender, cat)] + [""]
                put(tone, session / "sentences" / "wav" / dialog / f"{utt}.wav")
            txt = session / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text("\n".join(lines))
        cat_dir = session / "dialog" / "EmoEvaluation" / "Categorical"
        cat_dir.mkdir()
        (cat_dir / f"Ses0{n}F_impro01_e1_cat.txt").write_text(f"Ses0{n}F_impro01_F000 :Neutral state; ()\n")
        (session / "dialog" / "EmoEvaluation" / f"._Ses0{n}F_impro01.txt").write_bytes(b"\x00\x05\x16\x07garbage")
    s1 = root / "Session1" / "sentences" / "wav" / "Ses01F_impro01"
    put(tone, s1 / "Ses01F_impro01_F099.wav")  # audio without a label line
    put(tone, s1 / "._Ses01F_impro01_F000.wav")  # macOS resource fork
    with (root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").open("a") as fh:
        fh.write("[99.0000 - 99.5000]\tSes01F_impro01_F098\tang\t[2.0000, 4.0000, 4.0000]\n")  # label without audio
    return root


# per session: F neu hap exc ang sad + M neu exc ang sad + n M neu
IEMOCAP_SESSION_COUNTS = {n: 9 + n for n in range(1, 6)}
IEMOCAP_KEPT = {"neutral": 2 * 5 + 15, "happy": 3 * 5, "angry": 2 * 5, "sad": 2 * 5}
IEMOCAP_DROPPED = {"fru": 5, "xxx": 5, "sur": 5, "oth": 5, "dis": 1, "fea": 1}


def make_ravdess(root: Path, tone48: Path) -> Path:
    """Actor_NN/03-01-EE-II-01-01-NN.wav: 4 actors, neutral at normal intensity only, the others at both;
    song files (vocal channel 02) for actors 1 and 2."""
    root = root / "RAVDESS"
    for actor in range(1, 5):
        for emo in range(1, 9):
            for intensity in ((1,) if emo == 1 else (1, 2)):
                put(tone48, root / f"Actor_{actor:02d}" / f"03-01-{emo:02d}-{intensity:02d}-01-01-{actor:02d}.wav")
        if actor <= 2:
            for emo in (1, 3):
                put(tone48, root / f"Actor_{actor:02d}" / f"03-02-{emo:02d}-01-01-01-{actor:02d}.wav")
    return root


RAVDESS_KEPT = {"neutral": 4, "happy": 8, "angry": 8, "sad": 8}
RAVDESS_DROPPED = {"02": 8, "06": 8, "07": 8, "08": 8}


def make_cremad(root: Path, tone: Path, actors=range(1001, 1006)) -> Path:
    """AudioWAV/AAAA_SSS_EMO_LVL.wav: 2 sentences x 6 emotions per actor; actor 1005 recorded no SAD."""
    root = root / "CREMA-D"
    for actor in actors:
        for sentence, level in (("IEO", "HI"), ("DFA", "XX")):
            for emo in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"):
                if actor == 1005 and emo == "SAD":
                    continue
                put(tone, root / "AudioWAV" / f"{actor}_{sentence}_{emo}_{'XX' if emo == 'NEU' else level}.wav")
    return root


CREMAD_KEPT = {"neutral": 10, "happy": 10, "angry": 10, "sad": 8}
CREMAD_DROPPED = {"DIS": 10, "FEA": 10}

EMOVDB_FOLDERS = ["bea_amused", "bea_angry", "bea_neutral", "bea_disgusted", "bea_sleepy", "jenie_Angry",
                  "jenie_neutral", "josh_amused", "josh_neutral", "josh_sleepy", "sam_angry", "sam_neutral",
                  "sam_Disgusted"]


def make_emovdb(root: Path, tone: Path) -> Path:
    """<speaker>_<emotion>/<emotion>_<a>-<b>_<nnnn>.wav, two files per folder (folder case varies as in the release)."""
    root = root / "EmoV-DB_sorted"
    for folder in EMOVDB_FOLDERS:
        emotion = folder.split("_")[1].lower()
        for i in (1, 2):
            put(tone, root / folder / f"{emotion}_1-28_{i:04d}.wav")
    return root


EMOVDB_KEPT = {"neutral": 8, "happy": 0, "angry": 6, "sad": 0}
EMOVDB_DROPPED = {"amused": 4, "disgusted": 4, "sleepy": 4}


def make_shemo(root: Path, tone: Path) -> Path:
    """female/F01A01.wav, male/M12N05.wav: 4 speakers x 6 emotions, F01 has a second neutral."""
    root = root / "ShEMO"
    for gender, spk in (("F", "01"), ("F", "02"), ("M", "01"), ("M", "12")):
        for emo in "AHNSFW":
            put(tone, root / ("female" if gender == "F" else "male") / f"{gender}{spk}{emo}01.wav")
    put(tone, root / "female" / "F01N02.wav")
    return root


SHEMO_KEPT = {"neutral": 5, "happy": 4, "angry": 4, "sad": 4}
SHEMO_DROPPED = {"F": 4, "W": 4}


def make_emodb(root: Path, tone: Path) -> Path:
    """wav/SSTTTEv.wav: 4 speakers; text a01 in all 7 emotions, a02 in W and N (version b)."""
    root = root / "emodb"
    for spk in ("03", "08", "09", "10"):
        for emo in "WLEAFTN":
            put(tone, root / "wav" / f"{spk}a01{emo}a.wav")
        for emo in "WN":
            put(tone, root / "wav" / f"{spk}a02{emo}b.wav")
    return root


EMODB_KEPT = {"neutral": 8, "happy": 4, "angry": 8, "sad": 4}
EMODB_DROPPED = {"A": 4, "E": 4, "L": 4}

TESS_FOLDERS = {"angry": "angry", "disgust": "disgust", "fear": "Fear", "happy": "happy", "neutral": "neutral",
                "ps": "Pleasant_surprise", "sad": "Sad"}


def make_tess(root: Path, tone: Path) -> Path:
    """OAF_angry/OAF_back_angry.wav: speakers OAF, YAF, 7 emotions, words back and bar."""
    root = root / "TESS Toronto emotional speech set data"
    for spk in ("OAF", "YAF"):
        for emo, folder in TESS_FOLDERS.items():
            for word in ("back", "bar"):
                put(tone, root / f"{spk}_{folder}" / f"{spk}_{word}_{emo}.wav")
    return root


TESS_KEPT = {"neutral": 4, "happy": 4, "angry": 4, "sad": 4}
TESS_DROPPED = {"disgust": 4, "fear": 4, "ps": 4}


def make_savee(root: Path, tone: Path) -> Path:
    """DC_a01.wav (flattened release): 4 speakers; a x2, d, f, h x2, n x3, sa x2, su."""
    root = root / "SAVEE"
    for spk in ("DC", "JE", "JK", "KL"):
        for code, n in (("a", 2), ("d", 1), ("f", 1), ("h", 2), ("n", 3), ("sa", 2), ("su", 1)):
            for i in range(1, n + 1):
                put(tone, root / f"{spk}_{code}{i:02d}.wav")
    return root


SAVEE_KEPT = {"neutral": 12, "happy": 8, "angry": 8, "sad": 8}
SAVEE_DROPPED = {"d": 4, "f": 4, "su": 4}

KEPT = {"iemocap": IEMOCAP_KEPT, "ravdess": RAVDESS_KEPT, "cremad": CREMAD_KEPT, "emovdb": EMOVDB_KEPT,
        "shemo": SHEMO_KEPT, "emodb": EMODB_KEPT, "tess": TESS_KEPT, "savee": SAVEE_KEPT}
DROPPED = {"iemocap": IEMOCAP_DROPPED, "ravdess": RAVDESS_DROPPED, "cremad": CREMAD_DROPPED, "emovdb": EMOVDB_DROPPED,
           "shemo": SHEMO_DROPPED, "emodb": EMODB_DROPPED, "tess": TESS_DROPPED, "savee": SAVEE_DROPPED}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, tones):
    root = tmp_path_factory.mktemp("corpora")
    t16, t48 = tones[16000], tones[48000]
    return {
        "iemocap": make_iemocap(root, t16), "ravdess": make_ravdess(root, t48), "cremad": make_cremad(root, t16),
        "emovdb": make_emovdb(root, t16), "shemo": make_shemo(root, t16), "emodb": make_emodb(root, t16),
        "tess": make_tess(root, t16), "savee": make_savee(root, t16),
    }


def audio_count(root: Path) -> int:
    return sum(1 for p in Path(root).rglob("*.wav"))


def report_of(out: Path) -> dict:
    import json

    return json.loads((Path(out) / "prepare_report.json").read_text())


def rows_of(ds) -> set:
    return set(zip(ds["id"], ds["split"], ds["label"], ds["speaker"]))


# ---------------------------------------------------------------- the merged pool, IEMOCAP leave-one-session-out

@pytest.fixture(scope="module")
def merged(corpora, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged") / "manifest"
    ds = prepare(corpora, out, fold=2, verbose=False)  # iemocap given -> loso
    return ds, report_of(out)


def test_merged_counts_per_corpus_and_label(merged):
    ds, report = merged
    names = ds.features["label"].names
    assert names == list(FOUR)
    got = Counter((c, names[y]) for c, y in zip(ds["corpus"], ds["label"]))
    for corpus, kept in KEPT.items():
        for label in FOUR:
            assert got[(corpus, label)] == kept[label], (corpus, label)
            assert report["kept"][label][corpus] == kept[label], (corpus, label)
    assert report["kept_total"] == len(ds) == sum(sum(k.values()) for k in KEPT.values())
    assert report["dropped"] == DROPPED
    # hap and exc both became happy; nothing else did
    happy_raw = Counter(r for r, y, c in zip(ds["emotion_raw"], ds["label"], ds["corpus"])
                        if c == "iemocap" and names[y] == "happy")
    assert happy_raw == {"hap": 5, "exc": 10} and report["kept_raw"]["iemocap"]["happy"] == happy_raw
    assert report["kept_raw"]["ravdess"] == {"neutral": {"01": 4}, "happy": {"03": 8}, "sad": {"04": 8},
                                             "angry": {"05": 8}}
    assert len(set(ds["id"])) == len(ds) and all(i.split("/", 1)[0] in KEPT for i in ds["id"])
    assert all(os.path.isfile(p) for p in ds["path"]) and all(d == pytest.approx(0.3, abs=0.01) for d in ds["duration"])


def test_merged_accounts_for_every_file(merged, corpora):
    _, report = merged
    excluded = Counter((e["corpus"], e["reason"].split(" (")[0]) for e in report["excluded"])
    assert excluded == {("ravdess", "song"): 4, ("iemocap", "hidden file"): 1}
    bad = {(b["corpus"], Path(b["path"]).name): b["reason"] for b in report["bad"]}
    assert "no label line" in bad[("iemocap", "Ses01F_impro01_F099.wav")]
    assert "missing" in bad[("iemocap", "Ses01F_impro01_F098.wav")]
    assert len(bad) == 2
    for corpus, root in corpora.items():
        files = report["files"][corpus]
        assert files["seen"] == audio_count(root), corpus
        assert files["kept"] == sum(KEPT[corpus].values()) and files["dropped"] == sum(DROPPED[corpus].values())
    assert report["files"]["iemocap"]["missing"] == 1


def test_merged_loso_fold_splits(merged):
    ds, report = merged
    rows = list(zip(ds["corpus"], ds["session"], ds["speaker"], ds["split"]))
    # test = exactly IEMOCAP Session2; everything outside IEMOCAP trains (AFTER's noisy pool)
    assert {(c, s) for c, s, _, sp in rows if sp == "test"} == {("iemocap", "Session2")}
    assert sum(sp == "test" for *_, sp in rows) == IEMOCAP_SESSION_COUNTS[2]
    assert all(sp == "test" for c, s, _, sp in rows if s == "Session2")
    assert all(sp == "train" for c, _, _, sp in rows if c != "iemocap")
    val = {(c, s, spk) for c, s, spk, sp in rows if sp == "validation"}
    assert len(val) == 1 and next(iter(val))[:2] == ("iemocap", "Session3")
    by_split = {sp: {spk for *_, spk, s in rows if s == sp} for sp in ("train", "validation", "test")}
    assert not (by_split["train"] & by_split["validation"]) and not (by_split["train"] & by_split["test"])
    assert report["protocol"] == "loso"


@pytest.mark.parametrize("fold", [1, 2, 3, 4, 5])
def test_loso_each_fold_tests_on_its_session(corpora, fold):
    rows = [u.__dict__ for u in READERS["iemocap"](corpora["iemocap"]) if isinstance(u, Utterance)]
    splits, _ = assign_splits(rows, protocol="loso", fold=fold, seed=3)
    test = {r["session"] for r, s in zip(rows, splits) if s == "test"}
    assert test == {f"Session{fold}"}
    assert all(s == "test" for r, s in zip(rows, splits) if r["session"] == f"Session{fold}")
    val = {(r["session"], r["speaker"]) for r, s in zip(rows, splits) if s == "validation"}
    assert len(val) == 1 and next(iter(val))[0] != f"Session{fold}"
    # speakers are Ses0nF / Ses0nM: the gender letter before the utterance number, not the dialog's
    assert {r["speaker"] for r in rows} == {f"iemocap/Ses0{n}{g}" for n in range(1, 6) for g in "FM"}
    with pytest.raises(SplitError, match="fold 6"):
        assign_splits(rows, protocol="loso", fold=6)


# ---------------------------------------------------------------- the CLI

def test_cli_prepare_prints_table(corpora, tmp_path, capsys):
    out = tmp_path / "m"
    rc = cli_main(["prepare", "--corpus", f"iemocap={corpora['iemocap']}", "--out", str(out), "--fold", "3",
                   "--loso_validation", "session"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    table = {ln.split()[0]: ln.split()[1:] for ln in lines if ln.split() and ln.split()[0] in FOUR}
    for label in FOUR:
        assert table[label] == [str(IEMOCAP_KEPT[label])] * 2  # iemocap column, total column
    test_line = next(ln for ln in lines if ln.startswith("test "))
    assert f"{IEMOCAP_SESSION_COUNTS[3]} utt" in test_line and " 2 speakers" in test_line
    val_line = next(ln for ln in lines if ln.startswith("validation "))
    assert f"{IEMOCAP_SESSION_COUNTS[4]} utt" in val_line and " 2 speakers" in val_line  # the whole next session
    assert any("dropped (iemocap" in ln and "fru 5" in ln and "xxx 5" in ln for ln in lines)
    assert "merged (iemocap): happy = exc 10 + hap 5" in lines
    ds = load_manifest(out)
    assert {s for s, sp in zip(ds["session"], ds["split"]) if sp == "validation"} == {"Session4"}


# ---------------------------------------------------------------- label sets

def test_native_label_set(corpora, tmp_path):
    ds = prepare({"ravdess": corpora["ravdess"], "iemocap": corpora["iemocap"]}, tmp_path / "m", label_set="native",
                 protocol="speaker", verbose=False)
    names = ds.features["label"].names
    got = Counter((c, names[y]) for c, y in zip(ds["corpus"], ds["label"]))
    ravdess = {"neutral": 4, "calm": 8, "happy": 8, "sad": 8, "angry": 8, "fearful": 8, "disgust": 8, "surprised": 8}
    assert {k: v for (c, k), v in got.items() if c == "ravdess"} == ravdess
    iemocap = {"neutral": 25, "happy": 5, "excited": 10, "angry": 10, "sad": 10, "frustrated": 5, "surprised": 5,
               "other": 5, "disgust": 1, "fearful": 1}
    assert {k: v for (c, k), v in got.items() if c == "iemocap"} == iemocap
    assert set(names) == set(ravdess) | set(iemocap)
    assert report_of(tmp_path / "m")["dropped"] == {"iemocap": {"xxx": 5}}  # no agreement is not an emotion


def test_custom_yaml_label_map(corpora, tmp_path):
    yaml_path = tmp_path / "labels.yaml"
    yaml_path.write_text("emovdb:\n  amused: happy\n  neutral: neutral\n  angry: angry\n")
    ds = prepare({"emovdb": corpora["emovdb"]}, tmp_path / "m", label_set=str(yaml_path), verbose=False)
    names = ds.features["label"].names
    assert names == ["happy", "neutral", "angry"]  # the map's order
    assert Counter(names[y] for y in ds["label"]) == {"happy": 4, "neutral": 8, "angry": 6}
    assert report_of(tmp_path / "m")["dropped"] == {"emovdb": {"disgusted": 4, "sleepy": 4}}
    yaml_path.write_text("emovdb:\n  joyful: happy\n")
    with pytest.raises(LabelError, match="joyful"):
        prepare({"emovdb": corpora["emovdb"]}, tmp_path / "m2", label_set=str(yaml_path), verbose=False)


# ---------------------------------------------------------------- generic folder, metadata.csv, Hub-style datasets

def test_folder_reader_label_from_folder_name(tones, tmp_path):
    root = tmp_path / "my_corpus"
    layout = {"anger": 3, "Happy": 2, "neutral": 2, "sadness": 3, "boredom": 2}
    for folder, n in layout.items():
        for i in range(n):
            put(tones[16000], root / folder / f"clip{i}.wav")
    put(tones[16000], root / "stray.wav")  # no label: reported, not dropped silently
    ds = prepare({"folder": root}, tmp_path / "m", test_fraction=0.2, validation_fraction=0.2, verbose=False)
    names = ds.features["label"].names
    assert Counter(names[y] for y in ds["label"]) == {"angry": 3, "happy": 2, "neutral": 2, "sad": 3}
    report = report_of(tmp_path / "m")
    assert report["dropped"] == {"folder": {"boredom": 2}}
    assert [Path(b["path"]).name for b in report["bad"]] == ["stray.wav"]
    assert report["files"]["folder"]["seen"] == audio_count(root)
    assert any("every utterance is its own speaker" in n for n in report["notes"])


def test_folder_reader_metadata_csv(tones, tmp_path):
    root = tmp_path / "csv_corpus"
    meta = ["file_name,label,speaker"]
    for i in range(12):
        rel = f"audio/utt{i:02d}.wav"
        put(tones[16000], root / rel)
        meta.append(f"{rel},{['ang', 'joy', 'neutral', 'sad'][i % 4]},spk{i % 4}")
    put(tones[16000], root / "audio" / "unlisted.wav")
    meta.append("audio/gone.wav,sad,spk0")
    (root / "metadata.csv").write_text("\n".join(meta) + "\n")
    ds = prepare({"folder": root}, tmp_path / "m", verbose=False)
    names = ds.features["label"].names
    assert Counter(names[y] for y in ds["label"]) == {label: 3 for label in FOUR}
    assert set(ds["speaker"]) == {f"folder/spk{i}" for i in range(4)}
    assert all(n == 1 for n in Counter(spk for spk, _ in set(zip(ds["speaker"], ds["split"]))).values())
    bad = {Path(b["path"]).name: b["reason"] for b in report_of(tmp_path / "m")["bad"]}
    assert "not listed" in bad["unlisted.wav"] and "missing" in bad["gone.wav"]


def test_hub_dataset_via_load_dataset_with_column_mapping(tones, tmp_path):
    from datasets import Audio, ClassLabel, Dataset, Features, Value

    data = tones[16000].read_bytes()
    repo = tmp_path / "local_hub_dataset"
    (repo / "data").mkdir(parents=True)
    features = Features({"speech": Audio(), "emotion": ClassLabel(names=["ang", "hap", "neu", "sad", "fru"]),
                         "actor": Value("string")})
    for split, n in (("train", 10), ("test", 5)):
        rows = {"speech": [{"bytes": data, "path": f"{split}_{i}.wav"} for i in range(n)],
                "emotion": [i % 5 for i in range(n)], "actor": [f"a{i % 5}" for i in range(n)]}
        Dataset.from_dict(rows, features=features).to_parquet(str(repo / "data" / f"{split}-00000-of-00001.parquet"))
    audio_dir = tmp_path / "hub_audio"
    ds = prepare({"hub": str(repo)}, tmp_path / "m", hub_audio_column="speech", hub_label_column="emotion",
                 hub_speaker_column="actor", hub_audio_dir=str(audio_dir), verbose=False)
    names = ds.features["label"].names
    assert Counter(names[y] for y in ds["label"]) == {"angry": 3, "happy": 3, "neutral": 3, "sad": 3}
    assert report_of(tmp_path / "m")["dropped"] == {"hub": {"fru": 3}}
    assert {i.rsplit("/", 1)[0] for i in ds["id"]} == {"hub/train", "hub/test"}
    assert set(ds["speaker"]) == {f"hub/a{i}" for i in range(4)}
    assert all(Path(p).parent.parent == audio_dir and Path(p).read_bytes() == data for p in ds["path"])
    with pytest.raises(CorpusError, match="no column"):
        prepare({"hub": str(repo)}, tmp_path / "m2", hub_label_column="mood", verbose=False)


# ---------------------------------------------------------------- speaker-independent splits, order and seed

SPEAKER_CORPORA = ("cremad", "ravdess", "shemo", "emodb", "savee", "tess")


@pytest.fixture(scope="module")
def speaker_split(corpora, tmp_path_factory):
    out = tmp_path_factory.mktemp("speaker") / "m"
    ds = prepare({c: corpora[c] for c in SPEAKER_CORPORA}, out, verbose=False)
    return ds, report_of(out)


def test_speaker_independent_split_per_corpus(speaker_split):
    ds, report = speaker_split
    assert report["protocol"] == "speaker"
    split_of = {}
    for spk, s in zip(ds["speaker"], ds["split"]):
        assert split_of.setdefault(spk, s) == s, f"{spk} is in two splits"
    for corpus in SPEAKER_CORPORA:
        splits = Counter(s for spk, s in split_of.items() if spk.startswith(f"{corpus}/"))
        if corpus == "tess":  # 2 speakers: too few for a 3-way split, so all train, with a note
            assert set(splits) == {"train"}
        else:
            assert set(splits) == {"train", "validation", "test"} and splits["train"] >= splits["test"], corpus
    assert any(n.startswith("tess:") for n in report["notes"])
    with pytest.raises(SplitError, match="speakers"):
        assign_splits([{"corpus": "tess", "speaker": s, "session": ""} for s in ("OAF", "YAF")])


def test_tess_alone_fails_with_a_suggestion_that_works(corpora, tmp_path, capsys):
    """2 speakers cannot be split by speaker whatever the fractions; the error names --protocol utterance, and
    following it prepares a seeded, speaker-dependent split that is warned about and recorded."""
    out = tmp_path / "tess"
    with pytest.raises(SplitError) as info:
        prepare({"tess": corpora["tess"]}, out, verbose=False)
    message = str(info.value)
    assert "--protocol utterance" in message and "lower --test_fraction" not in message  # lowering cannot help
    assert not out.exists()
    ds = prepare({"tess": corpora["tess"]}, out, protocol="utterance")  # the suggestion, followed
    report = report_of(out)
    assert report["protocol"] == "utterance" and report["options"]["protocol"] == "utterance"
    assert Counter(ds["split"]) == {"train": 11, "test": 3, "validation": 2}  # 20 % / 10 % of the 16 clips
    assert any(n.startswith("WARNING protocol utterance: a speaker-DEPENDENT split") for n in report["notes"])
    assert "note: WARNING protocol utterance" in capsys.readouterr().out
    again = prepare({"tess": corpora["tess"]}, tmp_path / "again", protocol="utterance", verbose=False)
    assert dict(zip(again["id"], again["split"])) == dict(zip(ds["id"], ds["split"]))  # seeded: the same split


class _ShuffledScandir:
    """os.scandir with its entries in a random order (a file system that lists files unsorted)."""

    def __init__(self, real, rng, *args):
        with real(*args) as it:
            self.entries = list(it)
        rng.shuffle(self.entries)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __iter__(self):
        return iter(self.entries)

    def close(self):
        pass


def test_split_does_not_depend_on_listing_order_or_location(speaker_split, corpora, tmp_path, monkeypatch):
    ds, _ = speaker_split
    moved = {}
    for c in SPEAKER_CORPORA:  # the same corpora under another parent folder
        moved[c] = tmp_path / "elsewhere" / corpora[c].name
        shutil.copytree(corpora[c], moved[c], copy_function=os.link)
    rng, real_scandir, real_listdir = random.Random(7), os.scandir, os.listdir
    monkeypatch.setattr(os, "scandir", lambda *a: _ShuffledScandir(real_scandir, rng, *a))
    monkeypatch.setattr(os, "listdir", lambda *a: rng.sample(real_listdir(*a), len(real_listdir(*a))))
    assert [e.name for e in os.scandir(moved["savee"])] != sorted(real_listdir(moved["savee"]))  # the shuffle is live
    ds2 = prepare(moved, tmp_path / "m", verbose=False)
    monkeypatch.undo()
    assert rows_of(ds2) == rows_of(ds)
    assert list(ds2["id"]) == list(ds["id"])  # same row order too


def test_speaker_split_is_seeded():
    rows = [{"corpus": "c", "speaker": f"c/s{i:02d}", "session": ""} for i in range(20)]
    first, _ = assign_splits(rows, seed=1)
    assert assign_splits(rows[::-1], seed=1)[0] == first[::-1]  # row order does not matter
    assert assign_splits(rows, seed=1)[0] == first
    assert len({tuple(assign_splits(rows, seed=s)[0]) for s in range(5)}) > 1  # the seed does matter
    assert Counter(first) == {"train": 14, "validation": 2, "test": 4}


# ---------------------------------------------------------------- layout errors name the expected folder

def test_wrong_folder_errors(corpora, tmp_path):
    with pytest.raises(CorpusError, match="pass its parent"):
        prepare({"iemocap": corpora["iemocap"] / "Session1"}, tmp_path / "m", verbose=False)
    with pytest.raises(CorpusError, match="AudioWAV"):
        prepare({"cremad": corpora["shemo"]}, tmp_path / "m", verbose=False)
    with pytest.raises(CorpusError, match="did you mean cremad"):
        prepare({"crema": corpora["cremad"]}, tmp_path / "m", verbose=False)
    # the inner folder is accepted and gives the same ids
    inner = [u.id for u in READERS["cremad"](corpora["cremad"] / "AudioWAV") if isinstance(u, Utterance)]
    assert inner == [u.id for u in READERS["cremad"](corpora["cremad"]) if isinstance(u, Utterance)]


def test_savee_nested_layout(tones, tmp_path):
    for spk in ("DC", "KL"):
        for name in ("a01", "sa02", "su01"):
            put(tones[16000], tmp_path / "AudioData" / spk / f"{name}.wav")
    got = sorted((u.speaker, u.emotion_raw) for u in READERS["savee"](tmp_path) if isinstance(u, Utterance))
    assert got == [(f"savee/{s}", c) for s in ("DC", "KL") for c in ("a", "sa", "su")]


def test_emovdb_other_layouts(tones, tmp_path):
    for rel in ("bea/Amused/amused_1-15_0001.wav", "josh/anger_1-28_0002.wav", "sam/sleepiness_1-28_0003.wav",
                "sam/notes_0001.wav", "anger_1-28_0009.wav"):
        put(tones[16000], tmp_path / rel)
    items = list(READERS["emovdb"](tmp_path))
    got = sorted((u.speaker, u.emotion_raw) for u in items if isinstance(u, Utterance))
    assert got == [("emovdb/bea", "amused"), ("emovdb/josh", "angry"), ("emovdb/sam", "sleepy")]
    skipped = sorted(Path(s.path).name for s in items if not isinstance(s, Utterance))
    assert skipped == ["anger_1-28_0009.wav", "notes_0001.wav"]
