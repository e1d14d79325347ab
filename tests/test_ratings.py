"""Per-rater labels: every rater answer a corpus ships reaches the manifest, with votes, agreement and majority.

Expected answers come from the fixture builders (``iemocap_rater_lines`` writes each C- line beside the answer it
must become) and from hand computation, not from the readers.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from after_hf.cli import main as cli_main
from after_hf.data.corpora import READERS, CorpusError, RatingsError, Utterance
from after_hf.data.manifest import ManifestError, build_manifest, load_manifest, save_manifest
from after_hf.data.prepare import prepare
from after_hf.data.ratings import OTHER, RATING_COLUMNS, has_votes, tally, vote_matrix
from test_prepare import iemocap_rater_lines, make_cremad, make_iemocap, put

FOUR = ["neutral", "happy", "angry", "sad"]


@pytest.fixture(scope="module")
def tone(tmp_path_factory):
    path = tmp_path_factory.mktemp("tone") / "tone.wav"
    t = np.arange(4800) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def iemocap(tmp_path_factory, tone):
    root = make_iemocap(tmp_path_factory.mktemp("iemocap"), tone)
    ds = prepare({"iemocap": root}, tmp_path_factory.mktemp("m") / "m", verbose=False)
    return root, ds


def report_json(out: Path) -> dict:
    import json

    return json.loads((Path(out) / "prepare_report.json").read_text())


def by_id(ds) -> dict:
    return {row["id"]: row for row in ds.remove_columns("audio")}


def turn_of(sample_id: str) -> tuple[int, int, str]:
    utt = sample_id.rsplit("/", 1)[1]
    return int(utt[4]), int(utt[-3:]), utt[-4]  # session, turn index in its dialog, speaker gender


# ---------------------------------------------------------------- the tally, by hand

def test_tally_by_hand():
    # 3 counted answers: neutral; neutral; neutral+frustration (half each) -> neutral 2.5 of 3, other 0.5
    got = tally([["neutral"], ["neutral"], ["neutral", OTHER]], FOUR)
    assert got["n_raters"] == 3 and got["votes"] == [2.5, 0, 0, 0] and got["votes_other"] == 0.5
    assert got["vote_dist"] == [1, 0, 0, 0] and got["vote_agreement"] == pytest.approx(2.5 / 3)
    assert got["vote_majority"] == "neutral" and got["vote_top"] == ["neutral"]
    # a 2-2 tie is no majority, whatever the label order; both tied labels are listed in label-set order
    for answers in ([["sad"], ["angry"], ["angry"], ["sad"]], [["angry"], ["sad"], ["sad"], ["angry"]]):
        got = tally(answers, FOUR)
        assert got["vote_majority"] == "" and got["vote_top"] == ["angry", "sad"] and got["vote_agreement"] == 0.5
    # most raters outside the label set: the majority says so, the distribution covers the label set only
    got = tally([[OTHER], [OTHER], ["happy"]], FOUR)
    assert got["vote_majority"] == OTHER and got["vote_dist"] == [0, 1, 0, 0]
    assert got["vote_agreement"] == pytest.approx(2 / 3)
    # 1/3 + 1/3 + 1/3 against 1: a tie despite floating point
    got = tally([["happy", "sad", "angry"]] * 3 + [["neutral"]] * 1, FOUR)
    assert got["vote_top"] == FOUR and got["vote_majority"] == ""
    # no answers: nothing to count, no agreement, no majority; "angry+angry" is one vote
    got = tally([], FOUR)
    assert got["n_raters"] == 0 and got["vote_agreement"] is None
    assert got["vote_majority"] == "" and got["vote_dist"] == [0] * 4
    assert tally([["angry", "angry"]], FOUR)["votes"] == [0, 0, 1, 0]


# ---------------------------------------------------------------- IEMOCAP: every C- line of every turn

def expected_ratings(sample_id: str, cat: str) -> list[tuple]:
    session, i, gender = turn_of(sample_id)
    return [r for _, r in iemocap_rater_lines(session, i, gender, cat) if r is not None]


def test_iemocap_keeps_every_rater_line_of_every_turn(iemocap):
    _, ds = iemocap
    rows = by_id(ds)
    assert len(rows) == 60
    n_multi = n_self = 0
    for sid, row in rows.items():
        want = expected_ratings(sid, row["emotion_raw"])
        got = [(r["rater"], tuple(r["raw"]), r["self_eval"]) for r in row["ratings"]]
        assert got == want, sid
        n_multi += sum(len(r["raw"]) > 1 for r in row["ratings"])
        n_self += sum(r["self_eval"] for r in row["ratings"])
        session, i, _ = turn_of(sid)
        assert row["vad"] == [2 + i % 3, 3.0, session + 0.5]  # the header's [V, A, D]
    assert n_multi > 20 and n_self > 15  # the fixture really has both kinds of line


def test_iemocap_answers_mapped_to_the_label_set(iemocap):
    _, ds = iemocap
    mapping = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad", "fru": OTHER,
               "oth": OTHER, "Bored": OTHER}
    for row in by_id(ds).values():
        for r in row["ratings"]:
            assert r["labels"] == [mapping[c] for c in r["raw"]]


def test_iemocap_derived_votes_by_hand(iemocap):
    _, ds = iemocap
    rows = by_id(ds)
    base = "iemocap/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F00"
    # F000 neu: E1 neu, E2 neu, E3 neu+fru, self-evaluation sad (not counted)
    r = rows[base + "0"]
    assert (r["n_raters"], r["votes"], r["votes_other"]) == (3, [2.5, 0, 0, 0], 0.5)
    assert r["vote_majority"] == "neutral" and r["vote_agreement"] == pytest.approx(2.5 / 3, abs=1e-6)
    # F001 hap: E1 hap, E2 hap, E4 oth+neu
    r = rows[base + "1"]
    assert r["votes"] == [0.5, 2, 0, 0] and r["votes_other"] == 0.5
    assert r["vote_dist"] == pytest.approx([0.2, 0.8, 0, 0])
    assert r["vote_majority"] == "happy" and r["vote_agreement"] == pytest.approx(2 / 3, abs=1e-6)
    # F003 ang: E1 ang, E2 ang, E5 neu, E6 neu (+ self sad, not counted): a tie, no majority
    r = rows[base + "3"]
    assert r["votes"] == [2, 0, 2, 0] and r["vote_top"] == ["neutral", "angry"] and r["vote_majority"] == ""
    assert r["vote_agreement"] == 0.5 and FOUR[r["label"]] == "angry"  # the corpus label stays the header's


def test_iemocap_self_evaluations_counted_on_request(iemocap, tmp_path):
    root, _ = iemocap
    ds = prepare({"iemocap": root}, tmp_path / "m", count_self_evaluations=True, verbose=False)
    rows = by_id(ds)
    r = rows["iemocap/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000"]
    assert r["n_raters"] == 4 and r["votes"] == [2.5, 0, 0, 1] and r["vote_agreement"] == pytest.approx(2.5 / 4)
    for row in rows.values():
        assert row["n_raters"] == len(row["ratings"])


def test_cli_prints_the_ratings_summary_and_the_unknown_category(iemocap, tmp_path, capsys):
    root, ds = iemocap
    assert cli_main(["prepare", "--corpus", f"iemocap={root}", "--out", str(tmp_path / "m")]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(ln for ln in lines if ln.startswith("ratings (iemocap): "))
    answers = sum(sum(not a["self_eval"] for a in r["ratings"]) for r in by_id(ds).values())
    counts = [r["n_raters"] for r in by_id(ds).values()]
    assert (min(counts), max(counts)) == (2, 6)
    assert line.startswith(f"ratings (iemocap): 60/60 clips rated, {answers / 60:.1f} raters per clip (2-6), mean "
                           "agreement ")
    mean_agreement = np.mean([r["vote_agreement"] for r in by_id(ds).values()])
    assert f"mean agreement {mean_agreement:.2f}," in line and "self-evaluations kept but not counted" in line
    rows = by_id(ds).values()
    ties = sum(len(r["vote_top"]) > 1 for r in rows)
    differs = sum(r["vote_majority"] not in ("", FOUR[r["label"]]) for r in rows)
    selfs = sum(a["self_eval"] for r in rows for a in r["ratings"])
    assert ties > 0 and differs > 0  # F003-style ties; "_other" majorities (E3's frustration halves can win)
    assert f", {ties} ties (no majority), " in line
    assert f"other than the label on {differs} clips; {selfs} self-evaluations" in line
    assert report_json(tmp_path / "m")["ratings"]["iemocap"]["ties"] == ties
    assert any("rater answers name categories the corpus does not define ({'Bored': 2})" in ln for ln in lines)


def test_native_label_set_votes_cover_frustration(iemocap, tmp_path):
    root, _ = iemocap
    ds = prepare({"iemocap": root}, tmp_path / "m", label_set="native", protocol="speaker", verbose=False)
    names = ds.features["label"].names
    row = by_id(ds)["iemocap/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000"]
    assert row["votes_other"] == 0 and row["votes"][names.index("frustrated")] == 0.5  # a label here, not "other"
    assert len(row["votes"]) == len(names)


# ---------------------------------------------------------------- CREMA-D votes

RESPONSES_HEADER = ["", "localid", "pos", "ans", "ttr", "queryType", "numTries", "clipNum", "questNum", "subType",
                    "clipName", "sessionNums", "respEmo", "respLevel", "dispEmo", "dispVal", "dispLevel"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(header)
        writer.writerows(rows)


def response(n, rater, query, clip, session, quest, emo):
    return [str(n), rater, 1, f"{emo}_50", 900, query, 0, 1, quest, 4, clip, session, emo, 50, "A", "X", "X"]


@pytest.fixture()
def cremad(tmp_path, tone):
    return make_cremad(tmp_path, tone, actors=(1001, 1002, 1003))


def cremad_rows(root) -> dict:
    return {u.id.rsplit("/", 1)[1]: u for u in READERS["cremad"](root) if isinstance(u, Utterance)}


def test_cremad_finished_responses_voice_only_without_distracted(cremad, tmp_path):
    write_csv(cremad / "finishedResponses.csv", RESPONSES_HEADER, [
        response(1, "r1", 1, "1001_DFA_ANG_XX", 10, 1, "A"),
        response(2, "r2", 1, "1001_DFA_ANG_XX", 11, 1, "A"),
        response(3, "r3", 1, "1001_DFA_ANG_XX", 12, 1, "N"),
        response(4, "r4", 2, "1001_DFA_ANG_XX", 13, 1, "H"),  # face only: not what a speech model hears
        response(5, "r5", 3, "1001_DFA_ANG_XX", 14, 1, "H"),  # audio-visual
        response(6, "r6", 1, "1001_DFA_ANG_XX", 15, 2, "S"),  # first click after 12 s: distracted
        response(7, "r7", 1, "1001_DFA_HAP_XX", 15, 3, "H"),  # same session, another question: kept
        response(8, "r8", 1, "1001_DFA_HAP_XX", 16, 1, "D"),
    ])
    write_csv(cremad / "finishedEmoResponses.csv",
              ["", "localid", "sessionNums", "queryType", "questNum", "pos", "ttr", "numTries", "clipNum", "clipName"],
              [["1", "r6", 15, 1, 2, 1, 12000, 0, 1, "1001_DFA_ANG_XX"],
               ["2", "r7", 15, 1, 3, 1, 800, 0, 2, "1001_DFA_HAP_XX"]])
    rows = cremad_rows(cremad)
    assert [(r.rater, r.emotions) for r in rows["1001_DFA_ANG_XX"].ratings] == [
        ("cremad/r1", ("ANG",)), ("cremad/r2", ("ANG",)), ("cremad/r3", ("NEU",))]
    assert [r.emotions for r in rows["1001_DFA_HAP_XX"].ratings] == [("HAP",), ("DIS",)]
    assert rows["1002_DFA_ANG_XX"].ratings == ()
    ds = prepare({"cremad": cremad}, tmp_path / "m", verbose=False)
    got = by_id(ds)
    ang = got["cremad/AudioWAV/1001_DFA_ANG_XX"]
    assert ang["votes"] == pytest.approx([1, 0, 2, 0]) and ang["vote_majority"] == "angry"
    hap = got["cremad/AudioWAV/1001_DFA_HAP_XX"]  # happy 1, disgust 1 (outside the label set): a tie
    assert hap["vote_top"] == ["happy", OTHER] and hap["vote_majority"] == "" and hap["vote_dist"] == [0, 1, 0, 0]


def test_cremad_tabulated_votes_voice_rows_only(cremad):
    header = ["", "A", "D", "F", "H", "N", "S", "fileName", "numResponses", "agreement", "emoVote"]
    write_csv(cremad / "processedResults" / "tabulatedVotes.csv", header, [
        ["100001", 5, 1, 0, 0, 3, 0, "1001_DFA_ANG_XX", 9, 0.556, "A"],
        ["200001", 0, 0, 0, 9, 0, 0, "1001_DFA_ANG_XX", 9, 1.0, "H"],  # face only
        ["300001", 0, 0, 0, 0, 0, 9, "1001_DFA_ANG_XX", 9, 1.0, "S"],  # audio-visual
    ])
    ratings = cremad_rows(cremad)["1001_DFA_ANG_XX"].ratings
    assert sorted(r.emotions[0] for r in ratings) == ["ANG"] * 5 + ["DIS"] + ["NEU"] * 3
    assert {r.rater for r in ratings} == {""}  # the tabulation has no rater ids
    # finishedResponses.csv (with rater ids) wins when both are there
    write_csv(cremad / "finishedResponses.csv", RESPONSES_HEADER, [response(1, "r1", 1, "1001_DFA_ANG_XX", 1, 1, "S")])
    assert [(r.rater, r.emotions) for r in cremad_rows(cremad)["1001_DFA_ANG_XX"].ratings] == [("cremad/r1", ("SAD",))]


def test_cremad_ratings_file_without_its_columns_is_named(cremad):
    write_csv(cremad / "finishedResponses.csv", ["", "rater", "clip", "emotion"], [["1", "r1", "1001_DFA_ANG_XX", "A"]])
    with pytest.raises(RatingsError, match=r"finishedResponses\.csv lacks the columns .*localid"):
        cremad_rows(cremad)


# ---------------------------------------------------------------- metadata.csv and Hub ratings columns

def test_folder_metadata_ratings_column(tone, tmp_path):
    root = tmp_path / "rated"
    meta = ["file_name,label,speaker,ratings"]
    cells = ["angry;angry;neutral", "r1=sad;r2=sad+neutral;r3=joy", "", "r1=mad;r2=bored"]
    for i in range(8):
        put(tone, root / f"u{i}.wav")
        meta.append(f"u{i}.wav,{['ang', 'sad', 'neutral', 'happy'][i % 4]},s{i % 4},{cells[i % 4]}")
    (root / "metadata.csv").write_text("\n".join(meta) + "\n")
    rows = by_id(prepare({"folder": root}, tmp_path / "m", verbose=False))
    r0, r1, r2, r3 = (rows[f"folder/u{i}"] for i in range(4))
    assert [(a["rater"], a["labels"]) for a in r0["ratings"]] == [("", ["angry"]), ("", ["angry"]), ("", ["neutral"])]
    assert [(a["rater"], a["labels"], a["raw"]) for a in r1["ratings"]] == [
        ("folder/r1", ["sad"], ["sad"]), ("folder/r2", ["sad", "neutral"], ["sad", "neutral"]),
        ("folder/r3", ["happy"], ["joy"])]
    assert r1["votes"] == [0.5, 1, 0, 1.5] and r1["vote_majority"] == "sad"
    assert r2["ratings"] == [] and r2["n_raters"] == 0 and r2["vote_agreement"] is None
    # mad = angry; bored: outside
    assert r3["votes"] == [0, 0, 1, 0] and r3["votes_other"] == 1 and r3["vote_majority"] == ""
    (root / "metadata.csv").write_text("file_name,label,ratings\nu0.wav,ang,r1=angry;r1=sad\n")
    with pytest.raises(RatingsError, match=r"metadata\.csv line 2 .*rater 'r1' answers twice"):
        prepare({"folder": root}, tmp_path / "m2", verbose=False)
    (root / "metadata.csv").write_text("file_name,label,ratings\nu0.wav,ang,r1=\n")
    with pytest.raises(RatingsError, match=r"metadata\.csv line 2 .*names no emotion"):
        prepare({"folder": root}, tmp_path / "m3", verbose=False)


@pytest.mark.parametrize("shape", ["string", "classlabel_list", "dict_list"])
def test_hub_ratings_column(tone, tmp_path, shape):
    from datasets import Audio, ClassLabel, Dataset, Features, List, Value

    emotions = ClassLabel(names=["ang", "hap", "neu", "sad"])
    cells = {
        "string": (Value("string"), ["a=ang;b=ang;c=neu", "a=sad+neu;b=hap", ""]),
        "classlabel_list": (List(emotions), [[0, 0, 2], [3, 1], []]),
        "dict_list": (List({"rater": Value("string"), "label": Value("string")}),
                      [[{"rater": "a", "label": "ang"}, {"rater": "b", "label": "ang"}, {"rater": "c", "label": "neu"}],
                       [{"rater": "a", "label": "sad"}, {"rater": "b", "label": "hap"}], []]),
    }[shape]
    data = tone.read_bytes()
    features = Features({"audio": Audio(), "label": emotions, "votes": cells[0]})
    Dataset.from_dict({"audio": [{"bytes": data, "path": f"{i}.wav"} for i in range(3)], "label": [0, 3, 2],
                       "votes": cells[1]}, features=features).save_to_disk(str(tmp_path / "hubds"))
    ds = prepare({"hub": str(tmp_path / "hubds")}, tmp_path / "m", hub_ratings_column="votes",
                 hub_audio_dir=str(tmp_path / "audio"), verbose=False)
    first, second, third = sorted(by_id(ds).values(), key=lambda r: r["id"])
    assert third["ratings"] == [] and third["n_raters"] == 0
    assert [a["labels"] for a in first["ratings"]] == [["angry"], ["angry"], ["neutral"]]
    assert first["vote_majority"] == "angry" and first["vote_agreement"] == pytest.approx(2 / 3)
    expected = [["sad", "neu"], ["hap"]] if shape == "string" else [["sad"], ["hap"]]
    assert [a["raw"] for a in second["ratings"]] == expected
    if shape != "classlabel_list":
        assert [a["rater"] for a in first["ratings"]] == ["hub/a", "hub/b", "hub/c"]
    with pytest.raises(CorpusError, match="hub_ratings_column"):
        prepare({"hub": str(tmp_path / "hubds")}, tmp_path / "m2", hub_ratings_column="raters", verbose=False)


# ---------------------------------------------------------------- the manifest: generators, old manifests

def rows_for(tone, n=4):
    return [dict(id=f"g/u{i}", path=str(tone), label=FOUR[i % 4], emotion_raw=FOUR[i % 4], speaker=f"g/s{i}",
                 corpus="g", session="", duration=0.3, split="train") for i in range(n)]


def test_a_generator_fills_only_the_answers(tone, tmp_path):
    rows = rows_for(tone)
    rows[0]["ratings"] = [{"rater": "sim/r1", "labels": ["neutral"]}, {"rater": "sim/r2", "labels": ["neutral", "sad"]},
                          {"rater": "sim/r3", "labels": ["sad"], "self_eval": True}]
    rows[1]["votes"] = [9, 9, 9, 9]  # a stale derived column is recomputed, not trusted
    ds = load_manifest(save_manifest(build_manifest(rows), tmp_path / "m"))
    r = by_id(ds)
    assert r["g/u0"]["votes"] == [1.5, 0, 0, 0.5] and r["g/u0"]["n_raters"] == 2
    assert r["g/u0"]["ratings"][0]["raw"] == ["neutral"]
    assert r["g/u1"]["votes"] == [0, 0, 0, 0]
    assert has_votes(ds) and not has_votes(ds.select([1, 2]))
    dist, rated = vote_matrix(ds, ["sad", "neutral", "happy", "angry"])  # by name, in the caller's order
    assert rated.tolist() == [True, False, False, False] and dist[0].tolist() == [0.25, 0.75, 0, 0]
    with pytest.raises(ValueError, match="neutral"):
        vote_matrix(ds, ["sad", "happy", "angry"])
    rows[0]["ratings"] = [{"labels": ["furious"]}]
    with pytest.raises(ManifestError, match="furious.*_other"):
        build_manifest(rows)


def test_manifests_without_rater_columns_still_load(tone, tmp_path):
    ds = build_manifest(rows_for(tone))
    old = save_manifest(ds.remove_columns(list(RATING_COLUMNS)), tmp_path / "old")
    loaded = load_manifest(old, split="train")
    assert len(loaded) == 4 and not has_votes(loaded)
    partial = save_manifest(ds.remove_columns(["vote_dist"]), tmp_path / "partial")
    with pytest.raises(ManifestError, match="vote_dist"):
        load_manifest(partial)
