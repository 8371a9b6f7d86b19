"""LLM judge over any OpenAI-compatible endpoint (`POST {base_url}/chat/completions`).

Official semantics (HyperEyes release): the judge is asked whether the prediction *contains* the
ground truth and answers `Correct` or `Incorrect`, at temperature 0. Transport errors, 5xx/429,
timeouts and unparsable replies are retried within bounds (tenacity), then raised as
`JudgeFailure` so the caller can fall back and count it; a failure never becomes a silent 0.
"""
from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from hyperseyes_verl.judge.types import JudgeFailure

DEFAULT_PROMPT = (
    "You grade answers to a question. Decide whether the prediction contains the ground-truth answer "
    "(or one of the accepted answers), allowing for paraphrase, aliases and formatting differences.\n\n"
    "Question: {question}\nAccepted answers: {answers}\nPrediction: {prediction}\n\n"
    "Reply with exactly one word: Correct or Incorrect."
)
_VERDICT = re.compile(r"\b(in)?correct\b", re.IGNORECASE)


class LLMJudgeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible API root (…/v1)")
    model: str = Field("judge", description="model name sent in the request")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key "
                                    "(the key itself never goes into configs)")
    timeout_s: float = Field(30.0, gt=0, allow_inf_nan=False, description="per request")
    max_attempts: int = Field(3, ge=1, le=20, description="tries per verdict before falling back")
    backoff_s: float = Field(0.5, ge=0, allow_inf_nan=False, description="first retry delay; doubles, capped at 8 s")
    max_concurrency: int = Field(16, ge=1, description="requests in flight per process")
    max_tokens: int = Field(8, ge=1, description="the reply is one word")
    prompt: str = Field(DEFAULT_PROMPT, description="template with {question}, {answers}, {prediction}")


def parse_verdict(text: str) -> bool:
    """`Correct` -> True, `Incorrect` -> False; anything else (both, neither) raises JudgeFailure."""
    found = {m.group(1) is None for m in _VERDICT.finditer(text or "")}
    if len(found) != 1:
        raise JudgeFailure(f"unparsable judge reply {text[:80]!r}: expected exactly one of Correct / Incorrect")
    return found.pop()


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code >= 500 or code == 429
    return isinstance(exc, (httpx.TransportError, JudgeFailure))


class LLMJudge:
    """One per process; owns an httpx client and a concurrency cap."""

    def __init__(self, config: LLMJudgeConfig):
        self.config = config
        self._client: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # clients are bound to one event loop
            headers = {}
            if self.config.api_key_env:
                key = os.environ.get(self.config.api_key_env)
                if not key:
                    raise JudgeFailure(f"environment variable {self.config.api_key_env!r} (judge API key) is not set")
                headers["Authorization"] = f"Bearer {key}"
            self._client = httpx.AsyncClient(base_url=self.config.base_url.rstrip("/"), headers=headers,
                                             timeout=self.config.timeout_s)
            self._sem = asyncio.Semaphore(self.config.max_concurrency)
            self._loop = loop
        return self._client, self._sem

    async def _ask_once(self, question: str, prediction: str, answers: Sequence[str]) -> bool:
        client, sem = self._ensure()
        content = self.config.prompt.format(question=question, answers=" | ".join(answers), prediction=prediction)
        body = {"model": self.config.model, "temperature": 0, "max_tokens": self.config.max_tokens,
                "messages": [{"role": "user", "content": content}]}
        async with sem:
            resp = await client.post("/chat/completions", json=body)
        resp.raise_for_status()
        try:
            reply = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise JudgeFailure(f"malformed chat completion: {resp.text[:120]!r}") from e
        return parse_verdict(reply)

    async def judge(self, question: str, prediction: str, answers: Sequence[str]) -> bool:
        """True/False verdict; raises JudgeFailure after `max_attempts` failed tries."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_attempts),
            wait=wait_exponential(multiplier=self.config.backoff_s, max=8.0),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._ask_once(question, prediction, answers)
        except JudgeFailure:
            raise
        except (httpx.HTTPError, OSError) as e:
            raise JudgeFailure(f"judge endpoint {self.config.base_url} failed: {type(e).__name__}: {e}") from e
        raise JudgeFailure("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
