"""A small async client for OpenAI-compatible chat endpoints (vLLM, SGLang, hosted APIs).

`POST {base_url}/chat/completions`. Messages may carry PIL images as `{"type": "image", "image": PIL}`
blocks (the environment's form); they are sent as base64 JPEG data URLs in `image_url` blocks (quality 95,
4:4:4 chroma: visually lossless, ~50x faster to encode than PNG and ~4x smaller; see `image_data_url`).
Payloads are encoded to JSON bytes off the event loop, in a small encoder pool; messages built with
`wire_message` carry their own JSON, so a turn that re-sends 50 images re-serialises none of them.
Timeouts, connection errors, 5xx and 429 are retried with exponential back-off up to
`max_attempts`; then, like any other failure, they raise a typed `EndpointError` the caller counts.
The API key is read from the environment variable named in the config, never from a flag.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

EndpointErrorKind = Literal["timeout", "refused", "http_status", "rate_limited", "server_error", "bad_payload"]
_RETRYABLE = {"timeout", "refused", "rate_limited", "server_error"}


class EndpointConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible root, ending before /chat")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the API key (may be "
                                    "unset: no Authorization header); None: never send a key")
    timeout_s: float = Field(120.0, gt=0, allow_inf_nan=False, description="per request")
    max_attempts: int = Field(4, ge=1, description="tries per request for timeouts, connection errors, 5xx, 429")
    backoff_s: float = Field(0.5, ge=0, allow_inf_nan=False, description="first back-off; doubles per retry")
    max_backoff_s: float = Field(8.0, ge=0, allow_inf_nan=False, description="cap of one back-off")
    max_connections: int = Field(64, ge=1, description="HTTP connection pool size")
    deadline_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="one call, every attempt and "
                                     "back-off included (a server that drips bytes never trips the per-read timeout); "
                                     "None = timeout_s x max_attempts + max_backoff_s x (max_attempts - 1)")

    @property
    def call_deadline_s(self) -> float:
        if self.deadline_s is not None:
            return self.deadline_s
        return self.timeout_s * self.max_attempts + self.max_backoff_s * (self.max_attempts - 1)


class EndpointError(Exception):
    """A chat request that did not produce a reply (after retries, where retrying makes sense)."""

    def __init__(self, kind: EndpointErrorKind, message: str, status: int | None = None):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message, self.status = kind, message, status

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE


@dataclass
class ChatReply:
    text: str
    finish_reason: str  # "stop" | "length" | ... as the endpoint says
    completion_tokens: int | None  # from `usage`; None when the endpoint does not report it
    prompt_tokens: int | None = None
    attempts: int = 1
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


# JPEG at quality 95 with full-resolution chroma: PSNR ~48 dB on a photo, ~39 dB on a sensor-noisy texture
# (bench/bench_runner_encoding.py), i.e. visually lossless for the model reading the crop, at 3-5 ms and
# ~0.3-0.6 MB for a 1000 px crop where PNG took 90-450 ms and 1.3-1.9 MB. Deterministic for a given pixel array,
# which eval's spec keys rely on (they hash the data URL).
IMAGE_FORMAT = "JPEG"
IMAGE_QUALITY = 95
_MIME = "image/jpeg"


def image_data_url(image: Image.Image) -> str:
    """The data URL an image is sent as (CPU-bound: call it off the event loop, see `encoder_pool`)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format=IMAGE_FORMAT, quality=IMAGE_QUALITY, subsampling=0)
    return f"data:{_MIME};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def encoder_pool() -> ThreadPoolExecutor:
    """The process's image / payload encoder threads: their own pool, so encoding neither blocks the event loop
    nor queues behind (or delays) other work in asyncio's default executor. PIL releases the GIL while encoding."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="hyperseyes-encode")
        return _POOL


class WireMessage(dict):
    """A wire-form message (`{"role", "content"}`) that carries its own JSON encoding in `.encoded`, computed once;
    the payload of every later turn reuses it. Treat it as immutable."""

    encoded: bytes


def _block_json(block: dict[str, Any]) -> bytes:
    inner = block.get("image_url") if block.get("type") == "image_url" and len(block) == 2 else None
    url = inner.get("url") if isinstance(inner, dict) and len(inner) == 1 else None
    if isinstance(url, str) and url.startswith("data:") and url.isascii() and url.isprintable() and '"' not in url \
            and "\\" not in url:
        # a base64 data URL needs no JSON escaping: splice it in instead of scanning megabytes in json.dumps
        return b'{"type": "image_url", "image_url": {"url": "' + url.encode("ascii") + b'"}}'
    return json.dumps(block).encode()


def wire_message(role: str, content: str | list[dict[str, Any]]) -> WireMessage:
    """A `WireMessage` (content: a string or wire-form blocks, images already data URLs)."""
    msg = WireMessage(role=role, content=content)
    if isinstance(content, str):
        msg.encoded = json.dumps(msg).encode()
    else:
        msg.encoded = (b'{"role": ' + json.dumps(role).encode() + b', "content": ['
                    + b", ".join(_block_json(b) for b in content) + b"]}")
    return msg


def payload_json(model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> bytes:
    """The request body: `messages` in wire form (`to_openai_messages`), a `WireMessage` by its stored JSON."""
    parts = [m.encoded if isinstance(m, WireMessage) else json.dumps(to_openai_messages([m])[0]).encode()
             for m in messages]
    head = json.dumps({"model": model, **{k: v for k, v in sampling.items() if v is not None}})
    return head[:-1].encode() + b', "messages": [' + b", ".join(parts) + b"]}"


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Environment-form messages -> OpenAI wire form (images become data URLs; tool role becomes user)."""
    out = []
    for m in messages:
        role = "user" if m["role"] == "tool" else m["role"]
        content = m["content"]
        if isinstance(content, list):
            blocks = []
            for b in content:
                if b.get("type") == "image":
                    img = b["image"]
                    if not isinstance(img, Image.Image):
                        raise TypeError(f"image block holds {type(img).__name__}, expected a PIL image")
                    blocks.append({"type": "image_url", "image_url": {"url": image_data_url(img)}})
                elif b.get("type") == "text":
                    blocks.append({"type": "text", "text": b["text"]})
                else:
                    blocks.append(b)  # already wire form (image_url)
            content = blocks
        out.append({"role": role, "content": content})
    return out


def tool_calls_text(tool_calls: Any) -> str:
    """Structured `tool_calls` (what vLLM / SGLang return when a tool parser is on: `content` null) as the
    `<tool_call>{"name": …, "arguments": …}</tool_call>` text the UGS parser reads, so they count as calls.
    Arguments that are not valid JSON are passed through raw: the parser then reports them as a bad call."""
    out = ""
    for call in tool_calls if isinstance(tool_calls, list) else []:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        if not isinstance(fn, dict):
            continue
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                out += f'<tool_call>{{"name": {json.dumps(fn.get("name"))}, "arguments": {args}}}</tool_call>'
                continue
        out += "<tool_call>" + json.dumps({"name": fn.get("name"), "arguments": args}) + "</tool_call>"
    return out


def _message_text(message: Any) -> str:
    """The reply text of `choices[0].message`: `content` (a string, null, or a list of text parts) plus its
    structured tool calls; any other type is a `bad_payload` (never a TypeError in the caller)."""
    if not isinstance(message, dict):
        raise EndpointError("bad_payload", f"choices[0].message is {type(message).__name__}, expected an object")
    content = message.get("content")
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...] (some servers)
        if not all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
            raise EndpointError("bad_payload", f"choices[0].message.content is a list that is not text parts: "
                                               f"{str(content)[:200]}")
        content = "".join(p.get("text", "") for p in content)
    elif content is not None and not isinstance(content, str):
        raise EndpointError("bad_payload", f"choices[0].message.content is {type(content).__name__} "
                                           f"({str(content)[:80]}), expected a string")
    return (content or "") + tool_calls_text(message.get("tool_calls"))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class OpenAIChatClient:
    """Async chat client. Share one per process; it is safe under concurrent calls."""

    def __init__(self, config: EndpointConfig, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=config.max_connections)
        self._http = httpx.AsyncClient(base_url=config.base_url.rstrip("/"), headers=headers, limits=limits,
                                       timeout=config.timeout_s, transport=transport)

    async def __aenter__(self) -> "OpenAIChatClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _once(self, body: bytes) -> dict[str, Any]:
        try:
            resp = await self._http.post("/chat/completions", content=body,
                                         headers={"Content-Type": "application/json"})
        except httpx.TimeoutException as e:
            raise EndpointError("timeout", f"no reply within {self.config.timeout_s}s ({type(e).__name__})") from e
        except httpx.DecodingError as e:  # e.g. a gzip body that is not gzip
            raise EndpointError("bad_payload", f"reply body cannot be decoded ({e})") from e
        except httpx.RequestError as e:
            raise EndpointError("refused", f"{self.config.base_url}: {e!r}") from e
        if resp.status_code == 429:
            raise EndpointError("rate_limited", resp.text[:200], resp.status_code)
        if resp.status_code >= 500:
            raise EndpointError("server_error", f"HTTP {resp.status_code}: {resp.text[:200]}", resp.status_code)
        if resp.status_code >= 400:
            raise EndpointError("http_status", f"HTTP {resp.status_code}: {resp.text[:300]}", resp.status_code)
        try:
            return resp.json()
        except (ValueError, RecursionError) as e:  # RecursionError: JSON nested deeper than the decoder recurses
            raise EndpointError("bad_payload", f"reply is not JSON ({type(e).__name__}): {resp.text[:200]!r}") from e

    async def chat(self, model: str, messages: list[dict[str, Any]], **sampling: Any) -> ChatReply:
        """One completion. `sampling` goes into the payload as is (temperature, top_p, max_tokens, seed, stop).
        Raises `EndpointError` (kind `timeout` past `config.call_deadline_s`, all attempts together)."""
        attempts = [0]
        try:  # wait_for, not asyncio.timeout: Python 3.10 is supported
            return await asyncio.wait_for(self._chat(model, messages, sampling, attempts), self.config.call_deadline_s)
        except asyncio.TimeoutError:
            raise EndpointError("timeout", f"no complete reply within the call deadline of "
                                           f"{self.config.call_deadline_s:g}s ({attempts[0]} attempt(s))") from None

    async def _chat(self, model: str, messages: list[dict[str, Any]], sampling: dict[str, Any],
                    attempts_box: list[int]) -> ChatReply:
        # built off the loop (images of environment-form messages are encoded there too), once for every attempt
        body = await asyncio.get_running_loop().run_in_executor(encoder_pool(), payload_json, model, messages, sampling)
        c = self.config
        attempts = 0
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(c.max_attempts),
            wait=wait_exponential(multiplier=c.backoff_s, max=c.max_backoff_s),
            retry=retry_if_exception(lambda e: isinstance(e, EndpointError) and e.retryable),
            reraise=True,
        ):
            with attempt:
                attempts += 1
                attempts_box[0] = attempts
                data = await self._once(body)
        try:
            choice = data["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError) as e:
            raise EndpointError("bad_payload", f"no choices[0].message in reply: {str(data)[:200]}") from e
        text = _message_text(message)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
        return ChatReply(text=text, finish_reason=finish if isinstance(finish, str) and finish else "stop",
                         completion_tokens=_count(usage.get("completion_tokens")),
                         prompt_tokens=_count(usage.get("prompt_tokens")), attempts=attempts, raw=data)
