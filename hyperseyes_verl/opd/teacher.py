"""Teacher outputs for rows the teacher did not score (skipped successes, failed calls).

Every row must still carry `teacher_ids` / `teacher_logprobs` of shape (seq_len, K): verl concatenates
them (legacy path) or stores them as one jagged column (TransferQueue). A placeholder row is marked by
`TEACHER_SENTINEL_ID` (-1, never a real token id) in `teacher_ids`, so every later stage (advantage
step, distillation loss) masks it out instead of silently distilling towards zeros.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch

TEACHER_SENTINEL_ID = -1


class TeacherStatus(str, Enum):
    SCORED = "scored"
    SKIPPED = "skipped"  # successful rollout: the teacher was not asked
    FAILED = "failed"  # timeout / error / length mismatch after the bounded retries


def placeholder_teacher_outputs(seq_len: int, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher_ids int32 filled with the sentinel, teacher_logprobs float32 zeros), both (seq_len, k)."""
    if seq_len <= 0 or k <= 0:
        raise ValueError(f"placeholder teacher outputs need seq_len > 0 and k > 0, got {seq_len=} {k=}")
    ids = torch.full((seq_len, k), TEACHER_SENTINEL_ID, dtype=torch.int32)
    return ids, torch.zeros(seq_len, k, dtype=torch.float32)


def teacher_rows_valid(teacher_ids_resp: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """(B,) bool: no sentinel among a row's response positions.

    teacher_ids_resp: (B, T) or (B, T, K) response-aligned ids; response_mask: (B, T) (padding = 0).
    """
    ids = teacher_ids_resp[..., 0] if teacher_ids_resp.dim() == 3 else teacher_ids_resp
    return ~((ids == TEACHER_SENTINEL_ID) & response_mask.bool()).any(-1)


# Why a scored teacher output is refused (each is counted as `teacher_<kind>` and the row masked like a failure).
TEACHER_OUTPUT_PROBLEMS = ("wrong_length", "wrong_topk_width", "nonfinite_logprobs", "bad_ids")


@dataclass(frozen=True)
class TeacherCheck:
    problem: str | None  # None = usable; else one of TEACHER_OUTPUT_PROBLEMS
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_teacher_outputs(teacher_ids: Any, teacher_logprobs: Any, seq_len: int, k: int) -> TeacherCheck:
    """Whether a teacher's answer for a `seq_len`-token sequence can be distilled from.

    Both must be tensors of shape (seq_len, k) (k = top-k width, 1 without top-k); ids non-negative integers;
    log-probs finite (a NaN or ±inf log-prob turns the reverse-KL term and then the loss into NaN). Pure: the
    adapter masks and counts the row when `ok` is False.
    """
    if not isinstance(teacher_ids, torch.Tensor) or not isinstance(teacher_logprobs, torch.Tensor):
        return TeacherCheck("wrong_topk_width", f"teacher outputs are {type(teacher_ids).__name__} / "
                                                f"{type(teacher_logprobs).__name__}, expected tensors")
    shapes = (tuple(teacher_ids.shape), tuple(teacher_logprobs.shape))
    if any(len(sh) < 1 or sh[0] != seq_len for sh in shapes):
        return TeacherCheck("wrong_length", f"teacher returned shapes {shapes} for a {seq_len}-token sequence")
    if any(sh != (seq_len, k) for sh in shapes):
        return TeacherCheck("wrong_topk_width", f"teacher returned shapes {shapes}, expected ({seq_len}, {k}) "
                                                f"(top-k width {k})")
    if teacher_ids.dtype.is_floating_point or teacher_ids.dtype == torch.bool or bool((teacher_ids < 0).any()):
        return TeacherCheck("bad_ids", f"teacher ids must be non-negative integers, got dtype {teacher_ids.dtype} "
                                       f"with minimum {teacher_ids.min().item()}")
    if not teacher_logprobs.dtype.is_floating_point:
        return TeacherCheck("nonfinite_logprobs", f"teacher log-probs have dtype {teacher_logprobs.dtype}, "
                                                  "expected floats")
    bad = ~torch.isfinite(teacher_logprobs)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        return TeacherCheck("nonfinite_logprobs", f"{int(bad.sum())} of {teacher_logprobs.numel()} teacher log-probs are "
                                                  f"NaN or infinite (first at position {first}: "
                                                  f"{teacher_logprobs[first].tolist()})")
    return TeacherCheck(None)
