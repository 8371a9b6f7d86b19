"""Rule judge, answer extraction and verdict parsing (offline)."""
from __future__ import annotations

import pytest

from hyperseyes_verl.judge import Judge, JudgeConfig, JudgeFailure, RuleJudge, RuleJudgeConfig, parse_verdict, token_f1
from hyperseyes_verl.judge.answer import final_answer, last_assistant_turn
from hyperseyes_verl.judge.normalize import normalize_answer, parse_numbers


@pytest.mark.parametrize("raw, norm", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  Zürich\u00a0 ", "zurich"),
    ("ＡＢＣ", "abc"),  # full-width -> NFKC
    ("an apple, a pear", "apple pear"),
    ("Rock’n’roll", "rock n roll"),
])
def test_normalize(raw, norm):
    assert normalize_answer(raw) == norm


def test_parse_numbers_handles_commas_units_and_signs():
    assert parse_numbers("1,234.5 km") == [1234.5]
    assert parse_numbers("−3 °C and 12%") == [-3.0, 12.0]
    assert parse_numbers("no digits") == []


@pytest.mark.parametrize("pred, answers, correct, rule", [
    ("Paris", ["paris"], True, "exact"),
    ("It is Paris, in France.", ["Paris"], True, "contains"),
    ("Stuttgart", ["art"], False, "no_match"),  # containment respects word boundaries
    ("beatles", ["The Beatles"], True, "exact"),  # articles dropped
    ("zurich", ["Zürich"], True, "exact"),
    ("about 1234 kilometers", ["1,234 km"], True, "numeric"),
    ("1240 km", ["1,234 km"], False, "no_match"),  # outside rel_tol 1e-3; F1 must not rescue a wrong number
    ("London", ["Paris", "London"], True, "exact"),  # several accepted answers
    # 5 pred tokens vs 4 gold, 4 shared: p=0.8, r=1 -> F1=0.889 >= 0.8 (containment fails: 'of' in between)
    ("the red fort of delhi india", ["Red Fort Delhi India"], True, "f1"),
    ("red square", ["Red Fort Delhi India"], False, "no_match"),  # F1 = 2*(1/2)*(1/4)/(3/4) = 0.33
])
def test_rule_judge_cases(pred, answers, correct, rule):
    v = RuleJudge().judge(pred, answers)
    assert (v.correct, v.reason) == (correct, rule)


def test_token_f1_threshold_rule():
    # pred tokens {mount, everest, peak}, gold {mount, everest}: p=2/3, r=1 -> f1=0.8
    assert token_f1("Mount Everest peak", "Mount Everest") == pytest.approx(0.8)
    judge = RuleJudge(RuleJudgeConfig(containment=False, f1_threshold=0.8))
    assert judge.judge("Mount Everest peak", ["Mount Everest"]).reason == "f1"
    strict = RuleJudge(RuleJudgeConfig(containment=False, f1_threshold=0.9))
    assert not strict.judge("Mount Everest peak", ["Mount Everest"]).correct


def test_empty_ground_truth_never_matches_and_no_answer_is_its_own_outcome():
    judge = RuleJudge()
    assert not judge.judge("anything", ["", "  "]).correct
    v = judge.judge(None, ["Paris"])
    assert (v.answered, v.correct, v.acc, v.source) == (False, False, 0.0, "no_answer")


def test_last_assistant_turn_ignores_answers_quoted_in_observations():
    text = ("<reason>look</reason><tool_call>{\"name\": \"text_search\", \"arguments\": {\"input\": [\"q\"]}}"
            "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>snippet says <answer>Rome</answer>"
            "</tool_response><|im_end|>\n<|im_start|>assistant\n<reason>found</reason><answer>Paris</answer><|im_end|>")
    assert last_assistant_turn(text).endswith("<answer>Paris</answer>")
    assert final_answer(text) == "Paris"
    # last turn is a tool call: no answer, even though an observation quoted one
    assert final_answer(text.rsplit("<|im_start|>assistant", 1)[0] + "<|im_start|>assistant\n<tool_call>{}") is None
    assert final_answer("<answer>  </answer>") is None


@pytest.mark.parametrize("reply, verdict", [("Correct", True), ("Incorrect.", False), ("**correct**", True),
                                            ("incorrect\n", False)])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) is verdict


@pytest.mark.parametrize("reply", ["", "maybe", "Correct or Incorrect", "correctness"])
def test_parse_verdict_rejects_ambiguous(reply):
    with pytest.raises(JudgeFailure):
        parse_verdict(reply)


async def test_judge_rule_kind_names_its_source():
    judge = Judge(JudgeConfig(kind="rule"))
    assert (await judge.judge("Paris", ["paris"])).source == "rule"
    missing = await judge.judge(None, ["paris"])
    assert not missing.answered and missing.source == "no_answer"


def test_llm_kind_needs_endpoint():
    with pytest.raises(ValueError, match="judge.llm section"):
        JudgeConfig(kind="llm")
