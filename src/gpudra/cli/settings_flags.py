"""Command-line flags derived from a settings model, and how flags, env and a config file combine.

Every field of a settings model is one flag, never restated by hand: ``--`` + the field name
with ``-`` for ``_`` (a field keeps older spellings as aliases with
``json_schema_extra={"legacy_flags": [...], "legacy_keys": [...]}``: older flags, older
config-file keys), its type from the annotation, its help from ``Field(description=...)``
plus the field's default.  A flag parses to ``None`` when absent, so an absent flag never
hides a lower source; a ``bool`` field is a switch that sets ``True``.

Precedence, highest first: flags > ``GPUDRA_*`` environment > ``--config`` YAML file >
defaults.  pydantic-settings ranks constructor arguments above the environment, so flags are
passed as arguments; so are the file's values, but only those the environment does not set.
"""

from __future__ import annotations

import argparse
import os
import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from gpudra.catalogue.gpuset import GpuSet
from gpudra.common.errors import GpudraError

M = TypeVar("M", bound=BaseModel)

_FLAG_TYPES: tuple[type, ...] = (str, int, float, bool, Path)
# typed values given as text on the command line (the settings model parses them)
_TEXT_TYPES: tuple[type, ...] = (GpuSet,)


class SettingsError(GpudraError):
    """Invalid flags, environment or config file; the message names each bad setting."""


def _legacy(name: str, field: FieldInfo, kind: str) -> list[str]:
    """A setting's older spellings of ``kind`` (``legacy_flags``, ``legacy_keys``)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    legacy = extra.get(kind) or []
    if not isinstance(legacy, list):
        raise TypeError(f"setting {name}: {kind} must be a list")
    return [str(x) for x in legacy]


def flag_names(name: str, field: FieldInfo) -> list[str]:
    """The option strings of a setting: the derived ``--kebab-name``, then its legacy ones."""
    return ["--" + name.replace("_", "-"), *_legacy(name, field, "legacy_flags")]


def flag_type(name: str, annotation: Any) -> tuple[type, tuple[str, ...]]:
    """The argparse type of a field's annotation, and its allowed values for a ``Literal``."""
    args = [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
    args = [get_args(a)[0] if get_origin(a) is Annotated else a for a in args]
    if len(args) == 1 and get_origin(args[0]) is Literal:
        return str, tuple(str(v) for v in get_args(args[0]))
    if len(args) == 1 and args[0] in _FLAG_TYPES:
        return args[0], ()
    if len(args) == 1 and (args[0] in _TEXT_TYPES or args[0] == tuple[str, ...]):
        return str, ()  # the model's validator parses the text (a GPU set, a list)
    raise TypeError(f"setting {name}: no command-line flag for type {annotation!r}")


def flag_help(name: str, field: FieldInfo, extra: str | None = None) -> str:
    """The field's description, then ``extra`` (facts only the caller knows), then its default."""
    if not field.description:
        raise TypeError(f"setting {name}: a flag needs Field(description=...)")
    text = field.description + (f" ({extra})" if extra else "")
    if field.is_required() or field.default_factory is not None:
        return text  # a computed default is stated in the description
    default = field.get_default()
    if default is None or default is False:
        return text
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{text} (default {shown})"


def add_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    *,
    skip: frozenset[str] = frozenset(),
    extra_help: dict[str, str] | None = None,
) -> None:
    """One flag per field of ``model`` (except ``skip``), each landing in ``args.<field>``."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        typ, choices = flag_type(name, field.annotation)
        help_ = flag_help(name, field, (extra_help or {}).get(name))
        names = flag_names(name, field)
        if typ is bool:
            parser.add_argument(
                *names, dest=name, action="store_const", const=True, default=None, help=help_
            )
        else:
            metavar = "{" + ",".join(choices) + "}" if choices else None
            parser.add_argument(
                *names, dest=name, type=typ, default=None, metavar=metavar, help=help_
            )


def precedence_note(model: type[BaseSettings], example: str) -> str:
    """For a subcommand's description: where else each flag can be given, and what wins."""
    if example not in model.model_fields:
        raise TypeError(f"{model.__name__} has no setting {example!r}")
    prefix = model.model_config.get("env_prefix") or ""
    return (
        f"Every setting is also a {prefix}<NAME> environment variable (e.g. "
        f"{prefix}{example.upper()}) and a key of the --config file; flags win over the "
        "environment, the environment over the file, the file over the defaults."
    )


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file with any of these settings (keys in snake_case, camelCase or "
        "kebab-case); flags and GPUDRA_* variables override it",
    )


def setting_name(key: str) -> str:
    """A config-file key in snake_case, camelCase or kebab-case as a field name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).replace("-", "_").lower()


def config_file_values(model: type[BaseModel], path: Path) -> dict[str, Any]:
    """The settings in a YAML file, by field name; an unknown key is refused with the list."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SettingsError(f"{path}: cannot read the config file: {e}") from e
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: the config file must be a mapping of settings")
    allowed = set(model.model_fields)
    legacy = {  # a setting's older names as config-file keys (``legacy_keys``)
        setting_name(key): name
        for name, field in model.model_fields.items()
        for key in _legacy(name, field, "legacy_keys")
    }
    out = {}
    for key, value in raw.items():
        name = setting_name(str(key))
        name = legacy.get(name, name)
        if name not in allowed:
            raise SettingsError(
                f"{path}: unknown setting {key!r}; allowed: {', '.join(sorted(allowed))}"
            )
        out[name] = value
    return out


def flag_values(model: type[BaseModel], args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (absent flags are ``None`` and left out)."""
    return {k: v for k in model.model_fields if (v := getattr(args, k, None)) is not None}


def describe(err: ValidationError) -> str:
    """Each problem as ``field: message`` (a rule across fields: just the message)."""
    out = []
    for e in err.errors():
        ctx = e.get("ctx") or {}
        msg = str(ctx["error"]) if e["type"] == "value_error" and "error" in ctx else e["msg"]
        where = ".".join(str(x) for x in e["loc"])
        out.append(f"{where}: {msg}" if where else msg)
    return "; ".join(out)


def load_settings(model: type[M], args: argparse.Namespace) -> M:
    """``model`` from flags, environment (for pydantic-settings models) and ``args.config``."""
    config = getattr(args, "config", None)
    from_file = config_file_values(model, config) if config else {}
    if issubclass(model, BaseSettings):  # the environment wins over the file
        prefix = model.model_config.get("env_prefix") or ""
        in_env = {k.upper() for k in os.environ}  # pydantic-settings ignores case
        from_file = {k: v for k, v in from_file.items() if f"{prefix}{k}".upper() not in in_env}
    try:
        return model(**(from_file | flag_values(model, args)))
    except ValidationError as e:
        raise SettingsError(f"invalid settings: {describe(e)}") from e
