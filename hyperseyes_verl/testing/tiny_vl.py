"""Build tiny random Qwen2.5-VL / Qwen3-VL checkpoints offline (≈ 3 s each, ≈ 200k parameters).

The tokenizer is a byte-level BPE trained on a few hundred lines with the Qwen special tokens; the
chat template is ours and renders tools, assistant tool calls, and multimodal tool messages the way
Qwen's templates do (consecutive tool messages share one user turn, each in <tool_response>).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]

# A Qwen-style template written for these tests. Images render as vision_start + image_pad + vision_end.
CHAT_TEMPLATE = (
    "{%- macro content_of(c) -%}"
    "{%- if c is string -%}{{- c -}}{%- else -%}{%- for b in c -%}"
    "{%- if b.type == 'image' or 'image' in b or 'image_url' in b -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif b.type == 'video' or 'video' in b -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in b -%}{{- b.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- set sys = messages[0].role == 'system' -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if sys -%}{{- content_of(messages[0].content) -}}{%- else -%}{{- 'You are a helpful assistant.' -}}{%- endif -%}"
    "{%- if tools -%}"
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n<tools>' -}}"
    "{%- for t in tools -%}{{- '\\n' -}}{{- t | tojson -}}{%- endfor -%}"
    "{{- '\\n</tools>\\nFor each function call, return a json object within <tool_call></tool_call> XML tags.' -}}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- for m in messages -%}"
    "{%- if loop.first and sys -%}"
    "{%- elif m.role == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' -}}{{- content_of(m.content) -}}{{- '\\n</tool_response>' -}}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- elif m.role == 'assistant' and m.tool_calls -%}"
    "{{- '<|im_start|>assistant' -}}{%- if m.content -%}{{- '\\n' + content_of(m.content) -}}{%- endif -%}"
    "{%- for tc in m.tool_calls -%}{%- if tc.function is defined -%}{%- set tc = tc.function -%}{%- endif -%}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + tc.name + '\", \"arguments\": ' -}}"
    "{%- if tc.arguments is string -%}{{- tc.arguments -}}{%- else -%}{{- tc.arguments | tojson -}}{%- endif -%}"
    "{{- '}\\n</tool_call>' -}}{%- endfor -%}{{- '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + m.role + '\\n' -}}{{- content_of(m.content) -}}{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog. 0123456789 + - * / = ( ) ? [ ] { } , : ; ' \" _ .",
    "system user assistant tool You are a helpful assistant. What is in the image? Answer: the red tower.",
    '{"name": "image_search", "arguments": {"image_id": "img_0", "area": [[0.1, 0.2, 0.5, 0.6]]}}',
    '{"name": "text_search", "arguments": {"input": ["height of the tower", "year it opened"]}}',
    "<reason>two entities</reason> <answer>Paris</answer> # Tools You may call one or more functions.",
    "<tools> </tools> json object XML tags results relevance remaining rounds question crop img_1 img_2",
]


def build_tiny_vl(out_dir: str | os.PathLike, family: str = "qwen2_5_vl", vocab_size: int = 600,
                  corpus: Iterable[str] | None = None, hidden_size: int = 64, num_layers: int = 2) -> Path:
    """Write a tiny random `family` ("qwen2_5_vl" | "qwen3_vl") model, tokenizer and processor.

    `corpus`: extra text the byte-level BPE is trained on (e.g. the data the model will see), so a larger
    `vocab_size` buys shorter sequences; `hidden_size` / `num_layers` size the language model.

    Self-sufficient: without torchvision the Qwen-VL processors refuse the plain video processor used here, so the
    CPU stand-in (`cpu_patches.apply_processor_patch`, a no-op where torchvision exists) is applied first; loading
    the checkpoint again in another process needs the same patch (or torchvision)."""
    from hyperseyes_verl.testing.cpu_patches import apply_processor_patch

    apply_processor_patch()
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.video_processing_utils import BaseVideoProcessor

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    bpe = Tokenizer(models.BPE(unk_token=None))
    # digits split one by one, as Qwen's own pre-tokenizer does: a tiny model then writes coordinates digit by
    # digit instead of guessing among merged number fragments ("0.0.0.069")
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    bpe.train_from_iterator(_CORPUS * 40 + list(corpus or []), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHAT_TEMPLATE)
    tid = tok.convert_tokens_to_ids
    half = hidden_size // 4 // 2  # rotary pairs per head (4 heads), split over (t, h, w) like Qwen's [16, 24, 24]
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    ids = dict(image_token_id=tid("<|image_pad|>"), video_token_id=tid("<|video_pad|>"),
               vision_start_token_id=tid("<|vision_start|>"), vision_end_token_id=tid("<|vision_end|>"))
    text = dict(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                num_hidden_layers=num_layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                bos_token_id=tid("<|endoftext|>"), eos_token_id=tid("<|im_end|>"), pad_token_id=tid("<|endoftext|>"))
    if family == "qwen2_5_vl":
        patch = 14
        ip = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                      min_pixels=28 * 28, max_pixels=28 * 28 * 16)
        vp = BaseVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2)
        proc = transformers.Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                                                chat_template=CHAT_TEMPLATE)
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope}
        cfg = transformers.Qwen2_5_VLConfig(
            text_config=text,
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                               out_hidden_size=hidden_size,
                               patch_size=patch, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                               fullatt_block_indexes=[0]), **ids)
        model = transformers.Qwen2_5_VLForConditionalGeneration(cfg)
    elif family == "qwen3_vl":
        patch = 16
        ip = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                      min_pixels=32 * 32, max_pixels=32 * 32 * 16,
                                      image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
        vp = BaseVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2)
        proc = transformers.Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                                             chat_template=CHAT_TEMPLATE)
        text.update(head_dim=hidden_size // 4, rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                                  "mrope_section": mrope, "mrope_interleaved": True})
        cfg = transformers.Qwen3VLConfig(
            text_config=text,
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                               out_hidden_size=hidden_size,
                               patch_size=patch, spatial_merge_size=2, temporal_patch_size=2,
                               num_position_embeddings=64, deepstack_visual_indexes=[1]), **ids)
        model = transformers.Qwen3VLForConditionalGeneration(cfg)
    else:
        raise ValueError(f"unknown family {family!r}: use 'qwen2_5_vl' or 'qwen3_vl'")
    model.eval().save_pretrained(out)
    proc.save_pretrained(out)
    return out
