"""Building a pydantic config from a (possibly absent) hydra / dict section of the trainer config."""
from __future__ import annotations

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
