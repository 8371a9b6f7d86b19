"""HDPO configuration (trainer config section `hyperseyes.hdpo`, used when algorithm.adv_estimator=hdpo)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hyperseyes_verl.utils.config import model_from_section


class HDPOConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    w_acc: float = Field(1.0, gt=0, description="Weight of the accuracy surrogate L(A_acc).")
    w_tool: float = Field(0.15, ge=0, description="Weight of the efficiency surrogate L(A_tool); 0.15 was "
                          "Metis' best.")
    answer_weight: float = Field(0.9, ge=0, description="R_acc = answer_weight*answer + format_weight*format.")
    format_weight: float = Field(0.1, ge=0, description="Weight of the turn-format reward in R_acc.")
    tool_count: Literal["tool_calls", "tool_rounds"] = Field(
        "tool_calls",
        description="T in R_tool = 1/(T+1). Metis counts tool calls; 'tool_rounds' counts assistant turns that "
        "call tools, which does not penalise searching in parallel (HyperEyes' 'wider, not longer').",
    )
    combine: Literal["sum", "two_surrogate"] = Field(
        "sum",
        description="'two_surrogate': w_acc*L(A_acc) + w_tool*L(A_tool), two clipped surrogates (Metis); "
        "'sum': one surrogate of A = w_acc*A_acc + w_tool*A_tool (cheaper, differs when clipping is active).",
    )
    epsilon: float = Field(1e-6, gt=0, description="Added to the group std (same as verl's GRPO).")
    norm_by_std: bool = Field(True, description="Divide by the group std (False = Dr.GRPO-style centring).")

    @classmethod
    def from_mapping(cls, section) -> "HDPOConfig":
        """Build from a dict / DictConfig section (None -> defaults); unknown keys raise with their names."""
        return model_from_section(cls, section, "hyperseyes.hdpo")
