"""OPD configuration (read from the trainer config section `hyperseyes.opd`)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hyperseyes_verl.utils.config import accept_old_names, model_from_section


class OPDConfig(BaseModel):
    """On-Policy Distillation on failed rollouts. The teacher pool itself is verl's `distillation.*`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="Apply the OPD signal when verl's distillation.enabled is true.")
    mode: Literal["advantage", "loss"] | None = Field(
        None,
        description="'advantage': official HyperEyes shaping A_t -= beta*(logp_s - logp_T) in the trainer's "
        "advantage step; 'loss': verl's PG-OPD through a registered gated loss mode (k1_failed_only, ...). "
        "None: inferred from distillation.distillation_loss.loss_mode.",
    )
    beta: float = Field(0.05, ge=0.0, description="Coefficient of the reverse-KL term (official 0.05).")
    gate_teacher_calls: bool = Field(
        True, description="Skip the teacher request for successful rollouts (acc > 0): saves teacher compute."
    )
    teacher_timeout_s: float = Field(300.0, gt=0, description="Per-attempt timeout of one teacher scoring call.")
    teacher_max_attempts: int = Field(3, ge=1, le=10, description="Attempts per sample before it is masked out.")
    teacher_backoff_s: float = Field(0.5, ge=0, description="First back-off between attempts (doubles); old key "
                                     "teacher_retry_backoff_s.")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return accept_old_names(data, {"teacher_retry_backoff_s": ("teacher_backoff_s", None)})

    @classmethod
    def from_mapping(cls, section) -> "OPDConfig":
        """Build from a dict / DictConfig section (None -> defaults); unknown keys raise with their names."""
        return model_from_section(cls, section, "hyperseyes.opd")
