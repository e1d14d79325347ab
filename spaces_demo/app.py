"""Speech emotion recognition Space (after-hf): classify a recording, and label what an active-learning run asks for.

    python app.py --model DIR_OR_HUB_ID [--run_dir RUN] [--max_seconds 30] [--server_port 7860]
    AFTER_HF_MODEL=runs/demo/final/model AFTER_HF_RUN=runs/demo/al/RUN python spaces_demo/app.py   # ~ `make space`

Classify tab: upload a file or record from the microphone; any format FFmpeg decodes, any rate, any number of
channels, is converted to mono float32 16 kHz. Clips longer than ``--window_seconds`` are classified in consecutive
windows whose probabilities are averaged (weighted by window length); clips longer than ``--max_seconds``, silence,
and files that are not audio are refused with a message that says what to do.

Annotate tab (only when a run is attached): the human oracle of ``after-hf al --oracle human``, a labelling page
for real annotators. Blind by default: no sample id or file name on the page, and the model's guess is hidden until
the clip is answered (a switch shows it before). One key per label (1, 2, ...), S to skip, U to undo the last
answer. Each browser tab leases the clip it shows for ``--lease_minutes``, so two tabs or two people never get the
same clip at once. The annotator's name (remembered by the browser) is stored with every answer, and answers from
several people to one clip are all kept (``after_hf.al.oracle``); the AL loop reads them when it is resumed.

Safety: the model loads with safetensors only and no remote code; uploads are bounded by ``--max_file_size`` and
``--max_seconds``; the browser can fetch only Gradio's own upload/cache files (the example clips are copied there,
queued audio is decoded here and sent as audio data, never served from its path; ``allowed_paths`` is empty and the
model and run folders are blocked); no share links, analytics off.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported: never phone home

from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from after_hf import SAMPLING_RATE  # noqa: E402
from after_hf.al import oracle  # noqa: E402
from after_hf.config import parse_args  # noqa: E402
from after_hf.data.audio import AudioError, check_waveform, duration_seconds, load_audio  # noqa: E402
from after_hf.model_info import (METRICS_FILE, PROVENANCE_FILE, GENERATED_NOTICE, ModelInfoError,  # noqa: E402
                                 ModelMetrics, Provenance, chance_levels, labels_sentence, read_metrics,
                                 read_provenance)
from after_hf.models import load_feature_extractor, uses_attention_mask  # noqa: E402

DEFAULT_MODEL = None  # `after-hf push-space` writes the model id (or the bundled model folder) here
HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"


@dataclass
class AppArguments:
    model: Optional[str] = field(default=None, metadata={
        "help": "Classifier to serve: a save_pretrained directory or a Hub id (default: $AFTER_HF_MODEL)."})
    run_dir: Optional[str] = field(default=None, metadata={"help": "Active-learning run directory whose queue the "
                                                                     "Annotate tab serves (default: $AFTER_HF_RUN)."})
    lease_minutes: float = field(default=5.0, metadata={"help": "Annotate: how long a clip stays reserved for the "
                                                                   "tab that shows it (another tab gets other clips)."})
    max_seconds: float = field(default=30.0, metadata={"help": "Longest clip accepted, in seconds."})
    window_seconds: float = field(default=10.0, metadata={
        "help": "Longer clips are classified in windows of this length and their probabilities averaged."})
    max_file_size: str = field(default="20mb", metadata={"help": "Largest upload Gradio accepts (e.g. 20mb)."})
    silence_dbfs: float = field(default=-55.0, metadata={"help": "Clips whose RMS level is below this (dB full scale) "
                                                                 "are refused as silence."})
    server_name: Optional[str] = field(default=None, metadata={"help": "Address to listen on (default: Gradio's, "
                                                                         "127.0.0.1 or $GRADIO_SERVER_NAME)."})
    server_port: Optional[int] = field(default=None, metadata={"help": "Port (default: $GRADIO_SERVER_PORT or 7860)."})


class InputError(ValueError):
    """Audio the app cannot classify; the message is shown to the user as is."""


def trim_hint(max_seconds: float) -> str:
    """How to make a recording fit (seconds and size): the first seconds, mono, 16 kHz."""
    return (f"Trim it and try again, e.g. `ffmpeg -i in.wav -t {max_seconds:g} -ac 1 -ar 16000 out.wav` "
            f"(the first {max_seconds:g} s, mono, 16 kHz: about {max_seconds * 32 / 1000:.1f} MB).")


# -- audio in ----------------------------------------------------------------------------------------------

def _to_float(data: np.ndarray) -> np.ndarray:
    """PCM of any dtype -> float32 in [-1, 1]."""
    if data.dtype.kind == "f":
        return data.astype(np.float32, copy=False)
    if data.dtype.kind == "u":  # unsigned PCM (8-bit WAV) is centred on half the range
        half = float(2 ** (8 * data.dtype.itemsize - 1))
        return ((data.astype(np.float64) - half) / half).astype(np.float32)
    if data.dtype.kind == "i":
        return (data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))).astype(np.float32)
    raise InputError(f"Unsupported audio sample type {data.dtype}: upload a WAV, FLAC, MP3 or OGG file.")


def numpy_to_mono_16k(sample_rate: int, data: np.ndarray, max_seconds: float) -> np.ndarray:
    """Gradio's ``(rate, samples[, channels])`` (int16 for type="numpy") -> mono float32 at 16 kHz."""
    data = np.asarray(data)
    if data.ndim == 2 and data.shape[0] <= 8 < data.shape[1]:  # channels-first: turn into (samples, channels)
        data = data.T
    if data.ndim not in (1, 2) or data.size == 0 or not sample_rate or sample_rate <= 0:
        raise InputError("The recording is empty: record or upload a clip of speech.")
    seconds = data.shape[0] / sample_rate
    if seconds > max_seconds:
        raise InputError(f"The clip is {seconds:.1f} s long; this demo accepts at most {max_seconds:g} s. "
                         f"{trim_hint(max_seconds)}")
    wave = _to_float(data)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if sample_rate != SAMPLING_RATE:
        import torchaudio.functional as AF

        wave = AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), int(sample_rate), SAMPLING_RATE).numpy()
    return np.ascontiguousarray(wave, dtype=np.float32)


def file_to_mono_16k(path: str | Path, max_seconds: float) -> np.ndarray:
    """Decode an uploaded file (any format FFmpeg reads) after checking its duration."""
    try:
        seconds = duration_seconds(path)
    except AudioError as err:
        raise InputError(f"“{Path(path).name}” is not an audio file we can decode ({err.reason}). "
                         f"Upload a WAV, FLAC, MP3 or OGG recording of speech.") from err
    if seconds > max_seconds:
        raise InputError(f"The clip is {seconds:.1f} s long; this demo accepts at most {max_seconds:g} s. "
                         f"{trim_hint(max_seconds)}")
    try:
        return load_audio(path, check=False)
    except AudioError as err:
        raise InputError(f"“{Path(path).name}” could not be decoded ({err.reason}). "
                         f"Upload a WAV, FLAC, MP3 or OGG recording of speech.") from err


def to_mono_16k(audio, max_seconds: float) -> np.ndarray:
    """Whatever Gradio hands over (a file path or a ``(rate, array)`` tuple) -> mono float32 16 kHz."""
    if audio is None:
        raise InputError("No audio: upload a file, record from the microphone, or click an example.")
    if isinstance(audio, (str, Path)):
        return file_to_mono_16k(audio, max_seconds)
    if isinstance(audio, tuple) and len(audio) == 2:
        return numpy_to_mono_16k(audio[0], audio[1], max_seconds)
    raise InputError(f"Unexpected audio value of type {type(audio).__name__}: upload an audio file.")


def check_usable(wave: np.ndarray, silence_dbfs: float) -> None:
    """Refuse too-short, corrupt or silent audio with a message that says what to do."""
    try:
        check_waveform(wave, "the clip")
    except AudioError as err:
        raise InputError(f"The clip cannot be classified: {err.reason}. Upload a longer recording of speech.") from err
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    level = 20 * math.log10(rms) if rms > 0 else -math.inf
    if level < silence_dbfs:
        shown = "-inf" if level == -math.inf else f"{level:.0f}"
        raise InputError(f"The clip is silent (level {shown} dBFS, below {silence_dbfs:g} dBFS): "
                         f"check the microphone or upload a recording with speech.")


# -- the model ---------------------------------------------------------------------------------------------

class EmotionClassifier:
    """An audio-classification model + its feature extractor; probabilities for a 16 kHz waveform."""

    def __init__(self, source: str):
        from transformers import AutoModelForAudioClassification

        self.source = source
        self.model = AutoModelForAudioClassification.from_pretrained(
            source, use_safetensors=True, trust_remote_code=False
        ).eval()
        self.feature_extractor = load_feature_extractor(source, self.model.config)
        id2label = self.model.config.id2label
        self.labels = [str(id2label[i]) for i in sorted(id2label, key=int)]

    @torch.inference_mode()
    def window_probs(self, wave: np.ndarray) -> np.ndarray:
        inputs = self.feature_extractor(wave, sampling_rate=SAMPLING_RATE, return_tensors="pt",
                                        return_attention_mask=uses_attention_mask(self.model.config))
        logits = self.model(**inputs).logits[0]
        return torch.softmax(logits.float(), dim=-1).numpy()

    def probs(self, wave: np.ndarray, window_seconds: float) -> tuple[np.ndarray, int]:
        """Class probabilities of the whole clip and the number of windows it was cut into."""
        size = max(int(window_seconds * SAMPLING_RATE), 1)
        starts = list(range(0, len(wave), size))
        if len(starts) > 1 and len(wave) - starts[-1] < 0.25 * size:  # fold a short tail into the last window
            starts.pop()
        pieces = [wave[s: starts[i + 1] if i + 1 < len(starts) else len(wave)] for i, s in enumerate(starts)]
        weights = np.array([len(p) for p in pieces], dtype=np.float64)
        probs = np.stack([self.window_probs(p) for p in pieces])
        return (weights[:, None] * probs).sum(0) / weights.sum(), len(pieces)


def entropy(probs: np.ndarray) -> float:
    """Normalised entropy in [0, 1]: 0 = certain, 1 = uniform."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return float(-(p * np.log(p)).sum() / math.log(len(p))) if len(p) > 1 else 0.0


def waveform_figure(wave: np.ndarray, title: str = "") -> Figure:
    """The waveform as a min/max envelope (fast for long clips)."""
    fig = Figure(figsize=(7, 2.2), dpi=100)
    ax = fig.add_subplot()
    columns = 1500
    if len(wave) > 2 * columns:
        usable = len(wave) // columns * columns
        blocks = wave[:usable].reshape(columns, -1)
        times = (np.arange(columns) + 0.5) * blocks.shape[1] / SAMPLING_RATE
        ax.fill_between(times, blocks.min(1), blocks.max(1), color="#4f46e5", linewidth=0)
    else:
        ax.plot(np.arange(len(wave)) / SAMPLING_RATE, wave, color="#4f46e5", linewidth=0.8)
    ax.set_xlim(0, len(wave) / SAMPLING_RATE)
    ax.set_xlabel("time (s)")
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


# -- what the page says about the model ---------------------------------------------------------------------------

def _model_files(source: str) -> tuple[ModelMetrics | None, Provenance | None]:
    """metrics.json and after_hf_provenance.json of a local model folder, or of a Hub model (cached or downloaded)."""
    folder = Path(source)
    if not folder.is_dir():
        from huggingface_hub import hf_hub_download

        folder = None
        for name in (METRICS_FILE, PROVENANCE_FILE):
            try:
                folder = Path(hf_hub_download(source, name)).parent
            except Exception:  # absent from the repo, offline and not cached: the panel says less
                continue
        if folder is None:
            return None, None
    try:
        return read_metrics(folder), read_provenance(folder)
    except ModelInfoError:
        return None, None


def describe_model(source: str) -> tuple[str, str]:
    """(the model's name for the header, the "About this model" markdown): its Hub id or recorded name, never a
    local path; training data, labels, test UA beside the chance level, from the files its card is built from."""
    metrics, provenance = _model_files(source)
    local = Path(source).is_dir()
    folder = Path(source).resolve()
    title = (provenance.model_name if provenance else "/".join(folder.parts[-2:])) if local else \
        f"[{source}](https://huggingface.co/{source})"
    lines = []
    if provenance:
        data = provenance.training_data
        if data.generated:
            lines.append(GENERATED_NOTICE)
        lines.append(f"**Training data:** {data.name}" + (f", {data.protocol} split" if data.protocol else "") + ".")
        lines.append(f"**Labels:** {labels_sentence(provenance.labels)}")
        lines.append(f"**Model:** {provenance.kind} on `{provenance.base_model}`"
                     + (" after task-adaptive pre-training (TAPT)." if provenance.tapt else "."))
    test = metrics.splits.get("test") if metrics else None
    if test:
        chance = chance_levels(metrics, "test")
        score = f"**Test UA {test['ua']:.3f}** (WA {test['wa']:.3f}, macro-F1 {test['macro_f1']:.3f})"
        if chance:
            score += (f"; chance level UA {chance['ua']:.3f}, WA {chance['wa']:.3f} ({chance['clips']} test clips: "
                      f"{chance['balance']})")
        lines.append(score + ".")
        alone = test.get("single_clip")
        if isinstance(alone, dict) and alone.get("ua") is not None:  # a speaker-normalised model (after-hf deploy)
            lines.append(f"These scores centre each test clip on its speaker's other clips; this page sees one "
                         f"upload at a time and scores it alone, which on the test set gives **UA {alone['ua']:.3f}**. "
                         f"`after-hf predict` scores a folder of each speaker's clips together.")
    if not lines:
        lines.append("This model folder records no training data or test scores (no metrics.json / "
                     "after_hf_provenance.json): `after-hf deploy` writes them.")
    return title, "\n\n".join(lines)


# -- the two tabs' functions (plain Python: unit-tested without a browser) ---------------------------------

class SpaceApp:
    def __init__(self, args: AppArguments):
        self.args = args
        self.classifier = EmotionClassifier(args.model)
        self.labels = self.classifier.labels
        self.run_dir = Path(args.run_dir) if args.run_dir else None
        self.title, self.about = describe_model(args.model)
        self.guesses: dict[str, dict] = {}  # sample id -> its guess when shown (revealed after the answer)

    # Classify tab
    def classify(self, audio) -> tuple[dict[str, float], Figure, str]:
        """``(label -> probability, waveform figure, note)``; raises InputError for unusable audio."""
        wave = to_mono_16k(audio, self.args.max_seconds)
        check_usable(wave, self.args.silence_dbfs)
        probs, windows = self.classifier.probs(wave, self.args.window_seconds)
        seconds = len(wave) / SAMPLING_RATE
        best = int(np.argmax(probs))
        note = f"**{self.labels[best]}** ({probs[best]:.0%}) · {seconds:.1f} s of audio"
        if windows > 1:
            note += (f" · classified in {windows} windows of up to {self.args.window_seconds:g} s; "
                     f"the probabilities are their length-weighted mean")
        label_probs = {name: float(p) for name, p in zip(self.labels, probs)}
        return label_probs, waveform_figure(wave, f"{seconds:.1f} s, mono 16 kHz"), note

    # Annotate tab
    def item_guess(self, item: dict, wave: np.ndarray | None) -> dict[str, float] | None:
        """The queue's own probabilities if the AL loop stored them, else the served model's on the audio."""
        probs = item.get("probs")
        if isinstance(probs, dict) and probs:
            return {str(k): float(v) for k, v in probs.items()}
        if isinstance(probs, (list, tuple)) and len(probs) == len(self.labels):
            return {name: float(p) for name, p in zip(self.labels, probs)}
        if wave is None:
            return None
        p, _ = self.classifier.probs(wave, self.args.window_seconds)
        return {name: float(v) for name, v in zip(self.labels, p)}

    def _no_item_status(self, queue: dict, left: int) -> str:
        total, resume = len(queue["items"]), queue.get("resume") or f"after-hf al ... --out {self.run_dir} --resume"
        if total == 0:
            nested = sorted(str(q.parent) for q in self.run_dir.glob("*/*/queue.json"))[:5]
            if nested:  # e.g. an experiment directory whose AL runs live in al/<run>
                return (f"{self.run_dir} holds no queue of its own. Runs below it that have one: "
                        + ", ".join(f"`{n}`" for n in nested) + "; start the app with one of them as `--run_dir`.")
            return (f"The queue of {self.run_dir} is empty. Start a human-labelled run there, e.g. `after-hf al "
                    f"--manifest MANIFEST --backbone BACKBONE --oracle human --seed_size 8 --out {self.run_dir}`.")
        if queue.get("closed"):
            return f"Round {queue['round']} is being trained on; reload the queue in a moment for the next round."
        if left:
            return (f"Round {queue['round']}: the {left} clips left are being labelled by others right now; reload "
                    f"the queue in a few minutes (a reserved clip comes back after {self.args.lease_minutes:g} min).")
        return f"All {total} items of round {queue['round']} are answered. Train on them: `{resume}`"

    def next_item(self, session: str = "", annotator: str = "") -> dict:
        """What the Annotate tab shows a browser session: the clip leased to it, or why there is none. No sample id
        or file name: the view's ``id`` stays on the server (in a gr.State)."""
        view = {"id": None, "audio": None, "guess": None, "status": "", "details": "", "feedback": ""}
        if self.run_dir is None:
            view["status"] = ("No active-learning run is attached. Start the app with `--run_dir RUN` (or "
                              "`AFTER_HF_RUN=RUN`) where RUN is an `after-hf al --oracle human` output directory.")
            return view
        try:
            queue = oracle.read_queue(self.run_dir)
            item = oracle.claim_next(self.run_dir, session, annotator.strip(), self.args.lease_minutes)
            left = len(oracle.pending(self.run_dir))
        except Exception as err:  # a corrupt queue/annotations file: StateError names the fix
            view["status"] = f"Cannot read the queue of {self.run_dir}: {err}"
            return view
        if item is None:
            view["status"] = self._no_item_status(queue, left)
            return view
        others = oracle.leased_by_others(self.run_dir, session)
        view["id"] = item["id"]
        view["status"] = (f"Round {queue['round']}: **{left} of {len(queue['items'])} left**"
                          + (f" · {others} being labelled by others" if others else ""))
        wave = None
        try:
            wave = load_audio(item["path"])
            pcm = np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)  # int16: Gradio converts (and warns) nothing
            view["audio"] = (SAMPLING_RATE, pcm)
        except AudioError as err:
            view["details"] = f"This clip cannot be played ({err.reason}). Skip it."
        view["guess"] = self.guesses[item["id"]] = self.item_guess(item, wave)
        if len(self.guesses) > 4096:
            self.guesses.pop(next(iter(self.guesses)))
        score = item.get("uncertainty")
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            view["details"] = (f"The query strategy's score for this clip: {score:.3g}. " + view["details"]).strip()
        return view

    def answer(self, sample_id: str | None, label: str | None, session: str = "", annotator: str = "") -> dict:
        """Save one answer (``label=None`` = skip) with the annotator's name, then the session's next clip. The
        feedback line reveals what the model had guessed for the clip just answered."""
        if sample_id is not None and not annotator.strip():
            raise InputError("Type your name in the box above first: it is stored with each answer so that the "
                             "answers of different people are told apart.")
        feedback = ""
        if sample_id is not None and self.run_dir is not None:
            try:
                guess = self.guesses.get(sample_id) or self.item_guess(
                    next(i for i in oracle.read_queue(self.run_dir)["items"] if i["id"] == sample_id), None)
                oracle.save_annotation(self.run_dir, sample_id, label, self.labels, annotator.strip(), session)
                top = f"; the model had guessed **{max(guess, key=guess.get)}**" if guess else ""
                feedback = ((f"Saved: **{label}**{top}." if label else "Skipped.")
                            + " Press U (or Undo) to take it back.")
            except (KeyError, StopIteration):  # the loop closed the round meanwhile: show where things stand
                feedback = "That clip's round was already taken for training; your answer was not needed."
        view = self.next_item(session, annotator)
        view["feedback"] = feedback
        return view

    def undo(self, session: str = "", annotator: str = "") -> dict:
        """Withdraw this session's last answer (while its round is open) and show that clip again."""
        undone = oracle.undo_last(self.run_dir, session) if self.run_dir is not None else None
        view = self.next_item(session, annotator)
        view["feedback"] = (f"Undone: your answer **{undone['label'] or 'skip'}** was withdrawn; answer this clip "
                            f"again." if undone else "Nothing to undo (no answer from this tab in the open round).")
        return view

    def rename(self, session: str, annotator: str) -> None:
        if self.run_dir is not None and session:
            oracle.rename_holder(self.run_dir, session, annotator.strip())

    def release(self, session: str) -> None:
        if self.run_dir is not None and session:
            oracle.release(self.run_dir, session)


# -- the user interface ------------------------------------------------------------------------------------

def shortcut_keys(labels: list[str]) -> dict[str, str]:
    """Keyboard key -> button elem_id: 1..9 for the labels in order, S skip, U undo."""
    keys = {str(i + 1): f"label-{name}" for i, name in enumerate(labels[:9])}
    return {**keys, "s": "label-skip", "u": "annotate-undo"}


PAGE_JS = """() => {
  const keys = KEYS;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
    const page = document.getElementById("annotate-status");
    const button = document.getElementById(keys[event.key.toLowerCase()]);
    if (!page || page.offsetParent === null || !button || button.disabled) return;  // only on the Annotate tab
    event.preventDefault();
    button.click();
  });
  new MutationObserver(() => {  // Gradio refuses an oversized file in the browser: add how to trim it
    for (const toast of document.querySelectorAll("[data-testid=toast-text]")) {
      if (toast.textContent.includes("maximum allowed size") && !toast.dataset.afterHf) {
        toast.dataset.afterHf = "1";
        toast.textContent += " " + HINT;
      }
    }
  }).observe(document.body, {childList: true, subtree: true});
}"""


def page_js(app: SpaceApp) -> str:
    import json

    hint = trim_hint(app.args.max_seconds).replace("`", "")
    return PAGE_JS.replace("KEYS", json.dumps(shortcut_keys(app.labels))).replace("HINT", json.dumps(hint))


def build_annotate_tab(app: SpaceApp) -> None:
    keys = {v: k.upper() for k, v in shortcut_keys(app.labels).items()}

    def show(view: dict, show_guess: bool):
        has_item = view["id"] is not None
        buttons = [gr.Button(interactive=has_item) for _ in range(len(app.labels) + 1)]
        guess = view["guess"] if show_guess and has_item else None  # never sent to the browser unless asked for
        details = view["details"]
        if show_guess and view["guess"]:
            top = max(view["guess"], key=view["guess"].get)
            details = f"Model's guess: **{top}** ({view['guess'][top]:.0%}). {details}".strip()
        return (view["id"], view["status"], view["audio"], gr.Label(value=guess, visible=guess is not None), details,
                view["feedback"], *buttons)

    def guarded(fn):
        def run(*args):
            try:
                return fn(*args)
            except InputError as err:
                raise gr.Error(str(err), print_exception=False) from err
        return run

    with gr.Tab("Annotate", id="annotate"):
        current = gr.State(None)  # the shown clip's id: kept on the server, never in the page
        remembered = gr.BrowserState("", storage_key="after_hf_annotator")
        with gr.Row():
            name = gr.Textbox(label="Your name (stored with each answer)", max_length=60, elem_id="annotator-name")
            show_guess = gr.Checkbox(False, label="Show the model's guess before I answer", elem_id="show-guess")
        status = gr.Markdown(elem_id="annotate-status")
        with gr.Row():
            with gr.Column():
                player = gr.Audio(label="Clip to label", interactive=False, type="numpy", buttons=[],
                                  elem_id="annotate-audio")
                details = gr.Markdown(elem_id="annotate-details")
            guess = gr.Label(num_top_classes=len(app.labels), label="Model's guess", visible=False,
                             elem_id="annotate-guess")
        with gr.Row():
            buttons = [gr.Button(f"{name_} ({keys[f'label-{name_}']})" if f"label-{name_}" in keys else name_,
                                 variant="primary", elem_id=f"label-{name_}") for name_ in app.labels]
            buttons.append(gr.Button("Skip (S)", variant="secondary", elem_id="label-skip"))
            undo = gr.Button("Undo (U)", variant="secondary", elem_id="annotate-undo")
        feedback = gr.Markdown(elem_id="annotate-feedback")
        refresh = gr.Button("Reload the queue", size="sm", elem_id="annotate-reload")
        meaning = {"label-skip": "skip", "annotate-undo": "undo"}
        gr.Markdown("Keys: " + " · ".join(f"{k.upper()} {meaning.get(v, v[len('label-'):])}"
                                          for k, v in shortcut_keys(app.labels).items()) + " (not while typing).")
        outputs = [current, status, player, guess, details, feedback, *buttons]

        def answer_with(label):
            def answer(sample_id, who, shown, request: gr.Request):
                return show(guarded(app.answer)(sample_id, label, request.session_hash, who), shown)
            return answer

        def take_back(who, shown, request: gr.Request):
            return show(app.undo(request.session_hash, who), shown)

        def reload(who, shown, request: gr.Request):
            return show(app.next_item(request.session_hash, who), shown)

        for button, label in zip(buttons, [*app.labels, None]):
            button.click(answer_with(label), inputs=[current, name, show_guess], outputs=outputs,
                         api_name=f"annotate_{label or 'skip'}")
        undo.click(take_back, inputs=[name, show_guess], outputs=outputs, api_name="annotate_undo")
        refresh.click(reload, inputs=[name, show_guess], outputs=outputs, api_name="annotate_reload")
        show_guess.change(reload, inputs=[name, show_guess], outputs=outputs, api_name=False)
        def named(who, request: gr.Request):  # the clip this tab holds is now this person's
            app.rename(request.session_hash, who)
            return who

        for done_typing in (name.blur, name.submit):  # remembered by the browser (BrowserState)
            done_typing(named, inputs=name, outputs=remembered, api_name=False)
    return remembered, name, show_guess, outputs, reload


def build_ui(app: SpaceApp) -> gr.Blocks:
    def classify_ui(audio):
        if audio is None:  # the input was cleared
            return None, None, ""
        try:
            return app.classify(audio)
        except InputError as err:
            raise gr.Error(str(err), print_exception=False) from err  # a toast; 6.31 titles it "Error"

    with gr.Blocks(title="Speech emotion recognition (after-hf)") as demo:
        gr.Markdown(f"# Speech emotion recognition\nModel: {app.title} · classes: {', '.join(app.labels)}",
                    elem_id="model-header")
        with gr.Accordion("About this model", open=False, elem_id="about-model"):
            gr.Markdown(app.about)
        with gr.Tab("Classify", id="classify"):
            with gr.Row():
                with gr.Column():
                    audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech",
                                        buttons=[], elem_id="classify-audio")
                    gr.Markdown(f"Up to {app.args.max_seconds:g} s of speech and {app.args.max_file_size.upper()}, any "
                                f"format and sampling rate (converted to mono 16 kHz). Clips longer than "
                                f"{app.args.window_seconds:g} s are classified in windows whose probabilities are "
                                f"averaged. {trim_hint(app.args.max_seconds)}")
                with gr.Column():
                    label_out = gr.Label(num_top_classes=len(app.labels), label="Emotion", elem_id="classify-label")
                    note_out = gr.Markdown(elem_id="classify-note")
            plot_out = gr.Plot(label="Waveform", elem_id="classify-waveform")
            outputs = [label_out, plot_out, note_out]
            examples = sorted(EXAMPLES_DIR.glob("*.ogg")) + sorted(EXAMPLES_DIR.glob("*.wav"))
            if examples:
                gr.Examples([[str(p)] for p in examples], inputs=[audio_in], label="Examples (synthetic speech)",
                            example_labels=[p.stem for p in examples], elem_id="classify-examples")
            audio_in.change(classify_ui, inputs=audio_in, outputs=outputs, api_name="classify")
        if app.run_dir is not None:  # no run attached: no Annotate tab at all
            remembered, name, show_guess, view_outputs, reload = build_annotate_tab(app)

            def first_view(who, shown, request: gr.Request):
                return who, *reload(who, shown, request)

            demo.load(first_view, inputs=[remembered, show_guess], outputs=[name, *view_outputs], api_name=False)

            def release(request: gr.Request):  # the tab closed: its clip goes back to the others at once
                app.release(getattr(request, "session_hash", None) or "")

            demo.unload(release)
    return demo


def resolve_args(argv: list[str] | None = None) -> AppArguments:
    (args,) = parse_args([AppArguments], argv, prog="app.py", description=__doc__)
    shipped = "model" if (HERE / "model" / "config.json").is_file() else None  # the demo model (make_examples.py)
    args.model = args.model or os.environ.get("AFTER_HF_MODEL") or DEFAULT_MODEL or shipped
    args.run_dir = args.run_dir or os.environ.get("AFTER_HF_RUN") or None
    if not args.model:
        raise SystemExit("No model: pass --model DIR_OR_HUB_ID or set AFTER_HF_MODEL (e.g. runs/demo/final/model "
                         "after `make demo`).")
    bundled = not Path(args.model).is_absolute() and (HERE / args.model).is_dir() and not Path(args.model).exists()
    if args.model and bundled:
        args.model = str(HERE / args.model)  # a model folder bundled next to app.py by `after-hf push-space`
    looks_local = Path(args.model).is_absolute() or args.model.startswith((".", "~")) or args.model.count("/") > 1
    if looks_local and not Path(args.model).expanduser().is_dir():  # a Hub id is "name" or "org/name"
        raise SystemExit(f"Model directory {args.model} does not exist. Train the demo classifier first with "
                         f"`make demo` (it writes runs/demo/final/model), or pass --model / set AFTER_HF_MODEL to a "
                         f"saved classifier directory or a Hub id.")
    if args.run_dir and not Path(args.run_dir).is_dir():
        raise SystemExit(f"--run_dir {args.run_dir} is not a directory: pass an `after-hf al --oracle human` output "
                         f"directory, or leave it out to disable the Annotate tab.")
    if args.window_seconds <= 0 or args.max_seconds <= 0:
        raise SystemExit("--max_seconds and --window_seconds must be positive.")
    return args


def launch(app: SpaceApp, demo: gr.Blocks, **kwargs):
    """Launch with the app's bounds: upload size, file access, no share link, no server-side rendering.

    The browser can fetch only files in Gradio's upload/cache folders (uploads, and the example clips and queued audio,
    which Gradio copies there); ``allowed_paths`` stays empty and the model and run folders are blocked outright.
    """
    blocked = [str(app.run_dir.resolve())] if app.run_dir else []
    if Path(app.args.model).is_dir():
        blocked.append(str(Path(app.args.model).resolve()))
    return demo.launch(
        server_name=app.args.server_name, server_port=app.args.server_port, share=False, js=page_js(app),
        max_file_size=app.args.max_file_size, allowed_paths=[], blocked_paths=blocked,
        ssr_mode=False, footer_links=["gradio"], theme=gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                                                    font_mono=["ui-monospace", "monospace"]),
        **kwargs,
    )


def main(argv: list[str] | None = None) -> None:
    args = resolve_args(argv)
    try:
        app = SpaceApp(args)
    except (OSError, ValueError) as err:  # not a classifier folder, no safetensors, a Hub id while offline
        raise SystemExit(f"Cannot load the classifier {args.model}: {err}\nThe Space needs a folder written by "
                         f"`after-hf finetune` / `make demo` (model.safetensors + config.json), or a Hub id with "
                         f"HF_HUB_OFFLINE=0.") from err
    launch(app, build_ui(app))


if __name__ == "__main__":
    main()
