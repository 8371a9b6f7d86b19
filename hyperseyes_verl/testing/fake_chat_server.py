"""A local OpenAI-compatible chat server with scripted replies (tests of PRS, eval, synth, the LLM judge).

    with FakeChatServer(EpisodeScript({"tallest": [["<tool_call>...", "<answer>A</answer>"]]})) as srv:
        client = OpenAIChatClient(EndpointConfig(base_url=srv.base_url, max_attempts=2, backoff_s=0))

`FakeChatServer(responder)` runs FastAPI + uvicorn in a background thread on a free port;
`responder(request_json) -> Reply | str` decides each reply (`str` = content, finish "stop").
`Reply` can also be an HTTP error (`status`), a delay (for client timeouts) or a reply without usage.
Every request is kept in `server.requests`. `ScriptedChatClient(responder)` plays the same responders in
process, behind the `chat()` of `OpenAIChatClient` (no HTTP: for tests that only need the replies).

`EpisodeScript` answers multi-turn episodes: it picks a script by a substring of the first user
message, counts episodes per script (a request with no assistant message starts a new episode) and
plays turn t of episode e as `episodes[e][t]` (the last episode repeats; past its end it answers
`fallback`). This is what "budget 1 -> wrong, budget 2 -> right" needs: PRS runs a prompt's budgets
one after another.
"""
from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hyperseyes_verl.testing.local_server import LocalServer
from hyperseyes_verl.utils.openai_chat import ChatReply, EndpointError, tool_calls_text


@dataclass
class Reply:
    content: str = ""
    finish_reason: str = "stop"
    completion_tokens: int | None = -1  # -1: count words of content; None: omit `usage`
    status: int = 200  # != 200: reply with this HTTP status and an error body
    delay_s: float = 0.0
    tool_calls: list[dict[str, Any]] | None = None  # structured calls (content then null), as vLLM's tool parser


Responder = Callable[[dict[str, Any]], "Reply | str"]


def _reply(responder: Responder, request: dict[str, Any]) -> Reply:
    reply = responder(request)
    return Reply(reply) if isinstance(reply, str) else reply


def _completion_tokens(reply: Reply) -> int | None:
    return len(reply.content.split()) if reply.completion_tokens == -1 else reply.completion_tokens


def first_user_text(request: dict[str, Any]) -> str:
    for m in request.get("messages", []):
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else " ".join(b.get("text", "") for b in c if b.get("type") == "text")
    return ""


def n_assistant(request: dict[str, Any]) -> int:
    return sum(m.get("role") == "assistant" for m in request.get("messages", []))


def n_images(request: dict[str, Any]) -> int:
    return sum(1 for m in request.get("messages", []) if isinstance(m.get("content"), list)
               for b in m["content"] if b.get("type") == "image_url")


class EpisodeScript:
    """Scripted multi-turn episodes keyed by a substring of the first user message (thread-safe)."""

    def __init__(self, scripts: dict[str, list[list["Reply | str"]]], fallback: "Reply | str" = "<answer>?</answer>"):
        self.scripts = scripts
        self.fallback = fallback
        self.episode_counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> "Reply | str":
        text = first_user_text(request)
        key = next((k for k in self.scripts if k in text), None)
        if key is None:
            return self.fallback
        turn = n_assistant(request)
        with self._lock:
            if turn == 0:
                self.episode_counts[key] = self.episode_counts.get(key, 0) + 1
            episode = max(0, self.episode_counts.get(key, 1) - 1)
        episodes = self.scripts[key]
        replies = episodes[min(episode, len(episodes) - 1)]
        return replies[turn] if turn < len(replies) else self.fallback


class FakeChatServer:
    def __init__(self, responder: Responder):
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._chat)
        self._server: LocalServer | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        reply = _reply(self.responder, body)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200:
            return JSONResponse({"error": {"message": f"scripted HTTP {reply.status}"}}, status_code=reply.status)
        out: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "model": body.get("model", ""),
            "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                         "message": {"role": "assistant", "content": reply.content or None if reply.tool_calls
                                     else reply.content, **({"tool_calls": reply.tool_calls} if reply.tool_calls else {})}}],
        }
        if reply.completion_tokens is not None:
            out["usage"] = {"prompt_tokens": len(json.dumps(body["messages"])) // 4,
                            "completion_tokens": _completion_tokens(reply)}
        return JSONResponse(out)

    def start(self) -> "FakeChatServer":
        self._server = LocalServer(self.app).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> "FakeChatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ScriptedChatClient:
    """A responder (`EpisodeScript`, a function) behind `OpenAIChatClient.chat`, in process. A `Reply` with an
    HTTP status raises the `EndpointError` the real client would raise after its retries."""

    def __init__(self, responder: Responder):
        self.responder = responder
        self.requests: list[dict[str, Any]] = []

    async def chat(self, model: str, messages: list[dict[str, Any]], **sampling: Any) -> ChatReply:
        request = {"model": model, "messages": list(messages), **sampling}
        self.requests.append(request)
        reply = _reply(self.responder, request)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200:
            kind = "rate_limited" if reply.status == 429 else "server_error" if reply.status >= 500 else "http_status"
            raise EndpointError(kind, f"scripted HTTP {reply.status}", reply.status)
        return ChatReply(text=reply.content + tool_calls_text(reply.tool_calls), finish_reason=reply.finish_reason,
                         completion_tokens=_completion_tokens(reply))

    async def aclose(self) -> None:
        pass
