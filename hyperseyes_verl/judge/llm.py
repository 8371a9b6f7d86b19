"""LLM judge over any OpenAI-compatible endpoint (`POST {base_url}/chat/completions`).

Official semantics (HyperEyes release): the judge is asked whether the prediction *contains* the
ground truth and answers `Correct` or `Incorrect`, at temperature 0. Transport, timeout, 5xx/429 retries
and error typing are the shared `hyperseyes_verl.agent.openai_client` ones; on top of them an unparsable
reply is re-asked (same bound). Whatever still fails is raised as `JudgeFailure` so the caller falls
back and counts it; a failure never becomes a silent 0.
"""
from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from hyperseyes_verl.agent.openai_client import EndpointConfig, EndpointError, OpenAIChatClient
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
    deadline_s: float = Field(60.0, gt=0, allow_inf_nan=False, description="one verdict, every request, retry and "
                              "re-ask included; past it the rule judge decides (counted as a fallback)")
    prompt: str = Field(DEFAULT_PROMPT, description="template with {question}, {answers}, {prediction}")


def parse_verdict(text: str) -> bool:
    """`Correct` -> True, `Incorrect` -> False; anything else (both, neither, not a string) raises JudgeFailure."""
    if not isinstance(text, str):
        raise JudgeFailure(f"judge reply is {type(text).__name__}, expected text")
    found = {m.group(1) is None for m in _VERDICT.finditer(text or "")}
    if len(found) != 1:
        raise JudgeFailure(f"unparsable judge reply {text[:80]!r}: expected exactly one of Correct / Incorrect")
    return found.pop()


class LLMJudge:
    """One per process; owns a chat client (re-made per event loop: httpx clients are loop-bound) and a
    concurrency cap."""

    def __init__(self, config: LLMJudgeConfig):
        self.config = config
        self._client: OpenAIChatClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure(self) -> tuple[OpenAIChatClient, asyncio.Semaphore]:
        c = self.config
        if c.api_key_env and not os.environ.get(c.api_key_env):
            raise JudgeFailure(f"environment variable {c.api_key_env!r} (judge API key) is not set")
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = OpenAIChatClient(EndpointConfig(
                base_url=c.base_url, api_key_env=c.api_key_env, timeout_s=c.timeout_s, max_attempts=c.max_attempts,
                backoff_s=c.backoff_s, max_backoff_s=8.0, max_connections=c.max_concurrency, deadline_s=c.deadline_s))
            self._sem = asyncio.Semaphore(c.max_concurrency)
            self._loop = loop
        return self._client, self._sem

    async def judge(self, question: str, prediction: str, answers: Sequence[str]) -> bool:
        """True/False verdict; raises JudgeFailure once the endpoint failed after its retries, after
        `max_attempts` unparsable replies, or past `deadline_s` (all of it together)."""
        try:  # wait_for, not asyncio.timeout: Python 3.10 is supported
            return await asyncio.wait_for(self._judge(question, prediction, answers), self.config.deadline_s)
        except asyncio.TimeoutError:
            raise JudgeFailure(f"judge endpoint {self.config.base_url} gave no verdict within "
                               f"{self.config.deadline_s:g}s") from None

    async def _judge(self, question: str, prediction: str, answers: Sequence[str]) -> bool:
        client, sem = self._ensure()
        content = self.config.prompt.format(question=question, answers=" | ".join(answers), prediction=prediction)
        messages = [{"role": "user", "content": content}]
        last: JudgeFailure | None = None
        for _ in range(self.config.max_attempts):
            try:
                async with sem:
                    reply = await client.chat(self.config.model, messages, temperature=0,
                                              max_tokens=self.config.max_tokens)
                return parse_verdict(reply.text)
            except JudgeFailure as e:  # unparsable: ask again (the endpoint itself is healthy)
                last = e
            except EndpointError as e:  # already retried by the client where retrying makes sense
                raise JudgeFailure(f"judge endpoint {self.config.base_url} failed: {e}") from e
        raise last

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
