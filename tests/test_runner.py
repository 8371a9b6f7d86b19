"""The OpenAI-compatible client and the episode runner, against the local fake server."""
from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from hyperseyes_verl.episode.runner import CHARS_PER_TOKEN, SamplingParams, run_episode
from hyperseyes_verl.search.base import Hit, InMemoryBackend
from hyperseyes_verl.testing.fake_chat_server import EpisodeScript, FakeChatServer, Reply, n_images
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.types import UGSConfig
from hyperseyes_verl.utils.openai_chat import EndpointConfig, EndpointError, OpenAIChatClient

SEARCH = ('<reason>find both</reason><tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", '
          '"area": [[0, 0, 0.5, 1], [0.5, 0, 1, 1]]}}</tool_call>'
          '<tool_call>{"name": "text_search", "arguments": {"input": ["red tower height"]}}</tool_call>')
ANSWER = "<reason>done</reason><answer>Red Tower</answer>"


def _client(srv: FakeChatServer, **kw) -> OpenAIChatClient:
    return OpenAIChatClient(EndpointConfig(base_url=srv.base_url, max_attempts=3, backoff_s=0, timeout_s=5, **kw))


def _backend() -> InMemoryBackend:
    return InMemoryBackend(text={"tower": [Hit("Red Tower", "Red Tower rises 300 metres.", score=0.9)]},
                           image_fn=lambda im: [Hit(f"crop {im.width}x{im.height}", "an emblem", score=1.0)])


async def test_episode_record_rounds_images_and_tokens():
    image = Image.new("RGB", (200, 100), (200, 30, 30))
    with FakeChatServer(EpisodeScript({"tallest": [[SEARCH, Reply(ANSWER, completion_tokens=7)]]})) as srv:
        async with _client(srv) as client:
            env = SearchEnvironment(_backend(), "Which is tallest?", [image], UGSConfig(max_tool_rounds=2, max_turns=3))
            rec = await run_episode(client, "teacher", env, "Which is tallest?", [image], SamplingParams(seed=3))
        first, second = srv.requests
    assert rec.answer == "Red Tower" and rec.finish_reason == "answer"
    assert rec.tool_rounds == 1 and rec.searches == 3 and rec.rounds[0]["crops_ok"] == 2
    # the observation is saved as the tool message RL renders (SFT rows are built from it), sent as a user one
    assert [m["role"] for m in rec.messages] == ["system", "user", "assistant", "tool", "assistant"]
    # input image + two crops, referenced (not inlined) in the saved messages
    assert len(rec.images) == 3 and rec.images[1].size == (100, 100)
    refs = [b["ref"] for m in rec.messages if isinstance(m["content"], list)
            for b in m["content"] if b.get("type") == "image"]
    assert refs == [0, 1, 2]
    json.dumps(rec.to_dict())  # serialisable
    assert rec.generated_tokens == len(SEARCH.split()) + 7 and not rec.tokens_estimated
    # wire format: images as data URLs; the observation went back as one user message with the crops
    assert n_images(first) == 1 and n_images(second) == 3
    assert second["messages"][-1]["role"] == "user" and "image_search" in second["messages"][0]["content"]
    assert first["seed"] == 3 and first["temperature"] == 0.0 and first["max_tokens"] == 1524


async def test_missing_usage_falls_back_to_estimate():
    with FakeChatServer(lambda req: Reply(ANSWER, completion_tokens=None)) as srv:
        async with _client(srv) as client:
            env = SearchEnvironment(_backend(), "q?", [], UGSConfig())
            rec = await run_episode(client, "m", env, "q?", [])
    assert rec.tokens_estimated and rec.generated_tokens == math.ceil(len(ANSWER) / CHARS_PER_TOKEN)


async def test_server_errors_are_retried_then_recorded_not_raised():
    calls = {"n": 0}

    def flaky(req):
        calls["n"] += 1
        return Reply(status=503) if calls["n"] <= 2 else Reply(ANSWER)

    with FakeChatServer(flaky) as srv:
        async with _client(srv) as client:
            reply = await client.chat("m", [{"role": "user", "content": "hi"}])
    assert reply.text == ANSWER and reply.attempts == 3

    with FakeChatServer(lambda req: Reply(status=500)) as srv:
        async with _client(srv) as client:
            env = SearchEnvironment(_backend(), "q?", [], UGSConfig())
            rec = await run_episode(client, "m", env, "q?", [])
        assert len(srv.requests) == 3  # max_attempts
    assert rec.finish_reason == "endpoint_error" and rec.answer is None
    assert rec.endpoint_errors[0]["kind"] == "server_error" and rec.endpoint_errors[0]["status"] == 500


async def test_client_errors_are_not_retried_and_timeouts_are_typed():
    with FakeChatServer(lambda req: Reply(status=400)) as srv:
        async with _client(srv) as client:
            with pytest.raises(EndpointError) as err:
                await client.chat("m", [{"role": "user", "content": "hi"}])
        assert len(srv.requests) == 1
    assert err.value.kind == "http_status" and not err.value.retryable
    with FakeChatServer(lambda req: Reply(ANSWER, delay_s=1.0)) as srv:
        client = OpenAIChatClient(EndpointConfig(base_url=srv.base_url, max_attempts=2, backoff_s=0, timeout_s=0.2))
        with pytest.raises(EndpointError) as err:
            await client.chat("m", [{"role": "user", "content": "hi"}])
        await client.aclose()
        assert len(srv.requests) == 2
    assert err.value.kind == "timeout"


async def test_api_key_comes_from_the_named_env_var(monkeypatch):
    seen = {}

    def responder(req):
        return Reply(ANSWER)

    with FakeChatServer(responder) as srv:

        @srv.app.middleware("http")
        async def grab(request, call_next):  # noqa: ANN001
            seen["auth"] = request.headers.get("authorization")
            return await call_next(request)

        monkeypatch.setenv("MY_KEY", "sk-test")
        async with OpenAIChatClient(EndpointConfig(base_url=srv.base_url, api_key_env="MY_KEY")) as client:
            await client.chat("m", [{"role": "user", "content": "hi"}])
    assert seen["auth"] == "Bearer sk-test"


async def test_each_image_is_encoded_once_however_many_turns_resend_it(monkeypatch):
    import hyperseyes_verl.episode.runner as runner

    encoded = []
    real = runner.image_data_url
    monkeypatch.setattr(runner, "image_data_url", lambda im: encoded.append(im.size) or real(im))
    image = Image.new("RGB", (200, 100), (200, 30, 30))
    with FakeChatServer(EpisodeScript({"tallest": [[SEARCH, SEARCH, ANSWER]]})) as srv:
        async with _client(srv) as client:
            env = SearchEnvironment(_backend(), "Which is tallest?", [image], UGSConfig(max_tool_rounds=3, max_turns=4))
            rec = await run_episode(client, "m", env, "Which is tallest?", [image])
        assert [n_images(r) for r in srv.requests] == [1, 3, 5]  # every turn re-sends every image so far
    assert rec.answer == "Red Tower" and len(rec.images) == 5
    assert encoded == [im.size for im in rec.images]  # ...but each one was encoded exactly once


async def test_images_and_payloads_are_encoded_off_the_event_loop(monkeypatch):
    """Encoding a crop or serialising a payload of dozens of them takes long enough to stall every other episode:
    both must run in another thread, and the body must say exactly what the messages say."""
    import threading

    import hyperseyes_verl.utils.openai_chat as oc
    import hyperseyes_verl.episode.runner as runner

    threads = {"encode": set(), "payload": set()}
    real_encode, real_payload = runner.image_data_url, oc.payload_json

    def encode(im):
        threads["encode"].add(threading.get_ident())
        return real_encode(im)

    def payload(*args):
        threads["payload"].add(threading.get_ident())
        return real_payload(*args)

    monkeypatch.setattr(runner, "image_data_url", encode)
    monkeypatch.setattr(oc, "payload_json", payload)
    image = Image.new("RGB", (200, 100), (200, 30, 30))
    with FakeChatServer(EpisodeScript({"tallest": [[SEARCH, ANSWER]]})) as srv:
        async with _client(srv) as client:
            loop_thread = threading.get_ident()
            env = SearchEnvironment(_backend(), "Which is tallest?", [image], UGSConfig(max_tool_rounds=2, max_turns=3))
            rec = await run_episode(client, "m", env, "Which is tallest?", [image])
            plain = await client.chat("m", [{"role": "tool", "content": [{"type": "text", "text": "see"},
                                                                         {"type": "image", "image": image}]}])
        last = srv.requests[-2]
    assert rec.answer == "Red Tower" and plain.text
    assert threads["encode"] and threads["payload"] and loop_thread not in threads["encode"] | threads["payload"]
    # the spliced body parses to the wire form a plain json.dumps of the same messages gives
    assert last["messages"][2] == {"role": "assistant", "content": SEARCH}
    assert [b["type"] for b in last["messages"][3]["content"]].count("image_url") == 2
    assert srv.requests[-1]["messages"][0]["role"] == "user"  # environment form: tool -> user, image encoded


def test_wire_message_json_equals_json_dumps_and_the_image_stays_faithful():
    import base64
    import io

    import numpy as np

    from hyperseyes_verl.utils.openai_chat import image_data_url, payload_json, wire_message

    yy, xx = np.mgrid[0:300, 0:400]
    px = np.stack([xx * 255 // 400, yy * 255 // 300, (xx + yy) % 256], -1).astype(np.uint8)
    image = Image.fromarray(px)
    url = image_data_url(image)
    assert url == image_data_url(image)  # deterministic: eval's spec keys hash it
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"), np.float64)
    assert decoded.shape == px.shape and np.abs(decoded - px).mean() < 2.0  # visually lossless
    content = [{"type": "text", "text": 'quote " and \\ and \u00e9'},
               {"type": "image_url", "image_url": {"url": url}},
               {"type": "image_url", "image_url": {"url": "data:x,\"odd\\"}},  # needs escaping: not spliced
               {"type": "image_url", "image_url": {"url": url, "detail": "high"}}]
    msgs = [wire_message("user", content), wire_message("assistant", "ok \n"), {"role": "tool", "content": "r"}]
    body = json.loads(payload_json("m", msgs, {"temperature": 0.5, "seed": None}))
    assert body == {"model": "m", "temperature": 0.5, "messages": [{"role": "user", "content": content},
                                                                   {"role": "assistant", "content": "ok \n"},
                                                                   {"role": "user", "content": "r"}]}
