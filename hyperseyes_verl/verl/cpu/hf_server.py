"""A token-in/token-out generation server on HF transformers: the CPU runtime's rollout (and teacher) engine.

It answers verl's server protocol (`generate(request_id, *, prompt_ids, sampling_params, image_data, ...)` ->
`TokenOutput`) the way verl's vLLM server does where verl reads the result:
- sampled tokens with their log-probs under the temperature-scaled distribution (what verl's FSDP actor
  recomputes as `old_log_probs`, so `training/rollout_probs_diff_mean` stays ~0 after each weight sync);
- `prompt_logprobs` (teacher prefill, `max_tokens=1`): per position the log-prob of the next prompt token
  (k = 0) or the top-k ids and log-probs, then one dummy row, as `extract_prompt_logprobs` lays them out;
- `extra_fields["global_steps"]`: the step of the weights it serves (verl's trainer refuses None);
- `load_weights`: full (name, tensor) pairs from the trainer's naive weight sync; an unknown name is an error,
  never skipped (a rollout silently serving stale weights would train off-policy).
One request runs at a time: the machine this is for has two cores.

Fault injection (end-to-end tests of the teacher path): `HYPERSEYES_HF_TEACHER_FAULT_FRAC=f` makes a teacher
request fail for a fraction f of the sequences, chosen by a hash of the tokens, so retries of one sequence fail
alike and the sample must be masked and counted downstream.
"""
from __future__ import annotations

import asyncio
import logging
import os
import zlib
from typing import Any

import torch

from verl.workers.rollout.replica import TokenOutput

from hyperseyes_verl.hf.generation import (  # noqa: F401  (prompt_logprob_rows: re-exported for tests)
    load_vl_model,
    prompt_logprob_rows,
    sample,
    stop_token_ids,
    vision_inputs,
)

logger = logging.getLogger(__name__)

TEACHER_FAULT_ENV = "HYPERSEYES_HF_TEACHER_FAULT_FRAC"


class InjectedFault(RuntimeError):
    """Raised on purpose (HYPERSEYES_HF_TEACHER_FAULT_FRAC) to test how the trainer handles a failing teacher."""


def injected_fault(prompt_ids: list[int], frac: float) -> bool:
    """Deterministic per sequence: the same tokens always get the same answer."""
    return frac > 0 and zlib.crc32(repr(prompt_ids).encode()) % 10_000 < frac * 10_000


class HFRolloutServer:
    """The Ray actor body (wrapped with `ray.remote` by HFReplica)."""

    def __init__(self, model_path: str, prompt_length: int, response_length: int, seed: int = 0,
                 num_threads: int = 1):
        torch.set_num_threads(num_threads)
        torch.manual_seed(seed)
        self.model, self.processor = load_vl_model(model_path)
        self.pad_token_id = getattr(self.processor, "tokenizer", self.processor).pad_token_id
        self.eos_token_ids = stop_token_ids(self.processor)
        self.max_context = prompt_length + response_length
        self.response_length = response_length
        self.teacher_fault_frac = float(os.environ.get(TEACHER_FAULT_ENV, "0") or 0)
        self.global_steps: int | None = None
        self.counts = {"generate_calls": 0, "prompt_logprob_calls": 0, "tokens_generated": 0,
                       "weight_syncs": 0, "tensors_loaded": 0, "injected_faults": 0}
        self._lock = asyncio.Lock()

    def ready(self) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        """Counters plus a checksum of the served weights (changes iff a sync changed them)."""
        with torch.no_grad():
            checksum = float(sum(p.double().sum() for p in self.model.parameters()))
        return {**self.counts, "global_steps": self.global_steps, "param_checksum": checksum}

    def load_weights(self, named_tensors: list[tuple[str, torch.Tensor]], global_steps: int | None = None) -> int:
        state = self.model.state_dict()
        unknown = [name for name, _ in named_tensors if name not in state]
        if unknown:
            raise KeyError(f"weight sync sent {len(unknown)} tensor name(s) this model does not have, e.g. "
                           f"{unknown[:3]}; the rollout model and the actor must be the same architecture")
        with torch.no_grad():
            for name, tensor in named_tensors:
                state[name].copy_(tensor.to(state[name].dtype))
        self.global_steps = global_steps
        self.counts["weight_syncs"] += 1
        self.counts["tensors_loaded"] += len(named_tensors)
        return len(named_tensors)

    async def generate(self, request_id: str | None = None, *, prompt_ids: list[int], sampling_params: dict,
                       image_data: list | None = None, video_data: list | None = None, **kwargs) -> TokenOutput:
        if video_data:
            raise ValueError("the HF CPU rollout serves images only (HyperEyes uses no video); drop the videos")
        async with self._lock:
            return await asyncio.to_thread(self._generate, list(prompt_ids), dict(sampling_params), image_data)

    @torch.no_grad()
    def _generate(self, prompt_ids: list[int], params: dict, images: list | None) -> TokenOutput:
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        vision = vision_inputs(self.model, self.processor, images, ids)
        extra: dict[str, Any] = {"global_steps": self.global_steps}
        if params.get("prompt_logprobs") is not None:  # teacher prefill: one forward pass, nothing sampled
            self.counts["prompt_logprob_calls"] += 1
            if injected_fault(prompt_ids, self.teacher_fault_frac):
                self.counts["injected_faults"] += 1
                raise InjectedFault(f"{TEACHER_FAULT_ENV}={self.teacher_fault_frac}: teacher request failed on "
                                    f"purpose for a {len(prompt_ids)}-token sequence")
            logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **vision).logits[0]
            extra["prompt_ids"], extra["prompt_logprobs"] = prompt_logprob_rows(
                logits, ids[0], int(params["prompt_logprobs"]))
            return TokenOutput(token_ids=[int(logits[-1].argmax())], log_probs=[0.0], stop_reason="completed",
                               extra_fields=extra)
        self.counts["generate_calls"] += 1
        room = self.max_context - len(prompt_ids)
        max_new = min(int(params.get("max_tokens") or params.get("max_new_tokens") or self.response_length),
                      self.response_length, room)
        if max_new <= 0:
            return TokenOutput(token_ids=[], log_probs=[], stop_reason="completed", extra_fields=extra)
        top_k = params.get("top_k")
        out = sample(self.model, ids, vision, max_new_tokens=max_new,
                     temperature=float(params.get("temperature", 1.0)), top_p=float(params.get("top_p", 1.0)),
                     top_k=int(top_k) if top_k is not None else -1, pad_token_id=self.pad_token_id,
                     stop_ids=self.eos_token_ids)
        self.counts["tokens_generated"] += len(out.token_ids)
        return TokenOutput(token_ids=out.token_ids, log_probs=out.log_probs, stop_reason="completed",
                           num_preempted=0, extra_fields=extra)

    # control plane: on CPU there is no KV cache to free and no memory to hand back
    async def wake_up(self): ...
    async def sleep(self): ...
    async def clear_kv_cache(self): ...
    async def release_kv_cache(self): ...
    async def resume_kv_cache(self): ...
    async def abort_all_requests(self, reject_request: bool = False): ...
    async def resume_generation(self): ...
    async def start_profile(self, **kwargs): ...
    async def stop_profile(self): ...
