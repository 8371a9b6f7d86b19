"""Generation on a local Qwen-VL checkpoint: the one implementation behind the CPU runtime's rollout/teacher
server and `hyperseyes serve-model`.

Log-probs of sampled tokens are taken under the temperature-scaled distribution without top-p renormalisation:
that is what verl's actor recomputes, so a rollout served from here stays on-policy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


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


def stop_token_ids(processor) -> list[int]:
    tokenizer = getattr(processor, "tokenizer", processor)
    return [t for t in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
            if isinstance(t, int) and t >= 0]


def vision_inputs(model, processor, images: list | None, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pixel inputs for the images of `ids` (1, S), and the token types that M-RoPE positions need: without
    `mm_token_type_ids` transformers 5 refuses (Qwen3-VL) or silently uses text positions (Qwen2.5-VL)."""
    if not images:
        return {}
    out = processor.image_processor(images=images, return_tensors="pt")
    config = model.config
    types = torch.zeros_like(ids, dtype=torch.int32)
    types[ids == config.image_token_id] = 1
    types[ids == getattr(config, "video_token_id", -1)] = 2
    return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"], "mm_token_type_ids": types}


@dataclass
class Sampled:
    token_ids: list[int]
    log_probs: list[float]
    stopped: bool  # ended on a stop token (False: hit max_new_tokens)


@torch.no_grad()
def sample(model, ids: torch.Tensor, vision: dict[str, torch.Tensor], *, max_new_tokens: int, temperature: float,
           top_p: float = 1.0, top_k: int = -1, pad_token_id: int | None, stop_ids: list[int]) -> Sampled:
    """Sample (temperature > 0) or decode greedily up to `max_new_tokens` after `ids` (1, S)."""
    do_sample = temperature > 0
    gen: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, output_logits=True,
                               return_dict_in_generate=True, pad_token_id=pad_token_id, eos_token_id=stop_ids)
    if do_sample:
        gen.update(temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else None)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **vision, **gen)
    new = out.sequences[0, ids.shape[1]:]
    logits = torch.stack([step[0] for step in out.logits[: len(new)]]).float() / (temperature if do_sample else 1.0)
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, new[:, None])[:, 0] if len(new) else torch.zeros(0)
    tokens = new.tolist()
    return Sampled(tokens, log_probs.tolist(), stopped=bool(tokens) and tokens[-1] in stop_ids)


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
