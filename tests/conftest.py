"""Shared fixtures: a small generated emotional-speech corpus and its prepared manifest.

Session-scoped, so the whole suite synthesises the corpus once (espeak-ng, a few seconds).
    synth_corpus    Path of a 160-utterance, 8-speaker corpus in the CREMA-D layout (AudioWAV/*.wav), short turns
    synth_manifest  Path of its manifest (save_to_disk dir): speaker-independent train/validation/test,
                    4-class neutral/happy/angry/sad; load with after_hf.data.manifest.load_manifest
    tiny_manifest   Path of a 24-row manifest (2 utterances per label per split) cut from synth_manifest
    tiny_model_dir  Path of an untrained tiny classifier (high / low) saved like a fine-tuned model
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

SYNTH_UTTERANCES = 160
SYNTH_VOICES = 8
SYNTH_SEED = 0


def SHORT_TURNS() -> dict:
    """The demo corpus profile with short, mostly one-sentence turns (fast tests)."""
    from after_hf.data.synth import load_profile

    return load_profile(None, lengths={"median_s": 1.4, "sigma": 0.25, "max_s": 4.0})


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one intra-op thread is faster, and far faster when the 2 cores are shared (no spin-waiting).
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An untrained tiny classifier (classes high / low) saved as `after-hf finetune` saves one. Read-only."""
    import torch

    from after_hf.models import feature_extractor_for, load_classifier

    torch.manual_seed(0)
    model = load_classifier("tiny", ["high", "low"])
    out = tmp_path_factory.mktemp("model") / "model"
    model.save_pretrained(out)
    feature_extractor_for(model.config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory):
    from after_hf.data.synth import synthesize

    # the demo's profile with one-sentence turns (~1.5-2.5 s): the suite encodes this corpus many times
    return synthesize(tmp_path_factory.mktemp("synth") / "corpus", num_utterances=SYNTH_UTTERANCES,
                      seed=SYNTH_SEED, voices=SYNTH_VOICES, progress=False, profile=SHORT_TURNS())


@pytest.fixture(scope="session")
def synth_manifest(synth_corpus, tmp_path_factory):
    from after_hf.data.prepare import prepare

    out = tmp_path_factory.mktemp("synth_manifest") / "manifest"
    prepare({"cremad": str(synth_corpus)}, out, seed=SYNTH_SEED, verbose=False)
    return out


@pytest.fixture(scope="session")
def tiny_manifest(synth_manifest, tmp_path_factory):
    from after_hf.data.manifest import load_manifest, save_manifest

    ds = load_manifest(synth_manifest)
    keep, seen = [], {}
    for i, (split, label) in enumerate(zip(ds["split"], ds["label"])):
        if seen.get((split, label), 0) < 2:
            seen[(split, label)] = seen.get((split, label), 0) + 1
            keep.append(i)
    return save_manifest(ds.select(keep), tmp_path_factory.mktemp("tiny_manifest") / "manifest")
