"""The example configs compose on top of verl 0.9.1's ppo_trainer and yield valid TRACE configs."""
from __future__ import annotations

import os

import pytest

from hyperseyes_verl.verl.trace_state import trace_config_from_trainer

pytestmark = pytest.mark.verl  # composes verl's own ppo_trainer config

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.mark.parametrize("name, mode", [("trace_official", "official"), ("trace_paper_tool_agent", "paper")])
def test_example_composes_and_validates(name, mode):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=EXAMPLES, version_base=None):
        cfg = compose(config_name=name, overrides=["actor_rollout_ref.rollout.name=vllm"])
    assert cfg.reward.reward_manager.name == "TraceRewardManager"
    assert cfg.reward.reward_manager.module.path == "pkg://hyperseyes_verl.verl.reward_manager"
    assert cfg.algorithm.adv_estimator  # verl's own defaults are still there
    assert trace_config_from_trainer(cfg).mode == mode
