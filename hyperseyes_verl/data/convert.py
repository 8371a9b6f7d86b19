"""Benchmark-style parquet (one question, image(s) and answer(s) per row) -> the RL schema (CONTRACTS §5).

Column names are configurable; an image cell may be PNG/JPEG bytes, `{"bytes": ...}`, a path, or a list
of those; an answer cell may be a string or a list of accepted strings.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from ..utils.images import open_image
from .parquet import rl_row


class ConvertConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    question_col: str = Field("question", description="column with the question text")
    image_col: str | None = Field("image", description="column with image(s); None for text-only benchmarks")
    answer_col: str = Field("answer", description="column with the answer (str or list of accepted strings)")
    data_source: str = Field("benchmark", description="data_source of every row (the reward's prompt key prefix)")
    split: Literal["train", "val", "test"] = Field("test", description="split of every row")
    system: str | None = Field(None, description="system prompt to prepend; None = user turn only")


def _images(cell: Any, base: Path) -> list[Image.Image]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    if isinstance(cell, (list, tuple, np.ndarray)):
        return [img for c in cell for img in _images(c, base)]
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return _images(cell["bytes"], base)
        if cell.get("path"):
            return _images(cell["path"], base)
        raise ValueError(f"image cell dict has neither 'bytes' nor 'path' (keys {sorted(cell)})")
    if isinstance(cell, (bytes, bytearray)):
        return [open_image(bytes(cell))]
    if isinstance(cell, str):
        p = Path(cell) if Path(cell).is_absolute() else base / cell
        return [open_image(p)]
    raise ValueError(f"unsupported image cell of type {type(cell).__name__}: use bytes, {{'bytes': ...}} or a path")


def _answers(cell: Any) -> list[str]:
    if isinstance(cell, (list, tuple, np.ndarray)):
        return [str(a) for a in cell if str(a).strip()]
    if isinstance(cell, str) and cell.startswith("["):
        try:
            return [str(a) for a in json.loads(cell)]
        except json.JSONDecodeError:
            pass
    return [str(cell)]


def convert_benchmark(path: str | Path, cfg: ConvertConfig = ConvertConfig()) -> list[dict[str, Any]]:
    path = Path(path)
    df = pd.read_parquet(path)
    needed = [c for c in (cfg.question_col, cfg.answer_col, cfg.image_col) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} not found (have {list(df.columns)}); set them with "
                         "--question-col / --image-col / --answer-col")
    rows = []
    for n, rec in enumerate(df.to_dict("records")):
        try:
            images = _images(rec[cfg.image_col], path.parent) if cfg.image_col else []
            rows.append(rl_row(question=str(rec[cfg.question_col]), answers=_answers(rec[cfg.answer_col]),
                               images=images, index=n, split=cfg.split, data_source=cfg.data_source,
                               entity_count=1, domain=cfg.data_source, system=cfg.system))
        except (ValueError, OSError) as e:
            raise ValueError(f"{path} row {n}: {e}") from e
    return rows
