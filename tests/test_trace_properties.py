"""Properties of both TRACE rules and of the reference store (hypothesis)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hyperseyes_verl.trace.official import official_group_scores
from hyperseyes_verl.trace.paper import PaperTraceConfig, paper_score
from hyperseyes_verl.trace.store import ReferenceStore, StoreConfig

rollout = st.tuples(st.booleans(), st.booleans(), st.integers(0, 8), st.integers(0, 30))  # answered, correct, tc, tot
group = st.lists(rollout, min_size=1, max_size=16)
ref = st.one_of(st.none(), st.integers(-1, 8))


def _official(rows, ref_tc, ref_total):
    n = len(rows)
    return official_group_scores([float(r[1]) for r in rows], [r[0] for r in rows], [r[2] for r in rows],
                                 [max(r[3], r[2]) for r in rows], [ref_tc] * n, [ref_total] * n)


@settings(max_examples=150, deadline=None)
@given(group, ref, ref)
def test_official_wrong_never_beats_correct(rows, ref_tc, ref_total):
    scores = _official(rows, ref_tc, ref_total)
    correct = [s.score for r, s in zip(rows, scores) if r[0] and r[1]]
    others = [s.score for r, s in zip(rows, scores) if not (r[0] and r[1])]
    if correct and others:
        assert min(correct) > max(others)


@settings(max_examples=150, deadline=None)
@given(group, ref, ref)
def test_official_fewer_rounds_never_lower_within_one_category(rows, ref_tc, ref_total):
    """Holds inside the good set and inside the bad set (keys ranked ascending by (tc, total)); across sets and
    for tc = 0 it does not hold — see test_trace_official.test_the_official_exceptions_to_fewer_rounds_scores_higher."""
    scores = _official(rows, ref_tc, ref_total)
    items = [(r[2], s) for r, s in zip(rows, scores) if s.category in ("good", "bad")]
    for tc_a, a in items:
        for tc_b, b in items:
            if a.category == b.category and tc_a < tc_b:
                assert a.score >= b.score


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 12), st.integers(0, 12), st.one_of(st.none(), st.integers(-1, 8)), st.booleans(),
       st.sampled_from([0.0, 0.02, 0.05, 0.1]))
def test_paper_fewer_rounds_never_scores_lower_and_wrong_never_beats_correct(t1, t2, ref_r, relative, lam):
    cfg = PaperTraceConfig(lam=lam, relative=relative, r_minus=0.0, r_no_answer=-0.5, lam_max=0.1)
    lo, hi = sorted((t1, t2))
    assert paper_score(cfg, True, True, lo, ref_r, lam).score >= paper_score(cfg, True, True, hi, ref_r, lam).score
    worst_correct = paper_score(cfg, True, True, hi, ref_r, lam).score
    assert paper_score(cfg, False, True, lo, ref_r, lam).score < worst_correct
    assert paper_score(cfg, False, False, lo, ref_r, lam).score < worst_correct


events = st.lists(st.one_of(
    st.tuples(st.just("obs"), st.integers(0, 4), st.booleans(), st.integers(0, 6), st.integers(0, 10)),
    st.tuples(st.just("end"))), max_size=60)


@settings(max_examples=120, deadline=None)
@given(events, st.lists(st.integers(-1, 5), min_size=5, max_size=5), st.integers(0, 2), st.integers(1, 3))
def test_store_references_are_monotone_and_match_a_brute_force_model(evts, init, warmup, min_correct):
    store = ReferenceStore(StoreConfig(warmup_epochs=warmup, min_correct=min_correct))
    inf = 10**9
    model = {k: ((init[k], init[k]) if init[k] >= 0 else (inf, inf)) for k in range(5)}
    epoch_obs: dict[int, list[tuple[int, int]]] = {k: [] for k in range(5)}
    epoch = 0
    for k in range(5):
        store.reference(f"d/{k}", init[k], init[k])
    for e in evts:
        if e[0] == "obs":
            _, k, correct, r, s = e
            before = store.peek(f"d/{k}")
            info = store.record(f"d/{k}", init[k], init[k], correct, r, s)
            assert info == before  # frozen within the epoch
            if correct and r >= 1:
                epoch_obs[k].append((r, s))
        else:
            prev = {k: store.peek(f"d/{k}") for k in range(5)}
            store.end_epoch()
            if epoch >= warmup:
                for k, obs in epoch_obs.items():
                    if len(obs) >= min_correct:
                        model[k] = min(model[k], min(obs))
            epoch += 1
            epoch_obs = {k: [] for k in range(5)}
            for k in range(5):
                now = store.peek(f"d/{k}")
                key_now = (now.rounds if now.rounds >= 0 else inf, now.searches if now.searches >= 0 else inf)
                key_prev = (prev[k].rounds if prev[k].rounds >= 0 else inf,
                            prev[k].searches if prev[k].searches >= 0 else inf)
                assert key_now <= key_prev  # never loosened
                assert key_now == model[k]
