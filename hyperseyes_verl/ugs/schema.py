"""The UGS action space as the model sees it: tool schemas (OpenAI function format) and prompts.

Two tools (HyperEyes, arXiv 2605.07177, "Unified Grounded Search"): `image_search` crops any number of
normalized boxes of a registered image and reverse-searches each crop; `text_search` runs several
queries. Every search of every call in one turn runs in parallel ("search wider, not longer").
"""
from __future__ import annotations

from typing import Any

from hyperseyes_verl.ugs.types import UGSConfig

IMAGE_SEARCH = "image_search"
TEXT_SEARCH = "text_search"

_BOX_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": "One box [x1, y1, x2, y2] as fractions of the source image's width/height (0 = left/top, 1 = right/bottom).",
    "items": {"type": "number", "minimum": 0, "maximum": 1},
    "minItems": 4,
    "maxItems": 4,
}

TOOL_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": IMAGE_SEARCH,
            "description": (
                "Reverse image search. Crops each box of `area` from the image `image_id`, registers every crop "
                "under a new id (img_1, img_2, ...) and searches all crops in parallel. Without `area` the whole "
                "image is searched."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "image_id": {
                        "type": "string",
                        "description": "Id of a registered image: img_0 is the input image; crops from earlier turns "
                        "keep the ids they were given.",
                    },
                    "area": {
                        "type": "array",
                        "description": "Boxes to crop and search, normalized coordinates in [0, 1]. "
                        "Give several boxes to search several entities at once.",
                        "items": _BOX_SCHEMA,
                        "minItems": 1,
                    },
                },
                "required": ["image_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": TEXT_SEARCH,
            "description": "Web text search. All queries run in parallel; each returns its top results.",
            "parameters": {
                "type": "object",
                "properties": {
                    "input": {
                        "type": "array",
                        "description": "Search queries; give one query per fact you need.",
                        "items": {"type": "string", "minLength": 1},
                        "minItems": 1,
                    }
                },
                "required": ["input"],
            },
        },
    },
]

TOOL_NAMES = frozenset(s["function"]["name"] for s in TOOL_SCHEMAS)


def system_prompt(config: UGSConfig = UGSConfig()) -> str:
    """The instruction that teaches the turn format, the parallel semantics, image ids and the budgets."""
    return f"""You are a multimodal search agent. Answer the user's question about the image(s) by searching.

Each of your turns has this format:
<reason>your reasoning about what is known and what is still missing</reason>
then EITHER one or more tool calls:
<tool_call>{{"name": "image_search", "arguments": {{"image_id": "img_0", "area": [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5]]}}}}</tool_call>
<tool_call>{{"name": "text_search", "arguments": {{"input": ["first query", "second query"]}}}}</tool_call>
OR the final answer:
<answer>your concise final answer</answer>

Tools:
- image_search(image_id, area): crops each box of `area` from image `image_id` and reverse-searches every crop.
  Boxes are [x1, y1, x2, y2] normalized to [0, 1] of that image's width and height (not pixels, not 0-1000).
  Without `area` the whole image is searched.
- text_search(input): searches the web for every query in the list `input`.

Image ids: img_0 is the input image (further input images are img_1, ... in order). Every requested box gets
the next free id (even a box that fails), and the crop is shown to you next to its id. A crop can be used as
`image_id` from the next turn on; crops made in a turn are not yet usable within that same turn.

Search wider, not longer: all tool calls of one turn, and every box and query inside them, run in parallel.
Put everything you can already ask into one turn instead of spending several turns.

Budgets: at most {config.max_tool_rounds} turns with tool calls and {config.max_turns} turns in all; at most
{config.max_calls_per_turn} tool calls per turn, {config.max_boxes_per_call} boxes per image_search and
{config.max_queries_per_call} queries per text_search. Each search shows at most {config.top_k} results.
When the tool budget is spent you must answer."""


def user_prompt(question: str, n_images: int = 1) -> str:
    """The first user message: image placeholders (ids in order) and the question."""
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    lines = [f"img_{i}: <image>" for i in range(n_images)]
    lines.append(f"Question: {question}")
    return "\n".join(lines)
