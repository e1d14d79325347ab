"""Bad configurations, manifests and model directories fail fast with a message that names the fix.

Recipes: unknown keys name the closest valid key, wrong types and values outside the choices name the
option, a recipe without the command's section says so. Manifests (al / finetune / evaluate): duplicated
ids, missing audio, no train split, labels the model does not know. Models: a directory without weights,
without config.json, or one that is not a fine-tuned classifier. A failing `after-hf al` leaves no run
directory behind (so the corrected command needs no --resume).
"""

import re
import shutil

import pytest
import torch
from datasets import concatenate_datasets

from after_hf.cli import run as cli
from after_hf.config import ConfigError, parse_args
from after_hf.data.manifest import ManifestError, build_manifest, load_manifest, save_manifest
from after_hf.models import ModelError, load_config
from after_hf.finetune import FinetuneArguments
from tones import TONE_LABELS, make_tone_manifest


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return make_tone_manifest(tmp_path_factory.mktemp("tones"), {"train": 20, "validation": 2, "test": 2})


def recipe(tmp_path, text: str, name: str = "recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


AL = ["al", "--manifest", "m", "--out", "o"]


# -- recipes and flags ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, section, typo, meant", [
    (AL, "al", "head_epoch", "head_epochs"),
    (["finetune"], "finetune", "learning_rat", "learning_rate"),
    (["evaluate", "--model", "m", "--manifest", "m"], "evaluate", "batch_second", "batch_seconds"),
    (["tapt", "--manifest", "m", "--output_dir", "o"], "tapt", "sead", "seed"),
])
def test_unknown_recipe_key_names_the_closest_valid_key(tmp_path, command, section, typo, meant):
    path = recipe(tmp_path, f"{section}:\n  {typo}: 5\n")
    with pytest.raises(ConfigError, match=f"unknown option '{typo}'. Did you mean '{meant}'"):
        cli([command[0], "--config", path, *command[1:]])


def test_unknown_flag_names_the_closest_option():
    with pytest.raises(ConfigError, match="Did you mean '--head_epochs'"):
        cli([*AL, "--head_epoks", "3"])


@pytest.mark.parametrize("argv, meant", [
    (["tapt", "--model", "m", "--manifest", "m", "--output_dir", "o"], "--model_name_or_path"),
    (["tapt", "--manifest", "m", "--out", "o"], "--output_dir"),  # reported before "--output_dir is required"
    (["finetune", "--out", "o", "--model", "m"], "--output_dir"),
    (["evaluate", "--output_dir", "o", "--model", "m", "--manifest", "m"], "--out"),
    (["deploy", "--run", "r", "--output_dir", "o"], "--out"),
    (["push", "--model_name_or_path", "m", "--repo_id", "u/n"], "--model"),
    (AL + ["--model", "m"], "--backbone"),  # not '--mode', the closest spelling
])
def test_an_option_named_as_another_command_names_it_is_answered_with_this_commands_name(argv, meant):
    # the commands name the same idea differently (--out / --output_dir, --model / --model_name_or_path /
    # --backbone): these got "unknown argument" with no suggestion
    with pytest.raises(ConfigError, match=f"unknown argument.*Did you mean '{meant}'\\?"):
        cli(argv)


def test_a_synonym_the_command_lacks_is_never_suggested(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'output_dir'"):
        cli(["tapt", "--config", recipe(tmp_path, "tapt:\n  out: o\n"), "--manifest", "m"])
    with pytest.raises(ConfigError) as refused:
        cli(["report", "--experiment", "e", "--output_dir", "o"])  # report has neither --out nor --output_dir
    assert "Did you mean" not in str(refused.value)


@pytest.mark.parametrize("key, value", [("head_epochs", "sixty"), ("resume", '"yes"'), ("seed_size", "[1, 2]"),
                                        ("seed", "null"), ("head_learning_rate", "true")])
def test_wrong_type_in_a_recipe_names_the_option(tmp_path, key, value):
    path = recipe(tmp_path, f"al:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=f"option '{key}' = .* does not match its type"):
        cli([*AL, "--config", path])


def test_wrong_type_on_the_command_line_names_the_flag():
    with pytest.raises(ConfigError, match="argument --head_epochs: invalid int value: 'sixty'"):
        cli([*AL, "--head_epochs", "sixty"])


def test_value_outside_the_choices_is_refused(tmp_path):
    # argparse never checks a default against its choices: before the fix, `mode: fast` silently ran full mode
    with pytest.raises(ConfigError, match=r"'mode' = 'fast' is not one of \['head_only', 'full'\]"):
        cli([*AL, "--config", recipe(tmp_path, "al:\n  mode: fast\n")])
    with pytest.raises(ConfigError, match="Did you mean 'human'"):
        cli([*AL, "--config", recipe(tmp_path, "al:\n  oracle: humen\n")])
    with pytest.raises(ConfigError, match="invalid choice: 'fast'"):
        cli([*AL, "--mode", "fast"])


def test_recipe_without_the_commands_section_says_so(tmp_path):
    path = recipe(tmp_path, "finetune:\n  seed: 1\ntapt:\n  seed: 2\n")
    with pytest.raises(ConfigError, match=r"sections \['finetune', 'tapt'\] but no 'al:' section"):
        cli([*AL, "--config", path])
    (args,) = parse_args([FinetuneArguments], ["--config", path], section="finetune")  # its own section is used
    assert args.seed == 1
    flat = recipe(tmp_path, "seed: 3\nlearning_rate: 0.01\n", "flat.yaml")  # a recipe without sections still works
    (args,) = parse_args([FinetuneArguments], ["--config", flat, "--seed", "4"], section="finetune")
    assert (args.seed, args.learning_rate) == (4, 0.01)  # and flags override it


@pytest.mark.parametrize("text, message", [(None, "not found"), ("al: [unclosed\n", "not valid YAML"),
                                           ("- a\n- b\n", "must be a mapping")])
def test_unreadable_recipe_is_named(tmp_path, text, message):
    path = str(tmp_path / "missing.yaml") if text is None else recipe(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        cli([*AL, "--config", path])


def test_missing_required_option_is_named():
    with pytest.raises(ConfigError, match="required: --manifest"):
        cli(["al", "--out", "o"])


def test_full_mode_finetune_recipe_is_checked_before_the_run_starts(tones, tmp_path):
    bad = recipe(tmp_path, "finetune:\n  num_train_epoch: 3\n")
    with pytest.raises(ConfigError, match="Did you mean 'num_train_epochs'"):
        cli(["al", "--manifest", str(tones), "--out", str(tmp_path / "run"), "--mode", "full", "--finetune_config", bad,
             "--backbone", "tiny", "--seed_size", "4", "--budget", "8"])
    assert not (tmp_path / "run").exists()


# -- manifests -----------------------------------------------------------------------------------------------------

def _broken_manifest(tones, out, problem):
    ds = load_manifest(tones)
    if problem == "duplicated ids":
        ds = concatenate_datasets([ds, ds.select([3])])
    elif problem == "missing audio":
        gone = ds[0]["path"] + ".moved"
        ds = ds.map(lambda row, i: {"path": gone} if i == 0 else {}, with_indices=True)
    elif problem == "no train split":
        ds = ds.filter(lambda s: s != "train", input_columns="split")
    return save_manifest(ds, out / "manifest"), ds


MANIFEST_ERRORS = {"duplicated ids": r"duplicated sample ids \['tones/.*'\]; ids must be unique",
                   "missing audio": r"1 audio files are missing, e.g. .*\.moved\. .*re-run `after-hf prepare`",
                   "no train split": "no 'train' rows"}


@pytest.mark.parametrize("command", ["al", "finetune", "evaluate"])
@pytest.mark.parametrize("problem", list(MANIFEST_ERRORS))
def test_bad_manifest_is_refused_before_any_work(tones, tiny_model_dir, tmp_path, command, problem):
    manifest, _ = _broken_manifest(tones, tmp_path, problem)
    out = tmp_path / "out"
    argv = {"al": ["al", "--manifest", str(manifest), "--out", str(out), "--backbone", "tiny",
                   "--cache_dir", str(tmp_path / "cache")],
            "finetune": ["finetune", "--model", "tiny", "--manifest", str(manifest), "--output_dir", str(out)],
            "evaluate": ["evaluate", "--model", str(tiny_model_dir), "--manifest", str(manifest), "--split", "train",
                         "--out", str(out)]}
    with pytest.raises(ManifestError, match=MANIFEST_ERRORS[problem] if problem != "no train split" else "no 'train'"):
        cli(argv[command])
    assert not out.exists()  # no run directory, no half-trained model, no report


def test_al_bad_options_leave_no_run_directory_and_the_fixed_command_runs(tones, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    base = ["al", "--manifest", str(tones), "--out", str(out), "--backbone", "tiny", "--cache_dir", str(cache),
            "--seed_size", "4", "--step_size", "4", "--head_epochs", "3"]
    with pytest.raises(ValueError, match="only 40 samples"):
        cli([*base, "--budget", "100"])
    with pytest.raises((ValueError, KeyError), match="entropyy"):
        cli([*base, "--budget", "8", "--strategy", "entropyy"])  # before the fix: failed after round 0 was trained
    no_weights = tmp_path / "tapt"
    no_weights.mkdir()
    load_config("tiny").save_pretrained(no_weights)
    with pytest.raises(ModelError, match="no model weights: model.safetensors is missing"):
        cli([*base, "--budget", "8", "--backbone", str(no_weights)])
    assert not out.exists()
    assert cli([*base, "--budget", "8"]) == 0  # the corrected command, without --resume


def test_evaluate_names_labels_the_model_does_not_know(tones, tiny_model_dir, tmp_path):
    ds = load_manifest(tones, "test")
    columns = ("id", "path", "emotion_raw", "speaker", "corpus", "session", "duration", "split")
    rows = [{**{k: ds[i][k] for k in columns}, "label": TONE_LABELS[ds[i]["label"]]} for i in range(len(ds))]
    rows[0]["label"] = rows[0]["emotion_raw"] = "mid"
    manifest = save_manifest(build_manifest(rows, [*TONE_LABELS, "mid"]), tmp_path / "manifest")
    with pytest.raises(ValueError, match=r"manifest labels \['mid'\] are not classes of the model \['high', 'low'\]"):
        cli(["evaluate", "--model", str(tiny_model_dir), "--manifest", str(manifest), "--out", str(tmp_path / "eval")])
    assert not (tmp_path / "eval").exists()


# -- model directories ---------------------------------------------------------------------------------------------

def test_evaluate_names_what_is_missing_from_a_model_directory(tones, tiny_model_dir, tmp_path):
    run = ["evaluate", "--manifest", str(tones), "--out", str(tmp_path / "eval"), "--model"]
    no_weights = tmp_path / "no_weights"  # e.g. a fine-tuning run killed before it saved
    shutil.copytree(tiny_model_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelError) as err:
        cli([*run, str(no_weights)])
    assert "no model weights: model.safetensors is missing" in str(err.value) and "OUTPUT_DIR/model" in str(err.value)
    assert "config.json" in str(err.value)  # what the directory does hold
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="has no config.json: pass a directory written by `save_pretrained`"):
        cli([*run, str(empty)])
    pretraining = tmp_path / "tapt"  # a TAPT output: weights, but no emotion classes
    torch.manual_seed(0)
    from after_hf.models import load_pretraining_model

    load_pretraining_model("tiny").save_pretrained(pretraining)
    with pytest.raises(ValueError, match=r"not a fine-tuned emotion classifier.*after-hf finetune --model"):
        cli([*run, str(pretraining)])
    assert not (tmp_path / "eval").exists()


def test_a_hub_id_that_is_not_cached_offline_is_named_with_its_urls_whole():
    # the underlying message was cut at 200 characters: "... offline mode at 'https://)"
    with pytest.raises(ModelError, match="after-hf-tests/never-cached: no such directory") as err:
        load_config("after-hf-tests/never-cached")  # HF_HUB_OFFLINE=1 (conftest)
    text = str(err.value)
    assert "'https://" in text and text.count("'https://") == len(re.findall(r"'https://[^' )]+'", text)), text
    assert "or a named config" in text  # what to pass instead still follows


def test_a_long_error_is_shortened_between_words_never_inside_a_url():
    from after_hf.errors import brief

    url = "https://huggingface.co/docs/transformers/installation#offline-mode"
    text = brief(OSError("word " * 40 + f"see {url} " + "more " * 20), limit=320)  # 200 + 72 + 100 characters
    assert len(text) <= 320 and url in text and text.endswith(" ...")
    assert brief(OSError("word " * 80 + url), limit=320).endswith("word ...")  # dropped whole, not cut
