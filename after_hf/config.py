"""Dataclass arguments + YAML recipes, the way transformers' example scripts do it.

Every entry point declares its options as dataclasses whose ``metadata={"help": ...}`` is the
``--help`` text. ``--config recipe.yaml`` supplies values (the section named after the command if
the file has one, else the whole file); flags given on the command line override the recipe.
Unknown keys and wrong types fail fast with the closest valid key named.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml
from transformers import HfArgumentParser


class ConfigError(ValueError):
    """A recipe or flag that cannot be used as given; the message says what to change."""


def load_recipe(path: str | Path, section: str | None = None) -> dict[str, Any]:
    """Read a YAML recipe; return ``data[section]`` when that section exists, else the whole mapping."""
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
        return dict(data[section])
    if section and data and all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(
            f"recipe {path} has sections {sorted(data)} but no '{section}:' section for this command; add one "
            f"(or pass the recipe written for `{section.replace('_', '-')}`)."
        )
    return data


def _field_names(dataclass_types: Sequence[type]) -> dict[str, dataclasses.Field]:
    return {f.name: f for dc in dataclass_types for f in dataclasses.fields(dc) if f.init}


def _type_ok(value: Any, annotation: Any) -> bool:
    """A permissive check of a YAML value against a field annotation (str, int, float, bool, list, Optional, Literal)."""
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


def check_recipe(values: dict[str, Any], dataclass_types: Sequence[type], source: str) -> None:
    """Fail on unknown keys (naming the closest valid one) and on values of the wrong type."""
    fields = _field_names(dataclass_types)
    hints: dict[str, Any] = {}
    for dc in dataclass_types:
        hints.update(typing.get_type_hints(dc))
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(list(dataclass_types), prog=prog, description=description)
    parser.add_argument(
        "--config",
        default=None,
        help="YAML recipe whose keys are the options below (a section named after the command is used if present); "
        "flags on the command line override it.",
    )
    config_path = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            config_path = argv[i + 1]
        elif arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
    if config_path:
        recipe = load_recipe(config_path, section)
        check_recipe(recipe, dataclass_types, f"recipe {config_path}")
        for action in parser._actions:
            if action.dest in recipe:
                action.required = False
                action.default = recipe[action.dest]
    *namespace_parts, remaining = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True, look_for_args_file=False
    )
    if remaining:
        fields = _field_names(dataclass_types)
        unknown = next((a for a in remaining if a.startswith("-")), remaining[0])
        name = unknown.lstrip("-").split("=", 1)[0]
        close = difflib.get_close_matches(name, list(fields), n=1, cutoff=0.5)
        hint = f" Did you mean '--{close[0]}'?" if close else ""
        raise ConfigError(f"{prog or 'after-hf'}: unknown argument(s) {remaining}.{hint} "
                          f"Run with --help for the valid options.")
    return tuple(p for p in namespace_parts if dataclasses.is_dataclass(p))


def to_dict(*args_objects: Any) -> dict[str, Any]:
    """Merge dataclass instances into one plain dict (for saving the exact config a run used)."""
    out: dict[str, Any] = {}
    for obj in args_objects:
        out.update(dataclasses.asdict(obj))
    return out
