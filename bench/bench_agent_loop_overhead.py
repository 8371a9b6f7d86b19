"""Per-turn overhead of HyperEyesAgentLoop vs verl's ToolAgentLoop, and the plugin's import-time cost.

Both loops run identical scripted episodes on CPU against a tiny random Qwen2.5-VL processor: a fake LLM
server (no model, zero latency) returns the same tokens — two tool turns (one image_search with 3 boxes +
one text_search with 2 queries each) and an answer — and the tools return the same crops and the same
search hits (an in-memory backend for ours; two small BaseTools doing the same crops/lookups for verl's).
What is measured is the loop itself: tokenization (Continuous Token, processor renders), parsing, tool
dispatch, observation building. Episodes alternate between the loops; medians are printed.

`--real-budget`: the released Qwen2.5-VL pixel budget (REAL_BUDGET of bench_agent_loop_scale.py) on the same tiny
processor, a 3000x2250 input and 6 boxes of 1000x750 per image_search (the scale bench's round), so every image
has its training-size visual-token count. Ours fits the input to the SFT cap (1200 visual tokens) inside the loop,
as in training; verl's loop gets the input already fitted by the same function (its dataset's job, not timed) and
its image tool crops from the full-size input (closure), so both loops carry the same images.

    .venv/bin/python bench/bench_agent_loop_overhead.py [--episodes 12] [--import-runs 3] [--real-budget]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_agent_loop_scale import BOXES, set_pixel_budget, source_image  # noqa: E402  (this folder is on sys.path)

TINY_BOXES = [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.2, 0.5, 0.8, 1.0]]


def turns(boxes: list) -> list[str]:
    return [
        '<reason>two entities</reason>\n<tool_call>\n{"name": "image_search", "arguments": {"image_id": "img_0", '
        f'"area": {json.dumps(boxes)}}}}}\n</tool_call>\n<tool_call>\n'
        '{"name": "text_search", "arguments": {"input": ["height of the tower", "year it opened"]}}\n</tool_call>',
    ] * 2 + ["<reason>found it</reason> <answer>Paris</answer>"]


def build(model_dir: str, real_budget: bool = False):
    import hydra
    import numpy as np
    from hydra import compose, initialize_config_dir
    from PIL import Image
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
    from verl.tools.base_tool import BaseTool
    from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse
    from verl.utils.tokenizer.tokenizer import hf_processor, hf_tokenizer

    import verl
    from hyperseyes_verl.search.base import Hit, InMemoryBackend
    from hyperseyes_verl.ugs.images import fit_long_side
    from hyperseyes_verl.ugs.schema import TOOL_SCHEMAS
    from hyperseyes_verl.utils.images import IMAGE_TOKEN_CAP, fit_image_tokens, image_token_factor
    from hyperseyes_verl.verl import agent_loop as hal
    from hyperseyes_verl.verl.dataset import HyperEyesDataset

    hits = {"height": [Hit("Tower", "300 m tall", "http://t", 0.9)], "year": [Hit("Opened", "1889", "http://y", 0.8)]}
    backend = InMemoryBackend(text=hits)
    hal.set_backend_override(backend)

    def hits_text(hs):
        return "".join(f"  {i}. {h.title} (relevance {h.score:.2f})\n     {h.snippet}\n     {h.url}\n"
                       for i, h in enumerate(hs, 1)) or "  no results\n"

    class ImageSearchTool(BaseTool):
        async def execute(self, instance_id, parameters, **kwargs):
            src = full_size if full_size is not None else kwargs["agent_data"].image_data[0]
            images, text = [], "image_search #1:\n"
            for box in parameters["area"]:
                x1, y1, x2, y2 = box
                crop = src.crop((round(x1 * src.width), round(y1 * src.height), round(x2 * src.width),
                                 round(y2 * src.height)))
                crop = fit_long_side(crop, 1000)
                images.append(crop)
                text += f"img_{len(images)}: (crop of img_0, box {box})\n" + hits_text(
                    await backend.image_search(crop, 3))
            return ToolResponse(image=images, text=text), 0.0, {}

    class TextSearchTool(BaseTool):
        async def execute(self, instance_id, parameters, **kwargs):
            text = "text_search #2:\n"
            for q in parameters["input"]:
                text += f'"{q}":\n' + hits_text(await backend.text_search(q, 3))
            return ToolResponse(text=text), 0.0, {}

    with contextlib.redirect_stdout(io.StringIO()):  # BaseTool prints its schema
        tools = [ImageSearchTool({}, OpenAIFunctionToolSchema.model_validate(TOOL_SCHEMAS[0])),
                 TextSearchTool({}, OpenAIFunctionToolSchema.model_validate(TOOL_SCHEMAS[1]))]

    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer/config")
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=[
            f"actor_rollout_ref.model.path={model_dir}", "actor_rollout_ref.rollout.name=vllm",
            "actor_rollout_ref.rollout.prompt_length=8192",
            f"actor_rollout_ref.rollout.response_length={32768 if real_budget else 8192}",  # 2 rounds of 6 crops: 13k
            "actor_rollout_ref.rollout.multi_turn.format=hermes",
            "actor_rollout_ref.rollout.multi_turn.max_parallel_calls=8",
            "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=100000"])
    tokenizer, processor = hf_tokenizer(model_dir), hf_processor(model_dir)
    if real_budget:
        set_pixel_budget(processor, "qwen2_5_vl")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    script = [tokenizer.encode(t, add_special_tokens=False) + [im_end]
              for t in turns([[round(v, 4) for v in b] for b in BOXES] if real_budget else TINY_BOXES)]

    def make(target: str, server):
        return hydra.utils.instantiate(
            config={"_target_": target}, trainer_config=DictConfigWrap(config=cfg), server_manager=server,
            tokenizer=tokenizer, processor=processor, hf_model_type="qwen2_5_vl", dataset_cls=HyperEyesDataset,
            data_config=DictConfigWrap(cfg.data), tools=ToolListWrap(tools))

    if real_budget:  # ours fits the input itself; verl's gets it fitted the same way (its dataset's job)
        full_size = source_image(3000, 2250)
        img = {"hyperseyes": full_size,
               "verl_tool": fit_image_tokens(full_size, IMAGE_TOKEN_CAP, image_token_factor(processor))}
    else:
        rng = np.random.default_rng(0)
        full_size = None
        tiny = Image.fromarray((rng.random((80, 96, 3)) * 255).astype("uint8"))
        img = {"hyperseyes": tiny, "verl_tool": tiny}

    def prompt(name):
        return [{"role": "system", "content": "You are a multimodal search agent."},
                {"role": "user", "content": [{"type": "image", "image": img[name]},
                                             {"type": "text", "text": "Where is the tower?"}]}]

    targets = {"hyperseyes": "hyperseyes_verl.verl.agent_loop.HyperEyesAgentLoop",
               "verl_tool": "verl.experimental.agent_loop.tool_agent_loop.ToolAgentLoop"}
    return targets, make, prompt, script, tokenizer.convert_tokens_to_ids("<|image_pad|>")


async def run_episodes(model_dir: str, episodes: int, real_budget: bool = False) -> None:
    from hyperseyes_verl.testing.fake_llm_server import FakeServerManager

    targets, make, prompt, script, pad_id = build(model_dir, real_budget)
    params = dict(temperature=1.0, top_p=1.0, top_k=-1, repetition_penalty=1.0, logprobs=True)
    times: dict[str, list[float]] = {k: [] for k in targets}
    shapes: dict[str, tuple] = {}
    for ep in range(episodes + 1):  # episode 0 warms both up and is not counted
        for name, target in (list(targets.items()) if ep % 2 == 0 else list(targets.items())[::-1]):
            server = FakeServerManager(script=script, image_token_id=pad_id)
            t0 = time.perf_counter()
            loop = make(target, server)
            out = await loop.run(dict(params), raw_prompt=prompt(name), extra_info={}, tools_kwargs={}, index=ep)
            dt = time.perf_counter() - t0
            if ep:
                times[name].append(dt)
            shapes[name] = (len(server.calls), len((out.multi_modal_data or {}).get("images", [])),
                            sum(out.response_mask), len(out.response_ids), server.calls[-1].n_image_pad)
    n_turns = len(script)
    crops = len(BOXES) if real_budget else len(TINY_BOXES)
    budget = ("the real pixel budget (Qwen2.5-VL 56^2..28^2*16384 px; 3000x2250 input, crops of 1000x750)"
              if real_budget else "the tiny processor's budget (28^2..28^2*16 px; 96x80 input)")
    print(f"episodes per loop: {episodes}; turns per episode: {n_turns} (2 tool rounds of {crops} crops + 2 text "
          f"searches); {budget}")
    for name in targets:
        calls, n_img, gen, resp, pads = shapes[name]
        med = statistics.median(times[name])
        print(f"  {name:10s}: median {med * 1e3:7.1f} ms/episode = {med / n_turns * 1e3:6.1f} ms/turn "
              f"| server calls {calls}, images {n_img}, image tokens {pads}, generated {gen}, response {resp} tokens")
    ratio = statistics.median(times["hyperseyes"]) / statistics.median(times["verl_tool"])
    where = "at the real pixel budget" if real_budget else "at the tiny processor's budget"
    print(f"hyperseyes/tool_agent_loop per turn = {ratio:.2f} {where} (goal <= 1.0)")


def import_cost(runs: int) -> None:
    """`import verl` with our entry point vs without it, alternated in fresh interpreters.

    The baseline names a plugin that does not exist, so verl still scans the entry points (as it does in
    every real process) but loads nothing: the difference is our plugin alone."""
    code = "import time; t=time.perf_counter(); import verl; print(time.perf_counter()-t)"
    # plugins off, then the plugin module imported by hand: its own cost, verl already loaded
    direct = ("import time, verl; t=time.perf_counter(); import hyperseyes_verl.verl.plugin; "
              "print(time.perf_counter()-t)")
    eager = ("import time, verl; t=time.perf_counter(); import verl.experimental.agent_loop, "
             "verl.trainer.distillation; print(time.perf_counter()-t)")
    base = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    res: dict[str, list[float]] = {"without plugin": [], "with plugin": [], "plugin alone": [],
                                   "eager registries (avoided)": []}
    for _ in range(runs):
        for label, env, src in (("without plugin", {**base, "VERL_USE_EXTERNAL_PLUGINS": "no_such_plugin"}, code),
                                ("with plugin", base, code),
                                ("plugin alone", {**base, "VERL_USE_EXTERNAL_PLUGINS": "none"}, direct),
                                ("eager registries (avoided)", {**base, "VERL_USE_EXTERNAL_PLUGINS": "none"}, eager)):
            out = subprocess.run([sys.executable, "-c", src], env=env, capture_output=True, text=True, check=True)
            res[label].append(float(out.stdout.strip().splitlines()[-1]))
    med = {k: statistics.median(v) for k, v in res.items()}
    spread = {k: f"{min(v):.2f}-{max(v):.2f}" for k, v in res.items()}
    print(f"import verl: {med['without plugin']:.2f} s without the plugin (range {spread['without plugin']}), "
          f"{med['with plugin']:.2f} s with it (range {spread['with plugin']}); median of {runs}, "
          f"difference {med['with plugin'] - med['without plugin']:+.2f} s")
    print(f"plugin module import alone (verl already loaded): {med['plugin alone'] * 1e3:.1f} ms; "
          f"registering eagerly would add {med['eager registries (avoided)']:.2f} s to every verl process")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--import-runs", type=int, default=3, help="0: skip the import-cost part")
    ap.add_argument("--real-budget", action="store_true", help="the released pixel budget, a 3000x2250 input and "
                    "crops of 1000x750 (see above)")
    args = ap.parse_args()
    from hyperseyes_verl.testing.cpu_patches import apply_processor_patch
    from hyperseyes_verl.testing.tiny_vl import build_tiny_vl

    apply_processor_patch()
    model_dir = str(build_tiny_vl(os.path.join(tempfile.mkdtemp(prefix="hyp_bench_"), "qwen2_5_vl"), "qwen2_5_vl"))
    asyncio.run(run_episodes(model_dir, args.episodes, args.real_budget))
    if args.import_runs:
        import_cost(args.import_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
