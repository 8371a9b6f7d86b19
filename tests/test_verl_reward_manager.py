"""TraceRewardManager driven by verl 0.9.1's own RewardLoopWorker (importlib source), on 1-row DataProtos
built the way AgentLoopWorker._compute_score builds them (unpadded, no response_mask)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.verl

BASE = [
    "actor_rollout_ref.rollout.name=vllm",
    "reward.reward_manager.source=importlib",
    "reward.reward_manager.name=TraceRewardManager",
    "reward.reward_manager.module.path=pkg://hyperseyes_verl.verl.reward_manager",
]


def _worker(model_dir: str, extra: list[str]):
    import verl
    from hydra import compose, initialize_config_dir
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    from hyperseyes_verl.trace.shared import drop_local_store
    from hyperseyes_verl.trace.store import StoreConfig

    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer/config")
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        config = compose(config_name="ppo_trainer",
                         overrides=[*BASE, f"actor_rollout_ref.model.path={model_dir}", *extra])
    drop_local_store(StoreConfig())
    return RewardLoopWorker(config)


def _row(tokenizer, response: str, extra_fields: dict, num_turns: int, *, split="train", index=7, ref=(3, 6)):
    """Same fields as AgentLoopWorker._compute_score: kwargs columns, __num_turns__, tool_extra_fields, lens."""
    from tensordict import TensorDict
    from verl import DataProto

    prompt_ids = tokenizer.encode("<|im_start|>user\nWhich city?<|im_end|>\n<|im_start|>assistant\n",
                                  add_special_tokens=False)
    response_ids = tokenizer.encode(response, add_special_tokens=False)
    prompts, responses = torch.tensor(prompt_ids), torch.tensor(response_ids)
    input_ids = torch.cat([prompts, responses])
    attention_mask = torch.ones_like(input_ids)
    position_ids = torch.arange(len(input_ids)).expand(4, -1)
    kwargs = {
        "data_source": "mmsearch", "index": index, "uid": "u-123", "global_steps": 3,
        "reward_model": {"style": "rule", "ground_truth": "Paris"},
        "extra_info": {"index": index, "split": split, "question": "Which city?", "answers": ["Paname"],
                       "ref_rounds": ref[0], "ref_searches": ref[1]},
        "tools_kwargs": {},
    }
    batch = TensorDict({"prompts": prompts[None], "responses": responses[None], "attention_mask": attention_mask[None],
                        "input_ids": input_ids[None], "position_ids": position_ids[None]}, batch_size=1)
    non_tensor = {**{k: np.array([v]) for k, v in kwargs.items()},
                  "__num_turns__": np.array([num_turns]),
                  "tool_extra_fields": np.array([extra_fields], dtype=object),
                  "prompt_len": np.array([len(prompt_ids)]), "response_len": np.array([len(response_ids)])}
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


CONTRACT_KEYS = {"acc", "answered", "tool_rounds", "tool_calls", "searches", "ref_rounds", "ref_searches",
                 "trace_bonus", "opd_eligible", "judge_source", "prompt_key", "hdpo_format", "store_error"}


SEARCHES = "+hyperseyes.trace.official.counting=searches"  # counts from the agent loop's fields, not the text


async def test_official_mode_with_the_hyperseyes_agent_fields(tiny_qwen25_dir):
    worker = _worker(tiny_qwen25_dir, [SEARCHES])
    assert type(worker.reward_manager).__name__ == "TraceRewardManager"
    fields = {"tool_rounds": 2, "tool_calls": 3, "searches": 5, "searches_per_round": [2, 3], "crops_ok": 1,
              "crops_failed": 0, "search_failures": 0, "tool_errors": {}, "budget_exhausted": False,
              "answered": True, "answer": "paname", "finish_reason": "answer", "truncated": False}
    out = await worker.compute_score(_row(worker.input_tokenizer, "<answer>paname</answer><|im_end|>", fields, 6))
    info = out["reward_extra_info"]
    assert set(info) == CONTRACT_KEYS
    assert out["reward_score"] == 1.0 and info["acc"] == 1.0 and info["trace_bonus"] == 0.0
    assert (info["tool_rounds"], info["tool_calls"], info["searches"]) == (2, 3, 5)
    assert (info["ref_rounds"], info["ref_searches"], info["prompt_key"]) == (3.0, 6.0, "mmsearch/7")
    no_answer = {**fields, "answered": False, "answer": None}
    out = await worker.compute_score(_row(worker.input_tokenizer, "<reason>hm</reason>", no_answer, 6))
    assert out["reward_score"] == -0.5 and out["reward_extra_info"]["answered"] == 0


async def test_official_default_counts_the_decoded_response_as_the_release(tiny_qwen25_dir):
    """Official mode's default counting: tc = <tool_call> blocks of the decoded response, total = one per call,
    whatever the agent loop's fields say (1 round with 2 calls: 3 crops + 2 queries -> tc 2, total 2)."""
    worker = _worker(tiny_qwen25_dir, [])
    fields = {"tool_rounds": 1, "tool_calls": 2, "searches": 5, "searches_per_round": [5], "crops_ok": 3,
              "crops_failed": 0, "search_failures": 0, "tool_errors": {}, "budget_exhausted": False,
              "answered": True, "answer": "Paris", "finish_reason": "answer", "truncated": False}
    response = ('<tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", "area": [[0, 0, 0.3, 1], '
                '[0.3, 0, 0.6, 1], [0.6, 0, 1, 1]]}}</tool_call><tool_call>{"name": "text_search", "arguments": '
                '{"input": ["a", "b"]}}</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>hits'
                '</tool_response><|im_end|>\n<|im_start|>assistant\n<answer>Paris</answer><|im_end|>')
    out = await worker.compute_score(_row(worker.input_tokenizer, response, fields, 4))
    info = out["reward_extra_info"]
    assert (info["tool_rounds"], info["tool_calls"], info["searches"]) == (2, 2, 2)
    assert out["reward_score"] == 1.0


async def test_verl_tool_agent_loop_rows_decode_the_response(tiny_qwen25_dir):
    worker = _worker(tiny_qwen25_dir, [SEARCHES])
    tok = worker.input_tokenizer
    # ToolAgentLoop: 2 tool rounds (3 calls) + answer turn -> num_turns = 2 + 3 + 1 = 6
    response = ('<tool_call>\n{"name": "search", "arguments": {"q": "x"}}\n</tool_call><|im_end|>\n'
                "<|im_start|>user\n<tool_response>\nsays <answer>Rome</answer>\n</tool_response><|im_end|>\n"
                "<|im_start|>assistant\n<answer>Paris</answer><|im_end|>")
    fields = {"tool_rewards": [0.0, 0.0, 0.0], "turn_scores": [], "min_global_steps": 0, "max_global_steps": 0}
    out = await worker.compute_score(_row(tok, response, fields, 6))
    info = out["reward_extra_info"]
    assert out["reward_score"] == 1.0  # the last assistant turn's answer, not the quoted one
    assert (info["tool_rounds"], info["tool_calls"], info["searches"]) == (2, 3, 3)
    wrong = response.replace("<answer>Paris</answer><|im_end|>", "<answer>Rome</answer><|im_end|>")
    assert (await worker.compute_score(_row(tok, wrong, fields, 6)))["reward_score"] == 0.0


async def test_paper_mode_from_plus_overrides_and_validation_rows(tiny_qwen25_dir):
    worker = _worker(tiny_qwen25_dir, ["+hyperseyes.trace.mode=paper", "+hyperseyes.trace.paper.lam=0.1",
                                       "+hyperseyes.trace.paper.r_minus=-0.3", "+hyperseyes.trace.store.use_ray=false"])
    manager = worker.reward_manager
    assert manager.trace_config.mode == "paper" and manager.trace_config.paper.lam == 0.1
    fields = {"tool_rounds": 3, "tool_calls": 3, "searches": 4, "tool_errors": {}, "answered": True, "answer": "Paris",
              "truncated": False}
    out = await worker.compute_score(_row(worker.input_tokenizer, "<answer>Paris</answer>", fields, 8))
    assert out["reward_score"] == pytest.approx(1.0 - 0.1 * 3)
    assert out["reward_extra_info"]["trace_bonus"] == pytest.approx(-0.3)
    val = await worker.compute_score(_row(worker.input_tokenizer, "<answer>Paris</answer>", fields, 8, split="val"))
    assert val["reward_extra_info"]["prompt_key"] == "mmsearch/7#val"
    store = manager.scorer.store
    assert store.peek("mmsearch/7#val") is None and store.peek("mmsearch/7").rounds == 3
    # batch path: verl's compute_score_batch splits rows and runs them concurrently
    from verl import DataProto

    rows = DataProto.concat([_row(worker.input_tokenizer, "<answer>Paris</answer>", fields, 8, index=i)
                             for i in range(3)])
    outs = await worker.compute_score_batch(rows)
    assert [o["reward_extra_info"]["prompt_key"] for o in outs] == ["mmsearch/0", "mmsearch/1", "mmsearch/2"]


def test_bad_trace_section_fails_at_construction(tiny_qwen25_dir):
    with pytest.raises(ValueError, match="r_minus"):
        _worker(tiny_qwen25_dir, ["+hyperseyes.trace.mode=paper", "+hyperseyes.trace.paper.r_minus=0.95"])
