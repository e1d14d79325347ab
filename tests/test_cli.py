"""The command line: every `--help` works and stays light; every user error is one line, no traceback, exit 2.

`after-hf <command> --help` must not import torch, transformers or datasets (they cost seconds on 2 cores);
bad inputs of every command print `after-hf <command>: <message naming the option and the fix>` and exit 2,
`--debug` / `AFTER_HF_DEBUG=1` show the traceback instead.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from after_hf.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "sklearn", "accelerate", "peft")


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_every_help_works_without_importing_torch_transformers_or_datasets():
    code = f"""
import contextlib, io, json, sys
from after_hf.cli import COMMANDS, main
out = {{}}
for name in COMMANDS:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            code = main([name, "--help"])
        except SystemExit as exit_:
            code = exit_.code
    out[name] = [code, buf.getvalue()]
print(json.dumps({{"help": out, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["heavy"] == []  # none of them was imported to build any help
    for name, (code, text) in result["help"].items():
        assert code == 0, name
        assert text.startswith(f"usage: after-hf {name}") and "--config" in text and "--debug" in text, name


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_shows_one_default(command, capsys):
    # deploy --help said "(default: the run's seed). (default: None)"; a required option said "(default: None)"
    options = re.split(r"\n  (?=-)", _help(command, capsys).split("\noptions:\n")[1])
    for text in (" ".join(option.split()) for option in options):  # argparse's line wrapping undone
        assert len(re.findall(r"\(default\b|\bdefault:", text, flags=re.IGNORECASE)) <= 1, text
    if command == "al":
        assert {option.split()[0] for option in options if "(default" not in option} >= {"--manifest", "--out"}


def test_al_help_is_true_for_both_modes_and_shows_no_test_internals(capsys):
    text = " ".join(_help("al", capsys).split())
    assert "crash_point" not in text and "AFTER_HF_CRASH_AT" not in text  # test-only kill points
    assert "retrained (from the TAPT checkpoint each round" not in text  # the default mode retrains a head only
    assert "head_only (the default) trains a new head on the frozen backbone's features" in text
    assert "full re-fine-tunes the whole classifier from the backbone (the TAPT checkpoint" in text


def test_top_level_help_lists_the_pipeline_in_order(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    positions = [text.index(f"\n  {name} ") for name in COMMANDS]
    assert positions == sorted(positions)
    assert "prepare -> tapt -> al -> deploy -> push" in text
    assert "after_hf/tapt.py" in text and "after_hf/al/loop.py" in text


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_manifest):
    """A corrupted AL state, a file where a directory belongs, an untouched directory."""
    root = tmp_path_factory.mktemp("bad")
    corrupt = root / "corrupt_run"
    corrupt.mkdir()
    (corrupt / "state.json").write_text('{"format": 1, "rounds": [')
    (corrupt / "config.json").write_text("{}")
    a_file = root / "a_file.txt"
    a_file.write_text("not a directory")
    return {"m": str(tiny_manifest), "corrupt": str(corrupt), "file": str(a_file), "fresh": str(root / "fresh"),
            "root": root}


# (command line with {placeholders}, words the one-line message must contain); AL: an `al` command that would run
AL = "al --manifest {m} --backbone tiny --seed_size 4 --step_size 2 --budget 8"
BAD_INPUTS = {
    "unknown strategy": (AL + " --out {fresh} --strategy entropyy",
                         ["'entropyy'", "entropy"]),
    "unknown cold start": (AL + " --out {fresh} --cold_start kmean", ["kmeans"]),
    "strategy option the strategy does not take": (AL + " --out {fresh} --strategy entropy --strategy_options beta=2",
                                                   ["takes no ['beta']"]),
    "strategy option value refused": (AL + " --out {fresh} --strategy speaker_diverse:random --strategy_options "
                                      "max_per_speaker=0", ["max_per_speaker must be >= 1"]),
    "experiment al option misspelt": ("experiment --out {fresh} --dry_run --al head_epoch=3", ["'head_epochs'"]),
    "missing corpus folder": ("prepare --corpus cremad={root}/no_such_corpus --out {fresh}",
                              ["no_such_corpus", "does not exist"]),
    "missing manifest": ("al --manifest {root}/no_manifest --out {fresh}", ["after-hf prepare"]),
    "corrupted state": (AL + " --out {corrupt} --resume", ["state.json", "corrupted"]),
    "resume of a run never started": (AL + " --out {fresh} --resume",
                                      ["--resume", "no active-learning run", "without --resume"]),
    "tapt resume of a run never started": (
        "tapt --manifest {m} --output_dir {fresh} --model_name_or_path tiny --resume",
        ["--resume", "no TAPT run", "without --resume"]),
    "budget nan": (AL + " --out {fresh} --budget nan", ["--budget", "finite"]),
    "budget inf": (AL + " --out {fresh} --budget inf", ["--budget", "finite"]),
    "budget over the pool": (AL + " --out {fresh} --budget 1000", ["pool has only"]),
    "al --out names a file": (AL + " --out {file}", ["--out", "is a file"]),
    "evaluate --out names a file": ("evaluate --model tiny --manifest {m} --out {file}", ["--out", "is a file"]),
    "prepare --out names a file": ("prepare --corpus cremad={root} --out {file}", ["--out", "is a file"]),
    "finetune --output_dir names a file": ("finetune --manifest {m} --output_dir {file}",
                                           ["--output_dir", "is a file"]),
    "experiment --out names a file": ("experiment --out {file} --dry_run", ["--out", "is a file"]),
    "local --model that does not exist": ("finetune --model ./no/such/model --manifest {m} --output_dir {fresh}",
                                          ["./no/such/model", "no such directory, and not a Hub id"]),
    "local --backbone that does not exist": (AL + " --out {fresh} --backbone ./no_such_tapt",
                                             ["./no_such_tapt", "no such directory"]),
    "evaluate a missing model dir": ("evaluate --model {root}/gone/model --manifest {m}", ["no such directory"]),
    "tapt from a missing dir": ("tapt --manifest {m} --output_dir {fresh} --model_name_or_path {root}/gone/",
                                ["no such directory"]),
    "abbreviated flag": ("al --manifest {m} --out {fresh} --head_epoch 3", ["--head_epoch", "--head_epochs"]),
    "wrong type": ("al --manifest {m} --out {fresh} --head_epochs sixty", ["--head_epochs", "sixty"]),
    "value outside the choices": ("al --manifest {m} --out {fresh} --mode fast", ["--mode", "'fast'"]),
    "missing required option": ("al --out {fresh}", ["--manifest"]),
    "missing recipe": ("al --config {root}/nope.yaml --manifest {m} --out {fresh}", ["nope.yaml", "not found"]),
    "unknown command": ("evaluatee --model x", ["'evaluatee'", "'evaluate'"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_without_traceback_and_exit_2(case, bad, capsys, monkeypatch):
    monkeypatch.delenv("AFTER_HF_DEBUG", raising=False)
    template, words = BAD_INPUTS[case]
    argv = template.format(**bad).split()
    assert main(argv) == 2, case
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    prefix = f"after-hf {argv[0]}: " if argv[0] in COMMANDS else "after-hf: "
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in captured.err + captured.out
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not Path(bad["fresh"]).exists()  # nothing was created by a refused command


@pytest.mark.parametrize("command,option", [("al", "--backbone"), ("finetune", "--model")])
def test_a_randomly_initialised_backbone_is_pointed_out(command, option, tmp_path, capsys):
    """`al` / `finetune` default to a named config (random weights): the console says so, and what to pass instead;
    a model directory gets no note."""
    out = "--out" if command == "al" else "--output_dir"
    base = [command, "--manifest", str(tmp_path / "missing"), out, str(tmp_path / "o")]
    assert main(base + [option, "tiny"]) == 2  # the manifest is missing: stops there, after the note
    printed = capsys.readouterr().out
    assert f"note: {option} tiny is a randomly initialised wav2vec2" in printed and "facebook/wav2vec2-base" in printed
    model = tmp_path / "model"
    model.mkdir()
    main(base + [option, str(model)])
    assert "randomly initialised" not in capsys.readouterr().out


def test_debug_shows_the_traceback_and_the_real_entry_point_prints_one_line(tmp_path):
    argv = ["al", "--manifest", str(tmp_path / "no_manifest"), "--out", str(tmp_path / "run")]
    script = "import sys; from after_hf.cli import main; sys.exit(main(sys.argv[1:]))"
    quiet = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=ROOT)
    assert quiet.returncode == 2 and quiet.stderr.count("\n") == 1 and "Traceback" not in quiet.stderr
    for extra, env in (["--debug"], {}), ([], {"AFTER_HF_DEBUG": "1"}):
        loud = subprocess.run([sys.executable, "-c", script, *argv, *extra], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, **env})
        assert loud.returncode == 1 and "Traceback" in loud.stderr and "ManifestError" in loud.stderr


def test_module_entry_points_share_the_boundary(tmp_path):
    """`python -m after_hf.tapt` (what `accelerate launch -m` runs) prints the same one line."""
    proc = subprocess.run([sys.executable, "-m", "after_hf.tapt", "--manifest", str(tmp_path / "none"),
                           "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.startswith("after-hf tapt: ") and proc.stderr.count("\n") == 1
