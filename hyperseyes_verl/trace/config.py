"""The one config object of TRACE (read from the trainer config's `hyperseyes.trace` section)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from hyperseyes_verl.judge.judge import JudgeConfig
from hyperseyes_verl.trace.official import OfficialTraceConfig
from hyperseyes_verl.trace.paper import PaperTraceConfig
from hyperseyes_verl.trace.store import StoreConfig
from hyperseyes_verl.utils.config import model_from_section


TraceMode = Literal["official", "paper"]
TRACE_MODES: tuple[str, ...] = get_args(TraceMode)


def check_trace_mode(mode: str) -> str:
    """The one check of a TRACE mode outside TraceConfig (callers that take the mode alone, e.g. the advantage
    step): the same list, the same message."""
    if mode not in TRACE_MODES:
        raise ValueError(f"hyperseyes.trace.mode must be one of {TRACE_MODES}, got {mode!r}")
    return mode


class TraceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: TraceMode = Field(
        "official", description="official: reward_score = acc (−0.5 without answer), the group bonus is added in "
        "the trainer's advantage step; paper: reward_score = R⁺ − λ·t / R⁻ / R_none per rollout")
    official: OfficialTraceConfig = Field(default_factory=OfficialTraceConfig, description="official group rule")
    paper: PaperTraceConfig = Field(default_factory=PaperTraceConfig, description="paper rule and λ schedule")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="rule or LLM judge")
    store: StoreConfig = Field(default_factory=StoreConfig, description="per-prompt reference store")
    validation_marker: str = Field("split", description="extra_info key that marks validation rows")
    validation_values: tuple[str, ...] = Field(("val", "test"), description="marker values of validation rows; "
                                               "they are scored against references but never observed")
    answer_from: Literal["auto", "agent", "response"] = Field(
        "auto", description="auto: the agent loop's extra_fields['answer'] when present, else parse the response")


def trace_config_from_mapping(section: Mapping[str, Any] | None) -> TraceConfig:
    """Build from a plain mapping (e.g. `OmegaConf.to_container(cfg.hyperseyes.trace)`); None gives the
    defaults; errors name the section and the field."""
    return model_from_section(TraceConfig, section, "hyperseyes.trace")
