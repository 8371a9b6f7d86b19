"""A scripted stand-in for verl's LLM server client (tests and benchmarks; no model runs).

`FakeServerManager.generate` has the signature of `verl.workers.rollout.llm_server.LLMServerClient.generate`
and returns a `TokenOutput` whose ids are the next scripted turn of that request id. Every call is
recorded (prompt length, images sent, image-pad tokens in the prompt, extra kwargs) so a test can
check what the rollout server would have been asked to do.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass
class ServerCall:
    """What one `generate` call carried."""

    request_id: str
    prompt_len: int
    n_images: int
    n_image_pad: int
    max_tokens: int | None
    returned: int  # tokens handed back (after the max_tokens cap)
    extra_kwargs: list[str]


# A script is either a list of turns (token-id lists), reused for every request id, or a function
# `(request_id, turn_index, prompt_ids) -> token ids` for per-request behaviour.
Script = Sequence[Sequence[int]] | Callable[[str, int, list[int]], Sequence[int]]


class FakeServerManager:
    """Returns scripted token ids per turn and per request id.

    `script` turn i is returned on the i-th call with a request id; past the end the last turn is
    repeated. `max_tokens` in the sampling params truncates the answer like a real server would.
    `image_token_id` (the processor's `<|image_pad|>` id) lets calls count image-pad tokens.
    A plain class on purpose: hydra.utils.instantiate would try to turn a dataclass argument into a config.
    """

    def __init__(self, script: Script, image_token_id: int | None = None, logprob: float = -0.1):
        if not callable(script) and not script:
            raise ValueError("script must hold at least one turn of token ids, or be a function")
        self.script = script
        self.image_token_id = image_token_id
        self.logprob = logprob
        self.calls: list[ServerCall] = []
        self._turn: dict[str, int] = defaultdict(int)

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, video_data=None,
                       audio_data=None, mm_processor_kwargs=None, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        turn = self._turn[request_id]
        self._turn[request_id] += 1
        if callable(self.script):
            ids = list(self.script(request_id, turn, list(prompt_ids)))
        else:
            ids = list(self.script[min(turn, len(self.script) - 1)])
        max_tokens = sampling_params.get("max_tokens")
        if max_tokens is not None:
            ids = ids[: max(int(max_tokens), 0)]
        # list.count: C speed (a generator over 60k-token prompts cost the benches ~10 ms per call)
        n_pad = list(prompt_ids).count(self.image_token_id) if self.image_token_id is not None else 0
        self.calls.append(ServerCall(
            request_id=request_id, prompt_len=len(prompt_ids), n_images=len(image_data or []), n_image_pad=n_pad,
            max_tokens=max_tokens, returned=len(ids), extra_kwargs=sorted(kwargs)))
        return TokenOutput(token_ids=ids, log_probs=[self.logprob] * len(ids), num_preempted=0)
