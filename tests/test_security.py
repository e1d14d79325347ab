"""Loading untrusted files: static AST checks over after_hf/ and spaces_demo/, and pickle-only model directories
refused.

The scanner fails the suite when someone adds ``trust_remote_code=True``, a ``torch.load`` without
``weights_only=True``, a pickle / joblib / dill load, ``yaml.load`` instead of ``yaml.safe_load``,
``np.load(allow_pickle=True)``, or a model ``from_pretrained`` without ``use_safetensors=True``.
It is itself tested on small bad snippets (each must be flagged) and good ones (none may be).
"""

import ast
import pickle
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [ROOT / "after_hf", ROOT / "spaces_demo"]
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_CALLS = {  # dotted suffix -> rule
    "pickle.load": "pickle", "pickle.loads": "pickle", "joblib.load": "pickle", "dill.load": "pickle",
    "dill.loads": "pickle", "cloudpickle.load": "pickle", "cloudpickle.loads": "pickle", "read_pickle": "pickle",
    "yaml.load": "yaml", "yaml.load_all": "yaml", "yaml.unsafe_load": "yaml", "yaml.full_load": "yaml",
    "yaml.unsafe_load_all": "yaml", "yaml.full_load_all": "yaml",
}
# from_pretrained of these classes reads JSON only (no weights): use_safetensors does not apply
NO_WEIGHTS = ("Config", "FeatureExtractor", "Processor", "Tokenizer", "TokenizerFast", "ModelCard")


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{_dotted(node.func)}()"
    return "?"


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def scan(source: str, filename: str = "<snippet>") -> tuple[list[str], int]:
    """(violations as 'file:line rule: code', number of loading calls checked)."""
    tree = ast.parse(source, filename)
    torch_load_aliases = {"torch.load"}
    found, checked = [], 0

    def flag(node, rule):
        found.append(f"{filename}:{node.lineno} {rule}: {ast.get_source_segment(source, node) or ''}"[:300])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLE_MODULES:
                    flag(node, "pickle")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLE_MODULES:
                flag(node, "pickle")
            if node.module == "torch":
                torch_load_aliases |= {a.asname or a.name for a in node.names if a.name == "load"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kwargs = {k.arg: k.value for k in node.keywords if k.arg}
        if "trust_remote_code" in kwargs and not _is_const(kwargs["trust_remote_code"], False):
            flag(node, "trust_remote_code")
        for suffix, rule in UNSAFE_CALLS.items():
            if name == suffix or name.endswith("." + suffix):
                flag(node, rule)
        if name in torch_load_aliases:
            checked += 1
            if not _is_const(kwargs.get("weights_only"), True):
                flag(node, "torch.load without weights_only=True")
        if name.split(".")[-1] == "load" and name.split(".")[0] in ("np", "numpy"):
            checked += 1
            if "allow_pickle" in kwargs and not _is_const(kwargs["allow_pickle"], False):
                flag(node, "np.load allow_pickle")
        if isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
            receiver = _dotted(node.func.value).split(".")[-1]
            if not receiver.endswith(NO_WEIGHTS):
                checked += 1
                if not _is_const(kwargs.get("use_safetensors"), True):
                    flag(node, "from_pretrained without use_safetensors=True")
    return found, checked


def _sources():
    files = sorted(p for d in SCANNED for p in d.rglob("*.py"))
    assert len(files) > 20, files  # both trees were found
    return files


def test_sources_load_no_pickles_and_no_remote_code():
    violations, checked = [], 0
    for path in _sources():
        v, c = scan(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
        violations += v
        checked += c
    assert not violations, "unsafe loading:\n" + "\n".join(violations)
    assert checked >= 4  # the model loaders (models.py, features.py, spaces_demo/app.py) and np.load were checked


BAD = {
    "trust_remote_code": "from transformers import AutoModel\n"
                         "m = AutoModel.from_pretrained('x', use_safetensors=True, trust_remote_code=True)",
    "trust_remote_code (variable)": "m = AutoConfig.from_pretrained('x', trust_remote_code=flag)",
    "torch.load": "import torch\nsd = torch.load('w.pt')",
    "torch.load weights_only=False": "import torch\nsd = torch.load('w.pt', map_location='cpu', weights_only=False)",
    "from torch import load": "from torch import load as tl\nsd = tl('w.pt', weights_only=False)",
    "pickle import": "import pickle\n",
    "pickle from-import": "from pickle import loads\n",
    "joblib": "import joblib\nm = joblib.load('m.joblib')",
    "pandas read_pickle": "import pandas as pd\ndf = pd.read_pickle('x.pkl')",
    "yaml.load": "import yaml\ncfg = yaml.load(open('r.yaml'), Loader=yaml.Loader)",
    "np.load allow_pickle": "import numpy as np\na = np.load('a.npy', allow_pickle=True)",
    "from_pretrained without use_safetensors": "m = AutoModelForAudioClassification.from_pretrained('dir')",
    "from_pretrained use_safetensors=False": "m = Wav2Vec2ForPreTraining.from_pretrained('dir', use_safetensors=False)",
    "from_pretrained via module": "import transformers\n"
                                  "m = transformers.AutoModel.from_pretrained('dir', trust_remote_code=False)",
}
GOOD = {
    "safe loaders": (
        "import torch, yaml, numpy as np\n"
        "sd = torch.load('w.pt', weights_only=True)\n"
        "cfg = yaml.safe_load(open('r.yaml'))\n"
        "a = np.load('a.npy', mmap_mode='r')\n"
        "m = AutoModel.from_pretrained('dir', use_safetensors=True, trust_remote_code=False)\n"
        "c = AutoConfig.from_pretrained('dir', trust_remote_code=False)\n"
        "fe = Wav2Vec2FeatureExtractor.from_pretrained('dir')\n"
    ),
}


@pytest.mark.parametrize("snippet", BAD.values(), ids=list(BAD))
def test_scanner_flags_each_unsafe_pattern(snippet):
    found, _ = scan(snippet)
    assert len(found) >= 1, snippet


@pytest.mark.parametrize("snippet", GOOD.values(), ids=list(GOOD))
def test_scanner_accepts_the_safe_equivalents(snippet):
    found, checked = scan(snippet)
    assert found == [] and checked == 3  # torch.load, np.load, AutoModel.from_pretrained


# -- behaviour: a pickle-only model directory is never unpickled -------------------------------------------------

class _Payload:
    """Unpickling this creates a file: the harmless stand-in for code execution by a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def pickle_only_dir(tmp_path_factory):
    from after_hf.models import load_config

    root = tmp_path_factory.mktemp("pickle_model")
    model_dir, marker = root / "model", root / "PWNED"
    model_dir.mkdir()
    config = load_config("tiny", num_labels=2, id2label={"0": "low", "1": "high"}, label2id={"low": "0", "high": "1"})
    config.architectures = ["Wav2Vec2ForSequenceClassification"]
    config.save_pretrained(model_dir)
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    # the payload really runs when unpickled (so the checks below could fail)
    probe = root / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()
    return model_dir, marker


def _loaders(model_dir):
    from after_hf.al.features import load_backbone
    from after_hf.evaluation import load_model_for_eval
    from after_hf.models import load_classifier, load_pretraining_model

    return {
        "load_classifier (finetune / full-mode AL)": lambda: load_classifier(str(model_dir), ["low", "high"]),
        "load_pretraining_model (TAPT)": lambda: load_pretraining_model(str(model_dir)),
        "load_backbone (head-only AL features)": lambda: load_backbone(str(model_dir)),
        "load_model_for_eval (after-hf evaluate)": lambda: load_model_for_eval(str(model_dir)),
    }


@pytest.mark.parametrize("loader", ["load_classifier (finetune / full-mode AL)", "load_pretraining_model (TAPT)",
                                    "load_backbone (head-only AL features)", "load_model_for_eval (after-hf evaluate)"])
def test_pickle_only_model_dir_is_refused_unread(pickle_only_dir, loader):
    from after_hf.models import ModelError

    model_dir, marker = pickle_only_dir
    with pytest.raises(ModelError) as err:
        _loaders(model_dir)[loader]()
    message = str(err.value)
    assert "pytorch_model.bin" in message and "safetensors" in message and "save_pretrained" in message
    assert not marker.exists()  # the pickle was never opened
