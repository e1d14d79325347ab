"""The rater-policy axis of `after-hf experiment` (issue 15, point 5): the plan crosses rater policies with
strategies and seeds, the report gives the rater answers each setting needed to reach 97 % of the full-data UA
(seed by seed, 'not reached' kept) and the curves against rater answers."""

import json

import numpy as np
import pytest
import yaml

from after_hf.cli import main as cli
from after_hf.config import ConfigError, parse_args
from after_hf.experiment import ExperimentArguments, plan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _plan(tmp_path, *flags):
    (args,) = parse_args([ExperimentArguments], ["--out", str(tmp_path / "x"), *flags], section="experiment")
    return {r.out.rsplit("/", 1)[-1]: r for r in plan(args)}


def test_the_plan_crosses_rater_policies_with_strategies_and_seeds(tmp_path):
    runs = _plan(tmp_path, "--rater_policies", "fixed:1", "fixed:3", "dynamic:3", "--strategies", "random", "entropy",
                 "disagreement", "--cold_starts", "random", "--seeds", "0", "1", "2", "--al", "soft_labels=true",
                 "budget=300")
    assert len(runs) == 3 * 3 * 3 + 3  # + the full-data baseline per seed
    dynamic = runs["disagreement-random-dynamic3__s2"]
    assert (dynamic.rater_policy, dynamic.raters_per_clip, dynamic.strategy, dynamic.seed) == ("dynamic", 3,
                                                                                                "disagreement", 2)
    assert (runs["random-random-fixed1__s0"].rater_policy, runs["random-random-fixed1__s0"].raters_per_clip) == (
        "fixed", 1)
    assert all(r.soft_labels and (r.budget == 300 or name.startswith("full_data")) for name, r in runs.items())
    baseline = runs["full_data__s1"]  # every clip of the pool, one label per clip (with soft labels: all its votes)
    assert baseline.rater_policy == "label" and baseline.budget > 0.99
    assert set(_plan(tmp_path, "--seeds", "0")) == {"entropy-kmeans__s0", "random-kmeans__s0", "full_data__s0"}


@pytest.mark.parametrize("spec", ["fixed", "fixed:0", "sometimes:3", "dynamic:x", "label"])
def test_a_bad_rater_policy_is_named_with_the_fix(tmp_path, spec):
    with pytest.raises(ConfigError, match=rf"rater_policies: '{spec}' is not POLICY:RATERS; use fixed:N"):
        _plan(tmp_path, "--rater_policies", spec)
    with pytest.raises(ConfigError, match="names a policy twice"):
        _plan(tmp_path, "--rater_policies", "fixed:3", "fixed:3")
    with pytest.raises(ConfigError, match=r"\['rater_policy'\] are set by the grid.*rater_policies"):
        _plan(tmp_path, "--al", "rater_policy=dynamic")


def test_iemocap_rater_grid_dry_run_plans_every_fold_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "paper_raters"
    assert cli(["experiment", "--config", "recipes/paper/iemocap_raters.yaml", "--corpus",
                "iemocap=/data/IEMOCAP_full_release", "--out", str(out), "--dry_run"]) == 0
    printed = capsys.readouterr().out
    recipe = yaml.safe_load(open("recipes/paper/iemocap_raters.yaml"))["experiment"]
    per_fold = len(recipe["rater_policies"]) * len(recipe["strategies"]) * len(recipe["cold_starts"]) + 1
    assert f"{len(recipe['folds']) * len(recipe['seeds']) * per_fold} AL runs; nothing was trained" in printed
    assert "rater policies: fixed:1, fixed:3, dynamic:3 (seed_size / step_size / budget count rater answers)" in printed
    for fold in recipe["folds"]:
        assert (f"al --out {out}/al/fold{fold}/disagreement-random-dynamic3__s0 --manifest {out}/manifest_fold{fold} "
                f"--backbone {out}/tapt_fold{fold}") in printed
    assert "--strategy disagreement --cold_start random --seed 2 --rater_policy fixed --raters_per_clip 1" in printed
    assert not out.exists()


def _write_run(root, name, config, answers, uas, labelled=None):
    run = root / "al" / name  # name: RUN, or fold<N>/RUN (the LOSO layout)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"mode": "head_only", "backbone": "tapt", "soft_labels": True,
                                                 **config}))
    labelled = labelled or answers
    rounds = [{"round": i, "num_labelled": n, "fraction_labelled": n / 100, "num_answers": a, "test_ua": ua,
               "test_wa": ua, "test_macro_f1": ua, "seconds": {"train": 1.0}}
              for i, (a, n, ua) in enumerate(zip(answers, labelled, uas))]
    (run / "summary.json").write_text(json.dumps({"rounds": rounds, "stopped": None}))


def test_the_report_counts_the_rater_answers_to_97_percent_of_the_full_data_ua(tmp_path):
    from after_hf.report import build_report

    for seed, ua in enumerate([0.60, 0.62, 0.58]):  # full data: mean 0.60 -> target 0.97 x 0.60 = 0.582
        _write_run(tmp_path, f"full_data__s{seed}", {"strategy": "random", "cold_start": "random", "seed": seed},
                   [100], [ua])
    curves = {  # (policy, per clip, strategy): per seed UA at 10 / 20 / 30 rater answers
        ("fixed", 1, "random"): [[0.40, 0.59, 0.60], [0.50, 0.55, 0.583], [0.30, 0.40, 0.50]],
        ("fixed", 3, "random"): [[0.30, 0.40, 0.50], [0.30, 0.40, 0.50], [0.30, 0.45, 0.55]],
        ("dynamic", 3, "entropy"): [[0.59, 0.50, 0.60], [0.50, 0.59, 0.60], [0.582, 0.60, 0.60]],
    }
    for (policy, per_clip, strategy), per_seed in curves.items():
        for seed, uas in enumerate(per_seed):
            config = {"strategy": strategy, "cold_start": "random", "seed": seed, "rater_policy": policy,
                      "raters_per_clip": per_clip}
            labelled = [8 + seed, 15 + seed, 21 + seed] if policy == "dynamic" else None  # clips differ by seed
            _write_run(tmp_path, f"{strategy}-random-{policy}{per_clip}__s{seed}", config, [10, 20, 30], uas, labelled)
    report = build_report(tmp_path).read_text()
    table = json.loads((tmp_path / "results.json").read_text())["answers_to_target"]
    assert table["target_ua"] == pytest.approx(0.582) and table["full_data_ua"] == pytest.approx(0.60)
    one = table["settings"]["random-random-fixed1"]
    assert one["per_seed"] == {"0": 20, "1": 30, "2": None} and (one["reached"], one["n_seeds"]) == (2, 3)
    assert (one["mean"], one["std"]) == (25.0, 5.0)
    assert table["settings"]["random-random-fixed3"]["mean"] is None
    dynamic = table["settings"]["entropy-random-dynamic3"]
    assert dynamic["per_seed"] == {"0": 10, "1": 20, "2": 10}  # 0.582 >= the target: reached at 10
    assert dynamic["mean"] == pytest.approx(40 / 3) and dynamic["clips_at_target"] == pytest.approx((8 + 16 + 10) / 3)
    results = json.loads((tmp_path / "results.json").read_text())
    points = results["entropy-random-dynamic3"]["points"]  # one point per answer count, all 3 seeds in each
    assert [(p["num_answers"], p["n_seeds"]) for p in points] == [(10, 3), (20, 3), (30, 3)]
    assert "| 1 rater per clip | random | random | 2 of 3 | 20 / 30 / not reached | 25 ± 5 (2 of 3 seeds) |" in report
    assert "| fixed, 3 raters per clip | random | random | 0 of 3 | not reached / not reached / not reached | " \
           "not reached within 30 |" in report
    assert "fewest rater answers to the target: **dynamic, up to 3 raters per clip with entropy** (13 ± 5)" in report
    assert "1 rater per clip: no strategy reached it in every seed" in report
    assert (tmp_path / "answer_curves.png").stat().st_size > 10_000


def test_learning_curves_say_which_aucs_are_over_rater_answers(tmp_path, monkeypatch):
    """learning_curves.png plots every setting against the share labelled; a rater-policy setting's AUC is over
    answers, and its legend says so."""
    import after_hf.plots as plots
    from after_hf.report import build_report

    legends = {}

    def keep_legend(fig, path):
        legends[path.name] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        return path

    monkeypatch.setattr(plots, "_save_atomic", keep_legend)
    _write_run(tmp_path, "full_data__s0", {"strategy": "random", "seed": 0}, [100], [0.6])
    _write_run(tmp_path, "entropy-kmeans__s0", {"strategy": "entropy", "seed": 0}, [10, 20], [0.4, 0.5])
    rater = {"strategy": "random", "cold_start": "random", "seed": 0, "rater_policy": "fixed", "raters_per_clip": 3}
    _write_run(tmp_path, "random-random-fixed3__s0", rater, [10, 20], [0.3, 0.5])
    build_report(tmp_path)
    curves = legends["learning_curves.png"]
    assert any(t.startswith("random-random-fixed3 (AUC over answers ") for t in curves)
    assert any(t.startswith("entropy-kmeans (AUC 0.") for t in curves)


def test_learning_curves_show_the_references_and_the_classical_model_on_the_same_labels(tmp_path, monkeypatch):
    """The ceiling and the acoustic baseline as lines, and each setting's acoustic baseline on its own labels as a
    cross at its last share, in its colour."""
    import after_hf.plots as plots

    drawn = {}

    def keep(fig, path):
        drawn["legend"] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        drawn["lines"] = [(line.get_marker(), list(line.get_xdata()), list(line.get_ydata()), line.get_color())
                          for line in fig.axes[0].get_lines()]
        return path

    monkeypatch.setattr(plots, "_save_atomic", keep)
    point = {"fraction_labelled": 0.2, "test_ua": 0.5, "test_ua_std": 0.01}
    results = {"entropy-kmeans": {"points": [{**point, "fraction_labelled": 0.1}, point], "auc_ua": 0.48,
                                  "acoustic_baseline_same_labels": {"test_ua": 0.65, "test_ua_std": 0.02}},
               "random-random": {"points": [point], "auc_ua": 0.5}}  # no cache: no cross
    refs = {"ceiling": {"test_ua": 0.832}, "acoustic_baseline": {"test_ua": 0.702}}
    plots.plot_learning_curves(results, tmp_path / "curves.png", "full_data", refs)
    assert {"ceiling (100% labels): 0.832", "acoustic baseline (100% labels): 0.702"} <= set(drawn["legend"])
    crosses = [line for line in drawn["lines"] if line[0] == "x" and line[1]]
    curve = next(line for line in drawn["lines"] if line[0] == "o" and line[1] == [10.0, 20.0])
    assert [(c[1], c[2]) for c in crosses] == [([20.0], [0.65])] and crosses[0][3] == curve[3]
    plots.plot_learning_curves(results, tmp_path / "curves.png", "full_data")  # no references.json: no lines
    assert not any(t.startswith(("ceiling", "acoustic baseline (100%")) for t in drawn["legend"])


def test_loso_folds_are_held_to_their_own_baseline(tmp_path):
    """IEMOCAP's folds differ in difficulty: each fold's runs are measured against 97 % of that fold's baseline."""
    from after_hf.report import build_report

    for fold, base in (("fold1", 0.70), ("fold2", 0.50)):  # targets 0.679 and 0.485
        _write_run(tmp_path, f"{fold}/full_data__s0", {"strategy": "random", "seed": 0}, [100], [base])
        config = {"strategy": "entropy", "cold_start": "random", "seed": 0, "rater_policy": "fixed",
                  "raters_per_clip": 3}
        _write_run(tmp_path, f"{fold}/entropy-random-fixed3__s0", config, [10, 20], [0.49, 0.68])
    build_report(tmp_path)
    table = json.loads((tmp_path / "results.json").read_text())["answers_to_target"]
    assert table["target_ua_by_fold"] == pytest.approx({"fold1": 0.679, "fold2": 0.485})
    assert table["settings"]["entropy-random-fixed3"]["per_seed"] == {"fold1 s0": 20, "fold2 s0": 10}
    assert "against its fold's own baseline (fold1 0.679, fold2 0.485)" in (tmp_path / "results.md").read_text()


def test_a_report_without_rater_policies_has_no_answer_table(tmp_path):
    from after_hf.report import build_report

    for seed in (0, 1):
        _write_run(tmp_path, f"full_data__s{seed}", {"strategy": "random", "seed": seed}, [100], [0.6])
        _write_run(tmp_path, f"entropy-kmeans__s{seed}", {"strategy": "entropy", "seed": seed}, [10, 20], [0.4, 0.5])
    report = build_report(tmp_path).read_text()
    assert "Rater answers to reach" not in report and not (tmp_path / "answer_curves.png").exists()
    assert "answers_to_target" not in json.loads((tmp_path / "results.json").read_text())


def test_a_rater_budget_past_the_pools_answers_ends_at_them(capsys):
    from dataclasses import replace

    from after_hf.al.budget import BudgetError, budget_schedule
    from after_hf.al.loop import ALArguments, rater_budget

    args = ALArguments(manifest="m", out="o", rater_policy="fixed", raters_per_clip=1, seed_size=100,
                       step_size=100, budget=1500)
    assert rater_budget(args, 864) == (864, 864)
    assert "1500 rater answers is more than the pool holds (864 clips x 1 rater): the run ends at 864" in \
        capsys.readouterr().out
    assert budget_schedule(864, 100, 100, *rater_budget(args, 864))[-3:] == [700, 800, 864]
    capsys.readouterr()
    assert rater_budget(replace(args, raters_per_clip=3), 864) == (1500, 2592)
    assert capsys.readouterr().out == ""  # within the pool's answers: no note
    label = replace(args, rater_policy="label")  # one label per clip: a budget past the pool stays an error
    with pytest.raises(BudgetError, match="only 864 samples"):
        budget_schedule(864, 100, 100, *rater_budget(label, 864))


def test_the_experiment_runs_a_rater_grid_end_to_end(synth_corpus, tmp_path):
    """Two policies, one strategy, two seeds on the shared corpus (tiny backbone, no TAPT): every run spends its
    answers as scheduled, and the report holds the answers table and the answer curves."""
    out = tmp_path / "exp"
    assert cli(["experiment", "--out", str(out), "--corpus", f"cremad={synth_corpus}", "--backbone", "tiny",
                "--strategies", "random", "--cold_starts", "random", "--seeds", "0", "1", "--rater_policies",
                "fixed:1", "dynamic:3", "--final_model", "none", "--al", "seed_size=12", "step_size=12", "budget=36",
                "head_epochs=3", "soft_labels=true"]) == 0
    for name in ("random-random-fixed1__s0", "random-random-dynamic3__s1"):
        rounds = json.loads((out / "al" / name / "summary.json").read_text())["rounds"]
        assert [r["num_answers"] for r in rounds] == [12, 24, 36]
    fixed = json.loads((out / "al" / "random-random-fixed1__s0" / "summary.json").read_text())["rounds"]
    assert [r["num_labelled"] for r in fixed] == [12, 24, 36]  # one answer a clip (none outside the label set here)
    results = json.loads((out / "results.json").read_text())
    assert set(results["answers_to_target"]["settings"]) == {"random-random-fixed1", "random-random-dynamic3"}
    assert np.isfinite(results["answers_to_target"]["target_ua"])
    report = (out / "results.md").read_text()
    assert "## Rater answers to reach 97 % of the full-data UA" in report and "| dynamic, up to 3 raters per clip |" \
        in report
    assert (out / "answer_curves.png").is_file() and (out / "learning_curves.png").is_file()
