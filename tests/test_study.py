"""The learning-signal study: its world model, its update rule, its wiring to the project's reward code and
verl's GRPO, and its qualitative results pinned on a reduced seeded configuration."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hyperseyes_verl.study.claims import evaluate, validator_rejects_bad_guard
from hyperseyes_verl.study.cli import run_study
from hyperseyes_verl.study.signals import Rollouts, Variant, advantages, opd_shaped
from hyperseyes_verl.study.train import StudyConfig, _policy_step, run_variant
from hyperseyes_verl.study.variants import standard_variants
from hyperseyes_verl.verl.advantage_fns import verl_outcome_advantages
from hyperseyes_verl.study.world import (
    IDX,
    S,
    WorldConfig,
    expected_stats,
    initial_logits,
    make_population,
    sample_strategies,
    softmax_TS,
)
from hyperseyes_verl.trace import OfficialTraceConfig, ReferenceStore, StoreConfig

pytestmark = pytest.mark.verl

REDUCED = StudyConfig(seed=0, epochs=25, prompts=64, batch_prompts=16, lr=1.0)


@pytest.fixture(scope="module")
def study():
    hist, claims, _ = run_study(REDUCED, log=lambda *_: None)
    return hist, {c.key: c for c in claims}


# ---- world ------------------------------------------------------------------------------------------------------
def test_population_outcomes_follow_the_documented_model():
    pop = make_population(80, WorldConfig(chained_frac=0.5), np.random.default_rng(3))
    k = pop.entities_P
    assert sorted(np.bincount(k)[1:].tolist()) == [10] * 8
    assert (pop.rounds_PS[:, IDX["parallel"]] == 1).all() and (pop.rounds_PS[:, IDX["serial"]] == k).all()
    assert (pop.searches_PS[:, IDX["parallel"]] == k).all() and not pop.answered_S[IDX["give_up"]]
    amen, chain = ~pop.chained_P & (k >= 3), pop.chained_P & (k >= 3)
    # serial and parallel equally reliable on independent entities; parallel fails on chained ones
    np.testing.assert_allclose(pop.p_correct_PS[amen, IDX["parallel"]], pop.p_correct_PS[amen, IDX["serial"]])
    assert (pop.p_correct_PS[chain, IDX["parallel"]] < 0.2 * pop.p_correct_PS[chain, IDX["serial"]]).all()
    assert (pop.p_correct_PS[:, IDX["over_search"]] < pop.p_correct_PS[:, IDX["serial"]]).all()


def test_bad_world_config_is_refused_with_the_value():
    with pytest.raises(ValueError, match="init_probs"):
        WorldConfig(init_probs=(0.5, 0.5))
    with pytest.raises(ValueError, match="too small"):
        make_population(4, WorldConfig(), np.random.default_rng(0))


def test_sampling_matches_the_policy_and_expected_stats_are_exact():
    rng = np.random.default_rng(0)
    probs = softmax_TS(rng.normal(size=(16, S)))
    type_N = np.full(200_000, 5)
    freq = np.bincount(sample_strategies(probs, type_N, rng), minlength=S) / len(type_N)
    np.testing.assert_allclose(freq, probs[5], atol=0.005)
    pop = make_population(16, WorldConfig(), np.random.default_rng(1))
    onehot = np.full((16, S), -50.0)
    onehot[:, IDX["serial"]] = 0.0
    stats = expected_stats(pop, softmax_TS(onehot))
    assert stats["rounds"] == pytest.approx(pop.entities_P.mean(), rel=1e-9)
    assert stats["share_serial"] == pytest.approx(1.0)


def test_policy_step_moves_probability_toward_positive_advantage():
    logits = initial_logits(WorldConfig())
    probs = softmax_TS(logits)
    type_N = np.array([2, 2, 2, 2])
    strat_N = np.array([IDX["parallel"], IDX["serial"], IDX["serial"], IDX["guess"]])
    _policy_step(logits, type_N, strat_N, probs, np.array([1.5, -0.5, -0.5, -0.5]), lr=0.5)
    new = softmax_TS(logits)
    assert new[2, IDX["parallel"]] > probs[2, IDX["parallel"]]
    assert new[2, IDX["serial"]] < probs[2, IDX["serial"]]
    np.testing.assert_allclose(new[3], probs[3])  # other prompt types untouched


# ---- wiring to verl and the project's reward code ----------------------------------------------------------------
def test_verl_grpo_is_a_group_z_score():
    scores = np.array([1.0, 0.0, 0.0, 1.0, 0.2, 0.2, 0.9])
    group = np.array([0, 0, 0, 0, 1, 1, 1])
    adv = verl_outcome_advantages(scores, group)
    for g in (0, 1):
        x = scores[group == g]
        np.testing.assert_allclose(adv[group == g], (x - x.mean()) / (x.std(ddof=1) + 1e-6), rtol=1e-5)


def test_reinforce_plus_plus_keeps_group_common_shifts_and_the_estimator_is_configurable():
    """The warm-up experiment's control: REINFORCE++ whitens over the batch, so a shift common to one group
    survives (GRPO cancels it)."""
    scores = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    group = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(verl_outcome_advantages(scores, group), 0.0, atol=1e-6)
    rpp = verl_outcome_advantages(scores, group, "reinforce_plus_plus")
    assert (rpp[group == 0] > 0.5).all() and (rpp[group == 1] < -0.5).all()
    tiny = StudyConfig(epochs=1, prompts=8, batch_prompts=8, estimator="no_such_estimator")
    with pytest.raises(ValueError, match="no_such_estimator"):
        run_variant(Variant("x", "acc_only"), tiny)


def _rollouts(strategies, correct, k=4):
    n = len(strategies)
    pop = make_population(8, WorldConfig(chained_frac=0.0), np.random.default_rng(0))
    p = int(np.flatnonzero(pop.entities_P == k)[0])
    s = np.array([IDX[x] for x in strategies])
    return Rollouts(prompt_N=np.full(n, p), group_N=np.zeros(n, int), strategy_N=s, correct_N=np.array(correct),
                    answered_N=pop.answered_S[s], rounds_N=pop.rounds_PS[p, s], searches_N=pop.searches_PS[p, s],
                    init_ref_rounds_N=np.full(n, k), init_ref_searches_N=np.full(n, k), keys_N=[pop.key(p)] * n)


@pytest.mark.parametrize("reward", ["trace_official", "trace_paper", "hdpo"])
def test_efficiency_signals_rank_parallel_above_serial_and_accuracy_only_does_not(reward):
    r = _rollouts(["parallel", "serial", "partial", "guess"], [True, True, True, False])
    adv = advantages(Variant("v", reward), r, ReferenceStore(StoreConfig(use_ray=False)), np.zeros(4), 0)
    assert adv[0] > adv[2] > adv[1] > adv[3]
    base = advantages(Variant("b", "acc_only"), r, ReferenceStore(StoreConfig(use_ray=False)), np.zeros(4), 0)
    assert base[0] == pytest.approx(base[1]) == pytest.approx(base[2]) and base[3] < base[0]


@pytest.mark.parametrize("counting, searches", [("release", 1), ("searches", 4)])
def test_rollouts_are_observed_and_tighten_the_reference_at_epoch_end(counting, searches):
    """The parallel rollout (1 round, 4 crops in one call) becomes the reference; its searches as the reward
    counts them: one call (release counting) or four crops (searches counting)."""
    store = ReferenceStore(StoreConfig(use_ray=False))
    r = _rollouts(["parallel", "serial"], [True, True])
    advantages(Variant("v", "trace_official", official=OfficialTraceConfig(counting=counting)), r, store,
               np.zeros(2), 0)
    assert store.peek(r.keys_N[0]).rounds == 4  # frozen during the epoch
    store.end_epoch()
    assert (store.peek(r.keys_N[0]).rounds, store.peek(r.keys_N[0]).searches) == (1, searches)


def test_study_shows_what_each_counting_does_to_width():
    from hyperseyes_verl.study.report import counting_example

    rows = {line.split(" | ")[0].strip("| "): line for line in counting_example().splitlines()[2:]}
    assert "good +1.20" in rows["1 round, 6 crops (wide)"] and "bad +0.98" in rows["1 round, 6 crops (wide)"]
    assert "trace_official_searches" in [v.name for v in standard_variants()]


def test_opd_shapes_only_failed_rollouts_toward_the_teacher():
    r = _rollouts(["serial", "serial", "parallel"], [True, False, False])
    logp = np.log(np.array([0.4, 0.4, 0.1]))
    shaped = opd_shaped(np.zeros(3), r, logp, beta=0.05)
    assert shaped[0] == 0.0  # a success is untouched
    assert shaped[1] < 0 < shaped[2]  # the student over-uses serial, under-uses parallel vs the teacher


# ---- the study's findings (reduced, seeded) ----------------------------------------------------------------------
def test_accuracy_only_has_no_pressure_toward_fewer_rounds(study):
    hist, claims = study
    assert claims["no_pressure"].holds
    assert hist["acc_only"].final()["share_parallel"] < hist["acc_only"].epochs[0]["share_parallel"]


def test_trace_both_modes_cut_rounds_3x_without_losing_accuracy(study):
    hist, claims = study
    assert claims["reduction/trace_official"].holds and claims["reduction/trace_paper"].holds
    base = hist["acc_only"].final()
    for name in ("trace_official", "trace_paper"):
        assert base["rounds"] / hist[name].final()["rounds"] >= 3.0
        assert hist[name].final()["acc"] >= base["acc"] - 0.01


def test_hdpo_cuts_rounds_more_slowly(study):
    """On the reduced run HDPO (w_tool = 0.15) is still converging: ≥ 2× here, ≥ 3× on the full study."""
    hist, _ = study
    base, h = hist["acc_only"].final(), hist["hdpo"].final()
    assert base["rounds"] / h["rounds"] >= 2.0 and h["acc"] >= base["acc"] - 0.01
    assert h["rounds"] > hist["trace_paper"].final()["rounds"]


def test_violated_guard_learns_to_give_up_and_the_validator_rejects_it(study):
    hist, claims = study
    assert claims["give_up_hack"].holds
    bad, good = hist["trace_paper_bad_guard"].final(), hist["trace_paper"].final()
    assert bad["shortcut_hard_chained"] > 0.8 > 0.1 > good["shortcut_hard_chained"]
    assert bad["acc"] < good["acc"] - 0.02
    assert validator_rejects_bad_guard()[0]


def test_tightening_without_warmup_does_not_slow_learning_here(study):
    """The seeds' warning does not reproduce in this model (docs/STUDY.md explains why): pinned as found."""
    hist, claims = study
    assert not claims["warmup/trace_paper_relative"].holds
    assert np.mean(hist["trace_paper_relative_nowarmup"].series("rounds")) < \
        np.mean(hist["trace_paper_relative"].series("rounds"))


def test_claims_are_recomputed_from_histories(study):
    hist, _ = study
    assert [c.key for c in evaluate(hist)][:2] == ["no_pressure", "reduction/trace_official"]
    hist2 = dict(hist)
    hist2["trace_paper"] = hist["acc_only"]  # a signal without pressure must fail the 3× claim
    by_name = {c.key: c for c in evaluate(hist2)}
    assert not by_name["reduction/trace_paper"].holds


# ---- the command -------------------------------------------------------------------------------------------------
def test_cli_writes_histories_claims_table_and_plot(tmp_path):
    from hyperseyes_verl.cli import main

    out = str(tmp_path / "study")
    assert main(["study", "--out", out, "--epochs", "2", "--prompts", "16", "--only", "trace_paper"]) == 0
    for name in ("histories.json", "claims.json", "summary.md", "study.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    runs = json.load(open(os.path.join(out, "histories.json")))["runs"]
    assert set(runs) == {"acc_only", "trace_paper"} and len(runs["trace_paper"]["epochs"]) == 3
    assert "| TRACE paper" in open(os.path.join(out, "summary.md")).read()


def test_cli_rejects_unknown_runs(tmp_path, capsys):
    from hyperseyes_verl.cli import main

    assert main(["study", "--out", str(tmp_path), "--only", "nope"]) == 2
    assert "unknown run(s) ['nope']" in capsys.readouterr().err
