"""Runs the viewer's tests look at, written by the project's real writers (evaluate, PRS, verl's dump writer)
from scripted turns in the real search environment: two inputs' worth of boxes, a failed box, a crop of a crop,
a search failure, and model / search text that tries to inject HTML."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from hyperseyes_verl.search.base import FailureKind, Hit, InMemoryBackend
from hyperseyes_verl.testing.fake_chat_server import EpisodeScript, ScriptedChatClient

RED, BLUE = (200, 0, 0), (0, 0, 200)
XSS_QUERY = "<script>window.__xss=1</script> height"
XSS_TITLE = '<img src=x onerror="window.__xss=2">'
TURN_1 = ('<reason>Two entities: crop both at once, and look up facts. <b>bold?</b></reason>'
          '<tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", '
          '"area": [[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0], [0.9, 0.5, 0.2, 0.9]]}}</tool_call>'
          '<tool_call>{"name": "text_search", "arguments": {"input": ["alpha height", "' + XSS_QUERY.replace('"', '\\"')
          + '", "outage probe"]}}</tool_call>')
TURN_2 = ('<reason>Zoom into the first crop.</reason><tool_call>{"name": "image_search", "arguments": '
          '{"image_id": "img_1", "area": [[0.0, 0.0, 0.5, 0.5]]}}</tool_call>')
TURN_ANSWER = "<reason>Beta is taller.</reason><answer>Beta <b>Spire</b></answer>"
WRONG = ['<reason>guess</reason><tool_call>{"name": "text_search", "arguments": {"input": ["alpha"]}}</tool_call>',
         "<reason>no idea</reason><answer>Gamma</answer>"]
SCRIPTS = {"Which spire is taller?": [TURN_1, TURN_2, TURN_ANSWER], "Which spire is older?": WRONG}


def make_items(root: Path) -> Path:
    """A synth-shaped items.jsonl with one 240x120 image: a red square left, a blue one right."""
    root.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (240, 120), (250, 250, 250))
    img.paste(Image.new("RGB", (100, 100), RED), (10, 10))
    img.paste(Image.new("RGB", (100, 100), BLUE), (130, 10))
    img.save(root / "m.png")
    items = [{"id": f"it-{n}", "index": n, "question": q, "answers": ["Beta Spire", "Beta <b>Spire</b>"], "images": [str(root / "m.png")],
              "entity_count": 2, "domain": "landmark", "kind": "visual"} for n, q in enumerate(SCRIPTS)]
    path = root / "items.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def backend() -> InMemoryBackend:
    return InMemoryBackend(
        text={"alpha": [Hit("Alpha Spire", "Alpha Spire rises 200 metres.", "https://example.org/alpha", 0.9)],
              "script": [Hit(XSS_TITLE, "snippet <i>x</i>", "javascript:window.__xss=3", 0.5)]},
        fail_queries={"outage": FailureKind.TIMEOUT},
        image_fn=lambda im: [Hit("Alpha Spire" if im.getpixel((im.width // 2, im.height // 2))[0] > 100
                                 else "Beta Spire", "a spire", "https://example.org/spire", 1.0)])


def scripted_client() -> ScriptedChatClient:
    """Chat client for `run_episode`: the next scripted turn of the question in the user turn."""
    return ScriptedChatClient(EpisodeScript({q: [turns] for q, turns in SCRIPTS.items()}))


async def write_eval_run(root: Path) -> tuple[Path, Path]:
    """(run folder, items file) of a real `evaluate` run with trajectories kept."""
    from hyperseyes_verl.eval.evaluate import EvalConfig, evaluate
    from hyperseyes_verl.eval.loaders import load_benchmark

    items_path = make_items(root / "data")
    out = root / "run"
    await evaluate(load_benchmark(items_path, name="demo"), scripted_client(), backend(), out,
                   EvalConfig(model="scripted", keep_trajectories=True, progress=False),
                   run_info={"data": str(items_path)})
    return out, items_path


async def write_prs(root: Path) -> tuple[Path, Path]:
    """(PRS folder, items file) of a real PRS run: the first item solved, the second never."""
    from hyperseyes_verl.data.prs import PRSConfig, run_prs
    from hyperseyes_verl.data.synth import read_items

    items_path = make_items(root / "data")
    out = root / "prs"
    await run_prs(read_items(items_path), backend(), scripted_client(), PRSConfig(model="teacher", max_rounds=3), out,
                  progress=False)
    return out, items_path


# Special tokens of the real Qwen2.5-VL / Qwen3-VL tokenizers ("special": true in their tokenizer configs);
# <tool_call>, <tool_response> and <think> are added tokens there but not special, so verl's
# `skip_special_tokens=True` decode keeps them. The tiny test tokenizer marks them special as well.
QWEN_SPECIAL = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>")


async def episode_messages(turns: list[str], question: str, image: Image.Image) -> tuple[list[dict], dict]:
    """Chat messages of one scripted episode in the real environment (observations as tool messages), and
    the agent loop's extra fields (CONTRACTS §3) for it."""
    from hyperseyes_verl.episode.runner import user_content
    from hyperseyes_verl.ugs.environment import SearchEnvironment
    from hyperseyes_verl.ugs.schema import system_prompt

    env = SearchEnvironment(backend(), question, [image])
    msgs = [{"role": "system", "content": system_prompt(env.config)},
            {"role": "user", "content": user_content(question, [image])}]
    for text in turns:
        msgs.append({"role": "assistant", "content": text})
        step = await env.step(text)
        if step.done:
            break
        msgs += step.observation.messages
    st = env.stats
    extra = {"tool_rounds": st.tool_rounds, "tool_calls": st.tool_calls, "searches": st.searches,
             "searches_per_round": list(st.searches_per_round), "tool_errors": dict(st.errors),
             "finish_reason": st.finish_reason, "answer": st.answer, "answered": st.answered,
             "search_failure_kinds": dict(st.search_failure_kinds)}
    return msgs, extra


def decode_like_verl(tokenizer, msgs: list[dict], qwen_specials: bool) -> tuple[str, str]:
    """(input, output) as verl's dump has them: the rendered prompt and response, tokenized and decoded with
    `skip_special_tokens=True`. `qwen_specials`: decode as a real Qwen tokenizer would (only its special
    tokens dropped) instead of the tiny tokenizer's wider special set."""
    text = tokenizer.apply_chat_template(msgs, tokenize=False)
    cut = text.index("<|im_start|>assistant\n") + len("<|im_start|>assistant\n")

    def roundtrip(s: str) -> str:
        ids = tokenizer(s, add_special_tokens=False).input_ids
        if not qwen_specials:
            return tokenizer.decode(ids, skip_special_tokens=True)
        out = tokenizer.decode(ids, skip_special_tokens=False)
        for t in QWEN_SPECIAL:
            out = out.replace(t, "")
        return out

    return roundtrip(text[:cut]), roundtrip(text[cut:])


async def write_rollout_dump(root: Path, tokenizer) -> tuple[Path, Path]:
    """A training folder: `rollouts/1.jsonl`, `rollouts/2.jsonl` written by verl's own `_write_generations`
    (step 1: reward_extra_info keys as the legacy trainer dumps them; step 2 also the agent loop's extra
    fields), `val_generations/2.jsonl` (one validation rollout), `v1_rollouts/3.jsonl` (the V1 trainer's dump,
    no reward fields) and `metrics.jsonl` written by verl's file logger.
    Returns (training folder, items file)."""
    import os

    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.utils.tracking import FileLogger

    items_path = make_items(root / "data")
    image = Image.open(root / "data" / "m.png").convert("RGB")
    question = "Which spire is taller?"
    train = root / "train"
    for step, qwen in ((1, True), (2, False)):
        inputs, outputs, extras = [], [], []
        for turns in ([TURN_1, TURN_2, TURN_ANSWER], WRONG):
            msgs, extra = await episode_messages(turns, question, image)
            i, o = decode_like_verl(tokenizer, msgs, qwen_specials=qwen)
            inputs.append(i)
            outputs.append(o)
            extras.append(extra)
        correct = [1.0, 0.0]
        info = {"acc": correct, "answered": [1, 1], "tool_rounds": [e["tool_rounds"] for e in extras],
                "tool_calls": [e["tool_calls"] for e in extras], "searches": [e["searches"] for e in extras],
                "ref_rounds": [2.0, 2.0], "ref_searches": [6.0, 6.0], "trace_bonus": [0.0, 0.0],
                "opd_eligible": [0, 1], "judge_source": ["rule", "rule"], "prompt_key": ["hyperseyes/0"] * 2,
                "hdpo_format": [1, 1], "request_id": [f"req-{step}-0", f"req-{step}-1"]}
        if step == 2:
            for key in ("searches_per_round", "tool_errors", "finish_reason", "search_failure_kinds"):
                info[key] = [e[key] for e in extras]
            info["opd_teacher_status"] = ["skipped_success", "scored"]
        RayPPOTrainer._write_generations(inputs, outputs, ["Beta Spire"] * 2, correct, info, str(train / "rollouts"),
                                         step)
        if step == 2:  # validation at the same step, through the same writer (trainer.validation_data_dir)
            RayPPOTrainer._write_generations(inputs[:1], outputs[:1], ["Beta Spire"], [1.0],
                                             {k: v[:1] for k, v in info.items()}, str(train / "val_generations"), step)
    # verl's V1 trainer (trainer.v1, e.g. hyperseyes_sync) dumps input/output/gts/score/step and the uid only
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    PPOTrainer._write_generations(inputs, outputs, ["Beta Spire"] * 2, [1.0, 0.0],
                                  {"uid": ["u7_0_0", "u7_1_0"]}, str(train / "v1_rollouts"), 3)
    os.environ["VERL_FILE_LOGGER_PATH"] = str(train / "metrics.jsonl")
    try:
        logger = FileLogger("p", "e")
        for step in (1, 2):
            logger.log({"critic/score/mean": 0.5, "trace/acc": 0.5, "trace/rounds_mean": 1.5 + step}, step)
        logger.finish()
    finally:
        del os.environ["VERL_FILE_LOGGER_PATH"]
    return train, items_path
