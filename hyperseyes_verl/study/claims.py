"""The study's four questions, each answered from the histories with its numbers (holds or not)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hyperseyes_verl.study.train import History
from hyperseyes_verl.study.variants import BAD_GUARD_FIELDS, GUARDED
from hyperseyes_verl.trace import PaperTraceConfig

MIN_REDUCTION = 3.0  # × fewer mean rounds than accuracy-only
MAX_ACC_LOSS = 0.01  # one accuracy point
EFFICIENT = ("trace_official", "trace_paper", "hdpo")


@dataclass(frozen=True)
class Claim:
    key: str  # stable id: no_pressure | reduction/<run> | give_up_hack | warmup/<run>
    name: str
    holds: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def validator_rejects_bad_guard() -> tuple[bool, str]:
    try:
        PaperTraceConfig(**{**GUARDED.model_dump(), **BAD_GUARD_FIELDS})
    except ValueError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if "lowest reward" in ln]
        return True, lines[0].split(" [type=")[0] if lines else type(e).__name__
    return False, "PaperTraceConfig accepted R⁻ above the lowest correct reward"


def rounds_area(h: History) -> float:
    """Mean of the rounds curve over all epochs (lower = learned fewer rounds sooner)."""
    return float(np.mean(h.series("rounds")))


def evaluate(hist: dict[str, History]) -> list[Claim]:
    out: list[Claim] = []
    base = hist["acc_only"]
    b0, b1 = base.epochs[0], base.final()
    out.append(Claim(
        "no_pressure", "accuracy-only shows no pressure toward fewer rounds", b1["rounds"] >= 0.95 * b0["rounds"],
        f"mean rounds {b0['rounds']:.2f} → {b1['rounds']:.2f}; parallel share {b0['share_parallel']:.2f} → "
        f"{b1['share_parallel']:.2f}"))
    for name in EFFICIENT:
        if name not in hist:
            continue
        f = hist[name].final()
        ratio = b1["rounds"] / f["rounds"]
        loss = b1["acc"] - f["acc"]
        out.append(Claim(
            f"reduction/{name}", f"{name}: ≥ {MIN_REDUCTION:g}× fewer rounds than accuracy-only at ≤ {100 * MAX_ACC_LOSS:g} point "
            "accuracy loss", ratio >= MIN_REDUCTION and loss <= MAX_ACC_LOSS,
            f"{f['rounds']:.2f} vs {b1['rounds']:.2f} rounds ({ratio:.2f}×); accuracy {100 * f['acc']:.1f}% vs "
            f"{100 * b1['acc']:.1f}% ({-100 * loss:+.1f} points)"))
    if "trace_paper_bad_guard" in hist and "trace_paper" in hist:
        bad, good = hist["trace_paper_bad_guard"], hist["trace_paper"]
        s0, s1, peak = bad.epochs[0]["shortcut_hard_chained"], bad.final()["shortcut_hard_chained"], \
            bad.series("shortcut_hard_chained").max()
        rejected, why = validator_rejects_bad_guard()
        out.append(Claim(
            "give_up_hack", "R⁻ above the lowest correct reward: the give-up hack appears on hard queries, and the validator "
            "rejects the config", s1 > s0 and s1 > good.final()["shortcut_hard_chained"] and rejected,
            f"give-up share (no answer, guess, or a search that cannot resolve the chain) on chained prompts with "
            f"≥ 6 entities {s0:.2f} → {s1:.2f} (peak {peak:.2f}) vs {good.final()['shortcut_hard_chained']:.2f} "
            f"with the guard; accuracy there {100 * bad.final()['acc_hard_chained']:.1f}% vs "
            f"{100 * good.final()['acc_hard_chained']:.1f}%; overall accuracy {100 * bad.final()['acc']:.1f}% vs "
            f"{100 * good.final()['acc']:.1f}%; validator: {'rejects' if rejected else 'ACCEPTS'} ({why})"))
    for warm, cold in (("trace_official", "trace_official_nowarmup"),
                       ("trace_paper_relative", "trace_paper_relative_nowarmup")):
        if warm in hist and cold in hist:
            aw, ac = rounds_area(hist[warm]), rounds_area(hist[cold])
            out.append(Claim(
                f"warmup/{warm}", f"{warm}: tightening without warm-up slows learning", ac > aw * 1.02,
                f"mean rounds averaged over epochs: no warm-up {ac:.2f} vs warm-up {aw:.2f}; final "
                f"{hist[cold].final()['rounds']:.2f} vs {hist[warm].final()['rounds']:.2f}; accuracy "
                f"{100 * hist[cold].final()['acc']:.1f}% vs {100 * hist[warm].final()['acc']:.1f}%"))
    return out
