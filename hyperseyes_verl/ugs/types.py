"""Plain data of the Unified Grounded Search (UGS) environment: its config, one turn's result and
the per-round / per-episode statistics. No verl import; the agent loop, PRS and eval share these.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from hyperseyes_verl.contracts import FinishReason  # the one list of endings; the environment uses 4 of them

# The release's cap of one assistant turn (RL response length 1524, also its PRS / eval generation cap): the one
# default of the agent loop's max_tokens_per_turn and of SamplingParams.max_tokens (PRS, eval).
MAX_TOKENS_PER_TURN = 1524


class UGSConfig(BaseModel):
    """Budgets and caps of one episode. Each field says whether it is the release's value or our own: the
    release has turn / round budgets, top-3 hits and the 1000 px crop side, but no per-call caps (it runs
    every box and query of a call); ours only bound what one runaway generation can order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tool_rounds: int = Field(8, ge=0, description="assistant turns that may call tools (official 8)")
    max_turns: int = Field(9, ge=1, description="assistant turns in all, tool rounds + the answer turn (official 9)")
    max_calls_per_turn: int = Field(
        8, ge=1, description="tool calls executed per turn; extra ones get an error line (ours: the release "
        "executes only the first call of a turn, this project all of them up to this bound)")
    max_boxes_per_call: int = Field(
        32, ge=1, description="areas per image_search call (ours, no official cap: twice the 16 crops a 4x4 "
        "mosaic needs; it only stops a degenerate generation from ordering hundreds of searches)")
    max_queries_per_call: int = Field(
        32, ge=1, description="queries per text_search call (ours, no official cap; same reason as boxes)")
    max_query_chars: int = Field(
        512, ge=1, description="a longer query is not run; the model gets an error line (ours, no official "
        "cap: web search engines truncate far shorter queries, so a longer one is a runaway generation)")
    top_k: int = Field(3, ge=1, description="hits shown per query / crop (official 3)")
    search_timeout_s: float = Field(30.0, gt=0, description="per search; a slow backend becomes a timeout line")
    crop_max_side: int = Field(1000, ge=16, description="crops are resized so their long side is at most this")
    min_crop_px: int = Field(2, ge=1, description="a crop smaller than this on either side fails")
    restate_question: bool = Field(True, description="close every observation with the original question")
    hint_when_rounds_left: int = Field(1, ge=0, description="append a remaining-budget hint at or below this")
    snippet_chars: int = Field(300, ge=20, description="a hit's snippet is clipped to this many "
                               "characters (ours; the official format shows it whole, as the release)")
    min_text_relevance: float = Field(
        0.0, ge=0, le=1, description="text hits with a known score below this are dropped before top_k "
        "(official 0.6, tuned to its web backend's scores)")
    tool_schemas: bool = Field(
        True, description="render the tool schemas into the system turn (the chat template's `# Tools` block) in RL "
        "prompts, SFT rows and served evaluation; the system prompt describes the tools either way. Off saves "
        "~850 tokens of every sequence (the tiny CPU recipe: a 3M model's step time grows faster than its length)")
    observation_format: Literal["hyperseyes", "official"] = Field(
        "hyperseyes", description="how observations are written: `hyperseyes` (one tool message, English lines "
        "per call / crop / query, ugs/render.py) or `official` (the release's text: crop images first, "
        "<tool_response> with its Chinese headers and per-hit layout, the re-stated question, its hints, a "
        "missing image_id read as img_0; docs/OFFICIAL_PARITY.md)")


@dataclass
class Observation:
    """What goes back to the model after a tool turn.

    `messages` holds, in the `hyperseyes` format, one `{"role": "tool", "content": [...]}` per executed call
    (the remaining-budget hint and the re-stated question close the last one); in the `official` format one
    `{"role": "user", ...}` message, crop images first. Content blocks are in the verl/HF multimodal form
    (`{"type": "text", "text": s}` / `{"type": "image", "image": PIL}`). Models see the round as ONE message:
    `hyperseyes_verl.ugs.conversation.observation_message`, shared by SFT rows and RL rollouts.
    """

    messages: list[dict[str, Any]]

    @property
    def images(self) -> list[Image.Image]:
        return [b["image"] for m in self.messages for b in m["content"] if b.get("type") == "image"]

    @property
    def text(self) -> str:
        """All text blocks, images shown as `<image>` (for logs and text-only endpoints)."""
        out = []
        for m in self.messages:
            out.append("".join(b["text"] if b.get("type") == "text" else "<image>" for b in m["content"]))
        return "\n".join(out)


@dataclass
class RoundStats:
    """One assistant turn that called tools."""

    round_index: int  # 1-based tool round
    tool_calls: int = 0  # well-formed calls executed
    text_queries: int = 0
    crops_ok: int = 0
    crops_failed: int = 0
    searches: int = 0  # text queries + crops searched = the round's parallel width
    searches_empty: int = 0  # searches that answered with no hit (a crop that matches nothing, a vain query)
    search_failures: int = 0
    errors: Counter = field(default_factory=Counter)  # error kind -> count (parse, unknown_tool, bad_box, ...)
    rounds_left: int = 0
    wall_s: float = 0.0
    # backend failure kind (timeout, http_status, internal, ...) -> count; kept apart from `errors`, which
    # are the model's mistakes, so a reward can penalise those without punishing service outages
    search_failure_kinds: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["errors"] = dict(self.errors)
        d["search_failure_kinds"] = dict(self.search_failure_kinds)
        return d


@dataclass
class StepResult:
    """The environment's answer to one assistant message."""

    done: bool
    finish_reason: FinishReason
    observation: Observation | None = None  # None when done
    round: RoundStats | None = None  # None for a turn without tool calls
    answer: str | None = None


@dataclass
class EpisodeStats:
    turns: int = 0
    tool_rounds: int = 0
    tool_calls: int = 0
    searches: int = 0
    searches_per_round: list[int] = field(default_factory=list)
    searches_empty: int = 0  # see RoundStats
    crops_ok: int = 0
    crops_failed: int = 0
    search_failures: int = 0
    errors: Counter = field(default_factory=Counter)
    budget_exhausted: bool = False
    answered: bool = False
    answer: str | None = None
    finish_reason: FinishReason = "running"
    search_failure_kinds: Counter = field(default_factory=Counter)  # see RoundStats

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["errors"] = dict(self.errors)
        d["search_failure_kinds"] = dict(self.search_failure_kinds)
        d["searches_per_round"] = list(self.searches_per_round)
        return d
