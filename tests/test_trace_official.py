"""The released TRACE group rule, every branch, with expected numbers derived by hand."""
from __future__ import annotations

import pytest

from hyperseyes_verl.trace.official import OfficialTraceConfig, official_group_scores


def _run(rows, ref_tc, ref_total):
    """rows: (answered, acc, tc, total)."""
    n = len(rows)
    return official_group_scores(
        acc=[r[1] for r in rows], answered=[r[0] for r in rows], tool_rounds=[r[2] for r in rows],
        searches=[r[3] for r in rows], ref_rounds=[ref_tc] * n, ref_searches=[ref_total] * n)


def test_every_branch_with_a_reference():
    # ref_tc = 2, ref_total = 3; wrong-window = [2, int(1.5*2)=3]
    rows = [
        (False, 0, 1, 1),  # 0 no answer -> -0.5, bonus 0
        (True, 0, 1, 1),   # 1 wrong, tc 1 < 2 -> -0.1
        (True, 0, 2, 9),   # 2 wrong, tc 2 in window -> 0
        (True, 0, 3, 3),   # 3 wrong, tc 3 = int(3.0) in window -> 0
        (True, 0, 4, 4),   # 4 wrong, tc 4 > 3 -> -0.1
        (True, 1, 0, 0),   # 5 correct without tools -> 1.0
        (True, 1, 1, 2),   # 6 good (1<=2, 2<=3), best of 2 good keys -> +0.20
        (True, 1, 2, 3),   # 7 good, worst good key -> +0.05
        (True, 1, 2, 3),   # 8 same key as 7 -> +0.05
        (True, 1, 1, 4),   # 9 bad (total 4 > 3); bad keys (1,4)<(3,3)<(3,5): step 0.08/2 -> -0.02
        (True, 1, 3, 3),   # 10 bad (tc 3 > 2) -> -0.06
        (True, 1, 3, 5),   # 11 bad -> -0.10
    ]
    got = [(s.score, s.bonus, s.category) for s in _run(rows, 2, 3)]
    assert got == [
        (-0.5, 0.0, "no_answer"), (-0.1, -0.1, "wrong_penalized"), (0.0, 0.0, "wrong"), (0.0, 0.0, "wrong"),
        (-0.1, -0.1, "wrong_penalized"), (1.0, 0.0, "correct_no_tool"), (1.2, 0.2, "good"), (1.05, 0.05, "good"),
        (1.05, 0.05, "good"), (0.98, -0.02, "bad"), (0.94, -0.06, "bad"), (0.9, -0.1, "bad"),
    ]


def test_no_reference_reproduces_the_release_minus_one_arithmetic():
    # ref -1: wrong -> tc > int(-1.5) = -1 always -> -0.1 (even tc 0); correct with tools -> tc <= -1 false -> bad
    rows = [(True, 0, 0, 0), (True, 0, 5, 5), (True, 1, 2, 2), (True, 1, 1, 3), (True, 1, 0, 0), (False, 1, 3, 3)]
    for ref in (-1, None, -1.0):
        got = [(s.score, s.category) for s in _run(rows, ref, ref)]
        # bad keys (1,3) < (2,2): -0.02, -0.10
        assert got == [(-0.1, "wrong_penalized"), (-0.1, "wrong_penalized"), (0.9, "bad"), (0.98, "bad"),
                       (1.0, "correct_no_tool"), (-0.5, "no_answer")]


def test_single_distinct_key_gets_hi_and_window_of_ref_one():
    # good set with one distinct key (2,4) -> hi = +0.20 for both
    assert [s.score for s in _run([(True, 1, 2, 4), (True, 1, 2, 4)], 3, 9)] == [1.2, 1.2]
    # bad set with one key -> bad hi = -0.02
    assert [s.score for s in _run([(True, 1, 5, 5)], 3, 9)] == [0.98]
    # ref_tc 1: window [1, int(1.5)=1]
    assert [s.bonus for s in _run([(True, 0, 0, 0), (True, 0, 1, 1), (True, 0, 2, 2)], 1, 1)] == [-0.1, 0.0, -0.1]


def test_linear_spacing_and_four_decimal_rounding():
    # 4 good keys: step 0.15/3 = 0.05 -> 0.20, 0.15, 0.10, 0.05
    good = [(True, 1, 1, 1), (True, 1, 1, 2), (True, 1, 2, 1), (True, 1, 2, 2)]
    assert [s.bonus for s in _run(good, 2, 2)] == [0.2, 0.15, 0.1, 0.05]
    # 7 bad keys (ref 0 rounds -> every tool use is bad): step 0.08/6 = 0.013333..
    bad = [(True, 1, t, t) for t in range(1, 8)]
    assert [s.bonus for s in _run(bad, 0, 0)] == [-0.02, -0.0333, -0.0467, -0.06, -0.0733, -0.0867, -0.1]


def test_the_official_exceptions_to_fewer_rounds_scores_higher():
    """Documented: in official mode a correct rollout with fewer rounds can score below one with more rounds,
    (a) when it used no tool (bonus 0 < any good bonus) and (b) when it is 'bad' only because its search total
    exceeds the reference while the other is 'good'."""
    s = _run([(True, 1, 0, 0), (True, 1, 1, 5), (True, 1, 2, 2)], 2, 3)
    assert s[0].score < s[2].score  # (a) 1.0 < 1.2
    assert s[1].score < s[2].score  # (b) 0.98 < 1.2


def test_lengths_must_match_and_ranges_are_validated():
    with pytest.raises(ValueError, match="official_group_scores: searches has 1 entries for 2 rollouts"):
        official_group_scores([1, 1], [1, 1], [1, 1], [1], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="bad_range"):
        OfficialTraceConfig(bad_range=(-0.1, 0.1))
    with pytest.raises(ValueError, match="lo <= hi"):
        OfficialTraceConfig(good_range=(0.3, 0.2))
