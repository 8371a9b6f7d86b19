"""Parquet datasets for verl 0.9.1: RL prompts (stage 2) and SFT conversations (stage 1).

RL rows follow docs/CONTRACTS.md §5 and are read by `RLHFDataset` (or `hyperseyes_verl.verl.dataset.
HyperEyesDataset` on boxes without torchvision): `prompt` chat messages with `<image>` placeholders,
`images` as `{"bytes": png}`, `reward_model.ground_truth`, `extra_info` with the stable prompt index and
the PRS reference (`ref_rounds` / `ref_searches`, -1 when the item has none).

SFT rows are what verl's `MultiTurnSFTDataset` (through `HyperEyesSFTDataset`) reads
(`data.messages_key=messages`, images column `images`, `tools` column): the RL system prompt, user (question +
`<image>`), then the teacher's assistant turns (text with their `<tool_call>` blocks) alternating with one
observation message per tool round (a `tool` message, or the release's user message in the official format;
crops as `<image>`), and the tool schemas the agent loop renders into every RL prompt. Messages and tools come
from `hyperseyes_verl.ugs.conversation`, the functions the agent loop uses, so an SFT row renders to the text an
RL rollout of the same episode renders to (tests/test_shared_rendering.py). The dataset puts the loss on
assistant turns only.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from hyperseyes_verl.ugs import official_format, render
from hyperseyes_verl.ugs.conversation import prompt_messages, tools_json
from hyperseyes_verl.ugs.schema import system_prompt
from hyperseyes_verl.ugs.types import UGSConfig
from hyperseyes_verl.utils.images import open_image, upright

AGENT_NAME = "hyperseyes_agent"
DEFAULT_SOURCE = "hyperseyes/synth"


def png_bytes(image: Image.Image | str | Path) -> bytes:
    """An image (PIL or a file path) as RGB PNG bytes, turned upright first (PNG drops the EXIF orientation)."""
    rgb = upright(image).convert("RGB") if isinstance(image, Image.Image) else open_image(image)
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    return buf.getvalue()


def split_of(key: str, val_frac: float, seed: int = 0) -> str:
    """Deterministic train/val assignment by hash of the id (stable when items are added or removed)."""
    if val_frac <= 0:
        return "train"
    h = int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_frac else "train"


def rl_row(*, question: str, answers: list[str], images: list[Any], index: int, split: str, data_source: str,
           ref_rounds: int = -1, ref_searches: int = -1, entity_count: int = 1, domain: str = "",
           system: str | None = None) -> dict[str, Any]:
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError(f"item {data_source}/{index}: answers {answers!r} must be non-empty strings")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split {split!r} must be train, val or test")
    return {
        "data_source": data_source,
        "prompt": prompt_messages(question, len(images), system),
        "images": [{"bytes": png_bytes(i)} for i in images],
        "reward_model": {"style": "rule", "ground_truth": answers[0]},
        "agent_name": AGENT_NAME,
        "extra_info": {"index": int(index), "split": split, "question": question, "answers": list(answers),
                       "ref_rounds": int(ref_rounds), "ref_searches": int(ref_searches),
                       "entity_count": int(entity_count), "domain": domain},
    }


def rl_rows(items: list[dict[str, Any]], prs_results: dict[str, dict[str, Any]] | None = None, *,
            data_source: str = DEFAULT_SOURCE, val_frac: float = 0.0, seed: int = 0,
            system: str | None = system_prompt(UGSConfig()), only_solved: bool = False) -> list[dict[str, Any]]:
    """RL rows from synthesized items (images as absolute paths, see `synth.read_items`).

    `prs_results` (id -> PRS result line) supplies the references; `only_solved` keeps items the teacher
    solved (the official RL data had a cold-start reference for every prompt).
    """
    prs_results = prs_results or {}
    rows = []
    for n, item in enumerate(items):
        res = prs_results.get(item["id"], {})
        solved = res.get("status") == "solved"
        if only_solved and not solved:
            continue
        rows.append(rl_row(question=item["question"], answers=item["answers"], images=item.get("images", []),
                           index=item.get("index", n), split=split_of(item["id"], val_frac, seed),
                           data_source=data_source, ref_rounds=res["ref_rounds"] if solved else -1,
                           ref_searches=res["ref_searches"] if solved else -1,
                           entity_count=item.get("entity_count", 1), domain=item.get("domain", ""), system=system))
    return rows


def _text_with_placeholders(content: Any) -> tuple[str, list[int]]:
    """A saved message's content as one string with `<image>` per image ref; returns (text, refs)."""
    if isinstance(content, str):
        if "<image>" in content:
            raise ValueError("a text turn of the trajectory contains a literal '<image>'; it would be taken for "
                             "an image placeholder — drop or escape it before building SFT rows")
        return content, []
    text, refs = "", []
    for b in content:
        if b.get("type") == "image":
            text += "<image>"
            refs.append(int(b["ref"]))
        else:
            t = b.get("text", "")
            if "<image>" in t:
                raise ValueError("an observation contains a literal '<image>' (e.g. in a search snippet); "
                                 "it would be taken for an image placeholder")
            text += t
    return text, refs


def _hint(rounds_left: int, env: UGSConfig, when_due: bool) -> str:
    """The remaining-budget text an observation of `env`'s format closes with (`when_due`: only where the
    environment writes one, else the sentence whatever the threshold), with its leading newline."""
    if env.observation_format == "official":
        return (official_format.hint(rounds_left, env.hint_when_rounds_left) if when_due
                else official_format.hint_sentence(rounds_left))
    text = render.budget_hint(rounds_left, env) if when_due else render.budget_sentence(rounds_left)
    return "\n" + text if text else ""


def _rebudget(messages: list[dict[str, Any]], budget: int, env: UGSConfig, item_id: str) -> None:
    """In place: each round's remaining-budget hint as `env` shows it, instead of as the PRS budget did.

    The teacher ran with `budget` tool rounds, so its observations say "1 tool round remaining" where the RL
    environment, with more rounds, says nothing; a policy trained on the teacher's text would meet its first
    hint-less observation only in RL (issue #12: a tiny model's 2nd turns broke on exactly that)."""
    refused = render.ROUND_BUDGET_REFUSAL.split("{}")[0]
    # the hyperseyes format puts the hint before the re-stated question, the official one at the very end
    tail = "\n" + render.question_line("") if env.observation_format == "hyperseyes" and env.restate_question else ""
    rounds = 0
    for i, m in enumerate(messages[2:], start=2):  # after the system prompt and the question
        if m["role"] == "assistant":
            rounds += 1
            continue
        if i + 1 < len(messages) and messages[i + 1]["role"] != "assistant":
            continue  # the round's hint closes its last observation message
        text = m["content"]
        if refused in text:
            raise ValueError(f"trajectory {item_id!r} has tool calls refused for want of budget: under another "
                             "budget they would have run; keep the teacher's budget (env=None) or drop the item")
        end = text.rfind(tail) if tail else len(text)
        if end < 0:
            raise ValueError(f"trajectory {item_id!r}: an observation does not end with the re-stated question")
        body, old = text[:end], _hint(budget - rounds, env, when_due=False)
        body = body[:-len(old)] if body.endswith(old) else body
        m["content"] = body + _hint(env.max_tool_rounds - rounds, env, when_due=True) + text[end:]


def sft_row(result: dict[str, Any], prs_dir: str | Path, data_source: str = DEFAULT_SOURCE,
            env: UGSConfig | None = UGSConfig()) -> dict[str, Any]:
    """One SFT conversation from a solved PRS result line.

    The teacher's text states the PRS budget it ran under (1, 2, ... rounds): its system prompt and its
    remaining-budget hints. The row shows `env`'s instead, the RL environment's, which RL rows and the agent
    loop show, and renders the tool schemas as RL does under `env.tool_schemas`. `env=None` keeps the teacher's
    text and the schemas."""
    if result.get("status") != "solved":
        raise ValueError(f"PRS result {result.get('id')!r} has status {result.get('status')!r}; only solved "
                         "trajectories become SFT data")
    traj = result["trajectory"]
    files = [Path(prs_dir) / p for p in result["trajectory_images"]]
    messages, order = [], []
    for m in traj["messages"]:
        text, refs = _text_with_placeholders(m["content"])
        if m["role"] == "system" and env is not None:
            text = system_prompt(env)
        messages.append({"role": m["role"], "content": text})
        order.extend(refs)
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"trajectory {result['id']!r} does not end with an assistant turn")
    if env is not None:
        if result["ref_rounds"] > env.max_tool_rounds:
            raise ValueError(f"trajectory {result['id']!r} takes {result['ref_rounds']} tool rounds, more than the "
                             f"environment's {env.max_tool_rounds}: raise max_tool_rounds or lower the PRS max_rounds")
        if "budget" not in result:
            raise ValueError(f"PRS result {result['id']!r} has no 'budget': it is needed to restate the hints")
        _rebudget(messages, int(result["budget"]), env, result["id"])
    tools = env is None or env.tool_schemas
    # without schemas the column is left out (an all-null column reads back as pandas NA, not None)
    return {"id": result["id"], "data_source": data_source, "messages": messages,
            "images": [{"bytes": png_bytes(files[k])} for k in order], **({"tools": tools_json()} if tools else {}),
            "ref_rounds": int(result["ref_rounds"]), "ref_searches": int(result["ref_searches"])}


def sft_rows(prs_results: dict[str, dict[str, Any]], prs_dir: str | Path, data_source: str = DEFAULT_SOURCE,
             env: UGSConfig | None = UGSConfig()) -> list[dict[str, Any]]:
    return [sft_row(r, prs_dir, data_source, env) for r in prs_results.values() if r.get("status") == "solved"]


def write_parquet(rows: list[dict[str, Any]], path: str | Path) -> Path:
    if not rows:
        raise ValueError(f"no rows to write to {path}: check the inputs (no items, or none solved by PRS)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path
