"""On-Policy Distillation on failed rollouts (HyperEyes §3): gating, reverse-KL advantage term, metrics.

Pure core: torch/numpy only, no verl. The verl adapters live in hyperseyes_verl/verl/
(teacher_worker.py, distill_loss.py, advantage_step.py).
"""
from hyperseyes_verl.opd.config import OPDConfig
from hyperseyes_verl.opd.gating import eligible_from_info, eligible_mask
from hyperseyes_verl.opd.shaping import OPDShapingResult, reverse_kl_shaped_advantages, topk_overlap
from hyperseyes_verl.opd.teacher import (
    TEACHER_OUTPUT_PROBLEMS,
    TEACHER_SENTINEL_ID,
    TeacherCheck,
    TeacherStatus,
    check_teacher_outputs,
    placeholder_teacher_outputs,
    teacher_rows_valid,
)

__all__ = [
    "OPDConfig",
    "OPDShapingResult",
    "TEACHER_OUTPUT_PROBLEMS",
    "TEACHER_SENTINEL_ID",
    "TeacherCheck",
    "TeacherStatus",
    "check_teacher_outputs",
    "eligible_from_info",
    "eligible_mask",
    "placeholder_teacher_outputs",
    "reverse_kl_shaped_advantages",
    "teacher_rows_valid",
    "topk_overlap",
]
