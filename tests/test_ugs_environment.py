"""The search environment: parallel rounds, crops, budgets and hints, errors, failures, timeouts."""
from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hyperseyes_verl.search.base import FailureKind, Hit, InMemoryBackend
from hyperseyes_verl.ugs.demo import run_episode
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.types import UGSConfig

QUESTION = "Which birds are these?"


def call(name: str, **arguments) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def image(w: int = 200, h: int = 100) -> Image.Image:
    return Image.new("RGB", (w, h), (120, 30, 200))


@dataclass
class TimedBackend:
    """Wraps InMemoryBackend and records each search's (kind, start, end) on the event loop clock."""

    inner: InMemoryBackend
    name: str = "timed"
    log: list[tuple[str, float, float]] = field(default_factory=list)

    async def _timed(self, kind, coro):
        start = asyncio.get_running_loop().time()
        try:
            return await coro
        finally:
            self.log.append((kind, start, asyncio.get_running_loop().time()))

    async def text_search(self, query, k):
        return await self._timed("text", self.inner.text_search(query, k))

    async def image_search(self, img, k):
        return await self._timed("image", self.inner.image_search(img, k))

    async def aclose(self):
        return None


def env_with(backend=None, config: UGSConfig = UGSConfig(), images=None) -> SearchEnvironment:
    backend = backend if backend is not None else InMemoryBackend(text={"kite": [Hit("Red Kite", "bird", "u", 0.9)]})
    return SearchEnvironment(backend, QUESTION, images if images is not None else [image()], config)


# ------------------------------------------------------------------ a parallel round

async def test_all_searches_of_all_calls_run_concurrently():
    backend = TimedBackend(InMemoryBackend(latency_s=0.05))
    env = env_with(backend)
    text = ("<reason>r</reason>" + call("image_search", image_id="img_0", area=[[0, 0, .5, .5], [.5, 0, 1, .5], [0, .5, 1, 1]])
            + call("text_search", input=["a", "b"]) + call("text_search", input=["c"]))
    result = await env.step(text)
    assert len(backend.log) == 6
    assert max(s for _, s, _ in backend.log) < min(e for _, _, e in backend.log)  # every search overlaps all others
    r = result.round
    assert (r.tool_calls, r.text_queries, r.crops_ok, r.crops_failed, r.searches) == (3, 3, 3, 0, 6)
    assert r.round_index == 1 and r.rounds_left == 7 and r.errors == {} and r.wall_s > 0
    assert not result.done and result.finish_reason == "running"
    assert len(result.observation.messages) == 3 and all(m["role"] == "tool" for m in result.observation.messages)


async def test_crop_images_follow_the_line_naming_their_id():
    env = env_with()
    result = await env.step(call("image_search", image_id="img_0", area=[[0, 0, .5, 1], [.5, 0, 1, 1]]))
    content = result.observation.messages[0]["content"]
    image_positions = [i for i, b in enumerate(content) if b["type"] == "image"]
    assert len(image_positions) == 2
    for n, i in enumerate(image_positions, start=1):
        assert content[i - 1]["text"].endswith(f"img_{n}: ")
        assert content[i]["image"].size == (100, 100)
    assert f"img_1: <image> (crop of img_0, box [0.000, 0.000, 0.500, 1.000])" in result.observation.text
    assert result.observation.images == [content[i]["image"] for i in image_positions]


async def test_crops_are_usable_from_the_next_turn_not_the_same_turn():
    backend = InMemoryBackend()
    env = env_with(backend)
    first = await env.step(call("image_search", image_id="img_0", area=[[0, 0, .5, 1]])
                           + call("image_search", image_id="img_1"))
    assert first.round.errors == {"unknown_image_id": 1}
    assert "created in this same turn" in first.observation.text
    assert len(backend.calls) == 1
    second = await env.step(call("image_search", image_id="img_1", area=[[0, 0, .5, .5]]))
    assert second.round.crops_ok == 1 and "img_2: <image> (crop of img_1" in second.observation.text
    assert backend.calls[-1] == ("image", "50x50")


async def test_failed_crop_consumes_its_id_and_valid_boxes_still_run():
    backend = InMemoryBackend()
    env = env_with(backend)
    result = await env.step(call("image_search", image_id="img_0", area=[[.5, 0, .2, 1], [0, 0, 1, 1], "x"]))
    text = result.observation.text
    assert "img_1: crop failed (bad_box_inverted)" in text and "img_2: <image>" in text
    assert "img_3: crop failed (bad_box_arity)" in text
    r = result.round
    assert (r.crops_ok, r.crops_failed, r.searches) == (1, 2, 1)
    assert r.errors == {"bad_box_inverted": 1, "bad_box_arity": 1}
    later = await env.step(call("image_search", image_id="img_1"))
    assert later.round.errors == {"unknown_image_id": 1} and "crop that failed" in later.observation.text


async def test_whole_image_flat_box_and_string_area():
    backend = InMemoryBackend()
    env = env_with(backend)
    result = await env.step(call("image_search", image_id="img_0") + call("image_search", image_id="img_0", area=[0, 0, .5, .5])
                            + call("image_search", image_id="img_0", area="[[0.5, 0.5, 1, 1]]"))
    assert "img_0 (whole image):" in result.observation.text
    assert result.round.crops_ok == 2 and result.round.searches == 3 and env.registry.ids == ["img_0", "img_1", "img_2"]
    assert sorted(backend.calls) == [("image", "100x50"), ("image", "100x50"), ("image", "200x100")]


async def test_hits_are_rendered_with_title_snippet_url_relevance_and_no_results():
    backend = InMemoryBackend(text={"kite": [Hit("Red Kite", "x" * 50, "https://k", 0.87)] * 5})
    env = env_with(backend, UGSConfig(top_k=2, snippet_chars=20))
    result = await env.step(call("text_search", input=["red kite", "zzz"]))
    text = result.observation.text
    assert text.count("Red Kite (relevance 0.87)") == 2 and "https://k" in text
    assert "x" * 19 + "…" in text and "x" * 20 not in text
    assert "Query 'zzz':\n  no results" in text


async def test_low_relevance_text_hits_are_dropped_when_configured():
    hits = [Hit("low", "s", score=0.3), Hit("unknown", "s"), Hit("high", "s", score=0.7)]
    env = env_with(InMemoryBackend(text={"q": hits}), UGSConfig(min_text_relevance=0.6))
    text = (await env.step(call("text_search", input=["q"]))).observation.text
    assert "low" not in text and "unknown" in text and "high" in text


# ------------------------------------------------------------------ caps and malformed calls

async def test_caps_and_bad_parts_are_reported_while_valid_parts_run():
    backend = InMemoryBackend()
    cfg = UGSConfig(max_calls_per_turn=2, max_boxes_per_call=2, max_queries_per_call=2, max_query_chars=10)
    env = env_with(backend, cfg)
    text = (call("text_search", input=["ok1", "", 7, "x" * 11, "ok2", "ok3"])
            + call("image_search", image_id="img_0", area=[[0, 0, .5, .5], [.5, .5, 1, 1], [0, 0, 1, 1]])
            + call("text_search", input=["never"]))
    result = await env.step(text)
    r = result.round
    assert r.errors == {"empty_query": 1, "bad_query": 1, "query_too_long": 1, "too_many_queries": 1,
                        "too_many_boxes": 1, "too_many_calls": 1}
    assert sorted(q for kind, q in backend.calls if kind == "text") == ["ok1", "ok2"]
    assert (r.tool_calls, r.searches, r.crops_ok) == (2, 4, 2)
    assert env.registry.ids == ["img_0", "img_1", "img_2"]  # a box over the cap takes no id
    assert "at most 2 tool calls" in result.observation.text


async def test_unknown_tool_bad_arguments_and_parse_errors_are_counted():
    env = env_with()
    text = (call("web_browse", url="x") + call("text_search", query=["a"]) + call("image_search", area=[[0, 0, 1, 1]])
            + call("image_search", image_id="img_7") + "<tool_call>{broken</tool_call>"
            + call("image_search", image_id="img_0", area={"x": 1}))
    result = await env.step(text)
    assert result.round.errors == {"unknown_tool": 1, "bad_arguments": 3, "unknown_image_id": 1, "bad_json": 1}
    assert result.round.tool_calls == 0 and result.round.searches == 0 and not result.done
    obs = result.observation.text
    assert "unknown tool 'web_browse'" in obs and "known ids: img_0" in obs and "could not be used" in obs
    assert env.stats.errors == result.round.errors and env.stats.tool_rounds == 1


async def test_a_turn_of_only_malformed_calls_is_still_a_tool_round():
    env = env_with()
    result = await env.step("<tool_call>not json at all</tool_call>")
    assert not result.done and result.round.errors == {"bad_json": 1} and env.stats.tool_rounds == 1


# ------------------------------------------------------------------ answers and endings

async def test_answer_ends_the_episode():
    env = env_with()
    result = await env.step("<reason>known</reason><answer>Red Kite</answer>")
    assert result.done and result.finish_reason == "answer" and result.answer == "Red Kite"
    assert result.observation is None and result.round is None
    assert env.stats.answered and env.stats.answer == "Red Kite" and env.stats.tool_rounds == 0
    with pytest.raises(RuntimeError, match="already finished"):
        await env.step("<answer>again</answer>")


async def test_tool_calls_next_to_an_answer_are_not_executed():
    backend = InMemoryBackend()
    env = env_with(backend)
    result = await env.step(call("text_search", input=["a"]) + "<tool_call>{bad</tool_call><answer>B</answer>")
    assert result.done and result.answer == "B" and backend.calls == []
    assert env.stats.errors == {"answer_with_tool_call": 2, "bad_json": 1}


async def test_no_answer_and_no_call_is_no_action():
    env = env_with()
    result = await env.step("I am not sure what to do. <answer></answer>")
    assert result.done and result.finish_reason == "no_action" and not env.stats.answered
    assert env.stats.errors == {"empty_answer": 1}


async def test_round_budget_refuses_calls_and_the_episode_continues():
    backend = InMemoryBackend()
    env = env_with(backend, UGSConfig(max_tool_rounds=1, max_turns=4))
    first = await env.step(call("text_search", input=["a"]))
    assert first.round.rounds_left == 0 and "answer now" in first.observation.text
    assert env.stats.budget_exhausted  # every tool round is spent, even before a refused call
    refused = await env.step(call("text_search", input=["b"]) + call("text_search", input=["c"]))
    assert not refused.done and refused.round is None and "answer now" in refused.observation.text
    assert "Error (round_budget)" in refused.observation.text and backend.calls == [("text", "a")]
    assert env.stats.errors == {"round_budget": 2} and env.stats.budget_exhausted
    final = await env.step("<answer>A</answer>")
    assert final.finish_reason == "answer" and env.stats.turns == 3 and env.stats.tool_rounds == 1


async def test_turn_budget_ends_the_episode_and_keeps_the_last_turn_for_the_answer():
    backend = InMemoryBackend()
    env = env_with(backend, UGSConfig(max_tool_rounds=8, max_turns=2))
    first = await env.step(call("text_search", input=["a"]))
    assert first.round.rounds_left == 0 and "answer now" in first.observation.text
    last = await env.step(call("text_search", input=["b"]))
    assert last.done and last.finish_reason == "turn_budget" and last.observation is None
    assert env.stats.budget_exhausted and not env.stats.answered and backend.calls == [("text", "a")]


async def test_remaining_round_hints_and_restated_question():
    env = env_with(config=UGSConfig(max_tool_rounds=3, max_turns=9, hint_when_rounds_left=1))
    texts = []
    for i in range(3):
        texts.append((await env.step(call("text_search", input=[f"q{i}"]))).observation.text)
        assert env.stats.budget_exhausted == (i == 2)  # exhausted only once the last round is spent
    assert "remaining" not in texts[0] and "answer now" not in texts[0]
    assert "You have 1 tool round remaining." in texts[1]
    assert "answer now" in texts[2]
    assert all(t.rstrip().endswith(f"Original question: {QUESTION}") for t in texts)
    quiet = env_with(config=UGSConfig(restate_question=False))
    assert "Original question" not in (await quiet.step(call("text_search", input=["q"]))).observation.text


# ------------------------------------------------------------------ backend faults

async def test_search_failures_are_rendered_and_counted_apart_from_model_errors():
    backend = InMemoryBackend(fail_queries={"down": FailureKind.HTTP_STATUS})
    env = env_with(backend)
    result = await env.step(call("text_search", input=["down now", "fine"]))
    assert "search failed (http_status): injected failure for 'down now'" in result.observation.text
    r = result.round
    assert r.search_failures == 1 and r.search_failure_kinds == {"http_status": 1} and r.errors == {}
    assert env.stats.search_failures == 1 and env.stats.to_dict()["search_failure_kinds"] == {"http_status": 1}


async def test_searches_without_a_hit_are_counted_apart_from_failures():
    backend = InMemoryBackend(text={"kite": [Hit("Red Kite", "bird", "u", 0.9)]},
                              fail_queries={"down": FailureKind.HTTP_STATUS})
    env = env_with(backend)
    r = (await env.step(call("text_search", input=["kite", "nothing here", "down now"]))).round
    assert (r.searches, r.searches_empty, r.search_failures) == (3, 1, 1)
    r = (await env.step(call("text_search", input=["no hit", "none either"]))).round
    assert r.searches_empty == 2 and env.stats.searches_empty == 3


async def test_slow_backend_becomes_a_timeout_line():
    backend = TimedBackend(InMemoryBackend(latency_s=5.0))
    env = env_with(backend, UGSConfig(search_timeout_s=0.05))
    result = await env.step(call("text_search", input=["a", "b"]) + call("image_search", image_id="img_0"))
    assert result.observation.text.count("search failed (timeout): no answer within 0.05 s") == 3
    assert result.round.search_failure_kinds == {"timeout": 3}
    assert all(end - start < 1.0 for _, start, end in backend.log)  # cancelled, not awaited to the end


class BrokenBackend:
    name = "broken"

    def __init__(self, result=None):
        self.result = result

    async def text_search(self, query, k):
        if self.result is None:
            raise RuntimeError("index file vanished")
        return self.result

    async def image_search(self, img, k):
        raise ZeroDivisionError("bug")

    async def aclose(self):
        return None


async def test_backend_exceptions_and_garbage_never_escape():
    env = env_with(BrokenBackend())
    result = await env.step(call("text_search", input=["a"]) + call("image_search", image_id="img_0"))
    assert "search failed (internal): RuntimeError: index file vanished" in result.observation.text
    assert result.round.search_failure_kinds == {"internal": 2}
    garbage = env_with(BrokenBackend(result={"title": "not a list"}))
    result = await garbage.step(call("text_search", input=["a"]))
    assert result.round.search_failure_kinds == {"bad_payload": 1} and "expected list[Hit]" in result.observation.text


def truncated_png() -> Image.Image:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue()[:200]))  # header parses; pixel data is cut


async def test_undecodable_input_image_is_reported_not_raised():
    # a truncated dataset file is a data fault: a search failure on both paths, never the model's crop error
    backend = InMemoryBackend()
    env = env_with(backend, images=[truncated_png()])
    result = await env.step(call("image_search", image_id="img_0") + call("image_search", image_id="img_0", area=[[0, 0, 1, 1]]))
    text = result.observation.text
    assert "search failed (internal): the image could not be read" in text and "img_1: crop failed (image_unreadable)" in text
    r = result.round
    assert r.crops_failed == 1 and r.errors == {} and r.searches == 2
    assert r.search_failures == 2 and r.search_failure_kinds == {"internal": 2} and backend.calls == []


# ------------------------------------------------------------------ episode statistics

async def test_episode_stats_accumulate_with_the_contract_keys():
    env = env_with()
    await env.step(call("image_search", image_id="img_0", area=[[0, 0, .5, .5], [0, 0, 0, 0]]) + call("text_search", input=["a", "b"]))
    await env.step(call("text_search", input=["kite"]))
    await env.step("<answer>Red Kite</answer>")
    d = env.stats.to_dict()
    assert d["searches_per_round"] == [3, 1] and d["searches"] == 4 and d["tool_rounds"] == 2 and d["turns"] == 3
    assert (d["tool_calls"], d["crops_ok"], d["crops_failed"]) == (3, 1, 1)
    assert d["errors"] == {"bad_box_inverted": 1} and d["finish_reason"] == "answer" and d["answered"] is True
    json.dumps(d)


async def test_demo_episode():
    lines: list[str] = []
    stats = await run_episode(latency_s=0.0, show=lines.append)
    assert stats.answered and stats.answer == "Red Kite" and stats.searches_per_round == [6, 3]
    assert lines[0].split()[:3] == ["round", "calls", "queries"] and lines[-1].startswith("episode: ")


# ------------------------------------------------------------------ fuzz through the whole step

STEP_FRAGMENTS = ["<tool_call>", "</tool_call>", "<answer>", "</answer>", "<reason>", "</think>", "{", "}", "[", "]",
                  '"', ",", ":", '"name": "image_search"', '"name": "text_search"', '"arguments": ',
                  '"image_id": "img_0"', '"image_id": "img_1"', '"area": ', '"input": ', "[0, 0, 1, 1]",
                  "[0.5, 0.2, 0.1, 2]", "NaN", "-1e308", '"q"', "null"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(st.sampled_from(STEP_FRAGMENTS), st.text(max_size=3)), max_size=40).map("".join),
                min_size=1, max_size=3))
def test_fuzz_steps_never_raise(turns):
    async def episode():
        env = env_with(InMemoryBackend(), UGSConfig(max_tool_rounds=2, max_turns=3))
        for text in turns:
            result = await env.step(text)
            assert result.done == env.done
            if result.done:
                break
            assert result.observation.messages and "Original question" in result.observation.text
        assert "internal" not in env.stats.errors
        return env.stats

    stats = asyncio.run(episode())
    assert stats.tool_rounds <= 2 and stats.turns <= 3 and len(stats.searches_per_round) == stats.tool_rounds


async def test_default_caps_fit_a_4x4_mosaic_and_say_they_are_ours():
    """The project's own 4x4 mosaics need 16 crops in one call; the per-call caps are ours (the release has none)
    and must say so, while the budgets that are the release's say official."""
    boxes = [[c / 4, r / 4, (c + 1) / 4, (r + 1) / 4] for r in range(4) for c in range(4)]
    env = SearchEnvironment(InMemoryBackend(), "q", [image(400, 400)])
    step = await env.step(call("image_search", image_id="img_0", area=boxes)
                          + call("text_search", input=[f"entity {i}" for i in range(16)]))
    assert step.round.crops_ok == 16 and step.round.searches == 32 and not step.round.errors
    fields = UGSConfig.model_fields
    for name in ("max_calls_per_turn", "max_boxes_per_call", "max_queries_per_call", "max_query_chars"):
        assert "ours" in fields[name].description and "official" not in fields[name].description.split("(")[0]
    for name in ("max_tool_rounds", "max_turns", "top_k"):
        assert "official" in fields[name].description
