"""Efficiency-aware evaluation metrics (HyperEyes §6, IMEB): accuracy next to what it cost.

Cost-Aware Score, per the paper:  CAS = Acc² · 100 / (N_tok + 2 · N_tool + 1)
with Acc in [0, 1], N_tok the mean generated tokens per question in thousands and N_tool the mean tool-call
rounds per question. Squaring accuracy keeps a cheap-but-wrong agent from winning.

Every item counts: an episode that died on endpoint errors is wrong (acc 0), and is also reported under
`failures/…`, so a flaky endpoint lowers accuracy visibly instead of shrinking the denominator.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable, Sequence

from hyperseyes_verl.eval.results import ItemResult


def cost_aware_score(acc: float, mean_tokens_k: float, mean_tool_rounds: float) -> float:
    """CAS = acc² · 100 / (mean_tokens_k + 2 · mean_tool_rounds + 1); `acc` in [0, 1]."""
    if not 0.0 <= acc <= 1.0:
        raise ValueError(f"acc must be a fraction in [0, 1], got {acc!r} (divide a percentage by 100)")
    if mean_tokens_k < 0 or mean_tool_rounds < 0:
        raise ValueError(f"token and round means must be >= 0, got {mean_tokens_k!r}, {mean_tool_rounds!r}")
    return acc * acc * 100.0 / (mean_tokens_k + 2.0 * mean_tool_rounds + 1.0)


def summarize(results_R: Sequence[ItemResult], prefix: str = "eval") -> dict[str, float]:
    """Flat metrics over a set of item results (R = one entry per item)."""
    n = len(results_R)
    if n == 0:
        return {f"{prefix}/n": 0}
    rounds_all = [w for r in results_R for w in r.searches_per_round]  # one entry per tool round
    acc = sum(r.acc for r in results_R) / n
    mean_rounds = sum(r.tool_rounds for r in results_R) / n
    mean_tokens_k = sum(r.generated_tokens for r in results_R) / n / 1000.0
    searches = sum(r.searches for r in results_R)
    out = {
        f"{prefix}/n": n,
        f"{prefix}/acc": acc,
        f"{prefix}/answered": sum(r.answered for r in results_R) / n,
        f"{prefix}/mean_tool_rounds": mean_rounds,
        f"{prefix}/mean_tool_calls": sum(r.tool_calls for r in results_R) / n,
        f"{prefix}/mean_searches": searches / n,
        # searches that came back with no hit: a policy whose crops miss every entity reads only "no results"
        f"{prefix}/empty_search_share": sum(r.searches_empty for r in results_R) / searches if searches else 0.0,
        # Parallel width: searches per tool round, pooled over every round of every item.
        f"{prefix}/searches_per_round": (sum(rounds_all) / len(rounds_all)) if rounds_all else 0.0,
        f"{prefix}/multi_search_round_share": (sum(w >= 2 for w in rounds_all) / len(rounds_all)) if rounds_all else 0.0,
        f"{prefix}/mean_generated_tokens": mean_tokens_k * 1000.0,
        f"{prefix}/cas": cost_aware_score(acc, mean_tokens_k, mean_rounds),
        f"{prefix}/mean_wall_s": sum(r.wall_s for r in results_R) / n,
        # Items whose token count was estimated from characters (no `usage` from the endpoint): gen tokens and CAS
        # of such a run are approximate, and the report says so.
        f"{prefix}/tokens_estimated_share": sum(r.tokens_estimated for r in results_R) / n,
    }
    return out


def failure_counts(results_R: Sequence[ItemResult]) -> dict[str, int]:
    """What went wrong, counted per item (and per error kind), never folded away."""
    tool_errors: dict[str, int] = defaultdict(int)
    for r in results_R:
        for kind, c in r.tool_errors.items():
            tool_errors[kind] += c
    out = {
        "failures/episodes_failed": sum(r.error is not None for r in results_R),
        "failures/endpoint_errors": sum(r.endpoint_errors for r in results_R),
        "failures/items_with_endpoint_errors": sum(r.endpoint_errors > 0 for r in results_R),
        "failures/judge_fallbacks": sum(r.judge_source == "rule_fallback" for r in results_R),
        "failures/budget_exhausted": sum(r.budget_exhausted for r in results_R),
        "failures/no_answer": sum(not r.answered for r in results_R),
        "failures/truncated": sum(r.truncated for r in results_R),
        "failures/search_failures": sum(r.search_failures for r in results_R),
    }
    out.update({f"failures/tool_errors/{k}": v for k, v in sorted(tool_errors.items())})
    return out


def _entity_bucket(r: ItemResult) -> str:
    return str(r.entity_count) if r.entity_count >= 0 else "unknown"


GROUPINGS: dict[str, Callable[[ItemResult], str]] = {
    "benchmark": lambda r: r.benchmark,
    "domain": lambda r: r.domain or "unknown",
    "entities": _entity_bucket,
}


def grouped(results_R: Iterable[ItemResult], key: Callable[[ItemResult], str]) -> dict[str, dict[str, float]]:
    """`summarize` per group, groups sorted (numerically when every key is a number)."""
    groups: dict[str, list[ItemResult]] = defaultdict(list)
    for r in results_R:
        groups[key(r)].append(r)

    def order(k: str):
        return (0, int(k), "") if k.lstrip("-").isdigit() else (1, 0, k)

    return {g: summarize(groups[g]) for g in sorted(groups, key=order)}


def full_metrics(results_R: Sequence[ItemResult]) -> dict:
    """Overall, failures and per-benchmark / per-domain / per-entity-count breakdowns (the JSON report body)."""
    return {
        "overall": summarize(results_R),
        "failures": failure_counts(results_R),
        "by": {name: grouped(results_R, fn) for name, fn in GROUPINGS.items()},
    }
