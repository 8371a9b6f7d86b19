"""LLM judge against a real local OpenAI-compatible server on 127.0.0.1 (`FakeChatServer`).

The prediction carries a directive the server obeys: [correct], [incorrect], [garbage] (unparsable
reply), [5xx] (HTTP 503), [slow] (answers after the client's timeout), [flaky] (503 once, then Correct).
"""
from __future__ import annotations

import asyncio
import re
import socket
from collections import Counter

import pytest

from hyperseyes_verl.judge import Judge, JudgeConfig, LLMJudgeConfig
from hyperseyes_verl.testing.fake_chat_server import FakeChatServer, Reply

HITS: Counter = Counter()
REPLIES = {"correct": "Correct", "incorrect": "Incorrect", "garbage": "I cannot tell", "slow": "Correct",
           "flaky": "Correct"}


def _obey(body: dict) -> Reply:
    mode = re.search(r"Prediction: .*?\[(\w+)\]", body["messages"][0]["content"]).group(1)
    HITS[mode] += 1
    if mode == "5xx" or (mode == "flaky" and HITS[mode] == 1):
        return Reply(status=503)
    return Reply(REPLIES[mode], delay_s=1.5 if mode == "slow" else 0.0)


@pytest.fixture(scope="module")
def judge_server():
    with FakeChatServer(_obey) as server:
        yield server


@pytest.fixture
def judge_url(judge_server):
    return judge_server.base_url


def _judge(url: str, **kw) -> Judge:
    llm = LLMJudgeConfig(base_url=url, model="tiny-judge", timeout_s=0.4, max_attempts=3, backoff_s=0.01, **kw)
    return Judge(JudgeConfig(kind="llm", llm=llm))


async def test_llm_verdicts_and_official_request_shape(judge_server):
    judge = _judge(judge_server.base_url)
    judge_server.requests.clear()
    ok = await judge.judge("Paris [correct]", ["Paris", "Paname"], question="Capital of France?")
    bad = await judge.judge("Paris [incorrect]", ["Rome"], question="Capital of Italy?")
    assert (ok.correct, ok.source) == (True, "llm") and (bad.correct, bad.source) == (False, "llm")
    body = judge_server.requests[0]
    assert body["temperature"] == 0 and body["model"] == "tiny-judge"
    text = body["messages"][0]["content"]
    assert "contains" in text and "Capital of France?" in text and "Paris | Paname" in text
    await judge.aclose()


@pytest.mark.parametrize("mode, rule_says", [("garbage", True), ("5xx", True), ("slow", False)])
async def test_failures_fall_back_to_rule_judge(judge_url, mode, rule_says):
    judge = _judge(judge_url)
    HITS[mode] = 0
    truth = ["Paris"] if rule_says else ["Rome"]
    v = await judge.judge(f"Paris [{mode}]", truth)
    assert v.source == "rule_fallback" and v.answered
    assert v.correct is rule_says  # the rule judge decided, not a silent 0
    assert HITS[mode] == 3  # bounded: max_attempts tries, then fallback
    await judge.aclose()


async def test_transient_error_is_retried(judge_url):
    judge = _judge(judge_url)
    HITS["flaky"] = 0
    v = await judge.judge("x [flaky]", ["y"])
    assert (v.correct, v.source, HITS["flaky"]) == (True, "llm", 2)
    await judge.aclose()


async def test_unreachable_endpoint_falls_back():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    judge = _judge(f"http://127.0.0.1:{port}/v1")
    v = await judge.judge("Paris", ["paris"])
    assert (v.source, v.correct) == ("rule_fallback", True) and "failed" in v.reason
    await judge.aclose()


async def test_concurrency_cap_is_respected(judge_url):
    judge = _judge(judge_url, max_concurrency=2)
    results = await asyncio.gather(*(judge.judge(f"p{i} [correct]", ["p"]) for i in range(8)))
    assert all(r.source == "llm" for r in results)
    assert judge.llm._sem._value == 2  # all permits returned
    await judge.aclose()
