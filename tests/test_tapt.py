"""TAPT: it learns, resumes after SIGKILL to the same weights, runs in 2 processes, saves a usable backbone.

All runs use the `tiny` config on the generated corpus' training split (synth_manifest) with 1 torch thread.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from after_hf import tapt
from after_hf.config import parse_args

ROOT = Path(__file__).resolve().parents[1]
# ~3 whole utterances (~2.6 s, room noise) a step, ~0.1 s a step. Measured: 1 s crops or 60 steps stay near chance;
# mask 0.65 (pre-training; ~45 masked frames a clip) and lr 3e-3 learn in 150 steps (100 were marginal once the
# test corpus got the demo profile's room noise and silences).
FAST = ["--model_name_or_path", "tiny", "--batch_seconds", "8", "--max_seconds", "4", "--mask_time_prob", "0.65",
        "--learning_rate", "3e-3", "--warmup_steps", "2", "--seed", "0"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(manifest, out, *flags) -> Path:
    assert tapt.main(["--manifest", str(manifest), "--output_dir", str(out), *FAST, *map(str, flags)]) == 0
    return Path(out)


def log(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def weights(out) -> dict[str, torch.Tensor]:
    return load_file(Path(out) / "model.safetensors")


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def child_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


# ----------------------------------------------------------------------------------------------
def test_contrastive_loss_falls_below_chance_and_accuracy_rises(synth_manifest, tmp_path):
    out = run(synth_manifest, tmp_path / "t", "--max_steps", 150, "--save_steps", 1000)
    records = log(out)
    assert [r["step"] for r in records] == list(range(1, 151))
    first, last = records[:5], records[-5:]
    mean = lambda rs, k: float(np.mean([r[k] for r in rs]))  # noqa: E731
    # the loss falls, and ends below what scoring every candidate alike gives (not just codebook shrinkage)
    assert mean(last, "contrastive_loss") < mean(first, "contrastive_loss") - 0.2
    assert mean(last, "contrastive_loss") < mean(last, "chance_loss") - 0.1
    # the true target wins more often than at the start and than chance (1 of K + 1 = 21 candidates)
    assert mean(last, "contrastive_accuracy") > max(mean(first, "contrastive_accuracy") + 0.03, 1 / 21 + 0.03)
    # no collapse: the codebook is still in use, gradients flow
    assert mean(last, "codevector_perplexity") > 2 * 2 and all(r["grad_norm"] > 0 for r in records)
    assert 40 < mean(records, "masked_frames_pct") < 65  # mask 0.65 of spans of 10 -> ~50% of the frames


def test_output_loads_as_a_sequence_classifier_with_the_pretrained_encoder(synth_manifest, tmp_path):
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    out = run(synth_manifest, tmp_path / "t", "--max_steps", 3, "--save_steps", 1000)
    saved = weights(out)
    model, info = Wav2Vec2ForSequenceClassification.from_pretrained(out, num_labels=4, output_loading_info=True)
    # only the new head is missing; every encoder weight is the TAPT one
    assert info["missing_keys"] and all(k.split(".")[0] in ("projector", "classifier") for k in info["missing_keys"])
    state = model.state_dict()
    encoder = [k for k in saved if k.startswith("wav2vec2.")]
    assert encoder and all(torch.equal(state[k], saved[k]) for k in encoder)
    fe = Wav2Vec2FeatureExtractor.from_pretrained(out)
    assert fe.return_attention_mask is False and fe.do_normalize  # group-norm tiny: no attention mask
    args = json.loads((out / "tapt_args.json").read_text())
    assert args["max_steps_resolved"] == 3 and args["num_processes"] == 1


CHILD = textwrap.dedent("""
    import sys, time, pathlib, torch
    torch.set_num_threads(1)
    from after_hf import tapt
    original = tapt.CollapseDetector.update
    def update(self, record):
        if record["step"] == 4:  # step 3 is logged, the last checkpoint is step 2: stall here until killed
            pathlib.Path(sys.argv[1]).write_text("stalled")
            time.sleep(300)
        return original(self, record)
    tapt.CollapseDetector.update = update
    tapt.main(sys.argv[2:])
""")


def test_sigkilled_run_resumed_ends_with_the_weights_of_an_uninterrupted_run(synth_manifest, tmp_path):
    flags = ["--max_steps", 6, "--save_steps", 2]
    reference = run(synth_manifest, tmp_path / "reference", *flags)

    killed = tmp_path / "killed"
    stalled = tmp_path / "stalled"
    argv = ["--manifest", str(synth_manifest), "--output_dir", str(killed), *FAST, *map(str, flags)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(stalled), *argv], env=child_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not stalled.exists():
        assert child.poll() is None, child.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the child never reached step 4"
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL
    child.stderr.close()
    assert not (killed / "model.safetensors").exists()
    assert [p.name for p in (killed / "checkpoints").iterdir()] == ["step-0000002"]
    assert [r["step"] for r in log(killed)] == [1, 2, 3]  # step 3 ran after the checkpoint: it must be redone

    run(synth_manifest, killed, *flags, "--resume")
    diff = max_diff(weights(killed), weights(reference))
    assert diff <= 1e-6, f"resumed weights differ from the uninterrupted run's by up to {diff}"
    resumed, uninterrupted = log(killed), log(reference)
    assert [r["step"] for r in resumed] == list(range(1, 7))  # step 3 logged once, by the resumed run
    assert np.allclose([r["loss"] for r in resumed], [r["loss"] for r in uninterrupted], atol=1e-6)
    assert np.allclose([r["lr"] for r in resumed], [r["lr"] for r in uninterrupted])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_save_what_one_process_with_two_accumulation_steps_saves(synth_manifest, tmp_path):
    flags = ["--max_steps", 4, "--save_steps", 2]
    one = run(synth_manifest, tmp_path / "one", *flags, "--gradient_accumulation_steps", 2)
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "recipes/accelerate/cpu_2proc.yaml"), "--main_process_port", str(_free_port()),
           "-m", "after_hf.tapt", "--manifest", str(synth_manifest), "--output_dir", str(two), *FAST, *map(str, flags)]
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "2 process(es)" in done.stderr  # really two processes, not one
    a, b = weights(one), weights(two)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    # same global batches, masks and negatives; gradients summed by DDP instead of by accumulation
    diff = max_diff(a, b)
    assert diff <= 1e-5, f"2-process weights differ from the 1-process ones by up to {diff}"
    assert json.loads((two / "tapt_args.json").read_text())["num_processes"] == 2
    for out in (one, two):
        state = json.loads((out / "checkpoints" / "step-0000004" / "trainer_state.json").read_text())
        assert state["step"] == 4 and state["batches_per_step"] == 2
        assert [r["step"] for r in log(out)] == [1, 2, 3, 4]
    assert sorted(p.name for p in (two / "checkpoints" / "step-0000004").glob("random_states_*")) == \
        ["random_states_0.pkl", "random_states_1.pkl"]


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_group_norm_and_layer_norm_encoders_train_and_save(synth_manifest, tmp_path, norm, caplog, monkeypatch):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining

    masks = []
    forward = Wav2Vec2ForPreTraining.forward

    def spy(self, *args, **kwargs):
        masks.append(kwargs.get("attention_mask"))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(Wav2Vec2ForPreTraining, "forward", spy)
    overrides = ["--config_overrides", "feat_extract_norm=layer,do_stable_layer_norm=true"] if norm == "layer" else []
    with caplog.at_level("INFO", logger="after_hf.tapt"):
        out = run(synth_manifest, tmp_path / norm, "--max_steps", 3, "--save_steps", 1000, *overrides)
    assert len(masks) == 3
    if norm == "layer":  # a mask of each utterance's real samples: ones then zeros, the longest row all ones
        for m in masks:
            assert m is not None and bool(m[:, 0].all()) and bool((m[:, 1:] <= m[:, :-1]).all())
            assert int(m.sum(1).max()) == m.shape[1]
    else:
        assert all(m is None for m in masks)
    records = log(out)
    assert len(records) == 3 and all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in records)
    config = Wav2Vec2Config.from_pretrained(out)
    assert config.feat_extract_norm == norm and config.do_stable_layer_norm == (norm == "layer")
    # layer norm takes the attention mask; group norm (wav2vec2-base) is fed zero padding only
    assert Wav2Vec2FeatureExtractor.from_pretrained(out).return_attention_mask == (norm == "layer")
    expected = "attention mask" if norm == "layer" else "zero padding, no attention mask"
    assert any(r.getMessage().endswith(", " + expected) for r in caplog.records)


def test_collapse_detector_flags_each_signature_once_and_ignores_a_healthy_run():
    healthy = tapt.CollapseDetector(num_groups=2, window=3)
    for step in range(1, 10):
        record = {"step": step, "contrastive_loss": 2.5, "codevector_perplexity": 20.0, "grad_norm": 0.5}
        assert healthy.update(record) == []
    collapsed = tapt.CollapseDetector(num_groups=2, window=3)
    messages = []
    for step in range(1, 10):
        messages += collapsed.update({"step": step, "contrastive_loss": 1e-4, "codevector_perplexity": 2.0,
                                      "grad_norm": 1e-9})
    assert len(messages) == 3 and all("step 3" in m for m in messages)
    assert any("trivial" in m for m in messages) and any("codebook collapsed" in m for m in messages)
    assert any("nothing is being learned" in m for m in messages)


def test_a_forced_codebook_collapse_is_reported_in_the_log(synth_manifest, tmp_path):
    # one codevector per group: every target equals every distractor, perplexity = number of groups
    out = run(synth_manifest, tmp_path / "c", "--max_steps", 4, "--save_steps", 1000, "--collapse_window", 3,
              "--config_overrides", "num_codevectors_per_group=1")
    warned = [w for r in log(out) for w in r.get("warnings", [])]
    assert any("codebook collapsed" in w for w in warned) and any("trivial" in w for w in warned)


def test_resume_or_overwrite_is_required_to_reuse_an_output_dir(synth_manifest, tmp_path):
    out = run(synth_manifest, tmp_path / "t", "--max_steps", 1, "--save_steps", 1000)
    with pytest.raises(FileExistsError, match="--resume"):
        run(synth_manifest, out, "--max_steps", 1)


# ----------------------------------------------------------------------------------------------
# recipes: the demo's and the paper's parse into the dataclasses (typos and wrong types fail here)
def test_demo_recipe_matches_the_demo_backbone_and_parses():
    (args,) = parse_args([tapt.TaptArguments], ["--config", str(ROOT / "recipes/demo/tapt.yaml"), "--manifest", "m",
                                                "--output_dir", "o", "--resume"], section="tapt")
    demo = yaml.safe_load((ROOT / "recipes/demo/demo.yaml").read_text())["experiment"]
    assert args.model_name_or_path == demo["backbone"] and args.resume
    assert args.batch_seconds >= args.max_seconds and 0 < args.mask_time_prob < 1


def test_paper_recipes_parse():
    from after_hf.finetune import FinetuneArguments

    (t,) = parse_args([tapt.TaptArguments], ["--config", str(ROOT / "recipes/paper/tapt_wav2vec2_base.yaml"),
                                             "--manifest", "m", "--output_dir", "o"], section="tapt")
    assert (t.model_name_or_path, t.learning_rate, t.max_steps, t.mask_time_prob) == \
        ("facebook/wav2vec2-base", 1e-4, 20000, 0.05)
    for recipe in sorted((ROOT / "recipes/paper").glob("finetune_iemocap*.yaml")):
        (f,) = parse_args([FinetuneArguments], ["--config", str(recipe)], section="finetune")
        assert f.per_device_train_batch_size * f.gradient_accumulation_steps == 64 and f.num_train_epochs == 30
