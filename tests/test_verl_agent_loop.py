"""HyperEyesAgentLoop driven through real verl 0.9.1 classes on CPU (tiny random Qwen2.5-VL / Qwen3-VL).

The loop is built with `hydra.utils.instantiate` from the shipped YAML entry exactly as
`AgentLoopWorker._run_agent_loop` does; the LLM is a scripted fake server; search is an InMemoryBackend.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.verl

import hydra  # noqa: E402
import verl  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker, DictConfigWrap, ToolListWrap  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402
from verl.utils.tokenizer.tokenizer import hf_processor, hf_tokenizer  # noqa: E402

from hyperseyes_verl.search.base import FailureKind, Hit, InMemoryBackend  # noqa: E402
from hyperseyes_verl.testing.fake_llm_server import FakeServerManager  # noqa: E402
from hyperseyes_verl.ugs.types import MAX_TOKENS_PER_TURN  # noqa: E402
from hyperseyes_verl.verl import agent_loop as hal  # noqa: E402
from hyperseyes_verl.verl import image_pads  # noqa: E402
from hyperseyes_verl.verl.dataset import HyperEyesDataset  # noqa: E402

CONTRACT_KEYS = {"tool_rounds", "tool_calls", "searches", "searches_per_round", "crops_ok", "crops_failed",
                 "search_failures", "tool_errors", "budget_exhausted", "answered", "answer", "finish_reason",
                 "truncated", "search_failure_kinds"}
YAML = os.path.join(os.path.dirname(hal.__file__), "agent_loop.yaml")

T_SEARCH = ('<reason>two entities</reason>\n'
            '<tool_call>\n{"name": "image_search", "arguments": {"image_id": "img_0", "area": '
            '[[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.2, 0.5, 0.8, 1.0]]}}\n</tool_call>\n'
            '<tool_call>\n{"name": "text_search", "arguments": {"input": ["height of the tower", "year it opened"]}}'
            '\n</tool_call>')
T_ANSWER = "<reason>found it</reason> <answer>Paris</answer>"
T_BAD = ('<tool_call>\n{"name": "image_search", "arguments": {"image_id": "img_9", "area": [[0.1, 0.2, 0.5, 0.6]]}}'
         '\n</tool_call>\n<tool_call>\n{"name": "image_search", "arguments": {"image_id": "img_0", "area": '
         '[[0.8, 0.8, 0.2, 0.2], [0.1, 0.1, 0.4]]}}\n</tool_call>\n<tool_call>\n{"name": "zoom", "arguments": {}}'
         '\n</tool_call>\n<tool_call>{not json</tool_call>')


@functools.lru_cache(maxsize=None)
def _compose(model_dir: str, extra: tuple[str, ...] = ()):
    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer/config")
    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        "actor_rollout_ref.rollout.name=vllm",  # mandatory field; only read, vllm is never imported
        "actor_rollout_ref.rollout.prompt_length=4096",
        "actor_rollout_ref.rollout.response_length=2048",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={YAML}",
        "data.custom_cls.path=pkg://hyperseyes_verl.verl.dataset",
        "data.custom_cls.name=HyperEyesDataset",
        *extra,
    ]
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


@functools.lru_cache(maxsize=None)
def _tok_proc(model_dir: str):
    processor = hf_processor(model_dir)
    assert processor is not None, "processor did not load (CPU processor patch missing?)"
    return hf_tokenizer(model_dir), processor


def _model_type(model_dir: str) -> str:
    import json

    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)["model_type"]


def make_loop(model_dir, server, extra=(), **entry_kwargs):
    """hydra-instantiate the shipped YAML entry with the arguments `_run_agent_loop` passes."""
    cfg = _compose(model_dir, tuple(extra))
    entry = OmegaConf.load(YAML)[0]
    for k, v in entry_kwargs.items():
        entry[k] = v
    tokenizer, processor = _tok_proc(model_dir)
    return hydra.utils.instantiate(
        config=entry, trainer_config=DictConfigWrap(config=cfg), server_manager=server, tokenizer=tokenizer,
        processor=processor, hf_model_type=_model_type(model_dir), dataset_cls=HyperEyesDataset,
        data_config=DictConfigWrap(cfg.data), tools=ToolListWrap([]))


def image(seed=0, size=(96, 80)):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


def raw_prompt(seed=0, system=None):
    msgs = [{"role": "user", "content": [{"type": "image", "image": image(seed)},
                                         {"type": "text", "text": "Where is the tower?"}]}]
    return ([{"role": "system", "content": system}] if system else []) + msgs


def server_for(model_dir, turns):
    tokenizer, processor = _tok_proc(model_dir)
    ids = [tokenizer.encode(t, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
           for t in turns]
    return FakeServerManager(script=ids, image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>")), ids


def expected_pads(processor, images) -> int:
    ip = processor.image_processor
    grid = ip(images=images, return_tensors="pt")["image_grid_thw"]
    return int((grid.prod(-1) // (ip.merge_size ** 2)).sum())


def count_pads(model_dir, ids) -> int:
    pad = _tok_proc(model_dir)[0].convert_tokens_to_ids("<|image_pad|>")
    return sum(1 for t in ids if t == pad)


@functools.lru_cache(maxsize=None)
def _worker(model_dir: str) -> AgentLoopWorker:
    """A real AgentLoopWorker, used for its trainer-side post-processing of one AgentLoopOutput."""
    return AgentLoopWorker(_compose(model_dir), llm_client=None, teacher_client=None, reward_loop_worker_handles=None)


@functools.lru_cache(maxsize=None)
def _model(model_dir: str):
    import transformers

    cls = {"qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
           "qwen3_vl": transformers.Qwen3VLForConditionalGeneration}[_model_type(model_dir)]
    return cls.from_pretrained(model_dir).eval()


async def assert_model_accepts(model_dir, out) -> None:
    """What the trainer does with a trajectory: verl's `_agent_loop_postprocess` (padding,
    `_compute_multi_modal_inputs` re-processing every image, `get_rope_index` M-RoPE positions), then the
    model forward on the full sequence with all images. A token/feature mismatch raises the model's real
    "Image features and image tokens do not match" error here."""
    import torch

    post = await _worker(model_dir)._agent_loop_postprocess(out, validate=False, raw_prompt=[])
    keep = post.attention_mask[0].bool()
    mmi = {k: v for k, v in post.multi_modal_inputs.items() if k in ("pixel_values", "image_grid_thw")}
    n_images = len((out.multi_modal_data or {}).get("images") or [])
    assert (mmi["image_grid_thw"].shape[0] if mmi else 0) == n_images
    position_ids = post.position_ids[:, :, keep].transpose(0, 1)  # (1, 4, L) -> (4, 1, L), as verl's actor
    with torch.no_grad():
        logits = _model(model_dir)(input_ids=post.input_ids[:, keep], attention_mask=post.attention_mask[:, keep],
                                   position_ids=position_ids, **mmi).logits
    assert logits.shape[:2] == (1, int(keep.sum())) and torch.isfinite(logits).all()


@pytest.fixture
def backend():
    b = InMemoryBackend(text={"height": [Hit("Tower", "300 m tall", "http://t", 0.9)],
                              "year": [Hit("Opened", "1889", "http://y", 0.8)]})
    hal.set_backend_override(b)
    yield b
    hal.set_backend_override(None)


SAMPLING = dict(temperature=1.0, top_p=1.0, top_k=-1, repetition_penalty=1.0, logprobs=True)


async def test_parallel_calls_with_crops_then_answer(tiny_vl_dir, backend):
    server, ids = server_for(tiny_vl_dir, [T_SEARCH, T_ANSWER])
    loop = make_loop(tiny_vl_dir, server)
    out = await loop.run(dict(SAMPLING), raw_prompt=raw_prompt(0), extra_info={"question": "Where is the tower?"},
                         index=0, tools_kwargs={})
    tokenizer, processor = _tok_proc(tiny_vl_dir)
    ef = out.extra_fields
    assert CONTRACT_KEYS <= set(ef) and set(hal.EXTRA_FIELD_KEYS) == CONTRACT_KEYS
    assert set(ef) - CONTRACT_KEYS <= {"min_global_steps", "max_global_steps"}  # nothing undocumented
    assert (ef["tool_rounds"], ef["tool_calls"], ef["searches"], ef["searches_per_round"]) == (1, 2, 5, [5])
    assert (ef["crops_ok"], ef["crops_failed"], ef["search_failures"]) == (3, 0, 0)
    assert ef["answered"] and ef["answer"] == "Paris" and ef["finish_reason"] == "answer"
    assert not ef["truncated"] and not ef["budget_exhausted"] and ef["tool_errors"] == {}
    assert sorted(k for k, _ in backend.calls) == ["image"] * 3 + ["text"] * 2

    # response_mask is 1 exactly on the generated tokens, and they are the scripted ones in order
    mask = np.array(out.response_mask)
    resp = np.array(out.response_ids)
    assert len(mask) == len(resp) == len(out.response_logprobs)
    assert resp[mask == 1].tolist() == ids[0] + ids[1]
    assert mask[: len(ids[0])].all() and mask[-len(ids[1]):].all() and not mask[len(ids[0])]
    assert np.allclose(np.array(out.response_logprobs)[mask == 1], -0.1)
    assert np.all(np.array(out.response_logprobs)[mask == 0] == 0.0)

    # every image the model saw (original + 3 crops) has exactly its processor-implied image tokens
    images = out.multi_modal_data["images"]
    assert len(images) == 4
    assert count_pads(tiny_vl_dir, out.prompt_ids + out.response_ids) == expected_pads(processor, images)
    assert count_pads(tiny_vl_dir, out.prompt_ids) == expected_pads(processor, images[:1])
    await assert_model_accepts(tiny_vl_dir, out)

    # one sticky request; the 2nd turn was sent all 4 images with the matching pad count
    assert [c.request_id for c in server.calls] == [server.calls[0].request_id] * 2
    assert [c.n_images for c in server.calls] == [1, 4]
    assert server.calls[1].n_image_pad == expected_pads(processor, images)
    room = 2048 - len(ids[0]) - (len(out.response_ids) - len(ids[0]) - len(ids[1]))  # after turn 1 + observation
    # each turn: the tokens left, capped at the default per-turn cap (the release's 1524)
    assert server.calls[0].max_tokens == MAX_TOKENS_PER_TURN < 2048
    assert server.calls[1].max_tokens == min(room, MAX_TOKENS_PER_TURN)

    # schemas are rendered with their array items; the HyperEyes system prompt was added
    prompt_text = tokenizer.decode(out.prompt_ids)
    assert '"items"' in prompt_text and '"minItems"' in prompt_text and "image_search" in prompt_text
    assert "multimodal search agent" in prompt_text
    assert out.num_turns == 4  # 2 assistant turns + 1 observation + 1

    # V1 (TransferQueue) path packs AgentLoopOutput.as_dict(); list/dict extra fields must survive it
    td = list_of_dict_to_tensordict([out.as_dict(), out.as_dict()])
    back = td["extra_fields"][1] if not hasattr(td["extra_fields"], "tolist") else td["extra_fields"].tolist()[1]
    assert back["searches_per_round"] == [5] and back["tool_errors"] == {}


async def test_sample_system_prompt_is_kept(tiny_qwen25_dir, backend):
    server, _ = server_for(tiny_qwen25_dir, [T_ANSWER])
    out = await make_loop(tiny_qwen25_dir, server).run(dict(SAMPLING), raw_prompt=raw_prompt(0, system="Be brief."),
                                                       extra_info={}, index=0)
    text = _tok_proc(tiny_qwen25_dir)[0].decode(out.prompt_ids)
    assert "Be brief." in text and "multimodal search agent" not in text
    assert out.extra_fields["finish_reason"] == "answer" and out.extra_fields["tool_rounds"] == 0


async def test_truncated_mid_observation_drops_it_whole(tiny_vl_dir, backend):
    server, ids = server_for(tiny_vl_dir, [T_SEARCH, T_ANSWER])
    rl = len(ids[0]) + 20  # the turn fits, its observation (3 crops + hits) does not
    loop = make_loop(tiny_vl_dir, server, extra=(f"actor_rollout_ref.rollout.response_length={rl}",))
    out = await loop.run(dict(SAMPLING), raw_prompt=raw_prompt(1), extra_info={}, index=0)
    ef = out.extra_fields
    assert ef["finish_reason"] == "length" and ef["truncated"] and not ef["answered"]
    assert out.response_ids == ids[0] and out.response_mask == [1] * len(ids[0])
    assert len(out.multi_modal_data["images"]) == 1  # the dropped crops are not in the image list either
    _, processor = _tok_proc(tiny_vl_dir)
    assert count_pads(tiny_vl_dir, out.prompt_ids + out.response_ids) == expected_pads(
        processor, out.multi_modal_data["images"])
    assert len(server.calls) == 1
    await assert_model_accepts(tiny_vl_dir, out)


async def test_model_check_catches_a_missing_image(tiny_vl_dir, backend):
    """`assert_model_accepts` is not vacuous: one image fewer than the tokens imply fails it."""
    server, _ = server_for(tiny_vl_dir, [T_SEARCH, T_ANSWER])
    out = await make_loop(tiny_vl_dir, server).run(dict(SAMPLING), raw_prompt=raw_prompt(5), extra_info={}, index=0)
    out.multi_modal_data["images"] = out.multi_modal_data["images"][:-1]
    with pytest.raises((RuntimeError, ValueError, IndexError, StopIteration)):
        await assert_model_accepts(tiny_vl_dir, out)


async def test_generation_hits_response_length(tiny_qwen25_dir, backend):
    server, ids = server_for(tiny_qwen25_dir, [T_SEARCH])
    loop = make_loop(tiny_qwen25_dir, server, extra=("actor_rollout_ref.rollout.response_length=12",))
    out = await loop.run(dict(SAMPLING), raw_prompt=raw_prompt(0), extra_info={}, index=0)
    assert server.calls[0].max_tokens == 12
    assert out.response_ids == ids[0][:12] and out.response_mask == [1] * 12
    assert out.extra_fields["finish_reason"] == "length" and out.extra_fields["truncated"]
    assert backend.calls == []  # a cut-off turn is not executed


async def test_round_budget_exhausted(tiny_qwen25_dir, backend):
    server, _ = server_for(tiny_qwen25_dir, [T_SEARCH])  # the model never answers
    extra = ("+hyperseyes.agent_loop.ugs.max_tool_rounds=1", "+hyperseyes.agent_loop.ugs.max_turns=2")
    out = await make_loop(tiny_qwen25_dir, server, extra=extra).run(dict(SAMPLING), raw_prompt=raw_prompt(0),
                                                                     extra_info={}, index=0)
    ef = out.extra_fields
    assert ef["finish_reason"] == "turn_budget" and ef["budget_exhausted"] and not ef["answered"]
    assert ef["tool_rounds"] == 1 and ef["tool_errors"].get("round_budget", 0) >= 1
    assert len(server.calls) == 2 and not ef["truncated"]


async def test_bad_boxes_unknown_ids_and_failures_do_not_crash(tiny_qwen25_dir):
    b = InMemoryBackend(fail_queries={"tower": FailureKind.TIMEOUT})
    hal.set_backend_override(b)
    try:
        turn2 = '<tool_call>{"name": "text_search", "arguments": {"input": ["tower height"]}}</tool_call>'
        server, _ = server_for(tiny_qwen25_dir, [T_BAD, turn2, T_ANSWER])
        out = await make_loop(tiny_qwen25_dir, server).run(dict(SAMPLING), raw_prompt=raw_prompt(2), extra_info={},
                                                            index=0)
    finally:
        hal.set_backend_override(None)
    ef = out.extra_fields
    assert ef["finish_reason"] == "answer" and ef["tool_rounds"] == 2
    assert ef["crops_failed"] >= 1 and ef["crops_ok"] == 0 and ef["search_failures"] == 1
    assert {"unknown_image_id", "unknown_tool"} <= set(ef["tool_errors"])
    assert len(out.multi_modal_data["images"]) == 1
    _, processor = _tok_proc(tiny_qwen25_dir)
    assert count_pads(tiny_qwen25_dir, out.prompt_ids + out.response_ids) == expected_pads(processor, [image(2)])


async def test_image_cap_withholds_crops(tiny_qwen25_dir, backend):
    server, _ = server_for(tiny_qwen25_dir, [T_SEARCH, T_ANSWER])
    loop = make_loop(tiny_qwen25_dir, server, max_images=2)  # a YAML-entry setting, passed by hydra
    out = await loop.run(dict(SAMPLING), raw_prompt=raw_prompt(3), extra_info={}, index=0)
    tokenizer, processor = _tok_proc(tiny_qwen25_dir)
    images = out.multi_modal_data["images"]
    assert len(images) == 2 and out.extra_fields["truncated"] and out.extra_fields["answered"]
    assert out.extra_fields["crops_ok"] == 3  # searched, but only one crop shown
    assert tokenizer.decode(out.response_ids).count("image not shown") == 2
    assert count_pads(tiny_qwen25_dir, out.prompt_ids + out.response_ids) == expected_pads(processor, images)
    await assert_model_accepts(tiny_qwen25_dir, out)


async def test_crops_are_held_once_at_the_models_size(tiny_qwen25_dir, backend, monkeypatch):
    """The environment cuts each crop at the size the model sees (the agent loop's image-token cap): the image
    sent to the server is the registry's own object (no second, resized copy per crop), cut from the input
    without resampling; the search gets the exact box."""
    envs = []

    class Recording(hal.SearchEnvironment):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            envs.append(self)

    monkeypatch.setattr(hal, "SearchEnvironment", Recording)
    search = T_SEARCH.replace("[[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.2, 0.5, 0.8, 1.0]]",
                              "[[0.0, 0.0, 0.5, 0.5]]")
    server, _ = server_for(tiny_qwen25_dir, [search, T_ANSWER])
    loop = make_loop(tiny_qwen25_dir, server, max_image_tokens=600)
    src = image(4, size=(1400, 1050))
    prompt = [{"role": "user", "content": [{"type": "image", "image": src}, {"type": "text", "text": "Where?"}]}]
    out = await loop.run(dict(SAMPLING), raw_prompt=prompt, extra_info={}, index=0)
    images = out.multi_modal_data["images"]
    assert len(images) == 2 and out.extra_fields["crops_ok"] == 1
    # the 700x525 box at 28 px per token: 700x532 (25x19 = 475 tokens <= 600), the box 7 px taller
    assert images[1] is envs[0].registry.get("img_1") and images[1].size == (700, 532)
    assert images[1].tobytes() == src.crop((0, 0, 700, 532)).tobytes()
    assert ("image", "700x525") in backend.calls
    tokenizer, processor = _tok_proc(tiny_qwen25_dir)
    assert count_pads(tiny_qwen25_dir, out.prompt_ids + out.response_ids) == expected_pads(processor, images)


async def test_episode_steps_wait_at_the_workers_shared_gate(tiny_qwen25_dir, backend, monkeypatch):
    """After each of verl's executor renders (verl then continues on the event loop) and each round, an episode
    waits at the event loop's gate, so a batch finishing together is handled `steps_per_turn` episodes per turn."""
    from hyperseyes_verl.utils.start_gate import GatedLoop, StartGate

    gates = []

    class Counting(StartGate):
        waits = 0

        async def wait(self):
            Counting.waits += 1
            await super().wait()

    def gate(per_turn):
        gates.append(Counting(per_turn))
        return gates[-1]

    monkeypatch.setattr(hal, "loop_gate", gate)
    server, _ = server_for(tiny_qwen25_dir, [T_SEARCH, T_ANSWER])
    loop = make_loop(tiny_qwen25_dir, server, steps_per_turn=3)
    renders = []
    submit = GatedLoop.run_in_executor

    def run_in_executor(self, executor, func, *args):  # verl's executor renders (its agent loop's `self.loop`)
        renders.append(func)
        return submit(self, executor, func, *args)

    monkeypatch.setattr(GatedLoop, "run_in_executor", run_in_executor)
    out = await loop.run(dict(SAMPLING), raw_prompt=raw_prompt(0), extra_info={}, index=0)
    assert out.extra_fields["answered"] and [g.per_turn for g in gates] == [3]
    # verl's renders (the prompt, 2 replies merged, the observation merged: at least 4) and 2 environment steps
    assert len(renders) >= 4 and Counting.waits == len(renders) + 2


async def test_backend_from_config_is_shared_per_process(tiny_qwen25_dir):
    extra = ("+hyperseyes.agent_loop.backend.type=memory",)
    server, _ = server_for(tiny_qwen25_dir, [T_SEARCH, T_ANSWER])
    l1, l2 = make_loop(tiny_qwen25_dir, server, extra=extra), make_loop(tiny_qwen25_dir, server, extra=extra)
    assert hal.shared_backend(l1.settings.backend) is hal.shared_backend(l2.settings.backend)
    out = await l1.run(dict(SAMPLING), raw_prompt=raw_prompt(0), extra_info={}, index=0)
    assert out.extra_fields["searches"] == 5
    with pytest.raises(ValueError, match="no search backend"):
        hal.shared_backend(None)
    with pytest.raises(Exception, match="unknown search backend type"):
        make_loop(tiny_qwen25_dir, server, backend={"type": "nope"})


async def test_agent_loop_worker_generate_sequences(tiny_vl_dir, backend):
    """A real AgentLoopWorker: registry from agent_loop_config_path, per-sample agent_name, padding,
    multi_modal_inputs and M-RoPE position ids for all images, our extra fields as object columns."""
    cfg = _compose(tiny_vl_dir, ("actor_rollout_ref.rollout.response_length=2048",))
    server, _ = server_for(tiny_vl_dir, [T_SEARCH, T_ANSWER])
    worker = AgentLoopWorker(cfg, llm_client=server, teacher_client=None, reward_loop_worker_handles=None)
    n = 2
    batch = DataProto.from_dict(non_tensors={
        "raw_prompt": np.array([raw_prompt(i) for i in range(n)] + [None], dtype=object)[:n],
        "agent_name": np.array(["hyperseyes_agent"] * n, dtype=object),
        "data_source": np.array(["toy"] * n, dtype=object),
        "extra_info": np.array([{"index": i, "question": "Where?"} for i in range(n)], dtype=object),
        "index": np.array(list(range(n)), dtype=object),
    }, meta_info={"global_steps": 1, "validate": False})
    out = await worker.generate_sequences(batch)
    b = out.batch
    assert tuple(b["prompts"].shape) == (2, 4096) and tuple(b["responses"].shape) == (2, 2048)
    assert tuple(b["input_ids"].shape) == (2, 6144) and tuple(b["position_ids"].shape) == (2, 4, 6144)
    assert int(b["response_mask"].sum()) == 2 * sum(len(t) for t in server.script)
    _, processor = _tok_proc(tiny_vl_dir)
    pad = _tok_proc(tiny_vl_dir)[0].convert_tokens_to_ids("<|image_pad|>")
    for i in range(n):
        mmi = out.non_tensor_batch["multi_modal_inputs"][i]
        assert mmi["image_grid_thw"].shape[0] == 4
        n_feat = int((mmi["image_grid_thw"].prod(-1) // processor.image_processor.merge_size ** 2).sum())
        assert int((b["input_ids"][i] == pad).sum()) == n_feat
    ntb = out.non_tensor_batch
    assert CONTRACT_KEYS <= set(ntb)
    assert ntb["searches_per_round"].shape == (2,) and list(ntb["searches_per_round"][1]) == [5]
    assert ntb["tool_errors"][0] == {} and ntb["finish_reason"].tolist() == ["answer", "answer"]
    both = DataProto.concat([out, out])  # what the trainer does with batches
    assert len(both) == 4 and list(both.non_tensor_batch["searches_per_round"][3]) == [5]
    assert all(len(part) == 1 for part in both.chunk(4))


async def test_observation_merge_without_schemas_gives_the_same_tokens(tiny_vl_dir, backend, monkeypatch):
    """The loop drops the tool schemas from observation merges after checking once that they cannot matter."""
    runs = []
    for needs_tools in (True, False):
        tokenizer, processor = _tok_proc(tiny_vl_dir)
        monkeypatch.setattr(hal, "_MERGE_NEEDS_TOOLS", {processor.chat_template: needs_tools})
        server, _ = server_for(tiny_vl_dir, [T_SEARCH, T_ANSWER])
        out = await make_loop(tiny_vl_dir, server).run(dict(SAMPLING), raw_prompt=raw_prompt(4), extra_info={},
                                                        index=0)
        runs.append((out.prompt_ids, out.response_ids, out.response_mask))
    assert runs[0] == runs[1]
    monkeypatch.setattr(hal, "_MERGE_NEEDS_TOOLS", {})
    server, _ = server_for(tiny_vl_dir, [T_SEARCH, T_ANSWER])
    out = await make_loop(tiny_vl_dir, server).run(dict(SAMPLING), raw_prompt=raw_prompt(4), extra_info={}, index=0)
    assert (out.prompt_ids, out.response_ids, out.response_mask) == runs[0]
    assert hal._MERGE_NEEDS_TOOLS == {processor.chat_template: False}  # decided by the first merge


async def test_yaml_settings_apply_to_every_trajectory_of_a_worker(tiny_qwen25_dir, tmp_path, monkeypatch):
    """A worker loads the agent-loop YAML (with settings) into verl's registry and rereads the entry per trajectory.
    The agent-loop module is first imported inside the first trajectory (a fresh Ray worker process, simulated
    here by dropping it from sys.modules); importing it must not replace that entry with a bare one."""
    import sys

    import hyperseyes_verl.verl as hv
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry

    yaml_path = tmp_path / "agent_loop.yaml"
    OmegaConf.save(OmegaConf.create([{"name": hal.AGENT_NAME, "_target_": f"{hal.__name__}.HyperEyesAgentLoop",
                                      "ugs": {"max_tool_rounds": 1}, "backend": {"type": "memory"}}]), yaml_path)
    monkeypatch.setitem(_agent_loop_registry, hal.AGENT_NAME, _agent_loop_registry.get(hal.AGENT_NAME))
    monkeypatch.delitem(sys.modules, hal.__name__)
    monkeypatch.delattr(hv, "agent_loop")  # restored afterwards; meanwhile hydra imports a fresh copy
    cfg = _compose(tiny_qwen25_dir, (f"actor_rollout_ref.rollout.agent.agent_loop_config_path={yaml_path}",))
    server, _ = server_for(tiny_qwen25_dir, [T_SEARCH, T_SEARCH, T_ANSWER])  # two rounds asked, one allowed
    worker = AgentLoopWorker(cfg, llm_client=server, teacher_client=None, reward_loop_worker_handles=None)
    n = 2
    batch = DataProto.from_dict(non_tensors={
        "raw_prompt": np.array([raw_prompt(i) for i in range(n)] + [None], dtype=object)[:n],
        "agent_name": np.array([hal.AGENT_NAME] * n, dtype=object),
        "data_source": np.array(["toy"] * n, dtype=object),
        "extra_info": np.array([{"index": i, "question": "Where?"} for i in range(n)], dtype=object),
        "index": np.array(list(range(n)), dtype=object),
    }, meta_info={"global_steps": 1, "validate": False})
    out = await worker.generate_sequences(batch)
    assert sys.modules[hal.__name__] is not hal  # the module really was imported by the first trajectory
    assert out.non_tensor_batch["tool_rounds"].tolist() == [1, 1]  # max_tool_rounds=1 for both trajectories
    assert out.non_tensor_batch["budget_exhausted"].tolist() == [True, True]
    assert _agent_loop_registry[hal.AGENT_NAME]["ugs"] == {"max_tool_rounds": 1}


def test_plugin_registers_the_same_name_and_class_as_the_agent_loop():
    """plugin.py must not import the agent loop (too heavy for every verl process), so it repeats both names."""
    from hyperseyes_verl.verl import plugin

    assert plugin.AGENT_NAME == hal.AGENT_NAME
    module, _, cls = plugin.AGENT_TARGET.rpartition(".")
    assert module == hal.__name__ and getattr(hal, cls) is hal.HyperEyesAgentLoop
    assert OmegaConf.load(YAML)[0] == {"name": hal.AGENT_NAME, "_target_": plugin.AGENT_TARGET}


def test_dataset_reads_contract_rows_without_torchvision(tiny_qwen25_dir, tmp_path):
    import asyncio
    import io

    import pandas as pd
    from verl.utils.dataset.rl_dataset import get_dataset_class

    from hyperseyes_verl.verl.dataset import load_image

    def png(seed):
        buf = io.BytesIO()
        image(seed).save(buf, format="PNG")
        return buf.getvalue()

    rows = [{"data_source": "toy", "prompt": [{"role": "user", "content": "img_0: <image>\nQuestion: where?"}],
             "images": [{"bytes": png(i)}], "agent_name": "hyperseyes_agent",
             "reward_model": {"style": "rule", "ground_truth": "Paris"},
             "extra_info": {"index": i, "split": "train", "question": "where?"}} for i in range(2)]
    path = str(tmp_path / "rl.parquet")
    pd.DataFrame(rows).to_parquet(path)
    cfg = _compose(tiny_qwen25_dir)
    tokenizer, processor = _tok_proc(tiny_qwen25_dir)
    cls = get_dataset_class(cfg.data)
    assert cls is HyperEyesDataset
    data_cfg = OmegaConf.create({**OmegaConf.to_container(cfg.data, resolve=True), "max_prompt_length": 4096,
                                 "cache_dir": str(tmp_path / "cache"), "filter_overlong_prompts_workers": 1,
                                 "filter_overlong_prompts": True})
    ds = cls(data_files=path, tokenizer=tokenizer, config=data_cfg, processor=processor)
    assert len(ds) == 2
    row = ds[1]
    assert row["agent_name"] == "hyperseyes_agent" and row["index"] == 1
    images, videos, _ = asyncio.run(cls.process_multi_modal_info(row["raw_prompt"], 14, data_cfg))
    assert videos is None and len(images) == 1 and images[0].mode == "RGB"
    assert np.array_equal(np.asarray(images[0]), np.asarray(image(1)))
    # the overlong filter counted the HyperEyes schemas: a limit between the bare and the full length drops rows
    msgs = [{"role": "user", "content": [{"type": "image", "image": image(0)}, {"type": "text", "text": "where?"}]}]
    bare = processor(text=[processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)],
                     images=[image(0)])["input_ids"][0]
    bare = len(bare)
    assert bare < 200
    short_cfg = OmegaConf.merge(data_cfg, {"max_prompt_length": 200})
    assert len(cls(data_files=path, tokenizer=tokenizer, config=short_cfg, processor=processor)) == 0
    with pytest.raises(ValueError, match="none of 'image', 'bytes', 'path'"):
        load_image({"url": "x"})
    with pytest.raises(TypeError, match="unsupported image reference"):
        load_image(42)


async def test_generated_vision_token_cuts_the_response(tiny_qwen25_dir, backend):
    """A sampled <|image_pad|> would break the image-token / feature match in training: cut before it."""
    server, ids = server_for(tiny_qwen25_dir, ["<reason>x</reason><|image_pad|><answer>y</answer>"])
    out = await make_loop(tiny_qwen25_dir, server).run(dict(SAMPLING), raw_prompt=raw_prompt(0), extra_info={},
                                                        index=0)
    pad = _tok_proc(tiny_qwen25_dir)[0].convert_tokens_to_ids("<|image_pad|>")
    cut = ids[0].index(pad)
    assert out.response_ids == ids[0][:cut] and out.response_mask == [1] * cut
    assert len(out.response_logprobs) == cut
    assert out.extra_fields["finish_reason"] == "invalid_token" and out.extra_fields["truncated"]
    _, processor = _tok_proc(tiny_qwen25_dir)
    assert count_pads(tiny_qwen25_dir, out.prompt_ids + out.response_ids) == expected_pads(processor, [image(0)])
    await assert_model_accepts(tiny_qwen25_dir, out)


async def test_episode_tokens_match_verl_render_without_per_turn_processor_calls(tiny_vl_dir, backend, monkeypatch):
    """With size-based image-pad counts (image_pads) an episode has the same tokens as with verl's processor
    render, and after the one verification the processor never runs during an episode."""
    tokenizer, processor = _tok_proc(tiny_vl_dir)
    calls = [0]
    original = type(processor).__call__

    def counting(self, *a, **k):
        calls[0] += self is processor
        return original(self, *a, **k)

    monkeypatch.setattr(type(processor), "__call__", counting)
    runs = {}
    for fast in (False, True, True):
        calls[0] = 0
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(hal.image_pads, "install", lambda builder: False)
            server, _ = server_for(tiny_vl_dir, [T_SEARCH, T_ANSWER])
            out = await make_loop(tiny_vl_dir, server).run(dict(SAMPLING), raw_prompt=raw_prompt(5), extra_info={},
                                                            index=0)
        runs.setdefault(fast, []).append(((out.prompt_ids, out.response_ids, out.response_mask), calls[0]))
    (verl_tokens, verl_calls), = runs[False]
    assert verl_calls >= 3  # prompt + the observation merge's renders, each through the processor
    assert all(tokens == verl_tokens for tokens, _ in runs[True])
    assert runs[True][-1][1] == 0  # verified by an earlier render: no processor call in the whole episode
    assert all(image_pads.verified(processor).values())
