"""`HyperEyesAgentLoop`: verl's agent-loop adapter around the UGS search environment (`hyperseyes_agent`).

Per trajectory: render the tool schemas (raw dicts, so array `items` survive) and, when the sample has
none, the HyperEyes system prompt; then loop generate → `SearchEnvironment.step(text)` → append the
observation (tool messages with the crop images) through verl's Continuous-Token multimodal path
(`ct_merge_context_msg`; image-pad counts from the image size, `image_pads`) with response_mask 0, adding the
crops to the request's image list, until the environment ends the episode. All tool calls of a turn are
executed, up to `UGSConfig.max_calls_per_turn` (verl's `multi_turn.max_parallel_calls` does not apply).

Selection: ship `hyperseyes_verl/verl/agent_loop.yaml` as `actor_rollout_ref.rollout.agent.agent_loop_config_path`
and set the dataset column `agent_name = "hyperseyes_agent"` (or `rollout.agent.default_agent_loop`). The
`verl.plugins` entry point also registers the name, so the YAML is optional when the package is installed.

Configuration (`hyperseyes_verl.config.AgentLoopConfig`, read by `verl.config_reader.hyperseyes_config`), merged
in this order, later wins:
1. the trainer config section `hyperseyes.agent_loop` (add it on the command line with a leading `+`, e.g.
   `+hyperseyes.agent_loop.ugs.max_tool_rounds=4 +hyperseyes.agent_loop.backend.type=embedded
   +hyperseyes.agent_loop.backend.index_dir=/data/idx`);
2. extra keys of the agent-loop YAML entry (hydra passes them to the constructor), e.g.
   `- {name: hyperseyes_agent, _target_: ..., ugs: {max_tool_rounds: 4}, backend: {type: embedded, ...}}`.

The search backend is built once per process and event loop (`shared_backend`) from `backend`
(`hyperseyes_verl.search.factory.build_backend`), never per trajectory; `set_backend_override` injects one
(tests, notebooks).

Limits (all end the episode cleanly, never cutting an image's token span):
- `rollout.response_length`: a turn is generated with `max_tokens` = the tokens left; an observation that
  does not fit completely is dropped and the episode ends with finish_reason "length" (`truncated`).
- images per episode (`max_images`, capped by `rollout.limit_images`): crops past the cap are not sent;
  the observation says so in place of the image and `truncated` is set. The environment still searched them.
- a generated vision placeholder token (`<|image_pad|>` ...) would desynchronise image tokens and features:
  the response is cut before it, finish_reason "invalid_token".
- turns: the environment's `UGSConfig.max_turns` / `max_tool_rounds`.

`extra_fields`: `hyperseyes_verl.contracts.TrajectoryFields.to_dict()`, the keys of docs/CONTRACTS.md §3
(plain ints / bools / str / list[int] / dict[str, int];
verl's `_postprocess` stores each key as a 1-D object array, which keeps lists and dicts intact), plus the
server's `min_global_steps` / `max_global_steps` that verl's async trainers read for staleness control.
"""
from __future__ import annotations

import asyncio
import json
import os
import weakref
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, _agent_loop_registry
from verl.utils.profiler import simple_timer
from verl.utils.tokenizer import get_processor_token_id

from hyperseyes_verl.config import AgentLoopConfig
from hyperseyes_verl.contracts import FinishReason, TrajectoryFields
from hyperseyes_verl.search.base import SearchBackend
from hyperseyes_verl.search.factory import build_backend
from hyperseyes_verl.ugs.conversation import chat_tools, fit_message_images, observation_message
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.parser import parse_turn
from hyperseyes_verl.ugs.schema import system_prompt
from hyperseyes_verl.utils.images import TokenFit, image_token_factor
from hyperseyes_verl.utils.start_gate import GatedLoop, loop_gate
from hyperseyes_verl.verl import image_pads, verl_guard
from hyperseyes_verl.verl.config_reader import hyperseyes_config, plain
from hyperseyes_verl.verl.dataset import load_image

# Rendered into every prompt; the SFT rows carry the same schemas (hyperseyes_verl.ugs.conversation).
TOOL_SCHEMAS = chat_tools()

AGENT_NAME = "hyperseyes_agent"
# The keys every trajectory carries (docs/CONTRACTS.md §3).
EXTRA_FIELD_KEYS = TrajectoryFields.contract_keys()


# ---------------------------------------------------------------------------------------------- backend
_OVERRIDE: SearchBackend | None = None
# event loop -> backend config json -> backend: async clients belong to the loop they were made in.
_BACKENDS: "weakref.WeakKeyDictionary[Any, dict[str, SearchBackend]]" = weakref.WeakKeyDictionary()


def set_backend_override(backend: SearchBackend | None) -> None:
    """Use `backend` for every HyperEyes trajectory of this process (None restores config-built backends)."""
    global _OVERRIDE
    _OVERRIDE = backend


def shared_backend(backend_cfg: dict[str, Any] | None) -> SearchBackend:
    """The process's backend for this config: built on first use, then reused by every trajectory."""
    if _OVERRIDE is not None:
        return _OVERRIDE
    if backend_cfg is None:
        raise ValueError("the HyperEyes agent loop has no search backend: set `+hyperseyes.agent_loop.backend` in "
                         "the trainer config (e.g. {type: embedded, index_dir: ...}) or a `backend:` key in the "
                         "agent-loop YAML entry")
    per_loop = _BACKENDS.setdefault(asyncio.get_running_loop(), {})
    key = json.dumps(backend_cfg, sort_keys=True, default=str)
    if key not in per_loop:
        per_loop[key] = build_backend(backend_cfg)
    return per_loop[key]


# ---------------------------------------------------------------------------------------------- helpers
# chat template -> whether appended tool messages tokenize differently when the tool schemas are rendered
_MERGE_NEEDS_TOOLS: dict[str, bool] = {}


def question_of(messages: list[dict], extra_info: dict | None) -> str:
    """`extra_info.question` (docs/CONTRACTS.md §5), else the text of the last user message."""
    q = (extra_info or {}).get("question")
    if isinstance(q, str) and q.strip():
        return q
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c.replace("<image>", "").strip()
            return "".join(b.get("text", "") for b in c or () if isinstance(b, dict) and b.get("type") == "text").strip()
    return ""


def _decoded_images(messages: list[dict]) -> list[dict]:
    """Copies of `messages` whose image blocks hold RGB PIL images (verl's RLHFDataset leaves `{"bytes": ...}`)."""
    return [{**m, "content": [{"type": "image", "image": load_image(b)}
                              if isinstance(b, dict) and b.get("type") == "image" else b for b in m["content"]]}
            if isinstance(m.get("content"), list) else m for m in messages]


def cap_images(messages: list[dict], room: int | None, cap: int | None) -> tuple[list[dict], list, int]:
    """Keep at most `room` images of the observation (None: all); the rest become a text note.

    Returns (messages, kept images, number withheld). Copies, never mutates the environment's messages."""
    out, kept, withheld = [], [], 0
    for m in messages:
        content = []
        for b in m["content"]:
            if b.get("type") == "image":
                if room is None or len(kept) < room:
                    kept.append(b["image"])
                    content.append(b)
                else:
                    withheld += 1
                    content.append({"type": "text", "text": f"[image not shown: the limit of {cap} images per "
                                                            "episode is reached]"})
            else:
                content.append(b)
        out.append({**m, "content": content})
    return out, kept, withheld


class HyperEyesAgentLoop(AgentLoopBase):
    """verl agent loop driving one `SearchEnvironment` episode per trajectory."""

    def __init__(self, *args, tools=None, name: str | None = None, **kwargs):
        verl_guard.require("agent_loop")
        overrides = {k: plain(kwargs.pop(k)) for k in list(kwargs) if k in AgentLoopConfig.model_fields}
        super().__init__(*args, **kwargs)  # `tools` (verl's tool list) is unused: the environment owns the tools
        self.settings = hyperseyes_config(self.config, overrides).agent_loop
        self.response_length = int(self.rollout_config.response_length)
        caps = [c for c in (self.settings.max_images, self.rollout_config.get("limit_images")) if c]
        self.max_images = min(caps) if caps else None
        self._vision_ids = {t for t in (get_processor_token_id(self.processor, k) for k in ("image", "video"))
                            if t is not None} if self.processor is not None else set()
        self._stop_ids = {t for t in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id,
                                      self.tokenizer.convert_tokens_to_ids("<|im_end|>")) if isinstance(t, int)}
        self._image_factor = image_token_factor(self.processor)
        self._tools = TOOL_SCHEMAS if self.settings.ugs.tool_schemas else None
        # image-pad counts from the image size in every prompt / observation render (verified once per chat
        # template against the processor; verl's render otherwise): no pixel processing per turn
        image_pads.install(self.continuous_token_builder)

    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs) -> AgentLoopOutput:
        # the worker's episodes share one gate: a few steps per loop turn, after each of verl's executor renders
        # (GatedLoop: verl continues on the loop after them) and after each round
        pace = loop_gate(self.settings.steps_per_turn)
        if not isinstance(self.loop, GatedLoop):
            self.loop = GatedLoop(self.loop, pace)
        messages = [dict(m) for m in kwargs["raw_prompt"]]
        if self.settings.add_system_prompt and (not messages or messages[0].get("role") != "system"):
            messages.insert(0, {"role": "system", "content": system_prompt(self.settings.ugs)})
        # every image at the SFT resolution (the same function and cap as HyperEyesSFTDataset); the environment
        # crops from the full-resolution inputs
        def decode_and_fit(msgs):  # image decoding (once) and resizing: PIL work, off the event loop
            decoded = _decoded_images(msgs)
            orig = [b["image"] for m in decoded if isinstance(m.get("content"), list)
                    for b in m["content"] if isinstance(b, dict) and b.get("type") == "image"]
            return orig, fit_message_images(decoded, self.settings.max_image_tokens, self._image_factor)

        originals, messages = await asyncio.get_running_loop().run_in_executor(None, decode_and_fit, messages)
        mm = await self.process_multi_modal_info(messages)
        images = list(mm.get("images") or [])
        if mm.get("videos") or mm.get("audios"):
            raise ValueError("the HyperEyes agent loop handles images only; this sample carries video/audio")
        if self.max_images is not None and len(images) > self.max_images:
            raise ValueError(f"the sample has {len(images)} input images, more than the image limit "
                             f"{self.max_images}; raise hyperseyes.agent_loop.max_images / rollout.limit_images")
        self._assert_mm_supported(bool(images))
        # crops cut at the size the model sees: one copy per crop, and fit_message_images leaves them as they are
        cap = self.settings.max_image_tokens
        env = SearchEnvironment(shared_backend(self.settings.backend), question_of(messages, kwargs.get("extra_info")),
                                originals, self.settings.ugs, TokenFit(cap, self._image_factor) if cap else None)
        mm_kwargs = self._get_mm_processor_kwargs()
        request_id = f"det-{priority}" if self.rollout_config.get("full_determinism") else uuid4().hex
        metrics: dict[str, Any] = {}
        extra: dict[str, Any] = {}

        runtime_ids = await self.ct_build_initial_tokens(messages, tools=self._tools, images=images or None)
        prompt_len = len(runtime_ids)
        mask: list[int] = []
        logprobs: list[float] = []
        assistant_turns = user_turns = 0
        truncated = False
        cut_reason: FinishReason | None = None  # set when this loop, not the environment, ends the episode

        for _ in range(self.settings.ugs.max_turns + 1):  # the environment ends first; this only bounds a bug
            room = self.response_length - len(mask)
            params = dict(sampling_params, max_tokens=min(room, self.settings.max_tokens_per_turn or room))
            with simple_timer("generate_sequences", metrics):
                out = await self.server_manager.generate(
                    request_id=request_id, prompt_ids=runtime_ids, sampling_params=params,
                    image_data=images or None, video_data=None, mm_processor_kwargs=mm_kwargs)
            metrics["num_preempted"] = metrics.get("num_preempted", 0) + (out.num_preempted or 0)
            self._track_server_fields(extra, out.extra_fields or {})
            assistant_turns += 1
            ids = list(out.token_ids)
            lps = list(out.log_probs) if out.log_probs else None
            bad = next((i for i, t in enumerate(ids) if t in self._vision_ids), None)
            if bad is not None:
                ids = ids[:bad]
                lps = lps[:bad] if lps is not None and (bad or logprobs) else None  # nothing left: no logprobs
                truncated, cut_reason = True, "invalid_token"
            merge, mask, new_lps = await self.ct_merge_assistant_token(
                runtime_ids, ids, mask, logprobs if (logprobs or lps) else None, assistant_logprobs=lps)
            runtime_ids = merge.token_ids
            logprobs = new_lps if new_lps is not None else logprobs
            if cut_reason:
                break
            text = self.tokenizer.decode([t for t in ids if t not in self._stop_ids], skip_special_tokens=False)
            if len(mask) >= self.response_length and parse_turn(text).answer is None:
                truncated, cut_reason = True, "length"  # no room for an observation, and no answer to record
                break
            with simple_timer("tool_calls", metrics):
                step = await env.step(text)
            await pace.wait()
            if step.done:
                break
            room_images = None if self.max_images is None else max(self.max_images - len(images), 0)
            # one message per round, built as the SFT rows build it (hyperseyes_verl.ugs.conversation)
            # the environment cut the crops at the model's size (TokenFit): this fit only checks their sizes
            observation = fit_message_images([observation_message(step.observation)], self.settings.max_image_tokens,
                                             self._image_factor)
            obs, new_images, withheld = cap_images(observation, room_images, self.max_images)
            self._assert_mm_supported(bool(new_images))
            previous = messages + [{"role": "assistant", "content": text}]
            merge, new_mask, new_lps = await self._merge_observation(previous, obs, runtime_ids, mask, logprobs)
            if len(new_mask) >= self.response_length:  # the whole observation or nothing: image spans stay whole
                truncated, cut_reason = True, "length"
                break
            truncated = truncated or withheld > 0
            messages = previous + obs
            runtime_ids, mask = merge.token_ids, new_mask
            logprobs = new_lps or logprobs
            images.extend(new_images)
            user_turns += 1

        extra.update(TrajectoryFields.from_episode(env.stats, cut_reason=cut_reason, truncated=truncated).to_dict())
        response_ids = runtime_ids[prompt_len:]
        n = self.response_length
        return AgentLoopOutput(
            prompt_ids=runtime_ids[:prompt_len],
            response_ids=response_ids[:n],
            response_mask=mask[:n],
            response_logprobs=logprobs[:n] if logprobs else None,
            multi_modal_data={"images": images} if images else {},
            mm_processor_kwargs=mm_kwargs,
            num_turns=assistant_turns + user_turns + 1,
            metrics=metrics,
            extra_fields=extra,
        )

    async def _merge_observation(self, previous, obs, runtime_ids, mask, logprobs):
        """`ct_merge_context_msg` for the tool messages, skipping the tool schemas when they cannot matter.

        Continuous Token renders appended tool messages after a synthetic [system, user, assistant] prefix,
        twice (prefix alone, prefix + messages), and the schemas are part of that system message. Qwen-style
        templates put tools only there, so the appended tokens are the same without them and each merge
        is much cheaper. Checked once per chat template by rendering both ways; if they differ, tools stay.
        """
        key = getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template or ""
        lps = logprobs or None
        if self._tools is None:  # the prompt has no schemas either
            return await self.ct_merge_context_msg(previous, previous + obs, runtime_ids, mask, lps, tools=None)
        if key not in _MERGE_NEEDS_TOOLS:
            with_tools = await self.ct_merge_context_msg(previous, previous + obs, runtime_ids, mask, lps,
                                                         tools=TOOL_SCHEMAS)
            without = await self.ct_merge_context_msg(previous, previous + obs, runtime_ids, mask, lps, tools=None)
            _MERGE_NEEDS_TOOLS[key] = with_tools[0].token_ids != without[0].token_ids
            return with_tools
        tools = TOOL_SCHEMAS if _MERGE_NEEDS_TOOLS[key] else None
        return await self.ct_merge_context_msg(previous, previous + obs, runtime_ids, mask, lps, tools=tools)

    @staticmethod
    def _track_server_fields(extra: dict[str, Any], fields: dict[str, Any]) -> None:
        """Weight versions the trajectory was generated with (verl's async trainers filter stale ones)."""
        if fields.get("min_global_steps") is not None and "min_global_steps" not in extra:
            extra["min_global_steps"] = fields["min_global_steps"]
        if fields.get("max_global_steps") is not None:
            extra["max_global_steps"] = fields["max_global_steps"]


# Not verl's @register: hydra first imports this module inside the first trajectory, after the worker loaded
# the agent-loop YAML into the registry; verl rereads the registry per trajectory, so overwriting that entry
# would drop its settings (ugs, backend, ...) from every later trajectory.
_agent_loop_registry.setdefault(AGENT_NAME, {"_target_": f"{__name__}.{HyperEyesAgentLoop.__qualname__}"})

# Documented here so `python -m hyperseyes_verl.verl.agent_loop` prints where the YAML lives.
AGENT_LOOP_YAML = os.path.join(os.path.dirname(__file__), "agent_loop.yaml")

if __name__ == "__main__":
    print(AGENT_LOOP_YAML)
