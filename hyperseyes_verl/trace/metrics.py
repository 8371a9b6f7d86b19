"""Flat, namespaced training metrics from the per-sample `reward_extra_info` dicts (CONTRACTS §4)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, get_args

import numpy as np

from hyperseyes_verl.trace.official import Category, OfficialScore


def _col(infos: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.asarray([float(i[key]) for i in infos if key in i], dtype=np.float64)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else 0.0


def trace_metrics(infos: Sequence[Mapping[str, Any]],
                  official_scores: Sequence[OfficialScore] | None = None) -> dict[str, float]:
    """Accuracy, answered rate, judge fallbacks, rounds, width, references and the bonus distribution of one
    batch (the trainer logs them every step; `trace/batch_ref_*` are this batch's references, the store's own
    `trace/ref_*` describe every prompt and come at epoch ends).

    `official_scores` (official mode): the group scores the trainer computed; their bonuses replace
    `trace_bonus` (which is 0 per sample in that mode) and their categories are counted.
    """
    if not infos:
        return {}
    n = len(infos)
    rounds, searches = _col(infos, "tool_rounds"), _col(infos, "searches")
    refs = _col(infos, "ref_rounds")
    sources = [str(i.get("judge_source", "")) for i in infos]
    out = {
        "trace/acc": _mean(_col(infos, "acc")),
        "trace/answered": _mean(_col(infos, "answered")),
        # rollouts that answered with every turn parsing (no parse error, not cut by length): the format share
        "trace/format_ok": _mean(_col(infos, "hdpo_format")),
        "trace/opd_eligible": _mean(_col(infos, "opd_eligible")),
        "trace/rounds_mean": _mean(rounds),
        "trace/searches_mean": _mean(searches),
        "trace/searches_per_round": float(searches.sum() / rounds.sum()) if rounds.sum() > 0 else 0.0,
        "trace/batch_ref_coverage": float((refs >= 0).mean()) if refs.size else 0.0,
        "trace/batch_ref_mean": _mean(refs[refs >= 0]),
        "trace/store_errors": float(_col(infos, "store_error").sum()),
        "judge/fallbacks": float(sources.count("rule_fallback")),
        "judge/fallback_rate": sources.count("rule_fallback") / n,
        "judge/llm_frac": sources.count("llm") / n,
    }
    if official_scores is not None:
        bonus = np.asarray([s.bonus for s in official_scores], dtype=np.float64)
        cats = Counter(s.category for s in official_scores)
        for cat in get_args(Category):  # every category, so the fractions add up to 1
            out[f"trace/frac_{cat}"] = cats[cat] / max(len(official_scores), 1)
    else:
        bonus = _col(infos, "trace_bonus")
    if bonus.size:
        out.update({"trace/bonus_mean": float(bonus.mean()), "trace/bonus_min": float(bonus.min()),
                    "trace/bonus_max": float(bonus.max()), "trace/bonus_pos_frac": float((bonus > 0).mean()),
                    "trace/bonus_neg_frac": float((bonus < 0).mean())})
    return out
