"""Gating end to end on real verl objects: reward components -> gated teacher worker (fake teacher server)
-> teacher columns -> verl's left_right_2_no_padding micro-batch -> the registered loss fn obtained through
verl's get_distillation_loss_fn -> per-row losses masked on successes and on teacher failures."""
import pytest
import torch
from tensordict import TensorDict

from test_verl_opd_worker import FakeTeacher, compose_config, make_output, make_worker

pytestmark = pytest.mark.verl


def micro_batch(outputs, P=8, R=6, with_opd_mask=None):
    """Left/right-padded batch as verl's legacy _postprocess builds it (teacher rows padded like
    _pad_teacher_outputs), then verl's own left_right_2_no_padding, as the actor receives it."""
    from verl.workers.utils.padding import left_right_2_no_padding

    B = len(outputs)
    input_ids = torch.zeros(B, P + R, dtype=torch.long)
    attn = torch.zeros(B, P + R, dtype=torch.long)
    resp_mask = torch.zeros(B, R, dtype=torch.long)
    t_ids = torch.zeros(B, P + R, 1, dtype=torch.int32)
    t_lp = torch.zeros(B, P + R, 1)
    for i, o in enumerate(outputs):
        p, r = len(o.prompt_ids), len(o.response_ids)
        input_ids[i, P - p:P] = torch.tensor(o.prompt_ids)
        input_ids[i, P:P + r] = torch.tensor(o.response_ids)
        attn[i, P - p:P + r] = 1
        resp_mask[i, :r] = torch.tensor(o.response_mask)
        t_ids[i, P - p:P + r] = o.extra_fields["teacher_ids"]
        t_lp[i, P - p:P + r] = o.extra_fields["teacher_logprobs"]
    cols = {"input_ids": input_ids, "attention_mask": attn, "response_mask": resp_mask,
            "position_ids": (attn.cumsum(-1) - 1).clamp_min(0), "prompts": input_ids[:, :P],
            "responses": input_ids[:, P:], "teacher_ids": t_ids, "teacher_logprobs": t_lp}
    if with_opd_mask is not None:
        cols["opd_mask"] = torch.tensor(with_opd_mask, dtype=torch.float32)[:, None]
    td = left_right_2_no_padding(TensorDict(cols, batch_size=B))
    student = torch.nested.nested_tensor_from_jagged(torch.full((td["input_ids"].values().shape[0],), -1.5),
                                                     offsets=td["input_ids"].offsets())
    return td, {"log_probs": student}, resp_mask


def loss_fn_and_config(config):
    from verl.trainer.distillation.losses import get_distillation_loss_fn
    from verl.utils.config import omega_conf_to_dataclass

    dcfg = omega_conf_to_dataclass(config.distillation)
    return get_distillation_loss_fn(dcfg.distillation_loss.loss_mode), dcfg


async def test_components_to_teacher_to_masked_loss(tiny_qwen25_dir):
    import hyperseyes_verl.verl.distill_loss  # noqa: F401

    config = compose_config(tiny_qwen25_dir)
    teacher = FakeTeacher(faults=[None, "error", "error", "error"])
    worker = make_worker(config, teacher)
    # rows: success (bonus -0.1), failure, failure whose teacher is down, success
    outs = [make_output(1, trace_bonus=-0.1), make_output(0), make_output(0), make_output(1)]
    for o in outs:
        await worker._compute_teacher_logprobs(o, o.prompt_ids, o.response_ids, validate=False)
    assert len(teacher.calls) == 1 + 3  # one clean call + 3 attempts for the failing row; successes skipped
    td, model_output, resp_mask = micro_batch(outs)
    fn, dcfg = loss_fn_and_config(config)
    losses, metrics = fn(config=None, distillation_config=dcfg, model_output=model_output, data=td)
    per_row = (losses.abs() * resp_mask).sum(-1)
    # k1 = logp_s - logp_T = -1.5 - (-0.5) = -1.0 on the single distilled row's 3 generated tokens
    assert per_row.tolist() == [0.0, 3.0, 0.0, 0.0]
    assert torch.allclose(losses[1][resp_mask[1].bool()], torch.full((3,), -1.0))
    assert metrics["opd/loss_rows_frac"] == 0.25
    assert metrics["opd/reverse_kl_mean"] == -1.0


async def test_opd_mask_gates_when_the_teacher_scored_everything(tiny_qwen25_dir):
    """Ungated worker path (teacher asked for all rows): the trainer's opd_mask column masks successes."""
    config = compose_config(tiny_qwen25_dir, ["+hyperseyes.opd.gate_teacher_calls=false"])
    worker = make_worker(config, FakeTeacher())
    outs = [make_output(1), make_output(0)]
    for o in outs:
        await worker._compute_teacher_logprobs(o, o.prompt_ids, o.response_ids, validate=False)
    assert [o.extra_fields["opd_teacher_status"] for o in outs] == ["scored", "scored"]
    fn, dcfg = loss_fn_and_config(config)
    td, mo, resp_mask = micro_batch(outs, with_opd_mask=[0.0, 1.0])
    losses, _ = fn(config=None, distillation_config=dcfg, model_output=mo, data=td)
    assert ((losses.abs() * resp_mask).sum(-1) > 0).tolist() == [False, True]
    # without the mask both rows are distilled: the mask is what gates here
    td, mo, resp_mask = micro_batch(outs)
    losses, _ = fn(config=None, distillation_config=dcfg, model_output=mo, data=td)
    assert ((losses.abs() * resp_mask).sum(-1) > 0).tolist() == [True, True]


def test_registration_is_idempotent_and_validates():
    import importlib

    from verl.trainer.distillation.losses import DISTILLATION_LOSS_REGISTRY, get_distillation_loss_settings

    import hyperseyes_verl.verl.distill_loss as dl

    importlib.reload(dl)  # a second import in the same process must not raise
    dl.register()
    for name in (*dl.GATED_LOSS_NAMES, dl.ADVANTAGE_MODE_LOSS_NAME):
        assert name in DISTILLATION_LOSS_REGISTRY and get_distillation_loss_settings(name).use_estimator
