"""Metrics on hand-checked episodes, CAS arithmetic, and grouping."""
from __future__ import annotations

import math

import pytest

from hyperseyes_verl.eval.metrics import cost_aware_score, failure_counts, full_metrics, grouped, summarize
from hyperseyes_verl.eval.results import ItemResult


def _items():
    return [
        ItemResult(id="b/0", benchmark="b", domain="birds", entity_count=2, acc=1.0, answered=True, tool_rounds=2,
                   tool_calls=3, searches=4, searches_per_round=[1, 3], searches_empty=1, generated_tokens=500,
                   judge_source="rule"),
        ItemResult(id="b/1", benchmark="b", domain="cars", entity_count=3, acc=0.0, answered=True, tool_rounds=1,
                   tool_calls=1, searches=2, searches_per_round=[2], searches_empty=2, generated_tokens=1500,
                   judge_source="rule_fallback"),
        ItemResult(id="c/0", benchmark="c", domain="birds", entity_count=2, acc=1.0, answered=True, tool_rounds=0,
                   tool_calls=0, searches=0, searches_per_round=[], generated_tokens=1000, judge_source="rule"),
    ]


def test_cas_matches_hand_arithmetic():
    # HE-30B headline numbers: 64 % at 2.2 rounds, with 2000 generated tokens: 0.4096*100/(2+4.4+1)
    assert cost_aware_score(0.64, 2.0, 2.2) == pytest.approx(40.96 / 7.4)
    assert cost_aware_score(1.0, 0.0, 0.0) == pytest.approx(100.0)
    assert cost_aware_score(0.0, 3.0, 1.0) == 0.0
    # squaring: halving accuracy quarters the score at equal cost
    assert cost_aware_score(0.4, 1.0, 1.0) == pytest.approx(cost_aware_score(0.8, 1.0, 1.0) / 4)


def test_cas_rejects_percentages():
    with pytest.raises(ValueError, match="divide a percentage by 100"):
        cost_aware_score(64.0, 2.0, 2.2)


def test_summary_on_hand_checked_episodes():
    m = summarize(_items())
    assert m["eval/n"] == 3
    assert m["eval/acc"] == pytest.approx(2 / 3)
    assert m["eval/mean_tool_rounds"] == pytest.approx(1.0)
    assert m["eval/mean_tool_calls"] == pytest.approx(4 / 3)
    assert m["eval/searches_per_round"] == pytest.approx(6 / 3)  # rounds of widths 1, 3, 2
    assert m["eval/multi_search_round_share"] == pytest.approx(2 / 3)
    assert m["eval/empty_search_share"] == pytest.approx(3 / 6)  # 1 + 2 of 4 + 2 searches found nothing
    assert m["eval/mean_generated_tokens"] == pytest.approx(1000.0)
    # CAS = (2/3)^2 * 100 / (1.0 + 2*1 + 1)
    assert m["eval/cas"] == pytest.approx((4 / 9) * 100 / 4)


def test_failures_are_counted_and_failed_episodes_count_as_wrong():
    items = _items() + [ItemResult(id="b/2", benchmark="b", error="endpoint: 3 failures", endpoint_errors=3,
                                   finish_reason="endpoint_error", tool_errors={"parse": 2})]
    m = summarize(items)
    assert m["eval/acc"] == pytest.approx(2 / 4)  # the dead episode stays in the denominator
    f = failure_counts(items)
    assert f["failures/episodes_failed"] == 1
    assert f["failures/endpoint_errors"] == 3
    assert f["failures/judge_fallbacks"] == 1
    assert f["failures/no_answer"] == 1
    assert f["failures/tool_errors/parse"] == 2


def test_grouping_by_benchmark_domain_and_entities():
    g = grouped(_items(), lambda r: r.benchmark)
    assert list(g) == ["b", "c"]
    assert g["b"]["eval/acc"] == pytest.approx(0.5) and g["c"]["eval/acc"] == 1.0
    full = full_metrics(_items())
    assert list(full["by"]["entities"]) == ["2", "3"]
    assert full["by"]["entities"]["2"]["eval/n"] == 2
    assert full["by"]["domain"]["cars"]["eval/mean_tool_rounds"] == 1.0
    assert math.isclose(full["overall"]["eval/acc"], 2 / 3)


def test_empty_run_has_no_nan():
    assert summarize([]) == {"eval/n": 0}
