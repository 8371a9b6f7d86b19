"""HyperEyesTrainer: the advantage step (TRACE official + GRPO/HDPO + OPD together) on DataProto batches
shaped exactly as verl's V1 `_compute_advantage` builds them from TransferQueue, and the epoch hook."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hyperseyes_verl.hdpo import HDPOConfig
from hyperseyes_verl.opd import OPDConfig
from hyperseyes_verl.verl.advantage_step import assemble_advantages, session_layout, teacher_response_logprobs

pytestmark = pytest.mark.verl


def batch(rm_score_B, T=4, uid=("u",) * 4, old_lp=-1.0):
    """verl V1: DataProto(batch=to_padded_tensor()) with token_level_scores = rm_scores (score on the last
    generated token) and non_tensor_batch = {uid}."""
    from verl.protocol import DataProto

    B = len(rm_score_B)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[:, 1] = 0  # a tool observation inside every response
    rm = torch.zeros(B, T)
    rm[:, -1] = torch.tensor(rm_score_B, dtype=torch.float32)
    d = DataProto.from_dict(tensors={"response_mask": mask, "rm_scores": rm, "token_level_scores": rm.clone(),
                                     "token_level_rewards": rm.clone(), "old_log_probs": torch.full((B, T), old_lp)},
                            non_tensors={"uid": np.array(uid, dtype=object)})
    return d


def grpo(keys):
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

    return lambda d: compute_advantage_for_multi_trajectories(d, batch_keys=keys, adv_estimator="grpo", config=None)


KEYS = [f"u_{i}_0" for i in range(4)]
# one group: correct in 1 round (ref 2), correct in 3 rounds (over ref), wrong, no answer
INFOS = [
    dict(acc=1, answered=1, tool_rounds=1, tool_calls=2, searches=2, ref_rounds=2, ref_searches=4, hdpo_format=1,
         opd_eligible=0),
    dict(acc=1, answered=1, tool_rounds=3, tool_calls=3, searches=3, ref_rounds=2, ref_searches=4, hdpo_format=1,
         opd_eligible=0),
    dict(acc=0, answered=1, tool_rounds=2, tool_calls=2, searches=2, ref_rounds=2, ref_searches=4, hdpo_format=1,
         opd_eligible=1),
    dict(acc=0, answered=0, tool_rounds=0, tool_calls=0, searches=0, ref_rounds=2, ref_searches=4, hdpo_format=0,
         opd_eligible=1),
]


def test_session_layout_uses_final_output_of_each_session():
    final, row_to = session_layout(["a_0_0", "a_0_1", "a_1_0", "b_0_0"])
    assert final == [1, 2, 3] and row_to.tolist() == [0, 0, 1, 2]
    with pytest.raises(ValueError, match="not '{uid}_{session}_{index}'"):
        session_layout(["nokey"])


def test_trace_official_then_grpo_then_opd_together():
    # official scores for this group by the released rule: row0 good (tc 1 <= 2, total 2 <= 4) -> 1 + 0.20;
    # row1 bad (tc 3 > 2), single bad key -> 1 - 0.02; row2 wrong, tc 2 within [2, 3] -> 0; row3 no answer -0.5
    expected = [1.2, 0.98, 0.0, -0.5]
    teacher = torch.full((4, 4), -3.0)  # logp_s - logp_T = -1 - (-3) = 2 on every token
    res = assemble_advantages(batch([1.0, 1.0, 0.0, -0.5]), KEYS, INFOS, adv_estimator="grpo",
                              verl_advantage_fn=grpo(KEYS), trace_mode="official",
                              opd_cfg=OPDConfig(beta=0.05),
                              distillation_enabled=True, teacher_logp_BT=teacher,
                              teacher_valid_B=torch.tensor([True, True, True, False]))
    assert torch.allclose(res.token_level_rewards_BT.sum(-1), torch.tensor(expected))
    r = torch.tensor(expected)
    grpo_adv = (r - r.mean()) / (r.std() + 1e-6)
    m = torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert torch.allclose(res.returns_BT, grpo_adv[:, None] * m, atol=1e-5)
    # OPD: row 2 (failed, teacher ok) shifted by -0.05*2 on generated tokens; row 3 failed but teacher failed
    shift = torch.tensor([0.0, 0.0, -0.1, 0.0])[:, None] * m
    assert torch.allclose(res.advantages_BT, grpo_adv[:, None] * m + shift, atol=1e-5)
    assert res.sample_columns["opd_mask"].squeeze(-1).tolist() == [0.0, 0.0, 1.0, 0.0]
    assert res.metrics["opd/eligible_frac"] == 0.5
    assert res.metrics["trace/official_bonus_mean"] == pytest.approx((0.2 - 0.02 + 0 - 0.5) / 4)
    # the batch's TRACE metrics are logged every step: 2 of 4 correct, the good/bad split of the released rule
    assert res.metrics["trace/acc"] == 0.5 and res.metrics["trace/answered"] == 0.75
    assert res.metrics["trace/frac_good"] == 0.25 and res.metrics["trace/frac_bad"] == 0.25


def test_hdpo_with_trace_official_and_opd():
    cfg = HDPOConfig(combine="two_surrogate", w_tool=0.15)
    res = assemble_advantages(batch([1.0, 1.0, 0.0, -0.5]), KEYS, INFOS, adv_estimator="hdpo",
                              verl_advantage_fn=None, trace_mode="official",
                              hdpo_cfg=cfg, opd_cfg=OPDConfig(beta=0.05), distillation_enabled=True,
                              teacher_logp_BT=torch.full((4, 4), -1.5), teacher_valid_B=torch.ones(4, dtype=torch.bool))
    # HDPO on components: R_acc = 0.9*acc + 0.1*fmt = [1, 1, .1, 0]; mean .525; unbiased std
    #   sqrt((.475^2*2 + .425^2 + .525^2)/3) = sqrt(.9075/3) = 0.55 -> A_acc = .475/.55 ... = [.86364, .86364,
    #   -.77273, -.95455]
    # R_tool over correct rows (tool_calls 2, 3): [1/3, 1/4] -> A_tool = [+0.7071, -0.7071, 0, 0]
    a_acc = torch.tensor([0.86364, 0.86364, -0.77273, -0.95455])
    m = torch.tensor([1.0, 0.0, 1.0, 1.0])
    opd = torch.tensor([0, 0, -0.05 * 0.5, -0.05 * 0.5])  # logp_s - logp_T = -1 - (-1.5) = 0.5 on failures
    assert torch.allclose(res.returns_BT, a_acc[:, None] * m, atol=1e-4)
    assert torch.allclose(res.advantages_BT, (a_acc + opd)[:, None] * m, atol=1e-4)
    tool = res.token_columns["hdpo_tool_advantages"]
    assert torch.allclose(tool[:, 0], torch.tensor([2 ** -0.5, -(2 ** -0.5), 0, 0]), atol=1e-4)
    # the TRACE group rule changed the logged outcome reward, HDPO itself reads the components
    assert torch.allclose(res.token_level_rewards_BT.sum(-1), torch.tensor([1.2, 0.98, 0.0, -0.5]))


def test_a_verl_estimator_keeps_its_own_returns():
    """GAE's returns (advantages + values) are the critic's targets: the step must not replace them."""
    def gae_like(d):
        d.batch["advantages"] = torch.ones(4, 4)
        d.batch["returns"] = torch.full((4, 4), 5.0)
        return d

    res = assemble_advantages(batch([1.0, 1.0, 0.0, 0.0]), KEYS, INFOS, adv_estimator="gae", verl_advantage_fn=gae_like)
    assert torch.equal(res.advantages_BT, torch.ones(4, 4)) and torch.equal(res.returns_BT, torch.full((4, 4), 5.0))


def test_sum_form_and_missing_components_error():
    res = assemble_advantages(batch([1.0, 1.0, 0.0, 0.0]), KEYS, INFOS, adv_estimator="hdpo",
                              verl_advantage_fn=None, hdpo_cfg=HDPOConfig(combine="sum"))
    assert "hdpo_tool_advantages" not in res.token_columns
    assert res.advantages_BT[0, 0] > res.advantages_BT[1, 0]  # fewer tool calls, same accuracy -> higher
    bad = [dict(i) for i in INFOS]
    del bad[2]["hdpo_format"]
    with pytest.raises(ValueError, match=r"hdpo_format.*rows \[2\]"):
        assemble_advantages(batch([1.0, 1.0, 0.0, 0.0]), KEYS, bad, adv_estimator="hdpo", verl_advantage_fn=None)
    with pytest.raises(ValueError, match="trace.mode must be"):
        assemble_advantages(batch([1.0] * 4), KEYS, INFOS, adv_estimator="grpo", verl_advantage_fn=grpo(KEYS),
                            trace_mode="offical")


def test_teacher_rows_are_sliced_like_verl():
    # prompt 3, response 2: entry j = log-prob of token j+1 -> response tokens at entries 2, 3
    lp = torch.tensor([[-9.0], [-9.0], [-0.1], [-0.2], [0.0]])
    ids = torch.tensor([[5], [6], [7], [8], [0]], dtype=torch.int32)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    logp, valid = teacher_response_logprobs([lp, lp], [ids, torch.full((5, 1), -1, dtype=torch.int32)], [3, 3], mask)
    assert torch.allclose(logp[0, :2], torch.tensor([-0.1, -0.2])) and valid.tolist() == [True, False]


def test_hdpo_registered_and_refuses_outside_the_trainer():
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    import hyperseyes_verl.verl.trainer  # noqa: F401

    with pytest.raises(ValueError, match="hyperseyes_sync"):
        get_adv_estimator_fn("hdpo")(token_level_rewards=None, response_mask=None, config=None)


def test_epoch_hook_fires_exactly_at_epoch_ends(monkeypatch):
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    from hyperseyes_verl.verl import trace_state
    from hyperseyes_verl.verl.trainer import HyperEyesTrainer
    from verl.trainer.ppo.v1.trainer_base import get_trainer_cls

    assert get_trainer_cls("hyperseyes_sync") is HyperEyesTrainer
    base_calls, epoch_calls = [], []
    monkeypatch.setattr(PPOTrainerSync, "on_step_end", lambda self: base_calls.append(self.global_steps))
    monkeypatch.setattr(trace_state, "on_epoch_end",
                        lambda cfg, epoch, global_step=None: epoch_calls.append((epoch, global_step))
                        or {"trace/refs_tightened": 3.0})
    t = object.__new__(HyperEyesTrainer)
    t.config, t.steps_per_epoch = SimpleNamespace(), 3
    logged = []
    for step in range(1, 8):  # fit() starts at global_steps = 1
        t.global_steps = step
        t.on_step_end()
        logged.append(t._consume_sync_metrics())
    assert base_calls == list(range(1, 8))  # weight sync always runs
    assert epoch_calls == [(0, 3), (1, 6)]  # 0-based epoch that just ended, at steps 3 and 6 only
    assert [bool(m) for m in logged] == [False, False, True, False, False, True, False]
    assert logged[2] == {"trace/refs_tightened": 3.0}


def test_init_sets_sync_mode_and_restores_trace(monkeypatch):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    from hyperseyes_verl.verl import trace_state
    from hyperseyes_verl.verl.trainer import TRAINER_NAME, HyperEyesTrainer

    seen = {}
    monkeypatch.setattr(PPOTrainer, "__init__", lambda self, config: (setattr(self, "config", config),
                                                                    seen.setdefault("mode", config.trainer.v1.trainer_mode)))
    cfg = OmegaConf.create({"trainer": {"v1": {"trainer_mode": "hyperseyes_sync"}},
                            "hyperseyes": {"opd": {"beta": 0.1}, "hdpo": {"w_tool": 0.3},
                                           "trace": {"official": {"wrong_penalty": -0.3}}},
                            "algorithm": {"adv_estimator": "grpo"}})
    t = HyperEyesTrainer(cfg)
    assert seen["mode"] == "sync" and t.opd_config.beta == 0.1 and t.hdpo_config.w_tool == 0.3
    # the group bonus gets the configured rule (it once ran on the defaults whatever the config said)
    settings = t._advantage_settings()
    assert settings["official_cfg"].wrong_penalty == -0.3 and settings["trace_mode"] == "official"
    assert settings["hdpo_cfg"] is t.hdpo_config and settings["opd_cfg"] is t.opd_config
    # it records itself, so the reward manager (built later from this config) knows TRACE official has its trainer
    assert trace_state.selected_trainer(cfg) == TRAINER_NAME == trace_state.HYPERSEYES_TRAINER
    monkeypatch.setattr(trace_state, "_warned_official_without_trainer", False)
    assert not trace_state.warn_if_official_without_trainer(cfg, trace_state.trace_config_from_trainer(cfg))
    monkeypatch.setattr(PPOTrainerSync, "on_init_end", lambda self: None)
    monkeypatch.setattr(trace_state, "restore", lambda c, step: {"trace/restored_step": float(step)})
    t.global_steps = 40
    t.on_init_end()
    assert t._consume_sync_metrics() == {"trace/restored_step": 40.0}


def test_opd_mode_follows_the_distillation_loss_mode_and_contradictions_are_refused():
    from omegaconf import OmegaConf

    from hyperseyes_verl.verl.trainer import resolve_opd_config

    def cfg(loss_mode, **opd):
        return OmegaConf.create({"distillation": {"enabled": True, "distillation_loss": {"loss_mode": loss_mode}},
                                 "hyperseyes": {"opd": opd}})

    assert resolve_opd_config(cfg("opd_in_advantage")).mode == "advantage"
    assert resolve_opd_config(cfg("k1_failed_only")).mode == "loss"
    with pytest.raises(ValueError, match="contradicts"):  # shaping + PG-OPD would apply the term twice
        resolve_opd_config(cfg("k1_failed_only", mode="advantage"))
    with pytest.raises(ValueError, match="every rollout"):  # verl's plain k1 would distil successes too
        resolve_opd_config(cfg("k1"))
    assert resolve_opd_config(cfg("k1", enabled=False)).mode is None  # OPD off: nothing to tie

    def with_loss(loss_mode, **loss):
        c = cfg(loss_mode)
        c.distillation.distillation_loss.update(loss)
        return c

    with pytest.raises(ValueError, match="use_task_rewards=false drops that loss"):  # shaping would be unused
        resolve_opd_config(with_loss("opd_in_advantage", use_task_rewards=False))
    with pytest.raises(ValueError, match="does not depend on the teacher"):
        resolve_opd_config(with_loss("k1_failed_only", use_policy_gradient=False))
    assert resolve_opd_config(with_loss("k3_failed_only", use_policy_gradient=False)).mode == "loss"
    assert resolve_opd_config(with_loss("k1_failed_only", use_task_rewards=False)).mode == "loss"  # pure OPD


@pytest.mark.parametrize("extra_fields", [
    [{}] * 4,  # a manager that writes no reward_extra_info at all
    [{"reward_extra_info": {"acc": 1.0, "score": 1.0, "pred": "x"}}] * 4,  # verl's naive manager with its score dict
])
def test_official_mode_with_another_reward_manager_says_what_to_configure(extra_fields):
    from hyperseyes_verl.verl.advantage_step import unwrap_infos

    infos = unwrap_infos(extra_fields)
    with pytest.raises(ValueError, match=r"TRACE official mode.*reward_extra_info\['(acc|answered)'\].*"
                                         r"reward_manager.name=TraceRewardManager.*trace.mode=paper"):
        assemble_advantages(batch([1.0] * 4), KEYS, infos, adv_estimator="grpo", verl_advantage_fn=grpo(KEYS),
                            trace_mode="official")
    # paper mode leaves the reward to that manager: verl's GRPO runs unchanged
    res = assemble_advantages(batch([1.0, 0.0, 1.0, 0.0]), KEYS, infos, adv_estimator="grpo",
                              verl_advantage_fn=grpo(KEYS), trace_mode="paper")
    assert res.advantages_BT[0, 0] > 0 > res.advantages_BT[1, 0]
