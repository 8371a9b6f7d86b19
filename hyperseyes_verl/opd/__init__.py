"""On-Policy Distillation on failed rollouts (HyperEyes §3): gating, reverse-KL advantage term, metrics.

Pure core: torch/numpy only, no verl. The verl adapters live in hyperseyes_verl/verl/
(teacher_worker.py, distill_loss.py, advantage_step.py).
"""
from hyperseyes_verl.opd.config import OPDConfig

# The torch parts load on first use: the config root (hyperseyes_verl.config) imports OPDConfig through this package
# and must stay light (no torch) for recipe checks and CLIs.
_LAZY = {
    "eligible_from_info": "gating", "eligible_mask": "gating",
    "OPDShapingResult": "shaping", "reverse_kl_shaped_advantages": "shaping", "topk_overlap": "shaping",
    "TEACHER_OUTPUT_PROBLEMS": "teacher", "TEACHER_SENTINEL_ID": "teacher", "TeacherCheck": "teacher",
    "TeacherStatus": "teacher", "check_teacher_outputs": "teacher", "placeholder_teacher_outputs": "teacher",
    "teacher_rows_valid": "teacher",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
