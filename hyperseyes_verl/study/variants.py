"""The learning signals compared by the study (names are the keys of every output)."""
from __future__ import annotations

from hyperseyes_verl.study.signals import Variant
from hyperseyes_verl.trace import OfficialTraceConfig, PaperTraceConfig

LAM = 0.1  # paper-mode round cost: R⁺ − λ·8 = 0.2 is the lowest correct reward
GUARDED = PaperTraceConfig(lam=LAM, r_minus=0.0, r_no_answer=-0.5)
# The deliberately broken guard: R⁻ = R_none = 0.5 lies above the lowest correct reward 0.2.
BAD_GUARD_FIELDS = {"r_minus": 0.5, "r_no_answer": 0.5}


def bad_guard_config() -> PaperTraceConfig:
    """The violated config, built without validation (`PaperTraceConfig(**fields)` rejects it)."""
    return PaperTraceConfig.model_construct(**{**GUARDED.model_dump(), **BAD_GUARD_FIELDS})


def standard_variants() -> list[Variant]:
    relative = GUARDED.model_copy(update={"relative": True})
    return [
        Variant("acc_only", "acc_only", "accuracy only"),
        Variant("trace_official", "trace_official", "TRACE official (warm-up 2)", warmup_epochs=2),
        Variant("trace_official_nowarmup", "trace_official", "TRACE official, no warm-up", warmup_epochs=0),
        Variant("trace_official_searches", "trace_official", "TRACE official, searches-aware counting (warm-up 2)",
                warmup_epochs=2, official=OfficialTraceConfig(counting="searches")),
        Variant("trace_paper", "trace_paper", f"TRACE paper (λ={LAM})", paper=GUARDED),
        Variant("trace_paper_relative", "trace_paper", "TRACE paper, ref-relative (warm-up 2)", paper=relative,
                warmup_epochs=2),
        Variant("trace_paper_relative_nowarmup", "trace_paper", "TRACE paper, ref-relative, no warm-up",
                paper=relative, warmup_epochs=0),
        Variant("hdpo", "hdpo", "HDPO (w_tool 0.15, T = rounds)"),
        Variant("trace_paper_bad_guard", "trace_paper", "TRACE paper, R⁻ = 0.5 (guard violated)",
                paper=bad_guard_config()),
        Variant("trace_official_opd", "trace_official", "TRACE official + OPD on failures (β 0.05)",
                warmup_epochs=2, opd_beta=0.05),
    ]
