"""Dataclass arguments + YAML recipes, the way transformers' example scripts do it.

Every entry point declares its options as dataclasses whose ``metadata={"help": ...}`` is the
``--help`` text. ``--config recipe.yaml`` supplies values (the section named after the command if
the file has one, else the whole file); flags given on the command line override the recipe.
Unknown keys and wrong types fail fast with the closest valid key named.

The parser follows ``transformers.HfArgumentParser``'s conventions (``--flag`` or ``--flag true/false`` for
booleans, ``--no_flag`` for those that default to true, ``nargs="+"`` lists, ``Literal`` choices, dashes or
underscores) but is built here from the standard library, so that ``after-hf <command> --help`` imports
neither torch nor transformers (transformers' parser alone costs seconds of imports). Unlike argparse's
default, abbreviated flags are refused (``--head_epoch`` is not silently ``--head_epochs``), and a
parsing error is a ``ConfigError`` (one line, exit 2) instead of a usage dump.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import DEBUG_FLAG, DEBUG_ENV, AfterHFError


class ConfigError(AfterHFError, ValueError):
    """A recipe or flag that cannot be used as given; the message says what to change."""


def load_recipe(path: str | Path, section: str | None = None, drop: Sequence[str] = ()) -> dict[str, Any]:
    """Read a YAML recipe; return ``data[section]`` when that section exists, else the whole mapping.

    ``drop``: keys the caller sets itself (e.g. an experiment's ``manifest`` / ``output_dir``), left out.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found: pass an existing YAML file to --config (see recipes/).")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of option: value, got {type(data).__name__}.")
    if section and isinstance(data.get(section), dict):
        data = dict(data[section])
    elif section and data and all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(
            f"recipe {path} has sections {sorted(data)} but no '{section}:' section for this command; add one "
            f"(or pass the recipe written for `{section.replace('_', '-')}`)."
        )
    return {k: v for k, v in data.items() if k not in drop}


def load_checked_recipe(path: str | Path, section: str, dataclass_types: Sequence[type],
                        drop: Sequence[str] = ()) -> dict[str, Any]:
    """``load_recipe`` + ``check_recipe``: the recipe's options (minus ``drop``), every key and type checked."""
    values = load_recipe(path, section, drop)
    check_recipe(values, dataclass_types, f"recipe {path}")
    return values


def _field_names(dataclass_types: Sequence[type]) -> dict[str, dataclasses.Field]:
    return {f.name: f for dc in dataclass_types for f in dataclasses.fields(dc) if f.init}


def _type_ok(value: Any, annotation: Any) -> bool:
    """A permissive check of a YAML value against a field annotation (str, int, float, bool, list, dict, Optional,
    Literal)."""
    if isinstance(annotation, str):  # postponed annotations are resolved by the caller
        return True
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple, Sequence):
        args = typing.get_args(annotation)
        return isinstance(value, (list, tuple)) and (not args or all(_type_ok(v, args[0]) for v in value))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if isinstance(annotation, type) and issubclass(annotation, (str,)):  # e.g. Enum of str
        return isinstance(value, str)
    return True


# One idea, several names: the commands follow their models (transformers' --output_dir / --model_name_or_path for
# tapt and finetune, --out / --model / --backbone elsewhere), so an unknown option from one group is answered with
# the name this command gives it (in this order of preference), never with an option the command lacks.
SYNONYMS = (("output_dir", "out", "output", "out_dir", "output_path"),
            ("model_name_or_path", "model", "backbone", "model_dir", "model_path", "checkpoint"))


def synonyms(name: str) -> tuple[str, ...]:
    """The other names of option ``name`` (``SYNONYMS``), in order of preference; () for an option without any."""
    group = next((g for g in SYNONYMS if name in g), ())
    return tuple(o for o in group if o != name)


def closest_option(name: str, options: Sequence[str]) -> str | None:
    """The option ``name`` probably meant: its synonym (``--out`` for ``--output_dir``), else the closest spelling."""
    same = [o for o in synonyms(name) if o in options]
    if same:
        return same[0]
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return close[0] if close else None


def check_recipe(values: dict[str, Any], dataclass_types: Sequence[type], source: str,
                 hidden: Sequence[str] = ()) -> None:
    """Fail on unknown keys (naming the closest valid one) and on values of the wrong type.

    ``hidden``: options the caller sets itself, neither accepted nor listed (an experiment's ``al:`` grid keys).
    """
    fields = {name: f for name, f in _field_names(dataclass_types).items() if name not in hidden}
    hints: dict[str, Any] = {}
    for dc in dataclass_types:
        hints.update(typing.get_type_hints(dc))
    for key, value in values.items():
        if key not in fields:
            close = closest_option(key, list(fields))
            hint = f" Did you mean '{close}'?" if close else ""
            raise ConfigError(f"{source}: unknown option '{key}'.{hint} Valid options: {', '.join(sorted(fields))}.")
        choices = fields[key].metadata.get("choices")
        if choices and value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: option '{key}' = {value!r} is not one of {list(choices)}.{hint}")
        if not _type_ok(value, hints.get(key, Any)):
            raise ConfigError(
                f"{source}: option '{key}' = {value!r} ({type(value).__name__}) does not match its type "
                f"{getattr(hints.get(key), '__name__', hints.get(key))}; fix the value in the recipe."
            )


# ----------------------------------------------------------------------------------------------
# the parser: dataclass fields -> argparse options
# ----------------------------------------------------------------------------------------------
def string_to_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false, yes/no, 1/0), got '{value}'")


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value parsed as YAML: ``2`` -> 2, ``true`` -> True, ``[2, 12]`` -> a list)."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"the value of '{text}' is not valid YAML ({err})") from None


class MergeKeyValues(argparse.Action):
    """``--opt K=V K2=V2``: a mapping merged over the recipe's (a flag changes single keys, keeps the others)."""

    def __call__(self, parser, namespace, values, option_string=None):
        merged = dict(getattr(namespace, self.dest, None) or {})
        merged.update(values)
        setattr(namespace, self.dest, merged)


def _choice_type(choices: Sequence[Any]):
    by_text = {str(c): c for c in choices}
    return lambda text: by_text.get(text, text)


def _unwrap_optional(annotation: Any) -> Any:
    """``X | None`` / ``Optional[X]`` -> ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option; the command's docstring kept as written (its examples stay readable).

    One default per option: none after a help that states its own ("(default: the run's seed)") or after a
    required option (its "default: None" is never used).
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required or re.search(r"\(default\b|\bdefault:", text, flags=re.IGNORECASE):
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse without abbreviations, whose errors are ``ConfigError`` (one line at the CLI boundary)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str):
        raise ConfigError(f"{message}. Run `{self.prog} --help` for the options.")


def add_dataclass_arguments(parser: argparse.ArgumentParser, dataclass_type: type) -> None:
    """One ``--name`` (and ``--na-me``) option per init field; ``metadata`` entries are argparse keywords."""
    hints = typing.get_type_hints(dataclass_type)
    for f in dataclasses.fields(dataclass_type):
        if not f.init:
            continue
        kwargs = dict(f.metadata)
        kwargs["help"] = kwargs.get("help", "").replace("%", "%%")  # argparse %-formats help strings
        names = [f"--{f.name}"]  # --na-me is accepted too: `parse_args` spells it --na_me before parsing
        if f.default is not dataclasses.MISSING:
            kwargs["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kwargs["default"] = f.default_factory()
        else:
            kwargs["required"] = True
        annotation = _unwrap_optional(hints[f.name])
        origin = typing.get_origin(annotation)
        if origin is typing.Literal:
            kwargs.setdefault("choices", list(typing.get_args(annotation)))
            kwargs["type"] = _choice_type(kwargs["choices"])
        elif annotation is bool:
            kwargs.update(type=string_to_bool, nargs="?", const=True)
            kwargs.setdefault("default", False)
            kwargs.pop("required", None)
        elif origin is list:
            kwargs.update(type=typing.get_args(annotation)[0], nargs="+")
        elif origin is dict or annotation is dict:
            kwargs.update(type=key_value, nargs="+", action=MergeKeyValues, metavar="KEY=VALUE")
        else:
            kwargs["type"] = annotation
        parser.add_argument(*names, **kwargs)
        if annotation is bool and f.default is True:
            parser.add_argument(f"--no_{f.name}", action="store_false", dest=f.name, help=f"Set --{f.name} false.")


def build_parser(dataclass_types: Sequence[type], prog: str | None = None, description: str | None = None
                 ) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description=description)
    for dataclass_type in dataclass_types:
        add_dataclass_arguments(parser, dataclass_type)
    parser.add_argument(
        "--config",
        default=None,
        help="YAML recipe whose keys are the options above (a section named after the command is used if present); "
        "flags on the command line override it.",
    )
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help=f"On an error, show the full traceback instead of one line (or set {DEBUG_ENV}=1).")
    return parser


def _underscored(arg: str) -> str:
    """``--dry-run=x`` -> ``--dry_run=x`` (option names only; values and positional arguments are left alone)."""
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


def _config_path(argv: Sequence[str]) -> str | None:
    path = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    return path


def parse_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    description: str | None = None,
    section: str | None = None,
) -> tuple:
    """Parse ``argv`` (default ``sys.argv[1:]``) into instances of ``dataclass_types``.

    ``--config FILE`` loads a YAML recipe whose values become the defaults; explicit flags win.
    """
    argv = [_underscored(a) for a in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser(dataclass_types, prog=prog, description=description)
    config_path = _config_path(argv)
    if config_path:
        recipe = load_checked_recipe(config_path, section, dataclass_types)
        for action in parser._actions:
            if action.dest in recipe:
                action.required = False
                action.default = recipe[action.dest]
    try:
        namespace, remaining = parser.parse_known_args(argv)
    except ConfigError:  # e.g. "--out is required" when it was given under another command's name (--output_dir)
        remaining = [a for a in argv if a.startswith("--") and a.split("=", 1)[0] not in parser._option_string_actions]
        if not remaining:
            raise
    if remaining:
        fields = _field_names(dataclass_types)
        unknown = next((a for a in remaining if a.startswith("-")), remaining[0])
        name = unknown.lstrip("-").split("=", 1)[0].replace("-", "_")
        close = closest_option(name, list(fields))
        hint = f" Did you mean '--{close}'?" if close else ""
        raise ConfigError(f"unknown argument(s) {remaining}.{hint} Run `{prog or 'after-hf'} --help` for the options.")
    values = vars(namespace)
    return tuple(dc(**{f.name: values[f.name] for f in dataclasses.fields(dc) if f.init}) for dc in dataclass_types)


def to_dict(*args_objects: Any) -> dict[str, Any]:
    """Merge dataclass instances into one plain dict (for saving the exact config a run used)."""
    out: dict[str, Any] = {}
    for obj in args_objects:
        out.update(dataclasses.asdict(obj))
    return out
