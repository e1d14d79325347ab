"""The Space runs where it is pushed: spaces_demo/requirements.txt covers every import of what `push-space` uploads.

1. Statically: every module imported by app.py and the bundled after_hf files (SPACE_MODULES), outside the standard
   library and the bundle itself, belongs to a distribution that requirements.txt names (the checker is shown to
   catch a missing one).
2. For real (slow): a fresh virtualenv holding only the distributions requirements.txt resolves to (the pins and their
   dependencies, recursively, taken from this tested environment: offline, no PyPI) starts the pushed Space folder
   and classifies an example clip through Gradio's HTTP API.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from space_support import EXAMPLES, REPO, SPACE_DIR, free_port, save_tiny_classifier

from after_hf.hub_space import SPACE_MODULES, PushSpaceArguments, push_space

REQUIREMENTS = SPACE_DIR / "requirements.txt"


def bundled_sources() -> list[Path]:
    return [SPACE_DIR / "app.py", *(REPO / "after_hf" / rel for rel in SPACE_MODULES)]


def imported_modules(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level module -> the files that import it (at any depth: imports inside functions count too)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def requirement_lines(text: str) -> list[Requirement]:
    return [Requirement(line.split("#")[0].strip()) for line in text.splitlines() if line.split("#")[0].strip()]


def uncovered_imports(requirements_text: str) -> dict[str, str]:
    """Third-party modules of the bundle whose distribution requirements.txt does not name -> the files importing
    them."""
    required = {canonicalize_name(r.name) for r in requirement_lines(requirements_text)}
    owners = metadata.packages_distributions()
    missing = {}
    for module, files in imported_modules(bundled_sources()).items():
        if module in sys.stdlib_module_names or module == "after_hf":
            continue
        if not any(canonicalize_name(d) in required for d in owners.get(module, [module])):
            missing[module] = ", ".join(sorted(files))
    return missing


def test_requirements_cover_every_import_of_the_bundled_code():
    assert uncovered_imports(REQUIREMENTS.read_text()) == {}
    # the check can fail: without soundfile (data/audio.py's WAV/FLAC reader) it names the module and its importer
    without = "\n".join(line for line in REQUIREMENTS.read_text().splitlines() if not line.startswith("soundfile"))
    assert uncovered_imports(without) == {"soundfile": "audio.py"}


def test_requirements_pin_what_the_tests_ran():
    """Each pin is the version installed here (the tested stack), so the Space runs what was tested."""
    for req in requirement_lines(REQUIREMENTS.read_text()):
        installed = metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req} but the tests ran {req.name} {installed}"


# -- a clean virtualenv built only from requirements.txt ----------------------------------------------------------

def closure(requirements: list[Requirement]) -> dict[str, metadata.Distribution]:
    """The installed distributions requirements resolve to: each pin and its dependencies, recursively (markers and
    extras evaluated as pip would for this platform)."""
    environment = default_environment()
    todo = [(r, frozenset(r.extras)) for r in requirements]
    done: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        new_extras = set(extras) - extras_seen.get(name, set())
        if name in done and not new_extras:
            continue
        try:
            dist = done.get(name) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req} (needed by the Space) is not installed in the tested environment")
        done[name] = dist
        extras_seen.setdefault(name, set()).update(extras)
        for line in dist.requires or []:
            dep = Requirement(line)
            active = [e for e in ["", *extras_seen[name]]
                      if dep.marker is None or dep.marker.evaluate({**environment, "extra": e})]
            if active:
                todo.append((dep, frozenset(dep.extras)))
    return done


def build_clean_venv(root: Path, dists: dict[str, metadata.Distribution]) -> Path:
    """``python -m venv`` without system site-packages, each distribution's files linked into its site-packages."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for dist in dists.values():
        assert dist.files, f"{dist.metadata['Name']} has no RECORD: cannot copy it"
        for file in dist.files:
            if file.parts[0] == ".." or file.suffix == ".pyc":  # scripts in bin/, byte code
                continue
            source, target = Path(dist.locate_file(file)).resolve(), site / file
            if source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)
    return venv / "bin" / "python"


def call_classify(url: str, clip: Path) -> list:
    """Upload a clip and call the Space's `classify` endpoint over Gradio's HTTP API; return its outputs."""
    boundary = "afterhf"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{clip.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    body = head + clip.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}gradio_api/upload", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    (uploaded,) = json.loads(urllib.request.urlopen(request, timeout=60).read())
    payload = json.dumps({"data": [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}]}).encode()
    request = urllib.request.Request(f"{url}gradio_api/call/classify", data=payload,
                                     headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(request, timeout=60).read())["event_id"]
    stream = urllib.request.urlopen(f"{url}gradio_api/call/classify/{event}", timeout=120).read().decode()
    assert "event: complete" in stream, stream[-2000:]
    return json.loads(stream.split("event: complete", 1)[1].split("data:", 1)[1].strip().splitlines()[0])


@pytest.mark.slow
def test_the_pushed_space_starts_in_a_clean_venv_built_only_from_its_requirements(tmp_path):
    space = tmp_path / "space"
    push_space(PushSpaceArguments(model=str(save_tiny_classifier(tmp_path / "model")), repo_id="me/ser-space",
                                  dry_run=str(space)))
    dists = closure(requirement_lines((space / "requirements.txt").read_text()))
    python = build_clean_venv(tmp_path, dists)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AFTER_HF_", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONNOUSERSITE="1", HF_HOME=str(tmp_path / "hf"))
    probe = subprocess.run([str(python), "-c", "import sys, gradio; print(sys.prefix, gradio.__file__)"], env=env,
                           capture_output=True, text=True, cwd=space)
    assert probe.returncode == 0 and probe.stdout.startswith(str(tmp_path / "venv")), probe.stderr[-2000:]
    with pytest.raises(subprocess.CalledProcessError):  # nothing of the project's environment leaks in
        subprocess.run([str(python), "-c", "import sklearn"], env=env, check=True, capture_output=True, cwd=space)

    port = free_port()
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen([str(python), "app.py", "--server_name", "127.0.0.1", "--server_port", str(port)],
                            env=env, cwd=space, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            try:
                if urllib.request.urlopen(url, timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, (tmp_path / "app.log").read_text()[-3000:]
            time.sleep(0.5)
        label, _, note = call_classify(url, EXAMPLES[0])
        assert label["label"] in ("neutral", "happy", "angry", "sad") and "s of audio" in note
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
