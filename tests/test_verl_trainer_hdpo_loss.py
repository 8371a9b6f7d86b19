"""HDPOTwoSurrogateLoss (combine=two_surrogate) on a real verl micro-batch, with verl's own ppo_loss as the base,
called the way verl's engine calls the actor loss. Checked against w_acc*L(A_acc) + w_tool*L(A_tool) computed
here by hand (vanilla dual-clip PPO surrogate, token-mean), with ratios outside the clip range on both sides."""
from functools import partial

import numpy as np
import pytest
import torch
from tensordict import TensorDict

pytestmark = pytest.mark.verl

P, R = 3, 4
RESP_LENS = [4, 2, 3]  # right padding inside the response block
PROMPT_LENS = [3, 2, 1]  # left padding inside the prompt block
W_ACC, W_TOOL = 1.0, 0.15


def actor_config(entropy_coeff=0.0):
    from verl.workers.config import FSDPActorConfig

    return FSDPActorConfig(strategy="fsdp", ppo_micro_batch_size_per_gpu=3, rollout_n=1, clip_ratio=0.2,
                           entropy_coeff=entropy_coeff)


def columns():
    g = torch.Generator().manual_seed(0)
    B = len(RESP_LENS)
    resp_mask = torch.zeros(B, R, dtype=torch.long)
    for i, r in enumerate(RESP_LENS):
        resp_mask[i, :r] = 1
    resp_mask[0, 1] = 0  # a tool observation inside the first response
    old = -torch.rand(B, R, generator=g) - 0.5
    # log-ratios spread over [-0.6, 0.6]: clipping (eps 0.2) is hit on both sides
    new = old + (torch.rand(B, R, generator=g) * 1.2 - 0.6)
    a_acc = torch.tensor([1.3, -0.7, -0.6])[:, None] * resp_mask
    a_tool = torch.tensor([0.7071, -0.7071, 0.0])[:, None] * resp_mask
    return resp_mask, old, new, a_acc, a_tool


def micro_batch(resp_mask, old, new, advantages, tool_adv):
    """Left/right-padded batch -> verl's left_right_2_no_padding (as the actor's engine receives it), plus the
    non-tensor fields FSDPEngine.forward_backward_batch assigns; model_output log-probs nested like the engine's."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    B = len(RESP_LENS)
    attn = torch.zeros(B, P + R, dtype=torch.long)
    logp_full = torch.zeros(B, P + R)
    for i, (p, r) in enumerate(zip(PROMPT_LENS, RESP_LENS)):
        attn[i, P - p:P + r] = 1
        logp_full[i, P - 1:P - 1 + r] = new[i, :r]  # entry j = log-prob of token j+1 (model-output layout)
    input_ids = torch.randint(1, 50, (B, P + R)) * attn
    td = TensorDict({"input_ids": input_ids, "attention_mask": attn, "response_mask": resp_mask,
                     "position_ids": (attn.cumsum(-1) - 1).clamp_min(0), "prompts": input_ids[:, :P],
                     "responses": input_ids[:, P:], "old_log_probs": old, "advantages": advantages,
                     "hdpo_tool_advantages": tool_adv}, batch_size=B)
    td = left_right_2_no_padding(td)
    tu.assign_non_tensor(td, dp_size=1, batch_num_tokens=int(resp_mask.sum()), global_batch_size=None)
    offsets = td["input_ids"].offsets()
    values = torch.cat([logp_full[i][attn[i].bool()] for i in range(B)])
    log_probs = torch.nested.nested_tensor_from_jagged(values, offsets=offsets)
    entropy = torch.nested.nested_tensor_from_jagged(torch.full_like(values, 0.5), offsets=offsets)
    return td, {"log_probs": log_probs, "entropy": entropy}


def surrogate(old, new, adv, mask, eps=0.2, c=3.0):
    """Vanilla dual-clip PPO surrogate, token-mean over the mask (written independently of verl)."""
    ratio = torch.exp(new - old)
    clipped = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - eps, 1 + eps))
    dual = torch.where(adv < 0, torch.minimum(clipped, -adv * c), clipped)
    m = mask.float()
    return (dual * m).sum() / m.sum()


def two_surrogate(entropy_coeff=0.0):
    from verl.workers.utils.losses import ppo_loss

    from hyperseyes_verl.verl.trainer import HDPOTwoSurrogateLoss

    cfg = actor_config(entropy_coeff)
    return HDPOTwoSurrogateLoss(partial(ppo_loss, config=cfg), cfg, W_TOOL)


def test_two_surrogates_equal_metis_weighted_sum():
    mask, old, new, a_acc, a_tool = columns()
    # the advantage step writes advantages = w_acc*A_acc and the separate tool column
    td, model_output = micro_batch(mask, old, new, W_ACC * a_acc, a_tool)
    loss, metrics = two_surrogate()(model_output=model_output, data=td, dp_group=None)
    expected = W_ACC * surrogate(old, new, a_acc, mask) + W_TOOL * surrogate(old, new, a_tool, mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    tool_only = surrogate(old, new, a_tool, mask)
    assert metrics["hdpo/tool_pg_loss"].aggregate() == pytest.approx(tool_only.item(), rel=1e-5)
    assert abs(tool_only.item()) > 1e-3  # the tool term really contributes
    ratio = torch.exp(new - old)[mask.bool()]
    assert (ratio > 1.2).any() and (ratio < 0.8).any()  # clipping exercised on both sides


@pytest.mark.parametrize("ratio, two, one", [
    (1.1, -0.77, -0.77),  # inside the clip range the surrogate is linear in A: both forms agree
    # ratio 2: A_acc = 1 > 0 clips at 1.2, A_tool = -2 < 0 does not (dual clip at 3 is not reached):
    # two = -1.2*1 + 0.15*(2*2) = -0.6; sum: A = 1 - 0.3 = 0.7 > 0 clips: -1.2*0.7 = -0.84
    (2.0, -0.6, -0.84),
])
def test_combine_forms_agree_inside_clip_and_differ_outside(ratio, two, one):
    """Why `combine` is a choice: `sum` (verl's loss on A = w_acc*A_acc + w_tool*A_tool) departs from Metis'
    two surrogates when clipping is active and the advantages disagree in sign."""
    from verl.workers.utils.losses import ppo_loss

    mask = columns()[0]
    old = torch.zeros(mask.shape)
    new = torch.full(mask.shape, float(np.log(ratio)))
    a_acc, a_tool = 1.0 * mask, -2.0 * mask
    td, mo = micro_batch(mask, old, new, W_ACC * a_acc, a_tool)
    two_loss, _ = two_surrogate()(model_output=mo, data=td)
    td, mo = micro_batch(mask, old, new, W_ACC * a_acc + W_TOOL * a_tool, a_tool)
    sum_loss, _ = partial(ppo_loss, config=actor_config())(model_output=mo, data=td)
    assert (two_loss.item(), sum_loss.item()) == pytest.approx((two, one), abs=1e-5)


def test_entropy_counted_once_and_tool_column_required():
    mask, old, new, a_acc, a_tool = columns()
    td, mo = micro_batch(mask, old, new, a_acc, a_tool)
    loss, _ = two_surrogate(entropy_coeff=0.01)(model_output=mo, data=td)
    expected = surrogate(old, new, a_acc, mask) + W_TOOL * surrogate(old, new, a_tool, mask) - 0.01 * 0.5
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    del td["hdpo_tool_advantages"]
    with pytest.raises(ValueError, match="hdpo_tool_advantages"):
        two_surrogate()(model_output=mo, data=td)


def test_logits_processor_calls_go_to_the_base_untouched():
    """verl's engine calls the loss fn with student_logits= for top-k distillation: forwarded as is."""
    from hyperseyes_verl.verl.trainer import HDPOTwoSurrogateLoss

    seen = {}

    def base(**kw):
        seen.update(kw)
        return {"topk": 1}

    out = HDPOTwoSurrogateLoss(base, actor_config(), W_TOOL)(data="d", student_logits="logits")
    assert out == {"topk": 1} and seen["student_logits"] == "logits"
