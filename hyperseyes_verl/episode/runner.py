"""One HyperEyes episode against a served model: the loop shared by Progressive Rejection Sampling and
evaluation.

The model gets the UGS system prompt (tool schemas described as text, budgets from the environment's
`UGSConfig`) and the user turn (images + question); each assistant turn goes to
`SearchEnvironment.step`; each observation is ONE message built by the function the RL agent loop uses
(`hyperseyes_verl.ugs.conversation.observation_message`), saved with its own role (`tool`, or `user` in the
official format) so SFT rows render exactly like RL rollouts, and sent to the endpoint as a user message
(OpenAI-style endpoints cannot put images in tool messages).
The environment owns the budgets and ends the episode; endpoint failures end it too, recorded, never
raised. Concurrency is the caller's business (one `run_episode` per task). Each image is encoded to its
data URL once, when it enters the conversation, not again on every later turn that re-sends it; that encoding
and each message's JSON happen in the client's encoder threads (`encoder_pool`), never on the event loop.

Saved records reference images by position (`{"type": "image", "ref": k}`; k indexes `record.images`:
the input images first, then every crop in the order shown), so trajectories can be written without
inlining pixels and re-assembled into SFT conversations.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from hyperseyes_verl.ugs.conversation import chat_tools, observation_message
from hyperseyes_verl.ugs.schema import system_prompt, user_prompt
from hyperseyes_verl.ugs.types import MAX_TOKENS_PER_TURN
from hyperseyes_verl.utils.openai_chat import EndpointError, encoder_pool, image_data_url, wire_message

CHARS_PER_TOKEN = 4.0  # fallback when `usage` is missing: the usual ~4 characters per BPE token of English


class SamplingParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.0, ge=0, description="0 = greedy (PRS teacher / eval); the RL recipe uses 0.8")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass; 1 = off")
    max_tokens: int = Field(MAX_TOKENS_PER_TURN, ge=1, description="per assistant turn (official RL response cap)")
    seed: int | None = Field(None, description="passed through where the endpoint supports it")
    stop: list[str] | None = Field(None, description="extra stop strings")


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def user_content(question: str, images: list[Image.Image]) -> list[dict[str, Any]]:
    """The first user turn in block form: `user_prompt` text with each `<image>` replaced by the image."""
    parts = user_prompt(question, len(images)).split("<image>")
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        if part:
            blocks.append({"type": "text", "text": part})
        if i < len(images):
            blocks.append({"type": "image", "image": images[i]})
    return blocks


@dataclass
class EpisodeRecord:
    """Everything one episode produced. `to_dict()` is JSON-safe (images as refs)."""

    question: str
    model: str
    messages: list[dict[str, Any]] = field(default_factory=list)  # images as {"type": "image", "ref": k}
    images: list[Image.Image] = field(default_factory=list, repr=False)
    rounds: list[dict[str, Any]] = field(default_factory=list)  # RoundStats.to_dict() per tool round
    stats: dict[str, Any] = field(default_factory=dict)  # EpisodeStats.to_dict()
    answer: str | None = None
    finish_reason: str = "running"  # the environment's, or "endpoint_error"
    generated_tokens: int = 0
    tokens_estimated: bool = False  # True if any turn lacked usage.completion_tokens
    turn_finish_reasons: list[str] = field(default_factory=list)  # endpoint's per turn ("stop", "length")
    endpoint_errors: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def tool_rounds(self) -> int:
        return int(self.stats.get("tool_rounds", 0))

    @property
    def searches(self) -> int:
        return int(self.stats.get("searches", 0))

    @property
    def truncated(self) -> bool:
        return "length" in self.turn_finish_reasons

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "model": self.model, "messages": self.messages,
                "n_images": len(self.images), "rounds": self.rounds, "stats": self.stats, "answer": self.answer,
                "finish_reason": self.finish_reason, "generated_tokens": self.generated_tokens,
                "tokens_estimated": self.tokens_estimated, "turn_finish_reasons": self.turn_finish_reasons,
                "truncated": self.truncated, "endpoint_errors": self.endpoint_errors, "wall_s": self.wall_s}

    def save_images(self, folder: str | Path) -> list[str]:
        """Write `images` as img_{k}.png; returns the file names in ref order."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for k, img in enumerate(self.images):
            name = f"img_{k}.png"
            img.convert("RGB").save(folder / name)
            names.append(name)
        return names


def content_text(content: Any) -> str:
    """A message's content as one string, `<image>` for each image block (whatever form the image is in)."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") if b.get("type") == "text" else "<image>" for b in content)


async def _add_message(role: str, content: Any, live: list[dict[str, Any]], rec: EpisodeRecord,
                       wire_role: str | None = None) -> None:
    """Append a message twice: to `live` (the wire form: a `WireMessage`, each image a data URL encoded once, here,
    off the loop; role `wire_role` when given) and to `rec.messages` (each image a ref into `rec.images`, where the
    PIL image is kept; role `role`)."""
    loop = asyncio.get_running_loop()
    pool = encoder_pool()
    if isinstance(content, str):
        wire_content: Any = content
        saved: Any = content
    else:
        images = [b["image"] for b in content if b.get("type") == "image"]
        # looked up at call time (tests count the calls); the crops of one message encode in parallel
        urls = iter(await asyncio.gather(*(loop.run_in_executor(pool, image_data_url, im) for im in images)))
        wire_content, saved = [], []
        for b in content:
            if b.get("type") == "image":
                rec.images.append(b["image"])
                wire_content.append({"type": "image_url", "image_url": {"url": next(urls)}})
                saved.append({"type": "image", "ref": len(rec.images) - 1})
            else:
                wire_content.append(dict(b))
                saved.append(dict(b))
    if isinstance(content, str):  # a few KB of text: cheaper here than a thread hop
        live.append(wire_message(wire_role or role, wire_content))
    else:
        live.append(await loop.run_in_executor(pool, wire_message, wire_role or role, wire_content))
    rec.messages.append({"role": role, "content": saved})


WIRE_FORMATS = ("openai", "chat_template")


async def run_episode(client, model: str, env, question: str, images: list[Image.Image],
                      sampling: SamplingParams = SamplingParams(), *, system: str | None = None,
                      wire: str = "openai") -> EpisodeRecord:
    """Drive `model` through `env` (a fresh `SearchEnvironment` for this question) until it finishes.

    `system` overrides the system prompt (default: `system_prompt(env.config)`). `wire`: "openai" sends
    observations as user turns (OpenAI tool messages cannot hold images); "chat_template" sends them as `tool`
    messages with the tool schemas, for a server that renders the model's chat template with both (e.g.
    `hyperseyes serve-model`), so the model reads the text the RL stage trains on.
    """
    if wire not in WIRE_FORMATS:
        raise ValueError(f"wire={wire!r}; use one of {WIRE_FORMATS}")
    t0 = time.perf_counter()
    rec = EpisodeRecord(question=question, model=model)
    live: list[dict[str, Any]] = []
    await _add_message("system", system if system is not None else system_prompt(env.config), live, rec)
    await _add_message("user", user_content(question, images), live, rec)
    params = sampling.model_dump(exclude_none=True)
    if wire == "chat_template" and env.config.tool_schemas:
        params["tools"] = chat_tools()
    # The environment ends the episode within max_turns; the bound only guards a misbehaving env.
    for _turn in range(env.config.max_turns + 1):
        try:
            reply = await client.chat(model, live, **params)
        except EndpointError as e:
            rec.endpoint_errors.append({"turn": len(rec.turn_finish_reasons), "kind": e.kind, "message": e.message,
                                        "status": e.status})
            rec.finish_reason = "endpoint_error"
            break
        rec.turn_finish_reasons.append(reply.finish_reason)
        if reply.completion_tokens is None:
            rec.tokens_estimated = True
            rec.generated_tokens += estimate_tokens(reply.text)
        else:
            rec.generated_tokens += int(reply.completion_tokens)
        await _add_message("assistant", reply.text, live, rec)
        result = await env.step(reply.text)
        if result.round is not None:
            rec.rounds.append(result.round.to_dict())
        if result.done:
            rec.finish_reason = result.finish_reason
            rec.answer = result.answer
            break
        obs = observation_message(result.observation)
        await _add_message(obs["role"], obs["content"], live, rec,
                           wire_role=None if wire == "chat_template" else "user")
    else:
        rec.finish_reason = "turn_budget"
    rec.stats = env.stats.to_dict()
    if rec.finish_reason == "endpoint_error":
        rec.stats["finish_reason"] = "endpoint_error"
    rec.wall_s = round(time.perf_counter() - t0, 4)
    return rec
