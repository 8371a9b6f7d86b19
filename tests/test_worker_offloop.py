"""OffLoopMultiModalMixin: the V1 worker's end-of-episode multimodal inputs are computed in a thread, and verl's
postprocess receives exactly what its own `_compute_multi_modal_inputs` would have computed."""
from __future__ import annotations

import asyncio
import threading

import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.verl

from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput, AgentLoopWorker  # noqa: E402
from verl.utils.tokenizer.tokenizer import hf_processor, hf_tokenizer  # noqa: E402

from hyperseyes_verl.verl.teacher_worker import OffLoopMultiModalMixin, gated_worker_tq_class  # noqa: E402


class _VerlLikeWorker(AgentLoopWorker):
    """Stands in for AgentLoopWorkerTQ._agent_loop_postprocess (which needs TransferQueue): it builds the ids the
    same way and calls `_compute_multi_modal_inputs` synchronously on the event loop, twice (score + store)."""

    async def _agent_loop_postprocess(self, output, validate, **kwargs):
        ids = torch.cat([torch.tensor(output.prompt_ids, dtype=torch.int64),
                         torch.tensor(output.response_ids, dtype=torch.int64)], dim=0)
        first = self._compute_multi_modal_inputs(output, ids)
        first.pop("image_grid_thw", None)  # verl pops keys from the dict it gets
        return self._compute_multi_modal_inputs(output, ids)


def _worker(model_dir, cls):
    w = object.__new__(cls)  # the real __init__ starts verl's tooling; only these attributes are read
    w.tokenizer, w.processor, w.mm_processor_kwargs = hf_tokenizer(model_dir), hf_processor(model_dir), {}
    return w


def _output(w, sizes):
    images = [Image.new("RGB", s, (40 * i, 90, 160)) for i, s in enumerate(sizes)]
    text = "".join("<|vision_start|><|image_pad|><|vision_end|>" for _ in images) + "Where?"
    ids = w.processor(text=[text], images=images, return_tensors="pt")["input_ids"][0].tolist()
    resp = w.tokenizer.encode("Paris", add_special_tokens=False)
    return AgentLoopOutput(prompt_ids=ids, response_ids=resp, response_mask=[1] * len(resp),
                           multi_modal_data={"images": images}, metrics=AgentLoopMetrics())


async def test_multimodal_inputs_are_computed_off_the_loop_and_identical(tiny_vl_dir, monkeypatch):
    w = _worker(tiny_vl_dir, type("W", (OffLoopMultiModalMixin, _VerlLikeWorker), {}))
    out = _output(w, [(96, 80), (64, 120)])
    threads = []
    original = type(w.processor).__call__

    def recording(self, *a, **k):
        threads.append(threading.get_ident())
        return original(self, *a, **k)

    monkeypatch.setattr(type(w.processor), "__call__", recording)
    got = await w._agent_loop_postprocess(out, validate=False)
    loop_thread = threading.get_ident()
    assert len(threads) == 1 and threads[0] != loop_thread  # once, in a worker thread
    ids = torch.cat([torch.tensor(out.prompt_ids), torch.tensor(out.response_ids)])
    expected = AgentLoopWorker._compute_multi_modal_inputs(w, out, ids)
    assert set(got) == set(expected) and "image_grid_thw" in got  # the earlier pop did not reach this dict
    for k in expected:
        assert torch.equal(got[k], expected[k]), k
    assert w._mm_ready == {}

    # ids other than the precomputed ones (verl's padded legacy call): computed as verl does, on the caller
    threads.clear()
    padded = torch.cat([torch.zeros(3, dtype=torch.int64), ids])
    w._mm_ready[id(out)] = (out, ids, {"stale": torch.zeros(1)})
    fresh = w._compute_multi_modal_inputs(out, padded)
    assert "stale" not in fresh and threads == [loop_thread]


async def test_text_only_outputs_skip_the_thread(tiny_qwen25_dir):
    w = _worker(tiny_qwen25_dir, type("W", (OffLoopMultiModalMixin, _VerlLikeWorker), {}))
    resp = w.tokenizer.encode("Paris", add_special_tokens=False)
    out = AgentLoopOutput(prompt_ids=resp, response_ids=resp, response_mask=[1] * len(resp), metrics=AgentLoopMetrics())
    calls = []
    loop = asyncio.get_running_loop()
    real = loop.run_in_executor
    loop.run_in_executor = lambda *a: calls.append(a) or real(*a)
    try:
        got = await w._agent_loop_postprocess(out, validate=False)
    finally:
        loop.run_in_executor = real
    assert calls == [] and "pixel_values" not in got


def test_the_v1_worker_class_includes_it():
    assert issubclass(gated_worker_tq_class(), OffLoopMultiModalMixin)
