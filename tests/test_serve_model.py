"""`hyperseyes serve-model`: a local checkpoint behind an OpenAI-compatible endpoint, driven by the project's own
client and episode runner (what `hyperseyes eval` / `prs` use against vLLM)."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from PIL import Image

from hyperseyes_verl.episode.runner import SamplingParams, run_episode
from hyperseyes_verl.hf.chat_server import ChatModel, create_app
from hyperseyes_verl.search.base import Hit, InMemoryBackend
from hyperseyes_verl.testing.local_server import LocalServer
from hyperseyes_verl.ugs.conversation import chat_tools
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.types import UGSConfig
from hyperseyes_verl.utils.openai_chat import EndpointConfig, OpenAIChatClient, image_data_url, payload_json

pytestmark = pytest.mark.slow  # serves a tiny checkpoint


@pytest.fixture(scope="module")
def served(tiny_qwen25_dir):
    chat = ChatModel(tiny_qwen25_dir, name="tiny")
    with LocalServer(create_app(chat)) as server:
        yield chat, f"{server.url}/v1"


def _image_part(color=(200, 30, 30)):
    return {"type": "image_url", "image_url": {"url": image_data_url(Image.new("RGB", (56, 56), color))}}


def test_chat_completion_renders_tools_and_tool_images(served):
    chat, url = served
    messages = [{"role": "system", "content": "You search."},
                {"role": "user", "content": [_image_part(), {"type": "text", "text": "Which tower?"}]},
                {"role": "assistant", "content": "<reason>look</reason>"},
                {"role": "tool", "content": [_image_part((0, 90, 200)), {"type": "text", "text": "img_1: a crop"}]}]
    body = {"model": "tiny", "messages": messages, "tools": chat_tools(), "temperature": 0, "max_tokens": 12}
    r = httpx.post(f"{url}/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    data = r.json()
    choice = data["choices"][0]
    assert isinstance(choice["message"]["content"], str) and choice["finish_reason"] in ("stop", "length")
    assert 1 <= data["usage"]["completion_tokens"] <= 12
    # the prompt the server built is the checkpoint's chat template over both images and the tools block
    template_msgs = [{"role": "system", "content": "You search."},
                     {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which tower?"}]},
                     {"role": "assistant", "content": "<reason>look</reason>"},
                     {"role": "tool", "content": [{"type": "image"}, {"type": "text", "text": "img_1: a crop"}]}]
    text = chat.processor.apply_chat_template(template_msgs, tools=chat_tools(), add_generation_prompt=True,
                                              tokenize=False)
    assert "# Tools" in text and "<tool_response>" in text
    ids = chat.processor(text=[text], images=[Image.new("RGB", (56, 56))] * 2, return_tensors="pt")["input_ids"]
    assert data["usage"]["prompt_tokens"] == ids.shape[1]
    again = httpx.post(f"{url}/chat/completions", json=body, timeout=120).json()
    assert again["choices"][0]["message"]["content"] == choice["message"]["content"]  # greedy is deterministic


@pytest.mark.parametrize("body,status,words", [
    ({"model": "other", "messages": [{"role": "user", "content": "hi"}]}, 404, "'tiny'"),
    ({"model": "tiny", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]}, 400, "data URLs"),
    ({"model": "tiny", "messages": []}, 400, "non-empty"),
    ({"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
])
def test_bad_requests_get_a_clear_4xx(served, body, status, words):
    r = httpx.post(f"{served[1]}/chat/completions", json=body, timeout=60)
    assert r.status_code == status and words in r.json()["error"]["message"], r.text


def test_an_episode_runs_through_the_projects_client_and_runner(served):
    _, url = served

    async def go():
        async with OpenAIChatClient(EndpointConfig(base_url=url, api_key_env=None, timeout_s=60)) as client:
            image = Image.new("RGB", (112, 84), (120, 120, 40))
            backend = InMemoryBackend(text={"tower": [Hit("Red Tower", "Red Tower rises 300 metres.", score=0.9)]})
            env = SearchEnvironment(backend, "Which tower?", [image], UGSConfig(max_tool_rounds=1, max_turns=2))
            return await run_episode(client, "tiny", env, "Which tower?", [image], SamplingParams(max_tokens=16))

    rec = asyncio.run(go())
    # a random model answers nothing useful, but every turn was a real completion with its token count
    assert rec.endpoint_errors == [] and len(rec.turn_finish_reasons) >= 1 and not rec.tokens_estimated
    assert rec.generated_tokens >= len(rec.turn_finish_reasons)


def test_chat_template_wire_sends_the_rl_text_and_openai_wire_does_not(served):
    """`--wire chat_template`: observations stay tool messages (images included) and the tool schemas go along,
    so a server rendering the chat template builds the RL stage's text; the default wire keeps plain OpenAI."""
    seen = []

    class Recording(OpenAIChatClient):
        async def chat(self, model, messages, **sampling):
            seen.append(json.loads(payload_json(model, messages, sampling)))
            return await super().chat(model, messages, **sampling)

    async def go(wire, tool_schemas=True):
        async with Recording(EndpointConfig(base_url=served[1], api_key_env=None, timeout_s=60)) as client:
            image = Image.new("RGB", (112, 84), (120, 120, 40))
            env = SearchEnvironment(InMemoryBackend(text={}), "Which tower?", [image],
                                    UGSConfig(max_tool_rounds=1, max_turns=2, tool_schemas=tool_schemas))
            # an assistant turn the environment executes regardless of what the random model writes
            env_step = env.step

            async def scripted_step(text):
                return await env_step('<reason>x</reason><tool_call>{"name": "image_search", "arguments": '
                                      '{"image_id": "img_0", "area": [[0, 0, 0.5, 0.5]]}}</tool_call>')
            env.step = scripted_step
            return await run_episode(client, "tiny", env, "Which tower?", [image], SamplingParams(max_tokens=4),
                                     wire=wire)

    asyncio.run(go("chat_template"))
    last = seen[-1]
    assert [t["function"]["name"] for t in last["tools"]] == [t["function"]["name"] for t in chat_tools()]
    tool_msgs = [m for m in last["messages"] if m["role"] == "tool"]
    assert tool_msgs and any(p.get("type") == "image_url" for p in tool_msgs[0]["content"])
    seen.clear()
    asyncio.run(go("openai"))
    assert "tools" not in seen[-1] and not any(m["role"] == "tool" for m in seen[-1]["messages"])
    seen.clear()
    asyncio.run(go("chat_template", tool_schemas=False))  # the environment the tiny recipe trains in
    assert "tools" not in seen[-1] and any(m["role"] == "tool" for m in seen[-1]["messages"])
