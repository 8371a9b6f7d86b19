"""Benchmark items by id, prompt key or question: where the input images and gold answers of a run come from.

Eval results, PRS lines and rollout dumps keep no pixels of their input images; the benchmark file they ran on
does (any shape `hyperseyes_verl.eval.loaders` reads: synth items.jsonl, RL parquet, IMEB, ...).
"""
from __future__ import annotations

import os
from pathlib import Path

from hyperseyes_verl.eval.loaders import EvalItem, load_benchmark

from .model import ImageRef


def image_ref(value) -> ImageRef:
    """An `EvalItem` image reference (bytes, path or PIL image) as an `ImageRef`."""
    if isinstance(value, (bytes, bytearray)):
        return ImageRef(data=bytes(value))
    if isinstance(value, (str, os.PathLike)):
        return ImageRef(path=str(value))
    return ImageRef(pil=value)


class ItemIndex:
    """Lookup of items by full id (`bench/x`), bare id (`x`), `data_source/index` prompt key, or question."""

    def __init__(self, items: list[EvalItem]):
        self.items = items
        self._by: dict[str, EvalItem] = {}
        for it in items:
            tail = it.id.rsplit("/", 1)[-1]
            index = it.meta.get("index", tail)
            for key in (it.id, tail, f"{it.benchmark}/{index}", f"q:{it.question.strip()}"):
                self._by.setdefault(key, it)

    @classmethod
    def from_file(cls, path: str | os.PathLike, name: str | None = None) -> "ItemIndex":
        return cls(load_benchmark(Path(path), name=name))

    def find(self, *keys: str | None, question: str | None = None) -> EvalItem | None:
        for k in keys:
            if not k:
                continue
            k = k.split("#", 1)[0]  # `#split` of validation prompt keys
            if (hit := self._by.get(k, self._by.get(k.rsplit("/", 1)[-1]))) is not None:
                return hit
        if question:
            return self._by.get(f"q:{question.strip()}")
        return None

    def __len__(self) -> int:
        return len(self.items)
