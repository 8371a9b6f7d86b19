"""Building a pydantic config from a (possibly absent) hydra / dict section of the trainer config."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def model_from_section(model_cls: type[M], section: Any, name: str) -> M:
    """`model_cls(**section)`; None gives the defaults. A bad key or value raises ValueError naming the section
    (e.g. `hyperseyes.opd`) and pydantic's description of the offending field."""
    if section is None:
        return model_cls()
    data = dict(section.items()) if hasattr(section, "items") else section
    try:
        return model_cls.model_validate(data)
    except Exception as e:  # pydantic's ValidationError, or a section that is not a mapping
        raise ValueError(f"invalid {name} config {data!r}: {e}") from e


def accept_old_names(data: Any, renames: dict[str, tuple[str, Callable[[Any], Any] | None]]) -> Any:
    """For a `model_validator(mode="before")`: keys renamed to the one retry vocabulary (`max_attempts` = tries
    incl. the first, `backoff_s` = first delay, `max_backoff_s` = cap) still load under their old name, converted
    where the meaning changed (retries -> attempts); giving both names is an error."""
    if not isinstance(data, dict) or not renames.keys() & data.keys():
        return data
    out = dict(data)
    for old, (new, convert) in renames.items():
        if old in out:
            if new in out:
                raise ValueError(f"give `{new}` only (`{old}` is its old name)")
            value = out.pop(old)
            out[new] = convert(value) if convert is not None else value
    return out
