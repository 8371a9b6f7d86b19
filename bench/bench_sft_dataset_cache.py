"""Stage-1 data cost: rendering an SFT sample (chat template per message, image decode and resize, processor)
against a tiny model's forward + backward on it, and what `data.cache_items` saves over several epochs.

Demo-shaped conversations (a 768x576 mosaic, four crops, ~1,500 tokens) through `HyperEyesSFTDataset`, side by
side in one run: epochs with and without the cache, and one optimizer-free step of the demo's model size.

    .venv/bin/python bench/bench_sft_dataset_cache.py [--conversations 24] [--epochs 4]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hyperseyes_verl.data.parquet import png_bytes, write_parquet

SYSTEM = "You are a multimodal search agent. " + "Search wider, not longer: every box runs in parallel. " * 40


def _image(rng: np.random.Generator, size: tuple[int, int]) -> dict:
    return {"bytes": png_bytes(Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)))}


def _row(i: int, rng: np.random.Generator) -> dict:
    crops = "".join(f"img_{k}: <image> (crop of img_0)\n  1. Entity {i}-{k} (relevance 0.98)\n     Entity {i}-{k} "
                    f"is a landmark tower.\n" for k in range(1, 5))
    facts = "".join(f"Query 'Entity {i}-{k} height':\n  1. Entity {i}-{k} rises {100 + k} metres above the ground. "
                    f"It was completed in {1900 + k}.\n" for k in range(1, 5))
    return {"id": f"c{i}", "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "img_0: <image>\nQuestion: how tall is the tallest tower in the image?"},
        {"role": "assistant", "content": '<tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", '
                                         '"area": [[0.01, 0.01, 0.49, 0.49], [0.51, 0.01, 0.99, 0.49]]}}</tool_call>'},
        {"role": "tool", "content": crops + "Original question: how tall is the tallest tower?"},
        {"role": "assistant", "content": '<tool_call>{"name": "text_search", "arguments": {"input": ["a", "b"]}}'
                                         '</tool_call>'},
        {"role": "tool", "content": facts + "Original question: how tall is the tallest tower?"},
        {"role": "assistant", "content": "<answer>104</answer>"}],
        "images": [_image(rng, (768, 576))] + [_image(rng, (376, 280)) for _ in range(4)]}


def _epochs(ds, epochs: int) -> float:
    t = time.perf_counter()
    for _ in range(epochs):
        for i in range(len(ds)):
            ds[i]
    return time.perf_counter() - t


def main(conversations: int, epochs: int) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    from hyperseyes_verl.testing.tiny_vl import build_tiny_vl
    from hyperseyes_verl.verl.sft_dataset import HyperEyesSFTDataset

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        rows = [_row(i, rng) for i in range(conversations)]
        path = write_parquet(rows, Path(tmp) / "sft.parquet")
        model_dir = build_tiny_vl(Path(tmp) / "model", vocab_size=1200, hidden_size=128, num_layers=2,
                                  corpus=[m["content"] for r in rows for m in r["messages"]])
        tok, proc = AutoTokenizer.from_pretrained(model_dir), AutoProcessor.from_pretrained(model_dir)
        cfg = {"max_length": 8192, "truncation": "error", "messages_key": "messages", "pad_mode": "no_padding"}
        plain = HyperEyesSFTDataset(str(path), tok, cfg, processor=proc)
        cached = HyperEyesSFTDataset(str(path), tok, {**cfg, "cache_items": True}, processor=proc)
        plain[0], cached[0]  # warm-up: imports, first template render
        t_plain, t_cached = _epochs(plain, epochs), _epochs(cached, epochs)
        n = conversations * epochs
        sample = plain[1]
        model = AutoModelForImageTextToText.from_pretrained(model_dir)
        mm = sample["multi_modal_inputs"]
        ids = sample["input_ids"][None]
        t = time.perf_counter()
        for _ in range(3):
            out = model(input_ids=ids, labels=ids, pixel_values=mm["pixel_values"], image_grid_thw=mm["image_grid_thw"])
            out.loss.backward()
        t_step = (time.perf_counter() - t) / 3
    print(f"{conversations} conversations x {epochs} epochs, {ids.shape[1]} tokens per sample, "
          f"{torch.get_num_threads()} torch threads")
    print(f"render per sample: {1e3 * t_plain / n:.0f} ms without the cache, {1e3 * t_cached / n:.1f} ms with it "
          f"(without / with = {t_plain / t_cached:.1f}x over {epochs} epochs)")
    print(f"forward + backward of the demo's model (hidden 128, 2 layers) on one sample: {1e3 * t_step:.0f} ms; "
          f"rendering = {t_plain / n / (t_plain / n + t_step):.0%} of render + step without the cache")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conversations", type=int, default=24)
    p.add_argument("--epochs", type=int, default=4)
    a = p.parse_args()
    main(a.conversations, a.epochs)
