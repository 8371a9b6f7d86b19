"""HDPO pure core: golden numbers by hand and parity with verl's GRPO. The two loss forms (`combine`) are checked
on verl's own actor loss in test_verl_trainer_hdpo_loss.py."""
import numpy as np
import pytest
import torch

from hyperseyes_verl.hdpo import HDPOConfig, efficiency_rewards, hdpo_advantages

S3 = np.sqrt(3) / 2  # 0.866025...


def test_mixed_group_by_hand():
    # one prompt, 4 rollouts: acc [1,1,0,0], format all 1, tool calls [1,3,0,5]
    # R_acc = 0.9*acc + 0.1 = [1.0, 1.0, 0.1, 0.1]; mean 0.55; unbiased std = sqrt(4*0.45^2/3) = 0.519615
    #   A_acc = ±0.45/0.519615 = ±0.866025
    # R_tool (correct only) = [1/2, 1/4]; mean 0.375; unbiased std = sqrt(2*0.125^2/1) = 0.176777
    #   A_tool = [+0.707107, -0.707107, 0, 0]
    # sum form with w_tool 0.15: A = A_acc + 0.15*A_tool
    h = hdpo_advantages(["p"] * 4, [1, 1, 0, 0], [1, 1, 1, 1], [1, 3, 0, 5])
    assert np.allclose(h.acc_adv_N, [S3, S3, -S3, -S3], atol=1e-5)
    assert np.allclose(h.tool_adv_N, [2 ** -0.5, -(2 ** -0.5), 0, 0], atol=1e-5)
    assert np.allclose(h.combined_adv_N, h.acc_adv_N + 0.15 * h.tool_adv_N)
    assert h.metrics["hdpo/groups_with_tool_signal_frac"] == 1.0


def test_one_right_all_right_all_wrong():
    # one right: |Q| = 1 < 2 -> no tool signal; A_acc: R = [1, .1, .1] mean .4, std sqrt((.36+.09+.09)/2)=.519615
    h = hdpo_advantages(["a"] * 3, [1, 0, 0], [1, 1, 1], [2, 0, 0])
    assert np.allclose(h.tool_adv_N, 0)
    assert np.allclose(h.acc_adv_N, [0.6 / 0.519615, -0.3 / 0.519615, -0.3 / 0.519615], atol=1e-5)
    # all right with equal tool counts: R_acc equal -> 0; R_tool equal -> std 0 -> 0 (not NaN)
    h = hdpo_advantages(["b"] * 3, [1, 1, 1], [1, 1, 1], [2, 2, 2])
    assert np.allclose(h.acc_adv_N, 0) and np.allclose(h.tool_adv_N, 0)
    # all right, different tool counts: R_tool = [1, 1/2, 1/3]; mean 11/18; deviations 7/18, -2/18, -5/18
    #   unbiased std = sqrt((49+4+25)/324/2) = sqrt(78/648) = 0.346944 -> A_tool = [1.1209, -0.3203, -0.8006]
    h = hdpo_advantages(["c"] * 3, [1, 1, 1], [1, 1, 1], [0, 1, 2])
    assert np.allclose(h.tool_adv_N, [1.12090, -0.32026, -0.80064], atol=1e-4)
    # all wrong: nothing but the format reward differs
    h = hdpo_advantages(["d"] * 2, [0, 0], [1, 0], [4, 4])
    assert np.allclose(h.tool_adv_N, 0)
    assert np.allclose(h.acc_adv_N, [0.1 / (0.1 * 2 ** 0.5), -0.1 / (0.1 * 2 ** 0.5)], atol=1e-4)


def test_groups_are_independent_and_tool_count_key_is_used():
    h = hdpo_advantages(["x", "x", "y", "y"], [1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 5, 5])
    assert h.tool_adv_N[0] > 0 > h.tool_adv_N[1] and np.allclose(h.tool_adv_N[2:], 0)
    assert efficiency_rewards([1, 0, 1], [0, 0, 3]).tolist() == [1.0, 0.0, 0.25]
    with pytest.raises(ValueError, match=">= 0"):
        efficiency_rewards([1], [-1])
    with pytest.raises(ValueError, match="format has 1 entries"):
        hdpo_advantages(["a", "a"], [1, 0], [1], [0, 0])


@pytest.mark.verl  # the only test here that imports verl: the rest is the pure core
def test_acc_advantage_matches_verl_grpo():
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    rng = np.random.default_rng(0)
    idx = np.array(["a"] * 4 + ["b"] * 4 + ["c"], dtype=object)  # includes a singleton group
    acc, fmt = rng.integers(0, 2, 9), rng.integers(0, 2, 9)
    h = hdpo_advantages(idx, acc, fmt, np.zeros(9))
    r = torch.zeros(9, 3)
    r[:, -1] = torch.tensor(0.9 * acc + 0.1 * fmt, dtype=torch.float32)
    adv, _ = compute_grpo_outcome_advantage(r, torch.ones(9, 3), idx)
    assert np.allclose(h.acc_adv_N, adv[:, 0].numpy(), atol=1e-5)


def test_config():
    c = HDPOConfig()
    assert (c.w_acc, c.w_tool, c.tool_count, c.combine) == (1.0, 0.15, "tool_calls", "sum")
    with pytest.raises(ValueError, match="tool_count"):
        HDPOConfig.from_mapping({"tool_count": "searches"})
