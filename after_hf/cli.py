"""`after-hf <command> [--config recipe.yaml] [--flags]`: one entry point, one module per command.

Each command module exposes ``main(argv: list[str] | None)``; ``after-hf <command> --help`` prints
that command's options (built from its dataclass fields' help, without importing torch or transformers).

This is the error boundary: an ``AfterHFError`` (a bad recipe, flag, file or directory) is printed as one
line, ``after-hf <command>: <message>``, with exit status 2; ``--debug`` or ``AFTER_HF_DEBUG=1`` shows the
traceback instead. ``run()`` is the same without the boundary (it raises), for tests and scripts.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

from .errors import DEBUG_FLAG, EXIT_INTERRUPTED, AfterHFError, debug_requested, report

# The pipeline in order: command -> (module, what it does). Each stage reads what the one before wrote.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("after_hf.data.synth", "generate the offline emotional-speech corpus with espeak-ng"),
    "prepare": ("after_hf.data.prepare", "read corpora (IEMOCAP, RAVDESS, ...) into one manifest with splits"),
    "tapt": ("after_hf.tapt", "task-adaptive continued pre-training of wav2vec 2.0 on the manifest's audio"),
    "al": ("after_hf.al.loop", "active-learning loop: seed, score, query an oracle, retrain, repeat"),
    "deploy": ("after_hf.deploy", "train the deployable model (head / LoRA / full) on the labels an AL run collected"),
    "push": ("after_hf.hub", "write a model card and push a model to the Hub (or --dry_run to a folder)"),
    "push-space": ("after_hf.hub_space", "push spaces_demo/ as a Gradio Space with the model id filled in"),
    "finetune": ("after_hf.finetune", "fine-tune a wav2vec2 classifier (full or LoRA) on a manifest's labels"),
    "evaluate": ("after_hf.evaluation", "UA / WA / macro-F1 and a confusion matrix on a manifest split"),
    "predict": ("after_hf.predict", "a trained classifier on unlabelled recordings (a folder or a manifest) -> CSV"),
    "experiment": ("after_hf.experiment", "every stage at once: grid of strategies x cold starts x seeds + baselines"),
    "report": ("after_hf.report", "results table and learning curves from an experiment's AL runs"),
}
PIPELINE = "corpora (or synth) -> prepare -> tapt -> al -> deploy -> push / push-space"


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: after-hf <command> [--config recipe.yaml] [options] [--debug]", "",
             f"the pipeline: {PIPELINE}", "(finetune: whole-classifier fine-tuning on all of a manifest's labels; "
             "evaluate: scores any classifier)", "", "commands (module):"]
    for name, (module, desc) in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {desc} ({module.replace('.', '/')}.py)")
    lines += ["", "Run `after-hf <command> --help` for the options of one command. Errors print one line;",
              f"{DEBUG_FLAG} (or AFTER_HF_DEBUG=1) shows the traceback."]
    return "\n".join(lines)


class UnknownCommand(AfterHFError):
    pass


def run(argv: list[str]) -> int:
    """Dispatch ``argv`` (``[command, *options]``) to the command's ``main``; errors propagate."""
    name, rest = argv[0], [a for a in argv[1:] if a != DEBUG_FLAG]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownCommand(f"unknown command '{name}': {hint}the commands are {', '.join(COMMANDS)} "
                             f"(`after-hf --help` describes them).")
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    return guarded(argv[0] if argv[0] in COMMANDS else "", run, argv)


def guarded(command: str, function: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """``function(argv)`` inside the error boundary: a user error is one line and exit status 2."""
    debug = debug_requested(argv)
    try:
        return int(function(argv) or 0)
    except AfterHFError as err:
        if debug:
            raise
        return report(command, err)
    except BrokenPipeError:  # `after-hf ... | head`: the reader left early; no traceback (Python's signal docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\nafter-hf {command}: interrupted. `al` and `tapt` continue where they stopped when run again with "
              f"--resume; `experiment` skips the stages that finished.", file=sys.stderr)
        return EXIT_INTERRUPTED


def command_main(command: str, function: Callable[[list[str]], int | None]) -> None:
    """``python -m after_hf.<module>`` / ``accelerate launch -m after_hf.<module>``: the boundary of ``after-hf``."""
    argv = sys.argv[1:]
    sys.exit(guarded(command, lambda a: function([x for x in a if x != DEBUG_FLAG]), argv))


if __name__ == "__main__":
    sys.exit(main())
