"""The paper's per-rollout TRACE rule, λ schedules and config validation."""
from __future__ import annotations

import math

import pytest

from hyperseyes_verl.trace.paper import PaperTraceConfig, adapt_lambda, lambda_at, paper_score


def test_correct_wrong_and_no_answer_values():
    cfg = PaperTraceConfig(r_plus=1.0, r_minus=0.0, r_no_answer=-0.5, lam=0.05)
    assert paper_score(cfg, True, True, 3, None, 0.05).score == pytest.approx(1.0 - 0.15)
    assert paper_score(cfg, True, True, 3, None, 0.05).bonus == pytest.approx(-0.15)
    assert paper_score(cfg, False, True, 3, None, 0.05).score == 0.0
    assert paper_score(cfg, False, False, 3, None, 0.05).score == -0.5
    # rounds over the budget are charged as the budget: the floor R+ - λ·max_rounds holds
    assert paper_score(cfg, True, True, 50, None, 0.05).score == pytest.approx(1.0 - 0.05 * 8)


def test_reference_relative_variant_charges_only_rounds_above_the_reference():
    cfg = PaperTraceConfig(relative=True, lam=0.1, r_minus=-0.5, r_no_answer=-0.6)
    assert paper_score(cfg, True, True, 2, 3, 0.1).score == 1.0  # under the reference: free
    s = paper_score(cfg, True, True, 5, 3, 0.1)
    assert (s.charged_rounds, s.score) == (2, pytest.approx(0.8))
    assert paper_score(cfg, True, True, 5, -1, 0.1).score == pytest.approx(0.5)  # no reference: all rounds


def test_lambda_schedules():
    const = PaperTraceConfig(lam=0.05)
    assert lambda_at(const, 0) == lambda_at(const, 10_000) == 0.05
    warm = PaperTraceConfig(lam=0.08, schedule="linear_warmup", warmup_steps=100, r_minus=-0.1, r_no_answer=-0.5)
    assert [lambda_at(warm, s) for s in (0, 25, 100, 400)] == pytest.approx([0.0, 0.02, 0.08, 0.08])
    ada = PaperTraceConfig(lam=0.02, schedule="adaptive", lam_max=0.05, adapt_step=0.02, adapt_margin=0.5)
    assert lambda_at(ada, 7, None) == 0.02 and lambda_at(ada, 7, 0.04) == 0.04 and lambda_at(ada, 7, 1.0) == 0.05
    assert adapt_lambda(ada, 0.02, 3.0, 2.0) == pytest.approx(0.04)  # 3.0 > 2.0 + 0.5 -> grows
    assert adapt_lambda(ada, 0.02, 2.4, 2.0) == 0.02  # within the margin
    assert adapt_lambda(ada, 0.04, 9.0, 1.0) == 0.05  # capped at lam_max
    assert adapt_lambda(const, 0.05, 9.0, 1.0) == 0.05  # other schedules never adapt


@pytest.mark.parametrize("kwargs, message", [
    ({"r_minus": 0.7, "lam": 0.05}, "r_minus=0.7 is not below .* = 0.6"),  # 1 - 0.05*8 = 0.6
    ({"schedule": "adaptive", "lam": 0.05, "lam_max": 0.2}, "r_minus=0.0 is not below"),  # 1 - 1.6 < 0
    ({"r_no_answer": 0.1, "r_minus": -0.5}, "r_no_answer=0.1 .* not below|exceeds r_minus"),
    ({"schedule": "adaptive", "lam": 0.05, "lam_max": 0.01}, "lam_max=0.01 is below"),
    ({"schedule": "linear_warmup"}, "warmup_steps >= 1"),
    ({"lam": -0.1}, "greater than or equal to 0"),
    ({"r_plus": math.inf}, "finite"),
])
def test_config_refuses_give_up_hacks_and_bad_coefficients(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PaperTraceConfig(**kwargs)
