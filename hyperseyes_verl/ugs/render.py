"""Observation text of a tool round: per call, per crop / query, the hits or an explicit failure line.

Content blocks use the verl/HF multimodal form (`{"type": "text"}` / `{"type": "image"}`). A crop's image
block follows the text that names its id, so the model reads `img_3: <image> (crop of img_0, box [...])`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from hyperseyes_verl.search.base import Hit
from hyperseyes_verl.ugs.images import Box, CropResult
from hyperseyes_verl.ugs.parser import utf8_safe
from hyperseyes_verl.ugs.types import UGSConfig

_WS_RE = re.compile(r"\s+")
MAX_ERROR_CHARS = 600  # an error line quotes what the model wrote; never all of it


@dataclass
class SearchOutcome:
    """One search's result: hits, or the failure shown to the model."""

    hits: list[Hit] = field(default_factory=list)
    failure_kind: str | None = None  # FailureKind value, e.g. "timeout"
    failure_message: str = ""

    @property
    def failed(self) -> bool:
        return self.failure_kind is not None


class ContentBuilder:
    """Accumulates content blocks, merging adjacent text so messages stay compact.

    Text pieces are collected in a list and joined once per block (`+=` on a dict value copies the whole
    block every time: quadratic in the lines of a long observation). Every piece is made UTF-8 safe, so
    nothing echoed from the model can break the encoding of the observation."""

    def __init__(self, blocks: list[dict[str, Any]] | None = None) -> None:
        self.blocks: list[dict[str, Any]] = [] if blocks is None else blocks  # appended to in place
        self._pending: list[str] = []

    def text(self, s: str) -> "ContentBuilder":
        if s:
            self._pending.append(utf8_safe(s))
        return self

    def image(self, image: Image.Image) -> "ContentBuilder":
        self.flush()
        self.blocks.append({"type": "image", "image": image})
        return self

    def flush(self) -> None:
        """Move the pending text into the blocks (merged with a text block that ends them)."""
        if not self._pending:
            return
        joined = "".join(self._pending)
        self._pending.clear()
        if self.blocks and self.blocks[-1]["type"] == "text":
            self.blocks[-1]["text"] += joined
        else:
            self.blocks.append({"type": "text", "text": joined})

    def message(self) -> dict[str, Any]:
        self.flush()
        return {"role": "tool", "content": self.blocks}


def format_box(box: Box) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in box) + "]"


def clip(s: str, limit: int) -> str:
    """`s` on one line, cut to `limit` characters (only a bounded prefix is scanned: `s` may be megabytes)."""
    scanned = 4 * limit + 64
    cut = len(s) > scanned
    s = _WS_RE.sub(" ", s[:scanned]).strip()
    return s if len(s) <= limit and not cut else s[: max(0, limit - 1)].rstrip() + "…"


def render_hits(b: ContentBuilder, outcome: SearchOutcome, config: UGSConfig) -> None:
    if outcome.failed:
        b.text(f"  search failed ({outcome.failure_kind}): {clip(outcome.failure_message, 200)}\n")
        return
    if not outcome.hits:
        b.text("  no results\n")
        return
    for i, hit in enumerate(outcome.hits[: config.top_k], 1):
        relevance = f" (relevance {hit.score:.2f})" if hit.score is not None else ""
        b.text(f"  {i}. {clip(hit.title, 200) or '(untitled)'}{relevance}\n")
        if hit.snippet:
            b.text(f"     {clip(hit.snippet, config.snippet_chars)}\n")
        if hit.url:
            b.text(f"     {clip(hit.url, 300)}\n")  # a hostile backend may answer a URL of megabytes


def render_text_query(b: ContentBuilder, query: str, outcome: SearchOutcome, config: UGSConfig) -> None:
    b.text(f"Query {clip(query, 200)!r}:\n")
    render_hits(b, outcome, config)


def render_crop(b: ContentBuilder, crop: CropResult, outcome: SearchOutcome | None, config: UGSConfig) -> None:
    if not crop.ok:
        b.text(f"{crop.image_id}: crop failed ({crop.error_kind}): {clip(crop.reason, MAX_ERROR_CHARS)}\n")
        return
    b.text(f"{crop.image_id}: ").image(crop.image).text(  # type: ignore[arg-type]
        f" (crop of {crop.source_id}, box {format_box(crop.box)})\n")  # type: ignore[arg-type]
    if outcome is not None:
        render_hits(b, outcome, config)


def render_whole_image(b: ContentBuilder, image_id: str, outcome: SearchOutcome, config: UGSConfig) -> None:
    b.text(f"{image_id} (whole image):\n")
    render_hits(b, outcome, config)


def render_error(b: ContentBuilder, kind: str, message: str) -> None:
    b.text(f"Error ({kind}): {clip(message, MAX_ERROR_CHARS)}\n")


# why calls past the tool-round budget were not run (both observation formats; SFT rows look for it)
ROUND_BUDGET_REFUSAL = "no tool rounds are left, so the {} tool call(s) of this turn were not executed."


def budget_sentence(rounds_left: int) -> str:
    if rounds_left <= 0:
        return "You have no tool rounds left: answer now with <answer>...</answer>."
    return f"You have {rounds_left} tool round{'s' if rounds_left != 1 else ''} remaining."


def budget_hint(rounds_left: int, config: UGSConfig) -> str | None:
    """The remaining-budget sentence when one is due (always at 0; at or below `hint_when_rounds_left`)."""
    return budget_sentence(rounds_left) if rounds_left <= config.hint_when_rounds_left else None


def question_line(question: str) -> str:
    return f"Original question: {question}"
