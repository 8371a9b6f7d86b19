"""The chat messages of an episode, rendered one way for SFT rows and RL rollouts.

A model cold-started on stage-1 SFT must meet the same text in stage-2 RL. Both stages build their messages
here and hand them to the same chat template with the same tools:

- `chat_tools()`: the tool schemas rendered into the system turn (`# Tools` block of Qwen templates), in
  every RL prompt (agent loop) and every SFT row (`tools` column, stored as JSON text: parquet would merge the
  two schemas' different `properties` into one struct and add null fields to each);
- `prompt_messages`: system prompt + first user turn (question, `<image>` per input image);
- `observation_message`: one tool round's observation as ONE message. In the `hyperseyes` format it is a
  `tool` message (the template wraps it in `<tool_response>`); in the `official` format it is the release's
  user message. One message per round matters: verl's SFT dataset renders each message on its own, so
  several consecutive tool messages would be split into several user turns in SFT but share one in RL.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from PIL import Image

from hyperseyes_verl.ugs.schema import TOOL_SCHEMAS, user_prompt
from hyperseyes_verl.ugs.types import Observation
from hyperseyes_verl.utils.images import fit_image_tokens


def chat_tools() -> list[dict[str, Any]]:
    """The tool schemas every prompt renders (a copy: templates and verl must not edit the shared one)."""
    return copy.deepcopy(TOOL_SCHEMAS)


def tools_json() -> str:
    """`chat_tools()` as the JSON text of an SFT row's `tools` column."""
    return json.dumps(TOOL_SCHEMAS, ensure_ascii=False)


def decode_tools(value: Any) -> list[dict[str, Any]] | None:
    """An SFT row's `tools` cell: JSON text (what `tools_json` writes), a list, or None."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"the tools column holds text that is not JSON ({e}): {value[:80]!r}") from e
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError(f"the tools column must be a JSON list of tool schemas, got {str(value)[:80]!r}")
    return value


def prompt_messages(question: str, n_images: int, system: str | None) -> list[dict[str, str]]:
    """System prompt (when given) and the first user turn with one `<image>` per input image."""
    msgs = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": user_prompt(question, n_images)})
    return msgs


def observation_message(observation: Observation) -> dict[str, Any]:
    """One round's observation as one message (role of the environment's messages, contents joined by a
    newline). Blocks are copied; images are the environment's objects."""
    messages = observation.messages
    roles = {m["role"] for m in messages}
    if len(roles) != 1:
        raise ValueError(f"an observation mixes roles {sorted(roles)}; the environment writes one role per round")
    content: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if i:
            content.append({"type": "text", "text": "\n"})
        content.extend(dict(b) for b in m["content"])
    merged: list[dict[str, Any]] = []  # adjacent text blocks joined: the same text, fewer blocks
    for b in content:
        if b.get("type") == "text" and merged and merged[-1].get("type") == "text":
            merged[-1] = {"type": "text", "text": merged[-1]["text"] + b["text"]}
        else:
            merged.append(b)
    return {"role": messages[0]["role"], "content": merged}


def fit_message_images(messages: list[dict[str, Any]], max_tokens: int | None, factor: int) -> list[dict[str, Any]]:
    """`messages` with every PIL image block resized to at most `max_tokens` visual tokens
    (`fit_image_tokens`, the function SFT rows go through); None = unchanged. Copies the messages and blocks."""
    if max_tokens is None:
        return messages
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = [{**b, "image": fit_image_tokens(b["image"], max_tokens, factor)}
                       if b.get("type") == "image" and isinstance(b.get("image"), Image.Image) else b
                       for b in content]
        out.append({**m, "content": content})
    return out
