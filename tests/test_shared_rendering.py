"""One episode, two stages, the same text: the RL rollout (verl's real agent-loop classes, RL dataset class and
continuous-token builder, a scripted LLM server) and the SFT row of the same episode (the PRS runner, `sft_row`,
the real `HyperEyesSFTDataset`) must render to identical text for every turn, with the same tokenizer and
processor, tools block, observation wrapper and image tokens included. A model cold-started on stage 1 then
meets no unseen text in stage 2."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.verl

from omegaconf import OmegaConf  # noqa: E402
from test_verl_agent_loop import SAMPLING, _compose, _tok_proc, make_loop, server_for  # noqa: E402

from hyperseyes_verl.episode.runner import run_episode  # noqa: E402
from hyperseyes_verl.data.parquet import png_bytes, rl_row, sft_row, write_parquet  # noqa: E402
from hyperseyes_verl.search.base import Hit, InMemoryBackend  # noqa: E402
from hyperseyes_verl.ugs.environment import SearchEnvironment  # noqa: E402
from hyperseyes_verl.ugs.schema import system_prompt  # noqa: E402
from hyperseyes_verl.ugs.types import UGSConfig  # noqa: E402
from hyperseyes_verl.utils.images import open_image  # noqa: E402
from hyperseyes_verl.utils.openai_chat import ChatReply  # noqa: E402
from hyperseyes_verl.verl import agent_loop as hal  # noqa: E402

QUESTION = "Which of the two towers is taller?"
TURNS = [
    '<reason>two towers</reason>\n<tool_call>\n{"name": "image_search", "arguments": {"image_id": "img_0", "area": '
    '[[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]]}}\n</tool_call>\n<tool_call>\n{"name": "text_search", '
    '"arguments": {"input": ["height of the red tower"]}}\n</tool_call>',
    '<reason>now the heights</reason>\n<tool_call>\n{"name": "text_search", "arguments": {"input": '
    '["year it opened", "height of the blue tower"]}}\n</tool_call>',
    "<reason>found it</reason> <answer>the red tower</answer>",
]


def _image(size=(300, 140)) -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


def _backend() -> InMemoryBackend:
    return InMemoryBackend(text={"height": [Hit("Red Tower", "rises 300 m", "http://r", 0.9)],
                                 "year": [Hit("Opened", "1889", "http://y", 0.8)]})


class ScriptedClient:
    """The PRS teacher: answers the scripted turns in order (what the fake LLM server answers in RL)."""

    def __init__(self, turns):
        self.turns = list(turns)

    async def chat(self, model, messages, **params):
        return ChatReply(text=self.turns.pop(0), finish_reason="stop", completion_tokens=5)


async def _rl_text(model_dir, tmp_path, ugs: UGSConfig) -> str:
    """The rollout's text: RL parquet row -> verl's dataset class -> the agent loop -> prompt + response ids."""
    from verl.utils.dataset.rl_dataset import get_dataset_class

    row = rl_row(question=QUESTION, answers=["the red tower"], images=[_image()], index=0, split="train",
                 data_source="toy", system=system_prompt(ugs))
    path = write_parquet([row], tmp_path / "rl.parquet")
    cfg = _compose(model_dir)
    tokenizer, processor = _tok_proc(model_dir)
    data_cfg = OmegaConf.create({**OmegaConf.to_container(cfg.data, resolve=True), "max_prompt_length": 8192,
                                 "cache_dir": str(tmp_path / "cache"), "filter_overlong_prompts": False})
    sample = get_dataset_class(cfg.data)(data_files=str(path), tokenizer=tokenizer, config=data_cfg,
                                         processor=processor)[0]
    server, _ = server_for(model_dir, TURNS)
    hal.set_backend_override(_backend())
    try:
        loop = make_loop(model_dir, server, ugs=ugs.model_dump())
        out = await loop.run(dict(SAMPLING), raw_prompt=sample["raw_prompt"], extra_info=sample["extra_info"],
                             index=0, tools_kwargs={})
    finally:
        hal.set_backend_override(None)
    assert out.extra_fields["finish_reason"] == "answer" and out.extra_fields["tool_rounds"] == 2
    return tokenizer.decode(list(out.prompt_ids) + list(out.response_ids))


async def _sft_text(model_dir, tmp_path, ugs: UGSConfig, teacher: UGSConfig | None = None, as_is: bool = False
                    ) -> str:
    """The SFT row's text: the PRS runner -> a solved result line -> `sft_row` -> HyperEyesSFTDataset. The
    teacher's episode runs under `teacher` (a PRS budget), the row is rendered for `ugs` (`as_is`: the teacher's
    own text)."""
    from hyperseyes_verl.verl.sft_dataset import HyperEyesSFTDataset

    teacher = teacher or ugs
    image = open_image(png_bytes(_image()))  # what the RL dataset decodes from the parquet row
    env = SearchEnvironment(_backend(), QUESTION, [image], teacher)
    rec = await run_episode(ScriptedClient(TURNS), "teacher", env, QUESTION, [image])
    assert rec.finish_reason == "answer" and rec.tool_rounds == 2
    prs = tmp_path / "prs"
    names = rec.save_images(prs / "trajectories" / "e0")
    result = {"id": "e0", "status": "solved", "budget": teacher.max_tool_rounds, "ref_rounds": rec.tool_rounds,
              "ref_searches": rec.searches,
              "trajectory": json.loads(json.dumps(rec.to_dict())),
              "trajectory_images": [f"trajectories/e0/{n}" for n in names]}
    path = write_parquet([sft_row(result, prs, env=None if as_is else ugs)], tmp_path / "sft.parquet")
    tokenizer, processor = _tok_proc(model_dir)
    ds = HyperEyesSFTDataset(str(path), tokenizer, {"max_length": 16384, "truncation": "error",
                                                    "messages_key": "messages"}, processor=processor)
    item = ds[0]
    ids = item["input_ids"][item["attention_mask"].bool()].tolist()
    return tokenizer.decode(ids)


def _turns(text: str) -> list[str]:
    """Chat turns (`<|im_start|>…`), each without the newline that separates it from the next."""
    return [t.rstrip("\n") for t in text.split("<|im_start|>") if t]


@pytest.mark.parametrize("fmt", ["hyperseyes", "official"])
async def test_sft_row_and_rl_rollout_render_identically(tiny_vl_dir, tmp_path, fmt):
    ugs = UGSConfig(observation_format=fmt)
    rl = _turns(await _rl_text(tiny_vl_dir, tmp_path / "rl", ugs))
    sft = _turns(await _sft_text(tiny_vl_dir, tmp_path / "sft", ugs))
    # system (with the # Tools block), user, then 3 assistant turns and 2 observations
    assert [t.split("\n", 1)[0] for t in sft] == ["system", "user", "assistant", "user", "assistant", "user",
                                                  "assistant"]
    assert len(rl) == len(sft)
    for i, (a, b) in enumerate(zip(rl, sft)):
        assert a == b, f"turn {i} differs between RL and SFT:\nRL : {a[:400]!r}\nSFT: {b[:400]!r}"
    assert "# Tools" in sft[0] and '"image_search"' in sft[0] and '"items"' in sft[0]
    observations = [sft[3], sft[5]]
    assert all("<tool_response>" in t and "</tool_response>" in t for t in observations)
    assert all(t.count("<tool_response>") == 1 for t in observations)  # one wrapper per round, not per call
    assert sft[3].count("<|vision_start|>") == 2  # both crops reach the model in both stages
    if fmt == "official":
        assert "原始问题（Original Question）： " + QUESTION in sft[3] and "裁剪成功: img_1, img_2" in sft[3]
        assert sft[3].index("<|vision_start|>") < sft[3].index("<tool_response>")  # crop images first
    else:
        assert "Original question: " + QUESTION in sft[3] and "img_1: <|vision_start|>" in sft[3]


@pytest.mark.parametrize("fmt", ["hyperseyes", "official"])
async def test_sft_row_states_the_rl_budget_not_the_teachers(tiny_vl_dir, tmp_path, fmt):
    """PRS solved the episode with a budget of 2 rounds, so the teacher was told "1 round remaining", then "answer
    now"; RL runs with 3 and says nothing, then "1 remaining". The SFT row must show what RL shows."""
    from hyperseyes_verl.data.prs import budget_config

    ugs = UGSConfig(observation_format=fmt, max_tool_rounds=3, max_turns=4, tool_schemas=False)
    teacher = budget_config(ugs, 2)
    rl = _turns(await _rl_text(tiny_vl_dir, tmp_path / "rl", ugs))
    raw = _turns(await _sft_text(tiny_vl_dir, tmp_path / "raw", ugs, teacher, as_is=True))
    sft = _turns(await _sft_text(tiny_vl_dir, tmp_path / "sft", ugs, teacher))
    assert sft == rl
    none_left = "answer now" if fmt == "hyperseyes" else "no tool calls remaining"
    assert none_left in raw[5] and none_left not in sft[5]  # the teacher's last observation, as it was
    assert "1 tool" not in sft[3] and "1 tool" in sft[5]


def test_one_observation_message_per_round_and_tools_as_json():
    from hyperseyes_verl.ugs.conversation import chat_tools, decode_tools, observation_message, tools_json
    from hyperseyes_verl.ugs.types import Observation

    img = Image.new("RGB", (8, 8))
    first = [{"type": "text", "text": "a #1:\n"}, {"type": "image", "image": img}]
    obs = Observation([{"role": "tool", "content": first},
                       {"role": "tool", "content": [{"type": "text", "text": "b #2:\nQ"}]}])
    msg = observation_message(obs)
    assert msg["role"] == "tool" and [b["type"] for b in msg["content"]] == ["text", "image", "text"]
    assert msg["content"][2]["text"] == "\nb #2:\nQ" and msg["content"][1]["image"] is img
    with pytest.raises(ValueError, match="mixes roles"):
        observation_message(Observation([{"role": "tool", "content": []}, {"role": "user", "content": []}]))
    assert decode_tools(tools_json()) == chat_tools() and decode_tools(None) is None
    with pytest.raises(ValueError, match="not JSON"):
        decode_tools("{oops")
    with pytest.raises(ValueError, match="JSON list of tool schemas"):
        decode_tools('{"type": "function"}')


async def test_without_tool_schemas_both_stages_drop_the_tools_block(tiny_vl_dir, tmp_path):
    """`tool_schemas: false` (the tiny CPU recipe): the system prompt alone, in both stages alike."""
    ugs = UGSConfig(tool_schemas=False)
    rl = _turns(await _rl_text(tiny_vl_dir, tmp_path / "rl", ugs))
    sft = _turns(await _sft_text(tiny_vl_dir, tmp_path / "sft", ugs))
    assert rl == sft
    assert "# Tools" not in sft[0] and "<tools>" not in sft[0]
    assert "image_search(image_id, area)" in sft[0]  # the system prompt still describes the tools
