"""Parity with the HyperEyes release (DeepExperience/HyperEyes, RL/relax-hypereyes/examples/HyperEyes), written
from reading its environment (env_agent.py), result formatter (formatter.py), reward (HyperEyes_reward_*.py) and
judge (llm_judge.py): the `official` observation format, the release's tc / total counting and its judge
prompt and decision rule. Expected strings are spelled out here from that reading, not produced by our code."""
from __future__ import annotations

import pytest
from PIL import Image

from hyperseyes_verl.contracts import GROUP_RULE_KEYS
from hyperseyes_verl.judge import Judge, JudgeConfig, LLMJudgeConfig
from hyperseyes_verl.judge.llm import parse_verdict_substring
from hyperseyes_verl.judge.types import JudgeFailure
from hyperseyes_verl.search.base import Hit, InMemoryBackend
from hyperseyes_verl.testing.fake_chat_server import FakeChatServer, Reply
from hyperseyes_verl.trace.config import trace_config_from_mapping
from hyperseyes_verl.trace.counts import release_counts
from hyperseyes_verl.trace.official import official_group_scores
from hyperseyes_verl.trace.scorer import RolloutInput, TraceScorer
from hyperseyes_verl.trace.shared import StoreHandle
from hyperseyes_verl.trace.store import ReferenceStore
from hyperseyes_verl.ugs.conversation import observation_message
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.types import UGSConfig

Q = "Which tower is taller?"
QLINE = "原始问题（Original Question）： " + Q
HINT_ONE = ("\n(系统提示: 您还能再调用 1 次工具，请继续输出新的<reason>/<tool_call>或<answer>)"
            "（System hint: you still have 1 tool call(s) remaining, please continue to output "
            "<reason>/<tool_call> or <answer>）")
HINT_NONE = ("\n(系统提示: 您不能再调用工具了；请直接输出 <reason><answer>)"
             "（System hint: you have no tool calls remaining, please directly output <reason><answer>）")
OFFICIAL = UGSConfig(observation_format="official")


def call(name: str, args: str) -> str:
    return f'<reason>r</reason><tool_call>{{"name": "{name}", "arguments": {args}}}</tool_call>'


def backend(**kw) -> InMemoryBackend:
    text = {"height": [Hit("Red Tower", "300 m", "http://r", 0.91), Hit("Blue Tower", "250 m", "http://b", 0.7)],
            "nothing": []}
    return InMemoryBackend(text=text, image_fn=kw.get("image_fn", lambda im: [Hit("Tower", "a tower", "u", 0.95)]))


async def observe(text: str, config: UGSConfig = OFFICIAL, turns_before: int = 0, **kw):
    env = SearchEnvironment(backend(**kw), Q, [Image.new("RGB", (200, 100), (200, 30, 30))], config)
    for _ in range(turns_before):
        await env.step(call("text_search", '{"input": ["nothing"]}'))
    step = await env.step(text)
    msg = observation_message(step.observation)
    images = [b for b in msg["content"] if b["type"] == "image"]
    texts = [b["text"] for b in msg["content"] if b["type"] == "text"]
    return msg, images, "".join(texts), env


# ------------------------------------------------------------------------------------ observation format
async def test_crops_images_first_then_headers_hits_and_failed_crops():
    msg, images, text, _ = await observe(call("image_search", '{"image_id": "img_0", "area": [[0, 0, 0.5, 1], '
                                                              '[0.5, 0, 1, 1], [0.9, 0.9, 0.1, 0.1]]}'))
    assert msg["role"] == "user"
    assert [b["type"] for b in msg["content"]] == ["image", "image", "text"]  # '<image>' * 2 before the text
    assert [im["image"].size for im in images] == [(100, 100), (100, 100)]
    hit = "1. 网页 1. 相关性: 0.95 标题: Tower\n 内容: a tower\n"
    assert text == ("<tool_response>裁剪成功: img_1, img_2  裁剪失败: img_3\n"
                    f"\n[ img_1 图像搜索结果]: \n{hit}\n\n[ img_2 图像搜索结果]: \n{hit}\n"
                    "\n[ img_3 图像搜索结果]: 裁剪失败\n"
                    f"</tool_response>{QLINE}")


async def test_text_search_queries_and_hit_layout():
    _, images, text, _ = await observe(call("text_search", '{"input": ["tower height", "nothing at all"]}'))
    assert images == []
    hits = "网页1. 相关性: 0.91 标题: Red Tower\n 内容: 300 m\n\n\n网页2. 相关性: 0.70 标题: Blue Tower\n 内容: 250 m\n"
    assert text == (f"<tool_response>[查询词 1]: tower height 搜索结果:\n{hits}\n"
                    f"[查询词 2]: nothing at all 搜索结果:\n无相关信息返回\n</tool_response>{QLINE}")


async def test_legacy_pipe_string_is_several_queries():
    _, _, text, _ = await observe(call("text_search", '{"input": "tower height|nothing"}'))
    assert "[查询词 1]: tower height 搜索结果:" in text and "[查询词 2]: nothing 搜索结果:\n无相关信息返回" in text


async def test_unknown_scores_default_as_in_the_release():
    env_text = await observe(call("image_search", '{"image_id": "img_0"}'),
                             image_fn=lambda im: [Hit("T", "s", "u", None)])
    assert "[ img_0 图像搜索结果]: \n1. 网页 1. 相关性: 0.80 标题: T\n 内容: s\n" in env_text[2]  # image: 0.8


async def test_whole_image_search_without_area_has_no_image():
    msg, images, text, _ = await observe(call("image_search", '{"image_id": "img_0"}'))
    assert images == []
    assert text == ("<tool_response>\n[ img_0 图像搜索结果]: \n1. 网页 1. 相关性: 0.95 标题: Tower\n 内容: a tower\n\n"
                    f"</tool_response>{QLINE}")


async def test_missing_image_id_defaults_to_img_0_only_in_official_format():
    args = '{"area": [[0, 0, 0.5, 1]]}'
    _, images, text, env = await observe(call("image_search", args))
    assert len(images) == 1 and text.startswith("<tool_response>裁剪成功: img_1\n") and env.stats.crops_ok == 1
    _, images, text, env = await observe(call("image_search", args), UGSConfig())
    assert images == [] and "bad_arguments" in text and env.stats.crops_ok == 0


async def test_unknown_id_all_crops_failed_and_no_query():
    assert (await observe(call("image_search", '{"image_id": "img_9", "area": [[0, 0, 1, 1]]}')))[2] == \
        f"<tool_response>图片ID img_9 无效</tool_response>{QLINE}"
    _, images, text, _ = await observe(call("image_search", '{"image_id": "img_0", "area": [[0.8, 0, 0.2, 1]]}'))
    assert images == [] and text == f"<tool_response>所有区域裁剪均失败</tool_response>{QLINE}"
    assert (await observe(call("text_search", '{"input": []}')))[2] == \
        f"<tool_response>未检测到有效的搜索关键词</tool_response>{QLINE}"


async def test_unknown_tool_is_a_bare_error_line():
    msg, _, text, _ = await observe(call("zoom", "{}"))
    assert text == "Error: Unknown tool name: zoom" and msg["role"] == "user"


async def test_hints_at_one_and_zero_rounds_left():
    cfg = OFFICIAL.model_copy(update={"max_tool_rounds": 3, "max_turns": 4})
    text = (await observe(call("text_search", '{"input": ["height"]}'), cfg, turns_before=1))[2]
    assert text.endswith(QLINE + HINT_ONE)
    text = (await observe(call("text_search", '{"input": ["height"]}'), cfg, turns_before=2))[2]
    assert text.endswith(QLINE + HINT_NONE)
    assert not (await observe(call("text_search", '{"input": ["height"]}'), cfg))[2].endswith(")")


async def test_default_format_is_unchanged_by_the_official_one():
    msg, _, text, _ = await observe(call("text_search", '{"input": ["height"]}'), UGSConfig())
    assert msg["role"] == "tool" and "<tool_response>" not in text and text.endswith("Original question: " + Q)


# ------------------------------------------------------------------------------------ counting (tc, total)
def tc_total(response: str) -> tuple[int, int]:
    c = release_counts(response)
    return c.tool_calls, c.searches


def test_one_per_call_whatever_the_width():
    wide = ('<tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", "area": [[0,0,0.2,1],[0.2,0,0.4,1],'
            '[0.4,0,0.6,1]]}}</tool_call><tool_call>{"name": "text_search", "arguments": {"input": ["a", "b", "c"]}}'
            '</tool_call>')
    assert tc_total(wide) == (2, 2)
    assert tc_total('<tool_call>{"name": "text_search", "arguments": {"input": "a|b| |c"}}</tool_call>') == (1, 3)
    assert tc_total('<tool_call>{"name": "image_search", "arguments": {"area": [[0,0,1,1]]}}</tool_call>') == (1, 0)
    assert tc_total('<tool_call>{"name": "image_search", "arguments": {"img_id": "img_1"}}</tool_call>') == (1, 1)
    assert tc_total('<tool_call>{"name": "text_search", "arguments": "{\\"input\\": \\"x|y\\"}"}</tool_call>') == (1, 2)


def test_what_counts_as_a_call():
    assert tc_total("<tool_call>{not json</tool_call>") == (1, 0)  # a call that searched nothing
    assert tc_total('<tool_call>{"name": "text_search", "arguments": {"input": ["a"]}}') == (0, 0)  # unclosed
    assert tc_total('<tool_call>{"name": "zoom", "arguments": {}}</tool_call>') == (1, 0)
    # observations are user segments: a <tool_call> quoted in a search result is not the model's
    multi = ('<tool_call>{"name": "text_search", "arguments": {"input": ["a"]}}</tool_call><|im_end|>\n'
             '<|im_start|>user\n<tool_response>see <tool_call>{"name": "text_search"}</tool_call></tool_response>'
             '<|im_end|>\n<|im_start|>assistant\n<tool_call>{"name": "text_search", "arguments": {"input": "b|c"}}'
             '</tool_call><|im_end|>')
    c = release_counts(multi)
    assert (c.tool_calls, c.searches, c.searches_per_turn) == (2, 3, (1, 2))
    assert tc_total("") == (0, 0) and tc_total("<answer>x</answer>") == (0, 0)


def test_a_null_name_drops_the_whole_parse_as_in_the_release():
    c = release_counts('<tool_call>{"name": null, "arguments": {}}</tool_call><answer>Paris</answer>')
    assert c.parse_failed and (c.tool_calls, c.searches) == (0, 0)


WIDE_ROLLOUT = ('<tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", "area": [[0,0,0.1,1],'
                '[0.1,0,0.2,1],[0.2,0,0.3,1],[0.3,0,0.4,1],[0.4,0,0.5,1],[0.5,0,0.6,1]]}}</tool_call><|im_end|>\n'
                '<|im_start|>user\n<tool_response>...</tool_response><|im_end|>\n'
                '<|im_start|>assistant\n<answer>Paris</answer><|im_end|>')


@pytest.mark.parametrize("counting, expected", [("release", (1.2, "good")), ("searches", (0.98, "bad"))])
async def test_a_wide_correct_round_against_a_narrower_reference(counting, expected):
    """The issue's case: 1 round / 6 crops, correct, reference 1 round / 4 searches; a group with one narrower
    rollout. The release scores the wide one good (+0.2), the searches-aware counting bad."""
    scorer = TraceScorer(trace_config_from_mapping({"official": {"counting": counting}}),
                         store=StoreHandle(store=ReferenceStore()))
    fields = {"tool_rounds": 1, "tool_calls": 1, "searches": 6, "answer": "Paris", "answered": True}
    narrow_fields = {**fields, "searches": 2}
    infos = []
    narrow = WIDE_ROLLOUT.replace("[0.1,0,0.2,1],[0.2,0,0.3,1],[0.3,0,0.4,1],[0.4,0,0.5,1],", "")
    for text, f in ((WIDE_ROLLOUT, fields), (narrow, narrow_fields)):
        out = await scorer.score(RolloutInput(response_text=text, ground_truth="Paris", index=0, tool_extra_fields=f,
                                              extra_info={"index": 0, "ref_rounds": 1, "ref_searches": 4}))
        infos.append(out["reward_extra_info"])
    res = official_group_scores(**{k: [i[k] for i in infos] for k in GROUP_RULE_KEYS})
    assert (res[0].score, res[0].category) == expected


async def test_default_trace_config_counts_as_the_release():
    assert trace_config_from_mapping(None).official.counting == "release"


# ------------------------------------------------------------------------------------ judge
OFFICIAL_PROMPT_TEXT = ("\nQuestion: What city?\nGround truth: Paris\nModel prediction: It is Paris\n\n"
                        "Please compare the model's prediction with the ground truth to determine if the model's "
                        'prediction contains the correct answer. Answer only "Correct" or "Incorrect".\n    ')


@pytest.mark.parametrize("reply, verdict", [("Correct", True), ("correct.", True), ("The answer is CORRECT", True),
                                            ("Incorrect", False), ("Correct? No: incorrect", False),
                                            ("not correct", True)])
def test_substring_rule(reply, verdict):
    assert parse_verdict_substring(reply) is verdict


def test_substring_rule_unparsable():
    with pytest.raises(JudgeFailure, match="neither"):
        parse_verdict_substring("I cannot tell")


async def test_official_prompt_is_sent_verbatim_and_read_with_the_substring_rule():
    seen = []

    def responder(request):
        seen.append(request["messages"])
        return Reply("Correct, not incorrect" if len(seen) == 1 else "The prediction is correct")

    with FakeChatServer(responder) as srv:
        cfg = JudgeConfig(kind="llm", llm=LLMJudgeConfig(base_url=srv.base_url, prompt="official", max_attempts=1))
        judge = Judge(cfg)
        first = await judge.judge("<answer>It is Paris</answer>", ["Paris", "Paname"], "What city?<image>")
        second = await judge.judge("It is Paris", ["Paris", "Paname"], "What city?")
        await judge.aclose()
    assert seen[0] == [{"role": "user", "content": OFFICIAL_PROMPT_TEXT}] == seen[1]
    assert not first.correct and first.source == "llm"  # 'incorrect' in the reply: wrong, as in the release
    assert second.correct and second.source == "llm"  # the word rule would refuse this reply; the release accepts it
