"""`after-hf <command> [--config recipe.yaml] [--flags]`: one entry point, one module per command.

Each command module exposes ``main(argv: list[str] | None)``; ``after-hf <command> --help`` prints
that command's options (built from its dataclass fields' help).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("after_hf.data.synth", "generate the offline emotional-speech corpus with espeak-ng"),
    "prepare": ("after_hf.data.prepare", "read corpora (IEMOCAP, RAVDESS, ...) into one manifest with splits"),
    "tapt": ("after_hf.tapt", "task-adaptive continued pre-training of wav2vec 2.0"),
    "finetune": ("after_hf.finetune", "fine-tune a wav2vec2 classifier (full or LoRA) on a manifest"),
    "evaluate": ("after_hf.evaluation", "UA / WA / macro-F1 and a confusion matrix on a manifest split"),
    "al": ("after_hf.al.loop", "active-learning loop: seed, score, query an oracle, retrain, repeat"),
    "deploy": ("after_hf.deploy", "train the deployable model (head / LoRA / full) on the labels an AL run collected"),
    "experiment": ("after_hf.experiment", "grid of strategies x cold starts x seeds x budgets + baselines -> report"),
    "report": ("after_hf.report", "results table and learning curves from AL run directories"),
    "push": ("after_hf.hub", "write a model card and push a model to the Hub (or --dry-run to a folder)"),
    "push-space": ("after_hf.hub_space", "push spaces_demo/ as a Gradio Space with the model id filled in"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: after-hf <command> [--config recipe.yaml] [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "Run `after-hf <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"after-hf: unknown command '{name}'.{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
