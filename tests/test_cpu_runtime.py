"""The CPU runtime (hyperseyes_verl/verl/cpu): switched on by HYPERSEYES_CPU_RUNTIME=1 only, the cpu platform,
the HF rollout server's generation / teacher / weight-sync protocol, and the refusals. The whole runtime
training through verl's entry points is tests/test_train_tiny_e2e.py."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from hyperseyes_verl.verl.cpu.hf_server import HFRolloutServer, injected_fault, prompt_logprob_rows
from hyperseyes_verl.verl.cpu.runtime import dedupe_backend

pytestmark = pytest.mark.verl

PROBE = textwrap.dedent("""
    import json, sys
    import verl
    r = {}
    from verl.utils.device import get_device_name, get_nccl_backend
    r["device"], r["backend"] = get_device_name(), get_nccl_backend()
    from verl.workers.rollout.replica import RolloutReplicaRegistry
    try:
        r["hf_replica"] = RolloutReplicaRegistry.get("hf").__name__
    except ValueError as e:
        r["hf_error"] = str(e)
    from verl.workers.rollout.base import get_rollout_class
    r["hf_adapter"] = get_rollout_class("hf", "async").__name__ if "hf_replica" in r else None
    from verl.workers.engine.base import EngineRegistry
    try:
        r["engine"] = EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__
    except Exception as e:
        r["engine_error"] = type(e).__name__
    import torch.distributed as dist
    r["pg_wrapped"] = getattr(dist.init_process_group, "_hyperseyes_cpu", False)
    from hyperseyes_verl.verl.plugin import registration_errors
    r["errors"] = registration_errors()
    print("RESULT " + json.dumps(r))
""")


def probe(**env_updates) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HYPERSEYES_CPU_RUNTIME", "VERL_PLATFORM")}
    env.update(RAY_AUTH_MODE="disabled", **env_updates)
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(line[0][len("RESULT "):])


def test_runtime_registers_only_when_switched_on():
    on = probe(HYPERSEYES_CPU_RUNTIME="1")
    assert on["errors"] == [] and on["device"] == "cpu" and on["backend"] == "gloo"
    assert on["hf_replica"] == "HFReplica" and on["hf_adapter"] == "HFServerAdapter"
    assert on["engine"] == "FSDPEngineWithLMHead" and on["pg_wrapped"] is True
    off = probe()  # a GPU job: nothing of the runtime, and rollout.name=hf is refused with verl's clear line
    assert "hf_replica" not in off and "Unknown rollout mode: hf" in off["hf_error"]
    assert off["pg_wrapped"] is False and off["errors"] == []


def test_cpu_platform_refuses_a_machine_with_gpus(monkeypatch):
    from hyperseyes_verl.verl.cpu.platform import PlatformCPU

    assert PlatformCPU().device_name == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    with pytest.raises(RuntimeError, match="8 CUDA device.*unset HYPERSEYES_CPU_RUNTIME"):
        PlatformCPU()


def test_runtime_refuses_another_platform(monkeypatch):
    from hyperseyes_verl.verl.cpu import runtime

    monkeypatch.setenv("VERL_PLATFORM", "npu")
    with pytest.raises(RuntimeError, match="VERL_PLATFORM='npu'"):
        runtime.activate()


def test_duplicate_backend_is_dropped():
    assert dedupe_backend("cpu:gloo,cpu:gloo") == "cpu:gloo"
    assert dedupe_backend("cpu:gloo,cuda:nccl") == "cpu:gloo,cuda:nccl"  # a GPU job's string is untouched
    assert dedupe_backend("gloo") == "gloo" and dedupe_backend(None) is None


def test_prompt_logprob_rows_follow_verls_teacher_layout():
    torch.manual_seed(0)
    logits, ids = torch.randn(5, 7), torch.tensor([3, 1, 4, 1, 5])
    lp = torch.log_softmax(logits, -1)
    rows_ids, rows_lp = prompt_logprob_rows(logits, ids, k=0)
    assert rows_ids == [[1], [4], [1], [5], [0]]  # next tokens, then the dummy row verl strips
    assert [r[0] for r in rows_lp[:4]] == pytest.approx([float(lp[i, ids[i + 1]]) for i in range(4)])
    assert rows_lp[4] == [0.0]
    top_ids, top_lp = prompt_logprob_rows(logits, ids, k=2)
    assert len(top_ids) == 5 and all(len(r) == 2 for r in top_ids) and top_ids[4] == [0, 0]
    assert top_ids[0] == lp[0].topk(2).indices.tolist() and top_lp[0][0] >= top_lp[0][1]


def test_injected_faults_are_deterministic_per_sequence():
    seqs = [list(range(i, i + 20)) for i in range(200)]
    first = [injected_fault(s, 0.5) for s in seqs]
    assert first == [injected_fault(s, 0.5) for s in seqs]  # a retry of one sequence fails alike
    assert 60 < sum(first) < 140 and not any(injected_fault(s, 0.0) for s in seqs)


@pytest.fixture(scope="module")
def server(tiny_vl_dir):  # both Qwen-VL families: their M-RoPE inputs differ
    return HFRolloutServer(tiny_vl_dir, prompt_length=256, response_length=32, seed=0)


def _prompt(server, image=True, return_inputs=False):
    from PIL import Image

    messages = [{"role": "user", "content": ([{"type": "image"}] if image else []) + [{"type": "text", "text": "q"}]}]
    text = server.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (56, 56), (200, 30, 30))] if image else None
    inputs = server.processor(text=[text], images=images, return_tensors="pt")
    return inputs if return_inputs else (inputs["input_ids"][0].tolist(), images)


def test_sampled_logprobs_match_a_forward_pass(server):
    """The property the trainer relies on: what the server reports is what the actor recomputes."""
    ids, images = _prompt(server)
    out = asyncio.run(server.generate("r1", prompt_ids=ids, sampling_params={"temperature": 0.7, "max_tokens": 12},
                                      image_data=images))
    assert 1 <= len(out.token_ids) <= 12 and len(out.log_probs) == len(out.token_ids)
    assert out.extra_fields["global_steps"] is None and out.stop_reason == "completed"
    # the reference forward uses the processor's own inputs (pixels, grid, M-RoPE token types) + the new tokens
    inputs = dict(_prompt(server, return_inputs=True))
    new = torch.tensor([out.token_ids])
    inputs["input_ids"] = torch.cat([inputs["input_ids"], new], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(new)], dim=1)
    with torch.no_grad():
        logits = server.model(**inputs).logits[0].float()
    recomputed = torch.log_softmax(logits[len(ids) - 1:-1] / 0.7, -1).gather(-1, torch.tensor(out.token_ids)[:, None])
    assert torch.allclose(torch.tensor(out.log_probs), recomputed[:, 0], atol=1e-4)


def test_teacher_prefill_scores_every_position(server):
    ids, images = _prompt(server)
    out = asyncio.run(server.generate("t1", prompt_ids=ids, sampling_params={"max_tokens": 1, "prompt_logprobs": 0},
                                      image_data=images))
    rows = out.extra_fields["prompt_ids"]
    assert len(rows) == len(out.extra_fields["prompt_logprobs"]) == len(ids)  # verl asserts exactly this
    assert [r[0] for r in rows[:-1]] == ids[1:] and all(lp[0] <= 0 for lp in out.extra_fields["prompt_logprobs"])


def test_weight_sync_loads_known_names_and_refuses_unknown(server):
    before = server.stats()["param_checksum"]
    name, tensor = next(iter(server.model.state_dict().items()))
    assert server.load_weights([(name, tensor + 1.0)], global_steps=3) == 1
    stats = server.stats()
    assert stats["param_checksum"] != before and stats["global_steps"] == 3 and stats["weight_syncs"] == 1
    with pytest.raises(KeyError, match="does not have"):
        server.load_weights([("no.such.weight", tensor)])
    server.load_weights([(name, tensor)])  # restore for the other tests of this module
