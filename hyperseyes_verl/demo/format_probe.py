"""Did stage 1 teach the format? Every assistant turn of a few SFT conversations, generated greedily from the
conversation's own context: the data's prompt, its own earlier turns and its own observations.

A served evaluation mixes two skills: writing turns that parse, and grounding crops that find something. A tiny
policy that cannot localise entities reads only "no results" after its first turn, an observation the SFT data
(solved trajectories) never shows, and its later turns can fall apart (issue #12: on free-layout mosaics 1 of 92
crops found anything). This probe holds the observations to the data's, so what it measures is the format alone.
The conversations are training data: the probe measures what was learned, not generalisation.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any


def turn_validity(results) -> dict[str, Any]:
    """Share of the model's assistant turns that parse into tool calls or an answer, overall and by turn index
    (`by_turn[i]` = [valid, turns] of every episode's i-th assistant turn)."""
    from hyperseyes_verl.ugs.parser import parse_turn

    valid = attempted = total = 0
    by_turn: list[list[int]] = []
    for r in results:
        turns = [m["content"] for m in r.trajectory or []
                 if m.get("role") == "assistant" and isinstance(m.get("content"), str)]
        for i, text in enumerate(turns):
            t = parse_turn(text)
            ok = not t.errors and (bool(t.calls) or t.answer is not None)
            total += 1
            attempted += int(t.n_tool_blocks > 0 or t.answer is not None)
            valid += int(ok)
            if i == len(by_turn):
                by_turn.append([0, 0])
            by_turn[i][0] += int(ok)
            by_turn[i][1] += 1
    share = (lambda n: round(n / total, 4) if total else None)
    return {"turns": total, "attempted": attempted, "valid": valid, "attempt_share": share(attempted),
            "valid_share": share(valid), "by_turn": by_turn}


def _sft_dataset(parquet: Path, processor):
    from omegaconf import OmegaConf

    from hyperseyes_verl.verl.sft_dataset import HyperEyesSFTDataset

    cfg = OmegaConf.create({"messages_key": "messages", "image_key": "images", "tools_key": "tools",
                            "max_length": 1 << 20, "truncation": "error"})
    return HyperEyesSFTDataset([str(parquet)], processor.tokenizer, cfg, processor=processor)


def probe_turns(model_dir: str | Path, sft_parquet: str | Path, conversations: int, max_new_tokens: int) -> list:
    """One pseudo-result per conversation whose `trajectory` holds the model's assistant turns, each generated
    after the conversation's own messages up to that turn (the stage-1 dataset's rendering: images, tools)."""
    from hyperseyes_verl.hf.chat_server import ChatModel

    chat = ChatModel(str(model_dir))  # what `hyperseyes serve-model` generates with, greedy
    ds = _sft_dataset(Path(sft_parquet), chat.processor)
    results = []
    for k in range(min(conversations, len(ds.messages))):
        messages = ds._build_messages(ds.dataframe.iloc[k].to_dict())
        tools = ds.tools[k] if ds.tools is not None else None
        turns = []
        for t, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            context = messages[:t]
            images = [p["image"] for m in context if isinstance(m["content"], list)
                      for p in m["content"] if p.get("type") == "image"]
            text = chat.generate(context, images, tools, max_new_tokens=max_new_tokens)[0]
            turns.append({"role": "assistant", "content": text})
        results.append(SimpleNamespace(trajectory=turns))
    return results


def format_probe(models: dict[str, Path], sft_parquet: str | Path, conversations: int,
                 max_new_tokens: int) -> dict[str, dict[str, Any]]:
    """Per model: `turn_validity` of the probed turns (`by_turn[i]`: the conversations' i-th assistant turns)."""
    return {name: turn_validity(probe_turns(path, sft_parquet, conversations, max_new_tokens))
            for name, path in models.items()}
