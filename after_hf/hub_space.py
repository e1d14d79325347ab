"""`after-hf push-space`: publish ``spaces_demo/`` as a Gradio Space serving a model.

    after-hf push-space --model USER/MODEL --repo_id USER/SPACE [--private] [--dry_run OUT]
    after-hf push-space --model runs/demo/final/model --repo_id USER/SPACE --dry_run OUT   # bundles the model

The Space folder is built first and is self-contained:

* ``app.py`` with ``DEFAULT_MODEL`` set to the model (a Hub id, or ``"model"`` when ``--model`` is a local
  directory, whose safe files are then copied into ``model/``), ``README.md`` (front matter ``sdk: gradio``,
  ``sdk_version``, ``app_file``; ``models:`` names a Hub model), pinned ``requirements.txt``, ``packages.txt``
  (FFmpeg for torchcodec) and the example clips;
* ``after_hf/``: the few modules of this package that the app imports (SPACE_MODULES). The app reuses the
  toolkit's decoding (``data/audio.py``), the model's metrics and provenance files (``model_info.py``, for the
  "About this model" panel) and, above all, the human-oracle contract (``al/oracle.py``: queue, leases, locked
  atomic answers), so the Space and the active-learning loop can never disagree on the file format; a copy of
  only these pure-Python files keeps the Space small and free of training dependencies. ``requirements.txt``
  must cover every import of these files and of ``app.py`` (tests/test_space_requirements.py checks it).

``--dry_run OUT`` writes exactly that folder and makes no network call; otherwise it is uploaded with
``create_repo(repo_type="space", space_sdk="gradio")`` + ``upload_folder`` (token from HF_TOKEN / ``hf auth login``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .config import parse_args
from .hub import UPLOAD_SUFFIXES, PushError, check_model_dir, check_online, check_repo_id, upload
from .io import atomic_write_text

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_SPACE_DIR = PACKAGE_DIR.parent / "spaces_demo"
# What the Space's app.py imports from after_hf (tests check the bundled copy alone is enough).
SPACE_MODULES = (
    "__init__.py", "errors.py", "io.py", "config.py", "models.py", "model_info.py",
    "data/__init__.py", "data/audio.py",
    "al/__init__.py", "al/oracle.py",
)
SPACE_FILES = ("app.py", "README.md", "requirements.txt", "packages.txt")
EXAMPLE_SUFFIXES = {".wav", ".ogg", ".flac", ".mp3"}
MODEL_MARKER = re.compile(r"^DEFAULT_MODEL = None(  #.*)?$", re.MULTILINE)
BUNDLED_MODEL_DIR = "model"


@dataclass
class PushSpaceArguments:
    model: str = field(metadata={"help": "Model the Space serves: a Hub id (USER/NAME) or a local save_pretrained "
                                         "directory (then bundled into the Space under model/)."})
    repo_id: str = field(metadata={"help": "Hub Space to create or update, as USER/NAME."})
    private: bool = field(default=False, metadata={"help": "Create the Space as private."})
    dry_run: Optional[str] = field(default=None, metadata={"help": "Write the exact folder that would be uploaded to "
                                                                   "this directory and make no network call."})
    space_dir: str = field(
        default=str(DEFAULT_SPACE_DIR),
        metadata={"help": "The Space source folder (app.py, README.md, requirements.txt, examples/)."})
    commit_message: str = field(default="Upload after-hf speech emotion recognition Space",
                                metadata={"help": "Commit message of the upload."})


def fill_model(app_source: str, model_ref: str) -> str:
    """app.py with ``DEFAULT_MODEL = None`` replaced by the model reference."""
    if len(MODEL_MARKER.findall(app_source)) != 1:
        raise PushError("spaces_demo/app.py must contain exactly one line `DEFAULT_MODEL = None  # ...` for "
                        "push-space to fill in; restore it.")
    return MODEL_MARKER.sub(lambda m: f"DEFAULT_MODEL = {model_ref!r}{m.group(1) or ''}", app_source, count=1)


def stage_space(model: str, repo_id: str, out_dir: Path, space_dir: Path = DEFAULT_SPACE_DIR) -> list[str]:
    """Write the Space folder into ``out_dir``; return its files (relative paths)."""
    from huggingface_hub import SpaceCard

    missing = [name for name in SPACE_FILES if not (space_dir / name).is_file()]
    if missing:
        raise PushError(f"{space_dir} lacks {missing}: pass the after-hf spaces_demo folder to --space_dir.")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PushError(f"{out_dir} already exists and is not empty: choose a new --dry_run directory or delete it.")
    model_path = Path(model)
    if model_path.exists():
        check_model_dir(model_path)
        model_ref = BUNDLED_MODEL_DIR
    else:
        try:
            check_repo_id(model)
        except PushError:
            raise PushError(f"--model {model} is neither a local model directory nor a Hub id (USER/NAME).") from None
        model_ref = model
    out_dir.mkdir(parents=True, exist_ok=True)

    for name in SPACE_FILES:
        if name not in ("app.py", "README.md"):
            shutil.copy2(space_dir / name, out_dir / name)
    atomic_write_text(out_dir / "app.py", fill_model((space_dir / "app.py").read_text(encoding="utf-8"), model_ref))
    card = SpaceCard.load(space_dir / "README.md")
    if model_ref != BUNDLED_MODEL_DIR:
        card.data.models = [model_ref]  # links the Space to the model page on the Hub
    atomic_write_text(out_dir / "README.md", str(card))
    examples = sorted(p for p in (space_dir / "examples").glob("*") if p.suffix in EXAMPLE_SUFFIXES)
    if examples:
        (out_dir / "examples").mkdir()
        for path in examples:
            shutil.copy2(path, out_dir / "examples" / path.name)
    for rel in SPACE_MODULES:
        (out_dir / "after_hf" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE_DIR / rel, out_dir / "after_hf" / rel)
    if model_ref == BUNDLED_MODEL_DIR:
        (out_dir / BUNDLED_MODEL_DIR).mkdir()
        for path in sorted(model_path.iterdir()):
            if path.is_file() and path.suffix in UPLOAD_SUFFIXES:
                shutil.copy2(path, out_dir / BUNDLED_MODEL_DIR / path.name)
    return sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())


def push_space(args: PushSpaceArguments) -> Path | str:
    """Dry run: the written folder. Otherwise: the commit URL of the Space."""
    check_repo_id(args.repo_id)
    if args.dry_run:
        out = Path(args.dry_run)
        files = stage_space(args.model, args.repo_id, out, Path(args.space_dir))
        print(f"dry run: {len(files)} files of the Space {args.repo_id} written to {out}")
        return out
    check_online()
    with tempfile.TemporaryDirectory(prefix="after-hf-space-") as tmp:
        folder = Path(tmp) / "space"
        stage_space(args.model, args.repo_id, folder, Path(args.space_dir))
        url = upload(folder, args.repo_id, repo_type="space", space_sdk="gradio", private=args.private,
                     commit_message=args.commit_message)
    print(f"pushed the Space to https://huggingface.co/spaces/{args.repo_id} ({url})")
    return url


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args([PushSpaceArguments], argv, prog="after-hf push-space", description=__doc__,
                         section="push_space")
    push_space(args)  # a PushError / ConfigError is one line at the CLI's boundary (after_hf.cli)
    return 0


if __name__ == "__main__":
    from after_hf.cli import command_main

    command_main("push-space", main)
