"""Teacher outputs for rows the teacher did not score (skipped successes, failed calls).

Every row must still carry `teacher_ids` / `teacher_logprobs` of shape (seq_len, K): verl concatenates
them (legacy path) or stores them as one jagged column (TransferQueue). A placeholder row is marked by
`TEACHER_SENTINEL_ID` (-1, never a real token id) in `teacher_ids`, so every later stage (advantage
step, distillation loss) masks it out instead of silently distilling towards zeros.
"""
from __future__ import annotations

from enum import Enum

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
