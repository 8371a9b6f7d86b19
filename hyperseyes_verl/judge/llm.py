"""LLM judge over any OpenAI-compatible endpoint (`POST {base_url}/chat/completions`), temperature 0.

Two prompts, named by where they come from (`prompt`):
- `official`: the HyperEyes release's prompt, verbatim (its leading newline and trailing indentation included):
  the question, the one ground truth and the prediction, "does the prediction contain the correct answer?",
  reply `Correct` or `Incorrect`. Its decision rule is a substring test: `correct` in the lower-cased reply
  and `incorrect` not in it -> correct; else `incorrect` in it -> wrong; else unparsable (re-asked).
- `hyperseyes` (ours, the default): every accepted answer, and leniency for paraphrase, aliases and
  formatting; the reply must contain exactly one of the words Correct / Incorrect.
Any other string is a custom template with {question}, {answers}, {prediction}.

Transport, timeout, 5xx/429 retries and error typing are the shared `hyperseyes_verl.utils.openai_chat` ones;
on top of them an unparsable reply is re-asked (same bound). Whatever still fails is raised as `JudgeFailure`
so the caller falls back to the rule judge and counts it; a failure never becomes a silent 0 (the release
scored it 0: a defect not copied).
"""
from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hyperseyes_verl.judge.types import JudgeFailure
from hyperseyes_verl.utils.openai_chat import EndpointConfig, EndpointError, OpenAIChatClient

# ours: all accepted answers, lenient on paraphrase / aliases / formatting
HYPERSEYES_PROMPT = (
    "You grade answers to a question. Decide whether the prediction contains the ground-truth answer "
    "(or one of the accepted answers), allowing for paraphrase, aliases and formatting differences.\n\n"
    "Question: {question}\nAccepted answers: {answers}\nPrediction: {prediction}\n\n"
    "Reply with exactly one word: Correct or Incorrect."
)
# the release's prompt, character for character; {answers} is the one ground truth there
OFFICIAL_PROMPT = (
    "\nQuestion: {question}\nGround truth: {answers}\nModel prediction: {prediction}\n\n"
    "Please compare the model's prediction with the ground truth to determine if the model's prediction contains "
    'the correct answer. Answer only "Correct" or "Incorrect".\n    '
)
PROMPTS = {"official": OFFICIAL_PROMPT, "hyperseyes": HYPERSEYES_PROMPT}
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
    prompt: str = Field("hyperseyes", description="`official` (the release's prompt, verbatim, judged on the first "
                        "accepted answer), `hyperseyes` (ours: every accepted answer, lenient on paraphrase), or a "
                        "template with {question}, {answers}, {prediction}")
    verdict_rule: Literal["substring", "word"] | None = Field(
        None, description="reading the reply: substring (the release's: 'correct' in it and 'incorrect' not -> "
        "correct, else 'incorrect' in it -> wrong), word (ours: exactly one of the words Correct / Incorrect); "
        "None = substring for the official prompt, word otherwise")

    @property
    def template(self) -> str:
        return PROMPTS.get(self.prompt, self.prompt)

    @property
    def rule(self) -> str:
        return self.verdict_rule or ("substring" if self.prompt == "official" else "word")

    def render(self, question: str, prediction: str, answers: Sequence[str]) -> str:
        """The judge's one user message. The official prompt sees what the release's judge saw: the question
        without `<image>` placeholders, the first answer (its ground truth), `<answer>` tags removed."""
        if self.prompt == "official":
            untag = lambda t: t.replace("<answer>", "").replace("</answer>", "")  # noqa: E731
            return self.template.format(question=question.replace("<image>", ""), answers=untag(answers[0]),
                                        prediction=untag(prediction))
        return self.template.format(question=question, answers=" | ".join(answers), prediction=prediction)

    @model_validator(mode="after")
    def _template_fields(self) -> "LLMJudgeConfig":
        if "{prediction}" not in self.template:
            raise ValueError(f"judge prompt {self.prompt[:60]!r} is neither `official`, `hyperseyes` nor a template "
                             "with {prediction} (and {question}, {answers})")
        return self


def parse_verdict_substring(text: str) -> bool:
    """The release's rule: 'correct' in the lower-cased reply and 'incorrect' not in it -> True; else 'incorrect'
    in it -> False; else JudgeFailure (the release re-asked, as the caller does)."""
    if not isinstance(text, str):
        raise JudgeFailure(f"judge reply is {type(text).__name__}, expected text")
    low = text.strip().lower()
    if "correct" in low and "incorrect" not in low:
        return True
    if "incorrect" in low:
        return False
    raise JudgeFailure(f"unparsable judge reply {text[:80]!r}: neither 'correct' nor 'incorrect' in it")


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
        content = self.config.render(question, prediction, answers)
        parse = parse_verdict_substring if self.config.rule == "substring" else parse_verdict
        messages = [{"role": "user", "content": content}]
        last: JudgeFailure | None = None
        for _ in range(self.config.max_attempts):
            try:
                async with sem:
                    reply = await client.chat(self.config.model, messages, temperature=0,
                                              max_tokens=self.config.max_tokens)
                return parse(reply.text)
            except JudgeFailure as e:  # unparsable: ask again (the endpoint itself is healthy)
                last = e
            except EndpointError as e:  # already retried by the client where retrying makes sense
                raise JudgeFailure(f"judge endpoint {self.config.base_url} failed: {e}") from e
        raise last

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
