"""TraceScorer (pure): answers, counts from both agent loops, references, validation, both modes, metrics."""
from __future__ import annotations

import pytest

from hyperseyes_verl.trace.config import TraceConfig, trace_config_from_mapping
from hyperseyes_verl.trace.counts import rollout_counts
from hyperseyes_verl.trace.metrics import trace_metrics
from hyperseyes_verl.contracts import GROUP_RULE_KEYS
from hyperseyes_verl.trace.official import OfficialScore, official_group_scores
from hyperseyes_verl.trace.scorer import EXTRA_KEYS, RolloutInput, TraceScorer
from hyperseyes_verl.trace.shared import StoreHandle
from hyperseyes_verl.trace.store import ReferenceStore

CONTRACT_KEYS = {"acc", "answered", "tool_rounds", "tool_calls", "searches", "ref_rounds", "ref_searches",
                 "trace_bonus", "opd_eligible", "judge_source", "prompt_key", "hdpo_format", "store_error"}


def _agent_fields(answer, rounds, searches, **kw):
    return {"tool_rounds": rounds, "tool_calls": rounds, "searches": searches, "searches_per_round": [],
            "crops_ok": 0, "crops_failed": 0, "search_failures": 0, "tool_errors": kw.get("errors", {}),
            "budget_exhausted": False, "answered": answer is not None, "answer": answer,
            "finish_reason": "answer", "truncated": kw.get("truncated", False)}


def _row(answer="Paris", rounds=2, searches=5, index=3, split="train", ref=(3, 6), **kw):
    return RolloutInput(response_text="", ground_truth="Paris", data_source="mmsearch", index=index,
                        extra_info={"index": index, "split": split, "question": "capital?", "ref_rounds": ref[0],
                                    "ref_searches": ref[1]},
                        tool_extra_fields=_agent_fields(answer, rounds, searches, **kw), global_step=1)


def _scorer(**cfg) -> tuple[TraceScorer, ReferenceStore]:
    """These rows carry the agent loop's counts (empty response text): the searches-aware counting reads them.
    The release counting (the official default) is tested on response texts in test_official_parity.py."""
    cfg.setdefault("official", {"counting": "searches"})
    store = ReferenceStore()
    return TraceScorer(trace_config_from_mapping(cfg), store=StoreHandle(store=store)), store


def test_tool_agent_loop_derivation():
    # num_turns = user_turns + assistant_turns + 1 with assistant = user + 1: 2 tool rounds -> 2+3+1 = 6
    c = rollout_counts({"tool_rewards": [0.0, 0.0, 0.5], "turn_scores": []}, num_turns=6)
    assert (c.tool_rounds, c.tool_calls, c.searches, c.source) == (2, 3, 3, "tool_agent")
    assert rollout_counts({"tool_rewards": []}, num_turns=2).tool_rounds == 0  # answer in the first turn
    assert rollout_counts(None).source == "none"
    with pytest.raises(ValueError, match="not an integer count"):
        rollout_counts({"tool_rounds": "many"})


async def test_official_mode_row_has_exactly_the_contract_keys_and_observes():
    scorer, store = _scorer()
    out = await scorer.score(_row())
    info = out["reward_extra_info"]
    assert set(info) == CONTRACT_KEYS == set(EXTRA_KEYS)
    assert out["reward_score"] == 1.0 and info["trace_bonus"] == 0.0
    assert (info["tool_rounds"], info["searches"], info["ref_rounds"], info["ref_searches"]) == (2, 5, 3.0, 6.0)
    assert (info["prompt_key"], info["judge_source"], info["opd_eligible"], info["hdpo_format"]) == \
        ("mmsearch/3", "rule", 0, 1)
    store.end_epoch()
    assert store.peek("mmsearch/3").rounds == 2  # the correct 2-round rollout tightened 3 -> 2


async def test_no_answer_and_wrong_are_distinct():
    scorer, _ = _scorer()
    none = await scorer.score(_row(answer=None))
    wrong = await scorer.score(_row(answer="Rome"))
    assert none["reward_score"] == -0.5 and none["reward_extra_info"]["answered"] == 0
    assert wrong["reward_score"] == 0.0 and wrong["reward_extra_info"]["answered"] == 1
    assert none["reward_extra_info"]["opd_eligible"] == wrong["reward_extra_info"]["opd_eligible"] == 1
    assert none["reward_extra_info"]["hdpo_format"] == 0


async def test_validation_rows_are_never_observed_and_keyed_apart():
    scorer, store = _scorer()
    out = await scorer.score(_row(split="val", rounds=1))
    assert out["reward_extra_info"]["prompt_key"] == "mmsearch/3#val"
    assert out["reward_extra_info"]["ref_rounds"] == 3.0 and len(store) == 0
    await scorer.score(_row(split="train", rounds=1))
    store.end_epoch()
    assert store.peek("mmsearch/3").rounds == 1 and store.peek("mmsearch/3#val") is None


async def test_paper_mode_with_reference_relative_cost():
    scorer, store = _scorer(mode="paper", paper={"lam": 0.1, "relative": True, "r_minus": -0.2, "r_no_answer": -0.5})
    out = await scorer.score(_row(rounds=5, ref=(3, 6)))  # 2 rounds above the reference
    assert out["reward_score"] == pytest.approx(0.8) and out["reward_extra_info"]["trace_bonus"] == pytest.approx(-0.2)
    assert (await scorer.score(_row(answer="Rome")))["reward_score"] == -0.2


async def test_format_flag_and_missing_index_fallback():
    scorer, _ = _scorer()
    bad = await scorer.score(_row(errors={"bad_json": 1}))
    assert bad["reward_extra_info"]["hdpo_format"] == 0 and bad["reward_score"] == 1.0
    x = _row(index=None)
    x.extra_info.pop("index")
    x.raw_prompt = [{"role": "user", "content": "capital?"}]
    key = (await scorer.score(x))["reward_extra_info"]["prompt_key"]
    assert key.startswith("mmsearch/h") and key == (await scorer.score(x))["reward_extra_info"]["prompt_key"]


async def test_response_parsing_when_the_agent_gives_no_answer_field():
    scorer, _ = _scorer()
    x = RolloutInput(response_text="<reason>r</reason><answer>paris</answer><|im_end|>", ground_truth=["Paris"],
                     data_source="d", index=1, extra_info={"index": 1}, tool_extra_fields={"tool_rewards": []},
                     num_turns=2)
    out = await scorer.score(x)
    assert out["reward_score"] == 1.0 and out["reward_extra_info"]["tool_rounds"] == 0


async def test_missing_ground_truth_is_a_clear_error():
    scorer, _ = _scorer()
    x = _row()
    x.ground_truth = None
    with pytest.raises(ValueError, match="no ground truth"):
        await scorer.score(x)


async def test_store_failure_is_flagged_per_row_and_uses_the_dataset_reference():
    from hyperseyes_verl.trace.metrics import trace_metrics

    class DeadStore:
        async def arecord(self, *a):
            raise ConnectionError("actor died")

    dead = (await TraceScorer(TraceConfig(), store=DeadStore()).score(_row()))["reward_extra_info"]
    ok = (await _scorer()[0].score(_row()))["reward_extra_info"]
    assert dead["ref_rounds"] == 3.0 and dead["store_error"] == 1 and ok["store_error"] == 0
    assert trace_metrics([dead, ok, dead])["trace/store_errors"] == 2.0


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="mode"):
        trace_config_from_mapping({"mode": "fancy"})
    with pytest.raises(ValueError, match="r_minus"):
        trace_config_from_mapping({"paper": {"r_minus": 0.9}})


async def test_trace_metrics_from_extra_info_and_official_scores():
    scorer, _ = _scorer()
    rows = [_row(rounds=2, searches=6), _row(rounds=1, searches=1), _row(answer=None), _row(answer="Rome")]
    infos = [(await scorer.score(r))["reward_extra_info"] for r in rows]
    infos[0] = {**infos[0], "judge_source": "rule_fallback"}
    m = trace_metrics(infos)
    assert m["trace/acc"] == 0.5 and m["trace/answered"] == 0.75 and m["judge/fallbacks"] == 1.0
    assert m["trace/format_ok"] == 0.75  # the row without an answer did not follow the format
    bad = {**infos[0], "hdpo_format": 0}
    assert trace_metrics([bad, infos[1]])["trace/format_ok"] == 0.5
    assert m["trace/rounds_mean"] == pytest.approx(7 / 4)  # 2 + 1 + 2 + 2 (no-answer/wrong rows keep 2 rounds)
    assert m["trace/searches_per_round"] == pytest.approx((6 + 1 + 5 + 5) / 7)
    assert m["trace/batch_ref_mean"] == 3.0 and m["trace/bonus_mean"] == 0.0
    scores = official_group_scores(**{k: [i[k] for i in infos] for k in GROUP_RULE_KEYS})
    m2 = trace_metrics(infos, scores)
    # ref (3,6): (2,6) good, (1,1) good -> keys (1,1)->0.2, (2,6)->0.05; wrong tc 2 < 3 -> -0.1
    assert m2["trace/bonus_max"] == 0.2 and m2["trace/bonus_min"] == -0.1 and m2["trace/frac_good"] == 0.5
    fracs = {k: v for k, v in m2.items() if k.startswith("trace/frac_")}
    assert fracs["trace/frac_no_answer"] == fracs["trace/frac_wrong_penalized"] == 0.25
    assert sum(fracs.values()) == pytest.approx(1.0)
    plain_wrong = trace_metrics(infos[:2], [OfficialScore(0.0, 0.0, "wrong"), OfficialScore(1.2, 0.2, "good")])
    assert plain_wrong["trace/frac_wrong"] == 0.5  # every category is counted, so the fractions add up to 1
