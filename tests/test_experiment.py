"""`after-hf experiment` end to end on the shared generated corpus with the tiny backbone: prepare -> TAPT ->
AL grid + baselines -> the deployable model fine-tuned on the AL labels -> report -> push --dry_run."""

import json
import re

import pytest
import yaml
from huggingface_hub import ModelCard

from after_hf.cli import main as cli


def test_experiment_runs_every_stage_and_a_rerun_skips_them(synth_corpus, tmp_path, capsys):
    tapt = tmp_path / "tapt.yaml"
    tapt.write_text(yaml.safe_dump({"tapt": {"max_steps": 6, "warmup_steps": 2, "batch_seconds": 20, "save_steps": 3,
                                             "learning_rate": 5e-4, "use_cpu": True}}))
    finetune = tmp_path / "finetune.yaml"
    finetune.write_text(yaml.safe_dump({"finetune": {"num_train_epochs": 1, "per_device_train_batch_size": 8,
                                                     "learning_rate": 1e-3, "mask_feature_length": 4,
                                                     "freeze_feature_encoder": False}}))
    out = tmp_path / "exp"
    argv = ["experiment", "--out", str(out), "--corpus", f"cremad={synth_corpus}", "--backbone", "tiny",
            "--tapt_config", str(tapt), "--finetune_config", str(finetune), "--strategies", "entropy", "random",
            "--cold_starts", "kmeans", "--seeds", "0", "--al", "seed_size=10", "step_size=10", "budget=30",
            "mc_passes=2", "--finetune_references"]
    assert cli(argv) == 0

    runs = sorted(p.name for p in (out / "al").iterdir())
    assert runs == ["entropy-kmeans-no_tapt__s0", "entropy-kmeans__s0", "full_data__s0", "full_data_no_tapt__s0",
                    "random-kmeans__s0"]
    entropy = json.loads((out / "al" / "entropy-kmeans__s0" / "summary.json").read_text())["rounds"]
    assert [r["num_labelled"] for r in entropy] == [10, 20, 30]
    full = json.loads((out / "al" / "full_data__s0" / "summary.json").read_text())["rounds"]
    train_size = full[-1]["num_labelled"]
    assert full[-1]["fraction_labelled"] == 1.0 and train_size > 30  # the baseline sees every pool label

    # the TAPT model is what the AL runs and the final model start from
    assert (out / "tapt" / "model.safetensors").is_file()
    assert json.loads((out / "al" / "entropy-kmeans__s0" / "config.json").read_text())["backbone"] == str(out / "tapt")

    # the deployable model was fine-tuned on exactly the labels the first run collected
    final = out / "final" / "model"
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["num_labelled"] == 30 and metrics["num_classes"] == 4
    assert 0.0 <= metrics["splits"]["test"]["ua"] <= 1.0
    provenance = json.loads((final / "after_hf_provenance.json").read_text())
    assert provenance["labels"]["labelled_clips"] == 30 and provenance["labels"]["pool_clips"] == train_size
    assert provenance["labels"]["oracle"] == "simulated" and provenance["training_data"]["generated"]

    assert provenance["kind"] == "head" and json.loads((final / "config.json").read_text())["use_weighted_layer_sum"]
    # the 100%-label references: whole-classifier fine-tuning from TAPT and from the untouched backbone
    for name, backbone in [("finetune_all", "tapt"), ("finetune_all_no_tapt", "tiny")]:
        reference = json.loads((out / "finetune" / name / "model" / "metrics.json").read_text())
        assert reference["num_labelled"] == train_size and reference["backbone"] == backbone  # portable: no local path

    report = (out / "results.md").read_text()
    for setting in ("entropy-kmeans", "random-kmeans", "full_data", "entropy-kmeans-no_tapt"):
        assert f"| {setting} |" in report
    assert "| deployable model (final) | frozen encoder + linear layer-weighted head | tapt | 30 |" in report
    assert "| finetune_all_no_tapt | whole classifier fine-tuned | tiny |" in report
    assert (out / "learning_curves.png").stat().st_size > 10_000
    # per held-out test speaker: the references beside the deployable model, the same speakers in results.json
    per_speaker = metrics["splits"]["test"]["per_speaker"]
    assert len(per_speaker) >= 2 and "## Test UA per held-out speaker" in report
    assert "| speaker | clips | acoustic_baseline | deployable model |" in report  # no ceiling: a folder corpus
    for speaker, s in per_speaker.items():
        assert f"| {speaker} | {s['num_samples']} |" in report
    results = json.loads((out / "results.json").read_text())
    assert results["final_model"]["test_ua_per_speaker"] == pytest.approx({k: v["ua"] for k, v in per_speaker.items()})
    assert set(results["acoustic_baseline"]["test"]["per_speaker"]) == set(per_speaker)
    # beside each setting, the acoustic baseline trained on only the labels its runs received; the full-data run
    # received every training label, so its entry is the reference row itself
    same = results["entropy-kmeans"]["acoustic_baseline_same_labels"]
    assert same["n_seeds"] == 1 and 0 <= same["test_ua"] <= 1 and "| acoustic baseline, same labels |" in report
    assert results["full_data"]["acoustic_baseline_same_labels"]["test_ua"] == pytest.approx(
        results["acoustic_baseline"]["test_ua"])
    printed = capsys.readouterr().out
    assert "Deployable model:" in printed and "Report:" in printed

    # a rerun finds every stage done: nothing is retrained, nothing changes
    state_before = (out / "al" / "entropy-kmeans__s0" / "state.json").read_text()
    weights_before = (final / "model.safetensors").read_bytes()
    assert cli(argv) == 0
    assert (out / "al" / "entropy-kmeans__s0" / "state.json").read_text() == state_before
    assert (final / "model.safetensors").read_bytes() == weights_before

    # the model card of the deployable model renders the AL provenance and the test metrics
    assert cli(["push", "--model", str(final), "--repo_id", "someone/after-hf-demo",
                "--dry_run", str(tmp_path / "push")]) == 0
    card = ModelCard.load(tmp_path / "push" / "README.md")
    shown = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert shown[("test", "unweighted_accuracy")] == pytest.approx(metrics["splits"]["test"]["ua"], abs=1e-4)
    assert "entropy" in card.text
    assert f"**30 labelled clips** ({100 * 30 / train_size:.1f}% of the {train_size}-clip" in card.text
    assert "the whole encoder frozen" in card.text  # says how the deployable model was made
    assert "Trained on generated speech" in card.text.split("## Results")[0]
    assert str(tmp_path) not in (tmp_path / "push" / "README.md").read_text()
    assert "cremad" in card.data.to_dict()["model-index"][0]["results"][0]["dataset"]["name"]


def test_paper_grid_dry_run_resolves_every_fold_and_trains_nothing(tmp_path, capsys):
    """`make reproduce-paper DRY_RUN=1`: every fold, TAPT per fold, budget and run printed; nothing written."""
    out = tmp_path / "paper"
    assert cli(["experiment", "--config", "recipes/paper/iemocap_grid.yaml",
                "--corpus", "iemocap=/data/IEMOCAP_full_release", "cremad=/data/CREMA-D", "--out", str(out),
                "--dry_run"]) == 0
    printed = capsys.readouterr().out
    recipe = yaml.safe_load(open("recipes/paper/iemocap_grid.yaml"))["experiment"]
    folds, seeds = recipe["folds"], recipe["seeds"]
    per_fold = len(recipe["strategies"]) * len(recipe["cold_starts"]) + 1 + 2  # + no-TAPT ablation + 2 baselines
    assert f"{len(folds) * len(seeds) * per_fold} AL runs; nothing was trained" in printed
    for fold in folds:
        assert f"--output_dir {out}/tapt_fold{fold} (fold {fold}: its training sessions only)" in printed
        assert f"--manifest {out}/manifest_fold{fold} --backbone {out}/tapt_fold{fold} --mode full" in printed
    assert "--seed_size 0.05 --step_size 0.05 --budget 0.2" in printed
    assert not out.exists()


def test_the_al_section_composes_every_al_option_and_routes_strategy_options(tmp_path):
    """`al:` inside `experiment:` reaches every `after-hf al` option; `--al KEY=VALUE` overrides single keys;
    strategy / cold-start options go to the strategies that take them; mistakes are named before anything runs."""
    from after_hf.config import ConfigError, parse_args
    from after_hf.experiment import ExperimentArguments, plan

    recipe = tmp_path / "grid.yaml"
    recipe.write_text(yaml.safe_dump({"experiment": {
        "strategies": ["entropy", "power_bald", "speaker_diverse:bald"], "cold_starts": ["kmeans", "random"],
        "seeds": [0], "baseline": False, "al": {
            "head_epochs": 7, "warm_start": True, "stop_kappa": 0.99, "budget": 0.2,
            "strategy_options": {"beta": 2.0, "max_per_speaker": 3}, "cold_start_options": {"num_clusters": 4}}}}))

    def runs(*flags):
        (args,) = parse_args([ExperimentArguments], ["--config", str(recipe), "--out", str(tmp_path / "x"), *flags],
                             section="experiment")
        return {(r.strategy, r.cold_start): r for r in plan(args)}

    by = runs("--al", "budget=0.3", "mc_passes=4")
    assert len(by) == 6
    for run in by.values():
        assert (run.head_epochs, run.warm_start, run.stop_kappa, run.budget, run.mc_passes) == (7, True, 0.99, 0.3, 4)
    assert by[("power_bald", "kmeans")].strategy_options == {"beta": 2.0}
    assert by[("speaker_diverse:bald", "random")].strategy_options == {"max_per_speaker": 3}
    assert by[("entropy", "kmeans")].strategy_options == {}
    assert by[("entropy", "kmeans")].cold_start_options == {"num_clusters": 4}
    assert by[("entropy", "random")].cold_start_options == {}
    with pytest.raises(ConfigError, match="unknown option 'head_epoch'. Did you mean 'head_epochs'"):
        runs("--al", "head_epoch=3")
    with pytest.raises(ConfigError, match=r"\['strategy'\] are set by the grid"):
        runs("--al", "strategy=bald")
    # another spelling of the backbone is the grid's backbone, not a misspelt `mode`
    with pytest.raises(ConfigError, match=r"\['model \(= backbone\)'\] are set by the grid"):
        runs("--al", "model=small")
    with pytest.raises(ConfigError, match=r"strategy_options: \['num_samples'\] are taken by none of"):
        runs("--al", "strategy_options={num_samples: 100}")
    # the options the grid sets are neither accepted nor offered in the list of valid ones
    with pytest.raises(ConfigError, match="Valid options: budget, cold_start_options, ") as refused:
        runs("--al", "budgt=0.3")
    assert not {"manifest", "out", "backbone", "seed", "strategy"} & set(
        refused.value.args[0].split("Valid options: ")[1].rstrip(".").split(", "))


@pytest.mark.parametrize("flags, message", [
    (["--strategies", "entropy", "randon"], "option strategies: unknown strategy 'randon' .did you mean 'random'.."),
    (["--strategies", "entropy", "bald_typo"], "option strategies: unknown strategy 'bald_typo'"),
    (["--cold_starts", "kmean", "random"], r"option cold_starts: unknown cold start 'kmean' .*\['kmeans', 'random', "),
    (["--strategies", "speaker_diverse:entropy", "--al", "strategy_options={max_per_speaker: 0}"],
     "option al.strategy_options: 'speaker_diverse:entropy' with options .*max_per_speaker must be >= 1"),
    (["--al", "budget=1.5"], "option al.budget 1.5 is neither a fraction nor a count"),
    (["--al", "seed_size=2.5"], "option al.seed_size 2.5 is neither a fraction nor a count"),
])
def test_a_grid_mistake_fails_the_dry_run_before_anything_runs(tmp_path, capsys, flags, message):
    """A misspelt strategy / cold start or a budget that is neither a fraction nor a count: a dry run planned 27
    runs and a real run failed only after synth, prepare, references and TAPT."""
    out = tmp_path / "x"
    assert cli(["experiment", "--config", "recipes/demo/demo.yaml", "--out", str(out), "--dry_run", *flags]) == 2
    printed = capsys.readouterr()
    assert re.match(f"after-hf experiment: experiment {message}", printed.err), printed.err
    assert len(printed.err.splitlines()) == 1 and "AL runs" not in printed.out and not out.exists()


def test_the_pretraining_ablations_run_from_the_base_and_from_random_weights(tmp_path):
    """ablation_no_tapt: the first strategy and the baseline from the backbone without TAPT; scratch_backbone: the
    same from a randomly initialised named config (what pre-training buys); a directory there is refused."""
    from after_hf.config import ConfigError, parse_args
    from after_hf.experiment import ExperimentArguments, plan

    def runs(*flags):
        (args,) = parse_args([ExperimentArguments], ["--out", str(tmp_path / "x"), "--backbone", "base_dir",
                                                     "--tapt_config", "tapt.yaml", "--seeds", "0", *flags],
                             section="experiment")
        return {f"{r.out.rsplit('/', 1)[-1]}": r.backbone for r in plan(args)}

    by = runs("--strategies", "entropy", "random", "--scratch_backbone", "tiny")
    tapt = str(tmp_path / "x" / "tapt")
    assert by == {"entropy-kmeans__s0": tapt, "random-kmeans__s0": tapt, "entropy-kmeans-no_tapt__s0": "base_dir",
                  "entropy-kmeans-scratch__s0": "tiny", "full_data__s0": tapt, "full_data_no_tapt__s0": "base_dir",
                  "full_data_scratch__s0": "tiny"}
    with pytest.raises(ConfigError, match="scratch_backbone: 'base_dir' is not a named config"):
        runs("--scratch_backbone", "base_dir")
