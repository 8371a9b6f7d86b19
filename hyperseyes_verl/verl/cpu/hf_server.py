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

logger = logging.getLogger(__name__)

TEACHER_FAULT_ENV = "HYPERSEYES_HF_TEACHER_FAULT_FRAC"


class InjectedFault(RuntimeError):
    """Raised on purpose (HYPERSEYES_HF_TEACHER_FAULT_FRAC) to test how the trainer handles a failing teacher."""


def injected_fault(prompt_ids: list[int], frac: float) -> bool:
    """Deterministic per sequence: the same tokens always get the same answer."""
    return frac > 0 and zlib.crc32(repr(prompt_ids).encode()) % 10_000 < frac * 10_000


def load_vl_model(model_path: str):
    """(model, processor) for a Qwen-VL (or plain causal LM) checkpoint folder, float32, eval mode."""
    import transformers

    from hyperseyes_verl.testing.cpu_patches import apply_processor_patch

    apply_processor_patch()  # no-op where torchvision exists
    config = transformers.AutoConfig.from_pretrained(model_path)
    classes = {"qwen2_vl": transformers.Qwen2VLForConditionalGeneration,
               "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
               "qwen3_vl": transformers.Qwen3VLForConditionalGeneration,
               "qwen3_vl_moe": transformers.Qwen3VLMoeForConditionalGeneration}
    cls = classes.get(config.model_type, transformers.AutoModelForCausalLM)
    model = cls.from_pretrained(model_path, dtype=torch.float32, attn_implementation="sdpa").eval()
    processor = transformers.AutoProcessor.from_pretrained(model_path)
    return model, processor


def prompt_logprob_rows(logits: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[list[list[int]], list[list[float]]]:
    """verl's teacher layout for a sequence of S tokens: S-1 rows (next-token log-prob, or top-k) + 1 dummy row.

    logits: (S, V) for the sequence `ids` (S,). k = 0: row i = [ids[i+1]], [log p(ids[i+1] | ids[:i+1])].
    """
    logprobs = torch.log_softmax(logits[:-1].float(), dim=-1)
    if k == 0:
        nxt = ids[1:]
        rows_ids = nxt[:, None].tolist()
        rows_lp = logprobs.gather(-1, nxt[:, None]).tolist()
    else:
        top = logprobs.topk(k, dim=-1)
        rows_ids, rows_lp = top.indices.tolist(), top.values.tolist()
    width = max(k, 1)
    return rows_ids + [[0] * width], rows_lp + [[0.0] * width]


class HFRolloutServer:
    """The Ray actor body (wrapped with `ray.remote` by HFReplica)."""

    def __init__(self, model_path: str, prompt_length: int, response_length: int, seed: int = 0,
                 num_threads: int = 1):
        torch.set_num_threads(num_threads)
        torch.manual_seed(seed)
        self.model, self.processor = load_vl_model(model_path)
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.pad_token_id = tokenizer.pad_token_id
        self.eos_token_ids = [t for t in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
                              if isinstance(t, int) and t >= 0]
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
            raise NotImplementedError("the HF CPU rollout serves images only (HyperEyes uses no video)")
        async with self._lock:
            return await asyncio.to_thread(self._generate, list(prompt_ids), dict(sampling_params), image_data)

    def _vision_inputs(self, images: list | None, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pixel inputs for the images of `ids` (1, S), and the token types that M-RoPE positions need:
        without `mm_token_type_ids` transformers 5 refuses (Qwen3-VL) or silently uses text positions
        (Qwen2.5-VL), and the served log-probs would differ from the actor's."""
        if not images:
            return {}
        out = self.processor.image_processor(images=images, return_tensors="pt")
        config = self.model.config
        types = torch.zeros_like(ids, dtype=torch.int32)
        types[ids == config.image_token_id] = 1
        types[ids == getattr(config, "video_token_id", -1)] = 2
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"],
                "mm_token_type_ids": types}

    @torch.no_grad()
    def _generate(self, prompt_ids: list[int], params: dict, images: list | None) -> TokenOutput:
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        vision = self._vision_inputs(images, ids)
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
        temperature = float(params.get("temperature", 1.0))
        sample = temperature > 0
        gen: dict[str, Any] = dict(max_new_tokens=max_new, do_sample=sample, output_logits=True,
                                   return_dict_in_generate=True, pad_token_id=self.pad_token_id,
                                   eos_token_id=self.eos_token_ids)
        if sample:
            top_k = int(params.get("top_k", -1))
            gen.update(temperature=temperature, top_p=float(params.get("top_p", 1.0)),
                       top_k=top_k if top_k > 0 else None)
        out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **vision, **gen)
        new = out.sequences[0, ids.shape[1]:]
        # log-probs under the temperature-scaled distribution: what the actor recomputes (no top-p renorm)
        scale = temperature if sample else 1.0
        logits = torch.stack([step[0] for step in out.logits[: len(new)]]).float() / scale
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, new[:, None])[:, 0]
        self.counts["tokens_generated"] += len(new)
        return TokenOutput(token_ids=new.tolist(), log_probs=log_probs.tolist(), stop_reason="completed",
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
