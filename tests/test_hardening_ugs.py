"""Issue 13, environment side: model output that once crashed, hung or bloated a turn (deep JSON, lone
surrogates, many unclosed tags, huge echoed names, thousands of lines) now becomes bounded, counted error
lines. No wall-clock assertion: linear cost is checked by counting the work done; bench/bench_abuse.py times it."""
from __future__ import annotations

import asyncio
import json
import random
import re

import pytest
from PIL import Image

from hyperseyes_verl.search.base import InMemoryBackend
from hyperseyes_verl.ugs import parser as ugs_parser
from hyperseyes_verl.ugs.environment import MAX_ERROR_LINES, SearchEnvironment
from hyperseyes_verl.ugs.parser import MAX_JSON_DEPTH, parse_turn, utf8_safe
from hyperseyes_verl.ugs.render import ContentBuilder
from hyperseyes_verl.ugs.types import UGSConfig


def env(backend=None, **cfg) -> SearchEnvironment:
    return SearchEnvironment(backend or InMemoryBackend(), "Which tower?", [Image.new("RGB", (64, 64), (9, 99, 199))],
                             UGSConfig(**cfg))


def call(name, **arguments) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


# ------------------------------------------------------------------ item 3: every decode path is guarded

@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 50_000])
async def test_deeply_nested_area_string_is_an_error_line_not_a_recursion_error(depth):
    e = env()
    result = await e.step(call("image_search", image_id="img_0", area="[" * depth + "]" * depth))
    assert result.round.errors == {"bad_arguments": 1} and "nested" in result.observation.text
    assert e.registry.n_assigned == 1  # no crop id was spent


@pytest.mark.parametrize("where", ["arguments", "arguments_string", "call"])
async def test_deeply_nested_json_anywhere_in_a_call_is_bad_json(where):
    deep = "[" * 5000 + "]" * 5000
    text = {"arguments": '<tool_call>{"name": "text_search", "arguments": {"input": ' + deep + '}}</tool_call>',
            "arguments_string": call("text_search", __x=0).replace('{"__x": 0}', json.dumps(deep)),
            "call": "<tool_call>" + deep + "</tool_call>"}[where]
    result = await env().step(text)
    kinds = set(result.round.errors)
    assert kinds and kinds <= {"bad_json", "bad_arguments"} and "internal" not in kinds


def test_a_call_nested_within_the_limit_still_parses():
    args = {"input": ["q"], "meta": json.loads("[" * (MAX_JSON_DEPTH - 3) + "]" * (MAX_JSON_DEPTH - 3))}
    turn = parse_turn("<tool_call>" + json.dumps({"name": "text_search", "arguments": args}) + "</tool_call>")
    assert not turn.errors and turn.calls[0].arguments["input"] == ["q"]


# ------------------------------------------------------------------ item 4: nothing echoed breaks UTF-8

@pytest.mark.parametrize("text", [
    '<tool_call>{"name":"\\ud800"}</tool_call>',
    '<tool_call>{"name":"text_search","arguments":{"input":["tower \\udfff"]}}</tool_call>',
    '<tool_call>{"name":"image_search","arguments":{"image_id":"img_\\ud83d"}}</tool_call>',
    '<tool_call>{"name":"image_search","arguments":{"image_id":"img_0","area":"[[0, \\"\\\\ud800\\"]]"}}</tool_call>',
    '<tool_call>{"name":"\\udc00\\ud800", "arguments": "{\\"x\\": \\"\\\\udc80\\"}"}</tool_call>',
    "<tool_call>{'name': 'text_search', 'arguments': {'input': ['\\ud800']}}</tool_call>",
])
async def test_lone_surrogates_never_reach_the_observation_or_the_backend(text):
    backend = InMemoryBackend()
    result = await env(backend).step(text)
    result.observation.text.encode("utf-8")  # raised UnicodeEncodeError before
    for _, query in backend.calls:
        query.encode("utf-8")


async def test_a_surrogate_answer_is_made_encodable():
    result = await env().step('<answer>{"x": 1} \ud800 tower</answer>')
    assert result.answer is not None and result.answer.encode("utf-8")


def test_valid_surrogate_pairs_become_their_character():
    assert utf8_safe("a\ud83d\ude00b") == "a\U0001F600b" and utf8_safe("x\ud800") == "x\ufffd"
    assert parse_turn('<tool_call>{"name": "text_search", "arguments": {"input": ["\\ud83d\\ude00"]}}</tool_call>'
                      ).calls[0].arguments["input"] == ["\U0001F600"]


# ------------------------------------------------------------------ item 7: linear work, bounded echo

class CountingStr(str):
    """Counts `find` calls: the closed-reason scan may look for a closing tag only a bounded number of times."""

    finds = 0

    def find(self, *args):
        CountingStr.finds += 1
        return super().find(*args)


def test_unclosed_reasoning_tags_are_scanned_once_per_tag_name():
    text = CountingStr("<think>" * 20_000 + "<reason>" * 20_000 + "<answer>x</answer>")
    CountingStr.finds = 0
    assert ugs_parser._without_closed_reasons(text) == str(text)
    assert CountingStr.finds == 2  # one failed search per tag name, not one per unclosed tag


def test_closed_reason_stripping_matches_the_regex_definition():
    rng = random.Random(0)
    pieces = ["<think>", "</think>", "<reason>", "</reason>", "<answer>", "a", " ", "<tool_call>"]
    reference = re.compile(r"<(reason|think)>.*?</\1>", re.S)
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert ugs_parser._without_closed_reasons(text) == reference.sub(" ", text), text


def test_many_unclosed_tags_still_parse_the_answer_and_reason():
    turn = parse_turn("<think>" * 50_000 + " plan <answer>Eiffel</answer>")
    assert turn.answer == "Eiffel" and turn.reason is not None


class CountingDict(dict):
    sets = 0

    def __setitem__(self, key, value):
        CountingDict.sets += 1
        super().__setitem__(key, value)


def test_observation_text_is_joined_once_not_rebuilt_per_line():
    block = CountingDict(type="text", text="head\n")
    b = ContentBuilder([block])
    CountingDict.sets = 0
    for i in range(20_000):
        b.text(f"line {i}\n")
    message = b.message()
    assert CountingDict.sets == 1  # `+=` on the block rewrote it 20,000 times (quadratic)
    assert message["content"][0]["text"].count("\n") == 20_001


@pytest.mark.parametrize("make", [
    lambda n: call("x" * n),                                        # a 1 MB tool name
    lambda n: call("image_search", image_id="i" * n),               # a 1 MB image id
    lambda n: "<tool_call></tool_call>" * (n // 23),                 # thousands of empty calls
    lambda n: "<tool_call>{}</tool_call>" * (n // 25),
    lambda n: call("text_search", input=[""] * (n // 4)),          # thousands of empty queries
    lambda n: call("image_search", image_id="img_0", area=[[0, 0, 1, 1]] * (n // 16)),
    lambda n: call("text_search", input=["q"]) * (n // 60),          # thousands of calls over the per-turn cap
    lambda n: "<tool_call>" + " " * n + "```</tool_call>",
])
async def test_hostile_turn_output_is_bounded_and_encodable(make):
    text = make(1 << 20)
    e = env()
    # a hang guard only (linear code needs well under a second): the old quadratic paths ran for hours
    result = await asyncio.wait_for(e.step(text), timeout=300)
    out = result.observation.text
    out.encode("utf-8")
    assert len(out) <= 64 * 1024, len(out)
    assert sum(e.stats.errors.values()) + e.stats.tool_calls >= 1  # the turn was still counted


async def test_error_lines_past_the_cap_are_counted_and_summarized():
    e = env()
    result = await e.step("<tool_call></tool_call>" * (MAX_ERROR_LINES + 10) + call("text_search", input=[""] * 40))
    assert result.round.errors == {"empty_call": MAX_ERROR_LINES + 10, "empty_query": 40}
    text = result.observation.text
    assert text.count("Error (empty_call)") == MAX_ERROR_LINES and "10 more errors not listed: empty_call x10" in text
    assert text.count("Error (empty_query)") == MAX_ERROR_LINES and "24 more errors not listed" in text


async def test_calls_past_the_per_turn_cap_share_one_line():
    backend = InMemoryBackend()
    e = env(backend, max_calls_per_turn=2)
    result = await e.step(call("text_search", input=["a"]) * 500)
    assert result.round.errors == {"too_many_calls": 498} and len(backend.calls) == 2
    assert result.observation.text.count("too_many_calls") == 1 and len(result.observation.messages) == 3


# ------------------------------------------------------------------ smaller: unreadable input image

async def test_truncated_input_image_counts_once_as_a_search_failure_never_as_the_models_error():
    import io

    buf = io.BytesIO()
    Image.effect_noise((128, 128), 40).convert("RGB").save(buf, format="PNG")
    broken = Image.open(io.BytesIO(buf.getvalue()[:400]))
    e = SearchEnvironment(InMemoryBackend(), "q", [broken])
    await e.step(call("image_search", image_id="img_0", area=[[0, 0, .5, .5], [.5, .5, 1, 1]]))
    assert e.stats.errors == {} and e.stats.search_failure_kinds == {"internal": 2} and e.stats.crops_failed == 2


def test_values_in_one_block_are_read_up_to_a_bound():
    turn = parse_turn("<tool_call>" + "{}" * 100_000 + "</tool_call>")
    kinds = [e.kind for e in turn.errors]
    assert kinds.count("missing_name") == ugs_parser.MAX_VALUES_PER_BLOCK and kinds.count("bad_json") == 1
    assert len({id(e.raw) for e in turn.errors}) == 1  # one shared quote, not a 500-char copy per error
