"""The typed records of docs/CONTRACTS.md §3/§4, the batch group rule, and the pure modules' imports."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from hyperseyes_verl.contracts import GROUP_RULE_KEYS, RewardInfo, TrajectoryFields
from hyperseyes_verl.trace.official import official_group_scores, score_groups
from hyperseyes_verl.ugs.types import EpisodeStats

# docs/CONTRACTS.md §3 and §4, spelled out: these strings are verl metric / DataProto / saved-file keys
SECTION_3 = {"tool_rounds", "tool_calls", "searches", "searches_per_round", "crops_ok", "crops_failed",
             "search_failures", "tool_errors", "budget_exhausted", "answered", "answer", "finish_reason",
             "truncated", "search_failure_kinds"}
SECTION_4 = {"acc", "answered", "tool_rounds", "tool_calls", "searches", "ref_rounds", "ref_searches", "trace_bonus",
             "opd_eligible", "judge_source", "prompt_key", "hdpo_format", "store_error"}


def _stats(**kw) -> EpisodeStats:
    s = EpisodeStats(tool_rounds=2, tool_calls=3, searches=5, searches_per_round=[2, 3], crops_ok=2,
                     errors=Counter(parse=1), answered=True, answer="Paris", finish_reason="answer",
                     search_failure_kinds=Counter(timeout=2))
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_trajectory_fields_from_an_episode_are_the_section_3_keys_in_plain_types():
    d = TrajectoryFields.from_episode(_stats()).to_dict()
    assert set(d) == SECTION_3 == set(TrajectoryFields.contract_keys())
    assert d["tool_errors"] == {"parse": 1} and type(d["tool_errors"]) is dict
    assert d["search_failure_kinds"] == {"timeout": 2} and d["searches_per_round"] == [2, 3]
    assert (d["finish_reason"], d["truncated"], d["answer"]) == ("answer", False, "Paris")
    assert json.loads(json.dumps(d)) == d  # what verl's object arrays and saved rollouts hold
    assert TrajectoryFields.from_mapping({**d, "min_global_steps": 3}) == TrajectoryFields.from_episode(_stats())


def test_finish_reason_of_a_cut_or_unfinished_episode():
    running = _stats(finish_reason="running")
    assert TrajectoryFields.from_episode(running).finish_reason == "turn_budget"
    cut = TrajectoryFields.from_episode(running, cut_reason="length", truncated=True)
    assert (cut.finish_reason, cut.truncated) == ("length", True)


def test_trajectory_fields_read_numpy_values_and_fill_defaults():
    t = TrajectoryFields.from_mapping({"tool_rounds": np.int64(2), "answered": np.bool_(True),
                                       "searches_per_round": np.array([1, 1]), "tool_errors": None})
    assert (t.tool_rounds, t.answered, t.searches_per_round, t.tool_errors) == (2, True, (1, 1), {})
    assert type(t.tool_rounds) is int and t.finish_reason == "running"
    with pytest.raises(ValueError, match="tool_rounds"):
        TrajectoryFields.from_mapping({"tool_rounds": "many"})


def test_reward_info_round_trip_and_missing_keys():
    info = RewardInfo(acc=1, answered=True, tool_rounds=2, tool_calls=2, searches=3, ref_rounds=-1, ref_searches=-1,
                      trace_bonus=0, opd_eligible=0, judge_source="rule", prompt_key="d/1", hdpo_format=1)
    d = info.to_dict()
    assert set(d) == SECTION_4 == set(RewardInfo.contract_keys()) and set(GROUP_RULE_KEYS) <= SECTION_4
    assert (type(d["acc"]), type(d["answered"]), type(d["ref_rounds"])) == (float, int, float)
    assert RewardInfo.from_mapping({**d, "other": 1}) == info
    with pytest.raises(ValueError, match=r"needs the keys \['prompt_key'\]"):
        RewardInfo.from_mapping({k: v for k, v in d.items() if k != "prompt_key"})


def test_score_groups_is_the_group_rule_over_a_flat_batch_in_row_order():
    assert tuple(p for p in inspect.signature(score_groups).parameters if p not in ("groups", "cfg")) == \
        GROUP_RULE_KEYS
    rows = {"acc": [1, 1, 0, 1, 1, 0], "answered": [1, 1, 1, 1, 0, 1], "tool_rounds": [1, 3, 2, 2, 0, 5],
            "searches": [2, 3, 2, 4, 0, 5], "ref_rounds": [2, 3, 2, 2, 3, 2], "ref_searches": [4, 5, 4, 4, 5, 4]}
    groups = ["a", "b", "a", "a", "b", "b"]  # interleaved, as verl's uid column may be
    got = score_groups(groups, **rows)
    for g in ("a", "b"):
        idx = [i for i, x in enumerate(groups) if x == g]
        want = official_group_scores(**{k: [v[i] for i in idx] for k, v in rows.items()})
        assert [got[i] for i in idx] == want
    with pytest.raises(ValueError, match="score_groups: acc has 1 entries for 2 rollouts"):
        score_groups(["a", "a"], **{k: v[:2] for k, v in rows.items()} | {"acc": [1]})


def test_pure_modules_import_neither_verl_nor_ray():
    probe = ("import sys; import hyperseyes_verl.contracts, hyperseyes_verl.trace, hyperseyes_verl.trace.scorer, "
             "hyperseyes_verl.trace.shared, hyperseyes_verl.ugs.environment; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('verl', 'ray') "
             "or m.startswith('hyperseyes_verl.verl')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
