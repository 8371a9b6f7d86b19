"""TRACE reward manager for verl 0.9.1's reward loop.

    reward.reward_manager.source=importlib
    reward.reward_manager.name=TraceRewardManager
    reward.reward_manager.module.path=pkg://hyperseyes_verl.verl.reward_manager

Each of verl's reward workers builds one; `run_single` gets a 1-row DataProto per finished trajectory,
decodes the response, and hands plain data to `hyperseyes_verl.trace.scorer.TraceScorer`. TRACE settings come
from the trainer config's optional `hyperseyes.trace` section (`+hyperseyes.trace.mode=paper`, ...).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from hyperseyes_verl.trace.scorer import RolloutInput, TraceScorer
from hyperseyes_verl.verl import verl_guard
from hyperseyes_verl.verl.store_actor import get_store
from hyperseyes_verl.verl.trace_state import trace_config_from_trainer, warn_if_official_without_trainer


def _plain(value: Any) -> Any:
    """numpy scalars (0-d arrays included) as Python values; anything else as is."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


class TraceRewardManager(RewardManagerBase):
    """TRACE reward: judge + round counting + per-prompt reference (official or paper mode)."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None,
                 reward_model_tokenizer=None, **kwargs):
        verl_guard.require("reward_manager")
        super().__init__(config, tokenizer, compute_score)
        self.trace_config = trace_config_from_trainer(config)
        warn_if_official_without_trainer(config, self.trace_config)
        self.scorer = TraceScorer(self.trace_config, connect=get_store)  # the job's shared store (Ray actor)

    def _decode(self, row) -> str:
        responses = row.batch["responses"]
        n = responses.shape[-1]
        valid = int(row.batch["attention_mask"][-n:].sum()) if "attention_mask" in row.batch.keys() else n
        return self.tokenizer.decode(responses[:valid].tolist(), skip_special_tokens=False)

    async def run_single(self, data: DataProto) -> dict:
        row = data[-1]  # multi-output trajectories: the last one carries the answer
        nt = {k: _plain(v) for k, v in row.non_tensor_batch.items()}
        extra_info = dict(nt.get("extra_info") or {})
        reward_model = nt.get("reward_model") or {}
        tool_fields = nt.get("tool_extra_fields")
        tool_fields = dict(tool_fields) if tool_fields is not None else None
        cfg = self.trace_config
        need_text = (cfg.answer_from == "response" or not (tool_fields and "answer" in tool_fields)
                     or (cfg.mode == "official" and cfg.official.counting == "release"))  # counts read from text
        steps = nt.get("global_steps")
        x = RolloutInput(
            response_text=self._decode(row) if need_text else "",
            ground_truth=reward_model.get("ground_truth"),
            data_source=str(nt.get("data_source", "unknown")),
            index=extra_info.get("index"),
            extra_info=extra_info,
            tool_extra_fields=tool_fields,
            num_turns=None if nt.get("__num_turns__") is None else int(nt["__num_turns__"]),
            global_step=None if steps is None else int(steps),
            raw_prompt=nt.get("raw_prompt"),
        )
        return await self.scorer.score(x)
