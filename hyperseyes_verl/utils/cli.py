"""Command-line options derived from pydantic fields: one source for a setting's name, type, default and help.

    add_model_options(p, SamplingParams, ["temperature", "top_p", "max_tokens"])  # --temperature --top-p ...
    SamplingParams(**model_kwargs(args, SamplingParams, ["temperature", "top_p", "max_tokens"]))

A flag is `--field-name` unless `flags` renames it (e.g. {"max_tool_rounds": "max-rounds"}); its dest is the
flag's, as argparse would make it, so `args.<flag>` reads as before. `config_from_argv` is the whole-model form
for flat configs (every field a flag).
"""
from __future__ import annotations

import argparse
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

_SCALARS = (int, float, str, Path)


def _scalar(annotation: Any) -> tuple[Any, tuple | None]:
    """(argparse type, choices) of a field's annotation; Optional[X] is X. Refuses what one flag cannot hold."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _scalar(args[0])
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return type(choices[0]), choices
    if annotation in _SCALARS or annotation is bool:
        return annotation, None
    raise TypeError(f"no command-line form for a field of type {annotation!r}")


def _flag(name: str, flags: Mapping[str, str] | None) -> str:
    return (flags or {}).get(name, name.replace("_", "-"))


def _dest(flag: str) -> str:
    return flag.replace("-", "_")


def add_model_options(parser: argparse.ArgumentParser | Any, model: type[BaseModel],
                      fields: Iterable[str] | None = None, *, flags: Mapping[str, str] | None = None,
                      defaults: Mapping[str, Any] | None = None, helps: Mapping[str, str] | None = None,
                      required: Sequence[str] = ()) -> None:
    """One option per field of `model` (all when `fields` is None), onto a parser or an argument group.

    Type, choices, default and help come from the field; `defaults` / `helps` override them per field (a CLI whose
    default differs from the model's, e.g. a CLI-only `None` meaning "derive it"). A bool field defaulting to False
    is a `store_true` switch. A required field (no default) is a required option unless `defaults` gives one."""
    defaults, helps = defaults or {}, helps or {}
    for name in (fields if fields is not None else model.model_fields):
        f = model.model_fields[name]
        flag = f"--{_flag(name, flags)}"
        default = defaults.get(name, f.default)
        text = (helps.get(name, f.description) or "").replace("%", "%%")  # argparse formats help with %
        typ, choices = _scalar(f.annotation)
        if typ is bool:
            if default is not False:
                raise TypeError(f"{model.__name__}.{name}: only False-default bools become switches ({flag})")
            parser.add_argument(flag, action="store_true", help=text)
            continue
        kw: dict[str, Any] = {"type": typ, "help": text}
        if choices:
            kw["choices"] = choices
        if default is PydanticUndefined:
            kw["required"] = True
        else:
            kw["default"] = default
            kw["required"] = name in required
            if default is not None:
                kw["help"] = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        parser.add_argument(flag, **kw)


def model_kwargs(args: argparse.Namespace, model: type[BaseModel], fields: Iterable[str] | None = None, *,
                 flags: Mapping[str, str] | None = None, skip_none: bool = False) -> dict[str, Any]:
    """The parsed values of `add_model_options`' options, keyed by field name (`skip_none`: leave out the options
    left unset, so the model's own default applies)."""
    out = {}
    for name in (fields if fields is not None else model.model_fields):
        value = getattr(args, _dest(_flag(name, flags)))
        if not (skip_none and value is None):
            out[name] = value
    return out


def flag_errors(e: ValidationError, flags: Mapping[str, str] | None = None) -> str:
    """pydantic's report as `--flag: message` clauses (one usage line, not a traceback)."""
    return "; ".join(f"--{_flag(str(err['loc'][0]), flags)}{''.join(f'.{x}' for x in err['loc'][1:])}: "
                     f"{err['msg']}" if err["loc"] else err["msg"] for err in e.errors())


def config_from_argv(cls: type[BaseModel], argv: list[str] | None, prog: str, description: str) -> BaseModel:
    """A flat pydantic config from command-line flags: one `--field-name` per field, with its default and help."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    add_model_options(p, cls)
    try:
        return cls(**model_kwargs(p.parse_args(argv), cls))
    except ValidationError as e:  # a bad value is one usage line, not a traceback
        p.error(flag_errors(e))
