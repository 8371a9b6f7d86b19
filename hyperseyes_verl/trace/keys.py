"""Stable per-prompt keys, train and validation kept apart."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any


def is_validation(extra_info: Mapping[str, Any] | None, marker: str = "split",
                  values: Sequence[str] = ("val", "test")) -> bool:
    """Validation rows carry `extra_info[marker]` in `values` (verl's reward rows say nothing else about it)."""
    return bool(extra_info) and str(extra_info.get(marker, "")).lower() in {v.lower() for v in values}


def prompt_key(data_source: Any, index: Any, split: str | None = None, raw_prompt: Any = None) -> str:
    """`data_source/index` for training rows, `data_source/index#<split>` for the others.

    verl fills a missing `extra_info.index` with 0, which would merge every prompt into one key; when the
    index is missing (None) the key falls back to a hash of the prompt messages instead.
    """
    if index is None:
        if raw_prompt is None:
            raise ValueError(f"prompt of data_source={data_source!r} has neither extra_info.index nor raw_prompt: "
                             "add an 'index' to extra_info so TRACE can keep a reference per prompt")
        blob = json.dumps(raw_prompt, sort_keys=True, default=str).encode()
        index = "h" + hashlib.blake2b(blob, digest_size=8).hexdigest()
    key = f"{data_source}/{index}"
    if split and split.lower() not in ("train", ""):
        key += f"#{split.lower()}"
    return key.replace("\n", " ")
