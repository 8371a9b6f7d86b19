"""Issue 13, item 5: the chat client shared by the LLM judge, eval and PRS has one deadline per call (a server
that drips bytes never trips the per-read timeout) and type-checks the reply; the judge falls back to the
rule judge and says so (`Verdict.source`). A real local server on 127.0.0.1, hand-written rather than
`FakeChatServer`: it must misbehave below the JSON level (drip bytes, wrong types, undecodable nesting)."""
from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from hyperseyes_verl.judge import Judge, JudgeConfig, LLMJudgeConfig
from hyperseyes_verl.testing.local_server import LocalServer
from hyperseyes_verl.utils.openai_chat import EndpointConfig, EndpointError, OpenAIChatClient

DRIP = {"sent": 0, "total": 0}


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        prompt = json.dumps(body["messages"])
        if "[drip]" in prompt:  # a valid reply, one byte every 0.25 s (about 20 s in all)
            reply = json.dumps({"choices": [{"message": {"content": "Correct"}}]}).encode()
            DRIP.update(sent=0, total=len(reply))

            async def drip():
                for i in range(len(reply)):
                    DRIP["sent"] += 1
                    yield reply[i:i + 1]
                    await asyncio.sleep(0.25)

            return StreamingResponse(drip(), media_type="application/json")
        content = {"[int]": 5, "[list]": ["Correct"], "[dict]": {"text": "Correct"},
                   "[parts]": [{"type": "text", "text": "Correct"}], "[null]": None}
        for tag, value in content.items():
            if tag in prompt:
                return {"choices": [{"message": {"content": value}, "finish_reason": 7}], "usage": "many"}
        if "[deep]" in prompt:
            return Response("[" * 100_000 + "]" * 100_000, media_type="application/json")
        return {"choices": [{"message": {"content": "Incorrect"}}]}

    return app


@pytest.fixture(scope="module")
def url():
    with LocalServer(_app()) as server:
        yield f"{server.url}/v1"


def _judge(url: str, **kw) -> Judge:
    llm = LLMJudgeConfig(base_url=url, model="j", timeout_s=0.5, max_attempts=2, backoff_s=0.01, **kw)
    return Judge(JudgeConfig(kind="llm", llm=llm))


async def test_a_dripping_judge_endpoint_hits_the_deadline_and_falls_back(url):
    judge = _judge(url, deadline_s=1.0)
    verdict = await judge.judge("Paris [drip]", ["Paris"])
    assert verdict.source == "rule_fallback" and verdict.correct and "within 1s" in verdict.reason
    assert DRIP["sent"] < DRIP["total"]  # the verdict came while the server was still dripping
    await judge.aclose()


@pytest.mark.parametrize("tag", ["[int]", "[list]", "[dict]"])
async def test_a_non_string_content_falls_back_never_raises(url, tag):
    judge = _judge(url)
    verdict = await judge.judge(f"Paris {tag}", ["Rome"])
    assert verdict.source == "rule_fallback" and verdict.correct is False  # the rule judge decided
    assert "content" in verdict.reason
    await judge.aclose()


async def test_text_parts_content_is_read_as_text(url):
    judge = _judge(url)
    verdict = await judge.judge("Paris [parts]", ["Rome"])
    assert (verdict.source, verdict.correct) == ("llm", True)
    await judge.aclose()


async def test_client_reply_fields_are_type_checked(url):
    async with OpenAIChatClient(EndpointConfig(base_url=url, api_key_env=None, max_attempts=1)) as client:
        reply = await client.chat("m", [{"role": "user", "content": "[null]"}])
        assert (reply.text, reply.finish_reason, reply.completion_tokens) == ("", "stop", None)
        for tag in ("[int]", "[deep]"):
            with pytest.raises(EndpointError) as e:
                await client.chat("m", [{"role": "user", "content": tag}])
            assert e.value.kind == "bad_payload"


async def test_client_call_deadline_is_a_timeout_error(url):
    cfg = EndpointConfig(base_url=url, api_key_env=None, timeout_s=0.5, max_attempts=3, deadline_s=0.8)
    async with OpenAIChatClient(cfg) as client:
        with pytest.raises(EndpointError) as e:
            await client.chat("m", [{"role": "user", "content": "[drip]"}])
    assert e.value.kind == "timeout" and "deadline of 0.8s" in e.value.message
    assert EndpointConfig(timeout_s=10, max_attempts=3, max_backoff_s=2).call_deadline_s == 34.0
