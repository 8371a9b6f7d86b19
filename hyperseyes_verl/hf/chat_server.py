"""`hyperseyes serve-model`: an OpenAI-compatible chat endpoint over a local Qwen-VL checkpoint, on CPU.

It lets `hyperseyes eval` and `hyperseyes prs` talk to a checkpoint that `make train-tiny` (or any stage) wrote,
through the same client code as a vLLM server:
  GET  /v1/models
  POST /v1/chat/completions {model, messages, tools?, temperature, top_p, max_tokens, stop?}
Messages may hold text and `image_url` parts (data URLs); `tool` messages may hold images too, and `tools` is
rendered by the checkpoint's chat template, so a client can send the RL format unchanged. One request runs at
a time (the model is small and the machine has two cores). A local tool: it binds 127.0.0.1 by default.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hyperseyes_verl.utils.images import open_image

MAX_IMAGES = 64


class RequestError(ValueError):
    """The request cannot be served as sent (HTTP 400 with this message)."""


def decode_image_part(part: dict[str, Any]) -> Any:
    url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else part.get("image_url")
    if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
        raise RequestError("image_url parts must be data URLs (data:image/png;base64,...): this server reads no "
                           "remote URLs")
    try:
        return open_image(base64.b64decode(url.split(",", 1)[1], validate=True))
    except (binascii.Error, ValueError, OSError) as e:
        raise RequestError(f"an image_url part is not a readable image ({e})") from None


def to_template_messages(messages: Any) -> tuple[list[dict[str, Any]], list]:
    """OpenAI wire messages -> chat-template messages with PIL image blocks, and the images in order."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list")
    out, images = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            raise RequestError(f"messages[{i}] needs a role of system/user/assistant/tool, got {str(m)[:80]!r}")
        content = m.get("content")
        if content is None or isinstance(content, str):
            out.append({"role": m["role"], "content": content or ""})
            continue
        if not isinstance(content, list):
            raise RequestError(f"messages[{i}].content must be a string or a list of parts")
        blocks = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                blocks.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind == "image_url":
                images.append(decode_image_part(part))
                blocks.append({"type": "image", "image": images[-1]})
            else:
                raise RequestError(f"messages[{i}] has a part of type {kind!r}; use text or image_url")
        out.append({"role": m["role"], "content": blocks})
    if len(images) > MAX_IMAGES:
        raise RequestError(f"{len(images)} images in one request; at most {MAX_IMAGES}")
    return out, images


class ChatModel:
    """A checkpoint and its processor; `complete` is one chat completion (blocking)."""

    def __init__(self, model_dir: str, name: str | None = None, max_context: int = 16384):
        from hyperseyes_verl.hf.generation import load_vl_model, stop_token_ids

        self.model, self.processor = load_vl_model(model_dir)
        self.name = name or model_dir.rstrip("/").rsplit("/", 1)[-1]
        self.max_context = max_context
        self.stop_ids = stop_token_ids(self.processor)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)

    def generate(self, messages: list[dict[str, Any]], images: list, tools: list | None = None, *,
                 max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0) -> tuple[str, bool, int, int]:
        """One assistant turn after chat-template `messages` (image parts in order of `images`):
        (text, stopped on a stop token, prompt tokens, completion tokens)."""
        from hyperseyes_verl.hf.generation import sample, vision_inputs

        text = self.processor.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        ids = self.processor(text=[text], images=images or None, return_tensors="pt")["input_ids"]
        room = self.max_context - ids.shape[1]
        if room <= 0:
            raise RequestError(f"the prompt has {ids.shape[1]} tokens, over the context of {self.max_context}")
        out = sample(self.model, ids, vision_inputs(self.model, self.processor, images, ids),
                     max_new_tokens=min(max_new_tokens, room), temperature=temperature, top_p=top_p,
                     pad_token_id=self.tokenizer.pad_token_id, stop_ids=self.stop_ids)
        tokens = out.token_ids[:-1] if out.stopped else out.token_ids
        return (self.tokenizer.decode(tokens, skip_special_tokens=False), out.stopped, int(ids.shape[1]),
                len(out.token_ids))

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        import torch

        messages, images = to_template_messages(body.get("messages"))
        if "seed" in body and body["seed"] is not None:
            torch.manual_seed(int(body["seed"]))
        reply, stopped, prompt_tokens, completion_tokens = self.generate(
            messages, images, body.get("tools") or None,
            max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 512),
            temperature=float(body.get("temperature", 1.0)), top_p=float(body.get("top_p", 1.0)))
        finish = "stop" if stopped else "length"
        stops = body.get("stop") or []
        for s in [stops] if isinstance(stops, str) else stops:
            if isinstance(s, str) and s and s in reply:
                reply, finish = reply[: reply.index(s)], "stop"
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}


def create_app(chat: ChatModel) -> FastAPI:
    app = FastAPI(title="hyperseyes serve-model")
    lock = asyncio.Lock()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": chat.name, "object": "model", "owned_by": "local"}]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": {"message": "the body is not JSON"}}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": {"message": "the body must be a JSON object"}}, status_code=400)
        if body.get("model") not in (None, chat.name):
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} is not served here; this "
                                                      f"server has {chat.name!r}"}}, status_code=404)
        try:
            async with lock:  # one generation at a time; the event loop stays free for other requests
                return await asyncio.to_thread(chat.complete, body)
        except RequestError as e:
            return JSONResponse({"error": {"message": str(e)}}, status_code=400)

    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder (config.json, weights, processor)")
    parser.add_argument("--name", default=None, help="model name clients send (default: the folder's name)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--max-context", type=int, default=16384, help="prompt + completion tokens")
    parser.add_argument("--log-level", default="warning")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import uvicorn

    if not (Path(args.model) / "config.json").is_file():
        print(f"error: --model {args.model!r} is not a checkpoint folder (no config.json)", file=sys.stderr)
        return 2
    chat = ChatModel(args.model, args.name, args.max_context)
    print(f"serving {chat.name!r} on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_app(chat), host=args.host, port=args.port, log_level=args.log_level)
    return 0
