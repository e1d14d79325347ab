"""The Space in headless Chromium (apt's /usr/bin/chromium driven by Python Playwright; no browser download).

The app runs in a subprocess on 127.0.0.1 with a free port and its shipped bounds (20 MB, 30 s), analytics off,
no share link. Set AFTER_HF_SCREENSHOTS=DIR to keep the screenshots of both tabs.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from space_support import EXAMPLES, LABELS, SPACE_DIR, chromium, direct_probs, save_tiny_classifier, served_app

from after_hf.al import oracle
from after_hf.data.audio import load_audio

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LABEL_VALUE = "#classify-label [data-testid=label-output-value]"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, model_dir, run_dir, screenshot_dir) of the app running in a subprocess."""
    root = tmp_path_factory.mktemp("browser")
    model_dir = save_tiny_classifier(root / "model")
    run_dir = root / "run"
    oracle.write_queue(run_dir, 1, [{"id": f"synth/{p.stem}", "path": str(p), "guess": None, "probs": None,
                                     "uncertainty": 0.5} for p in EXAMPLES[:3]])
    with served_app(root, model_dir, run_dir) as (url, _):
        shots = Path(os.environ.get("AFTER_HF_SCREENSHOTS") or root / "screenshots")
        shots.mkdir(parents=True, exist_ok=True)
        yield url, model_dir, run_dir, shots


@pytest.fixture(scope="module")
def browser():
    with chromium() as instance:
        yield instance


@pytest.fixture
def page(browser, served):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(served[0])
    page.wait_for_selector("#classify-audio", timeout=60_000)
    yield page
    page.close()


def _upload(page, path: Path) -> None:
    page.locator("#classify-audio input[type=file]").set_input_files(str(path))


def _most_decided_example(model_dir: Path) -> tuple[Path, str]:
    """The example clip the model is most decided about (robust to float noise between processes) and its label."""
    probs = {path: direct_probs(model_dir, load_audio(path)) for path in EXAMPLES}
    example = max(probs, key=lambda path: np.diff(np.sort(probs[path]))[-1])
    return example, LABELS[int(np.argmax(probs[example]))]


def test_upload_an_example_shows_the_models_label(page, served):
    _, model_dir, _, shots = served
    example, expected = _most_decided_example(model_dir)

    _upload(page, example)
    page.wait_for_selector(LABEL_VALUE, timeout=60_000)
    shown = page.locator(LABEL_VALUE).inner_text().strip()
    assert shown in LABELS and shown == expected
    page.wait_for_selector("#classify-waveform img, #classify-waveform svg, #classify-waveform canvas", timeout=30_000)
    assert "s of audio" in page.locator("#classify-note").inner_text()
    page.screenshot(path=str(shots / "classify.png"), full_page=True)


def test_example_button_classifies_the_clip(page, served):
    example, expected = _most_decided_example(served[1])
    page.locator("#classify-examples button", has_text=example.stem).click()
    page.wait_for_selector(LABEL_VALUE, timeout=60_000)
    assert page.locator(LABEL_VALUE).inner_text().strip() == expected
    seconds = len(load_audio(example)) / 16000
    assert f"{seconds:.1f} s of audio" in page.locator("#classify-note").inner_text()


def _write_long_clip(path: Path) -> Path:
    import soundfile as sf

    t = np.arange(8000 * 31) / 8000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 8000, subtype="PCM_16")  # 31 s, 0.5 MB
    return path


@pytest.mark.parametrize("kind", ["not_audio", "too_long", "too_big"])
def test_refused_uploads_show_what_to_do(page, served, tmp_path, kind):
    shots = served[3]
    if kind == "not_audio":
        upload = tmp_path / "notes.wav"
        upload.write_text("these are meeting notes, not a recording\n" * 40)
        expected = ["“notes.wav” is not an audio file we can decode", "Upload a WAV, FLAC, MP3 or OGG"]
    elif kind == "too_long":
        upload = _write_long_clip(tmp_path / "lecture.wav")
        expected = ["The clip is 31.0 s long; this demo accepts at most 30 s", "Trim it"]
    else:  # refused by Gradio before it reaches the app (the server refuses it too: test_upload_bounds_on_the_server)
        upload = tmp_path / "huge.wav"
        upload.write_bytes(b"\0" * (21 * 1024 * 1024))
        expected = ["exceed the maximum allowed size of 20.0 Mb", "huge.wav", "Trim it", "ffmpeg -i in.wav -t 30 -ac 1"]
    _upload(page, upload)
    toast = page.locator("[data-testid=toast-text]").first  # Gradio's error toast
    toast.wait_for(timeout=60_000)
    shown = toast.inner_text()
    assert all(text in shown for text in expected), shown
    page.screenshot(path=str(shots / f"classify_{kind}.png"), full_page=True, animations="disabled")


def _http(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _post_upload(base: str, name: str, content: bytes) -> tuple[int, bytes]:
    boundary = "afterhfboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return _http(f"{base}gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def test_upload_bounds_on_the_server(served):
    """A client that skips the page's checks is still held to --max_file_size by the server."""
    status, body = _post_upload(served[0], "huge.wav", b"\0" * (21 * 1024 * 1024))
    assert status == 413 and b"maximum allowed size" in body
    status, body = _post_upload(served[0], "small.ogg", EXAMPLES[0].read_bytes())
    assert status == 200 and len(json.loads(body)) == 1


def test_browser_can_fetch_uploads_but_not_the_model_run_or_app_files(served):
    url, model_dir, run_dir, _ = served
    status, body = _post_upload(url, "clip.ogg", EXAMPLES[1].read_bytes())
    (uploaded,) = json.loads(body)
    status, content = _http(f"{url}gradio_api/file={uploaded}")
    assert status == 200 and content == EXAMPLES[1].read_bytes()
    for private in [model_dir / "model.safetensors", model_dir / "config.json", run_dir / "queue.json",
                    SPACE_DIR / "app.py", EXAMPLES[0], Path("/etc/passwd")]:
        status, _ = _http(f"{url}gradio_api/file={private}")
        assert status == 403, private


def test_label_two_queue_items_in_the_annotate_tab(page, served):
    """The page: blind (no id, no file name), the name typed once, a label by click and one by key."""
    _, _, run_dir, shots = served
    page.get_by_role("tab", name="Annotate").click()
    status = page.locator("#annotate-status")
    status.get_by_text("3 of 3 left").wait_for(timeout=60_000)
    assert not page.locator("#annotate-guess [data-testid=label-output-value]").is_visible()  # hidden until answered
    page.locator("#annotator-name textarea, #annotator-name input").first.fill("Ana")
    page.screenshot(path=str(shots / "annotate.png"), full_page=True)

    page.locator("#label-happy").click()
    status.get_by_text("2 of 3 left").wait_for(timeout=30_000)
    assert "the model had guessed" in page.locator("#annotate-feedback").inner_text()
    page.locator("#annotate-status").click()  # focus out of the name box: keys are shortcuts again
    page.keyboard.press(str(LABELS.index("sad") + 1))
    status.get_by_text("1 of 3 left").wait_for(timeout=30_000)

    saved = oracle.read_answers(run_dir)
    first, second = (f"synth/{p.stem}" for p in EXAMPLES[:2])
    assert [(a["id"], a["label"], a["annotator"]) for a in saved] == [(first, "happy", "Ana"), (second, "sad", "Ana")]
    assert [item["id"] for item in oracle.pending(run_dir)] == [f"synth/{EXAMPLES[2].stem}"]
    html = page.content()
    assert "synth/" not in html  # blind: the ids (here they are the emotion itself) never reach the page
