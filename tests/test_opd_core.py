"""OPD pure core: gating from components, the official per-token term, top-k overlap, placeholders."""
import math

import pytest
import torch

from hyperseyes_verl.opd import (
    TEACHER_SENTINEL_ID,
    OPDConfig,
    eligible_from_info,
    eligible_mask,
    placeholder_teacher_outputs,
    reverse_kl_shaped_advantages,
    teacher_rows_valid,
    topk_overlap,
)


def test_gating_uses_components_not_total_reward():
    # a correct rollout with a negative TRACE bonus and a wrong one with a positive total stay as they are
    assert not eligible_from_info({"acc": 1.0, "trace_bonus": -0.1, "opd_eligible": 0})
    assert eligible_from_info({"acc": 0.0, "answered": 1, "trace_bonus": 0.2})
    assert eligible_from_info({"acc": 0.0, "answered": 0})  # no answer counts as a failure
    assert not eligible_from_info({"acc": 1.0})
    # the reward manager's verdict wins over acc when both are there
    assert eligible_from_info({"acc": 1.0, "opd_eligible": 1})
    assert eligible_mask([{"acc": 1}, {"acc": 0}, {"opd_eligible": 1}]).tolist() == [False, True, True]


def test_gating_without_components_is_a_clear_error():
    with pytest.raises(ValueError, match="opd_eligible' or 'acc'.*reward_score"):
        eligible_from_info({"reward_score": 0.0})
    with pytest.raises(ValueError, match="got None"):
        eligible_from_info(None)


def test_official_term_golden_numbers():
    # 3 rows x 4 positions, beta = 0.05, every row starts at advantage 1.0
    # row 0: failed, teacher ok, mask 1 1 0 1 (pos 2 is a tool observation)
    #   logp_s - logp_T = [-1-(-2), -0.5-(-0.5), -3-(-1), -2-(-1)] = [1, 0, -2, -1]
    #   shaped: 1 - 0.05*[1, 0, (masked), -1] = [0.95, 1.0, 1.0, 1.05]
    # row 1: successful -> untouched; row 2: failed but teacher failed -> untouched
    adv = torch.ones(3, 4)
    s = torch.tensor([[-1.0, -0.5, -3.0, -2.0]] * 3)
    t = torch.tensor([[-2.0, -0.5, -1.0, -1.0]] * 3)
    mask = torch.tensor([[1, 1, 0, 1]] * 3)
    r = reverse_kl_shaped_advantages(adv, s, t, mask, eligible_B=torch.tensor([True, False, True]),
                                     teacher_valid_B=torch.tensor([True, True, False]), beta=0.05)
    assert torch.allclose(r.advantages_BT[0], torch.tensor([0.95, 1.0, 1.0, 1.05]))
    assert torch.equal(r.advantages_BT[1:], adv[1:])
    assert torch.equal(adv, torch.ones(3, 4))  # input untouched
    # reverse KL mean over the 3 shaped tokens: (1 + 0 - 1) / 3 = 0
    assert r.metrics["opd/reverse_kl_mean"] == pytest.approx(0.0)
    assert r.metrics["opd/eligible_frac"] == pytest.approx(2 / 3)
    assert r.metrics["opd/shaped_tokens"] == 3.0


def test_all_right_and_all_wrong_groups():
    adv = torch.zeros(2, 2)
    s, t = torch.full((2, 2), -1.0), torch.full((2, 2), -3.0)  # diff = 2 everywhere
    m = torch.ones(2, 2)
    all_right = reverse_kl_shaped_advantages(adv, s, t, m, torch.tensor([False, False]), torch.tensor([True, True]))
    assert torch.equal(all_right.advantages_BT, adv)
    all_wrong = reverse_kl_shaped_advantages(adv, s, t, m, torch.tensor([True, True]), torch.tensor([True, True]))
    assert torch.allclose(all_wrong.advantages_BT, torch.full((2, 2), -0.1))  # 0 - 0.05 * 2
    assert all_wrong.metrics["opd/reverse_kl_mean"] == pytest.approx(2.0)


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"student \(2, 3\)"):
        reverse_kl_shaped_advantages(torch.zeros(2, 2), torch.zeros(2, 3), torch.zeros(2, 2), torch.ones(2, 2),
                                     torch.ones(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool))


def test_topk_overlap_by_hand():
    # token 0: {1,2,3} vs {3,2,9} -> 2/3 ; token 1: {4,5,6} vs {7,8,9} -> 0 ; token 2 masked out
    s = torch.tensor([[[1, 2, 3], [4, 5, 6], [1, 2, 3]]])
    t = torch.tensor([[[3, 2, 9], [7, 8, 9], [1, 2, 3]]])
    assert topk_overlap(s, t, torch.tensor([[1, 1, 0]])) == pytest.approx((2 / 3 + 0) / 2)
    assert topk_overlap(s, t, torch.tensor([[0, 0, 1]])) == pytest.approx(1.0)
    assert topk_overlap(s, t, torch.zeros(1, 3)) == 0.0


def test_placeholders_and_validity():
    ids, lp = placeholder_teacher_outputs(5, k=2)
    assert ids.shape == lp.shape == (5, 2) and ids.dtype == torch.int32
    assert (ids == TEACHER_SENTINEL_ID).all() and (lp == 0).all()
    real = torch.tensor([[7, 8, 9, 0], [TEACHER_SENTINEL_ID] * 4])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert teacher_rows_valid(real, mask).tolist() == [True, False]
    with pytest.raises(ValueError, match="seq_len > 0"):
        placeholder_teacher_outputs(0)


def test_config_defaults_and_errors():
    c = OPDConfig()
    assert c.beta == 0.05 and c.mode is None and c.gate_teacher_calls
    assert OPDConfig.from_mapping({"beta": 0.1}).beta == 0.1
    with pytest.raises(ValueError, match="betta"):
        OPDConfig.from_mapping({"betta": 0.1})
    with pytest.raises(ValueError, match="beta"):
        OPDConfig.from_mapping({"beta": -1})
    assert math.isclose(OPDConfig.from_mapping(None).teacher_timeout_s, 300.0)
