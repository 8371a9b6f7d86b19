"""`HyperEyesConfig`: the one model of the trainer config's `hyperseyes.*` tree (pure: no verl, no ray).

    hyperseyes:
      agent_loop: ...   # AgentLoopConfig (UGS budgets, search backend, per-turn and image caps)
      trace: ...        # TraceConfig (incl. trace.judge: the judge section)
      opd: ...          # OPDConfig
      hdpo: ...         # HDPOConfig
      recipe / sft      # read by `hyperseyes recipe validate` (and the SFT checks)
      selected_trainer  # written by HyperEyesTrainer at start-up

The search section is `agent_loop.backend` and the judge section `trace.judge` (their key paths predate this
model and recipes use them); `HyperEyesConfig.search` / `.judge` name them. verl jobs read the tree once through
`hyperseyes_verl.verl.config_reader.hyperseyes_config`; a bad value fails there, naming `hyperseyes.<section>`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hyperseyes_verl.hdpo.config import HDPOConfig
from hyperseyes_verl.judge.judge import JudgeConfig
from hyperseyes_verl.opd.config import OPDConfig
from hyperseyes_verl.search.config import parse_backend_config
from hyperseyes_verl.trace.config import TraceConfig
from hyperseyes_verl.ugs.types import MAX_TOKENS_PER_TURN, UGSConfig
from hyperseyes_verl.utils.config import model_from_section
from hyperseyes_verl.utils.images import IMAGE_TOKEN_CAP

ROOT = "hyperseyes"


class AgentLoopConfig(BaseModel):
    """Everything the HyperEyes agent loop reads besides verl's own rollout config (`hyperseyes.agent_loop`,
    merged with the extra keys of the agent-loop YAML entry)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ugs: UGSConfig = Field(default_factory=UGSConfig, description="episode budgets and caps of the environment")
    backend: dict[str, Any] | None = Field(
        None, description="search backend config (hyperseyes_verl.search.config, field `type`); "
        "None = use the injected backend (set_backend_override)")
    max_images: int | None = Field(
        None, ge=1, description="images per episode incl. the input images; crops past it are withheld. "
        "None = rollout.limit_images, or unlimited when that is unset too")
    max_tokens_per_turn: int | None = Field(
        MAX_TOKENS_PER_TURN, ge=1, description="cap of one assistant turn; default = the release's 1524, the same "
        "cap PRS and eval generate with, so SFT data, RL rollouts and evaluation see one turn length. "
        "None = only the response budget (rollout.response_length), which always applies too")
    add_system_prompt: bool = Field(True, description="prepend the HyperEyes system prompt when a sample has none")
    max_image_tokens: int | None = Field(
        IMAGE_TOKEN_CAP, ge=1, description="visual tokens per image (input images and crops), resized by the "
        "function the SFT dataset uses with the same default (official: 1200 in both stages); None = leave it "
        "to the processor's max_pixels")
    # the agent-loop worker (hyperseyes_verl.verl.paced_start), one per worker process
    starts_per_turn: int = Field(
        1, ge=0, description="episodes whose synchronous start (verl builds each agent loop through hydra, ~7 ms) "
        "runs per event-loop turn of the agent-loop worker; 0 = all in one turn, as verl does (1.9 s without "
        "handling any reply at 256 episodes). Episodes started together also advance together: 1 gave the "
        "shortest stalls at 256 (bench/bench_agent_loop_scale.py --rows paced --starts-per-turn N)")
    steps_per_turn: int = Field(
        1, ge=0, description="episodes whose step (the synchronous work after each of verl's executor renders and "
        "after each round: aligning the mask, parsing, planning, building the observation, ~1 ms each) runs per "
        "event-loop turn; 0 = every ready episode in one turn. Episodes advance in lockstep (a batch of replies or "
        "renders comes back together), so this bounds the longest stall (bench/bench_agent_loop_scale.py)")
    freeze_gc: bool = Field(True, description="gc.freeze() once the agent-loop worker is built: the ~500k objects "
                            "of verl / torch / transformers leave the collector's full passes")
    executor_threads: int | None = Field(
        2, ge=1, description="threads of the worker event loop's default executor, where verl renders prompts and "
        "observations and this plugin decodes and cuts images; None = Python's default (CPUs + 4, at most 32). The "
        "renders hold the GIL, so more threads mostly take it from the event loop: 2 vs 6 on a 2-core box gave "
        "36-42 vs 58-78 ms longest stalls at 256 episodes and the same episodes/s (bench_agent_loop_scale.py)")
    defer_full_gc: bool = Field(True, description="full garbage collections wait until no episode is in flight "
                                "(hyperseyes_verl.utils.gc_deferral): a full pass over 256 episodes' token lists "
                                "stalls the event loop 25-80 ms at the bench's small size, more at real sizes")
    full_gc_max_defer_s: float = Field(60.0, gt=0, description="with defer_full_gc, a worker that is never idle "
                                       "still runs a full collection this often (at an episode's end)")

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, v):
        if v is not None:
            parse_backend_config(v)  # raises SearchConfigError naming the bad field
        return v


class RecipeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    required: list[str] = Field(default_factory=list, description="config keys the run cannot start without; "
                                "checked by `hyperseyes recipe validate`")


class SFTConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    freeze_vision_tower: bool = Field(True, description="stage 1 trains the language model only (official)")


class HyperEyesConfig(BaseModel):
    """The whole `hyperseyes.*` tree; every section optional (absent = its defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_loop: AgentLoopConfig = Field(default_factory=AgentLoopConfig, description="the agent loop")
    trace: TraceConfig = Field(default_factory=TraceConfig, description="TRACE reward (and its judge)")
    opd: OPDConfig = Field(default_factory=OPDConfig, description="on-policy distillation on failed rollouts")
    hdpo: HDPOConfig = Field(default_factory=HDPOConfig, description="HDPO decoupled advantages")
    recipe: RecipeConfig = Field(default_factory=RecipeConfig, description="recipe validation")
    sft: SFTConfig = Field(default_factory=SFTConfig, description="stage 1 settings")
    selected_trainer: str | None = Field(None, description="written by HyperEyesTrainer (trace_state reads it)")

    @property
    def judge(self) -> JudgeConfig:
        return self.trace.judge

    @property
    def search(self) -> dict[str, Any] | None:
        return self.agent_loop.backend


SECTIONS: dict[str, type[BaseModel]] = {
    name: f.annotation for name, f in HyperEyesConfig.model_fields.items()
    if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}


def deep_merge(base: Mapping, top: Mapping) -> dict:
    """`base` with `top`'s keys, merged into nested mappings (later wins)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def section_from_mapping(name: str, section: Any, overrides: Mapping[str, Any] | None = None) -> BaseModel:
    """`hyperseyes.<name>` built alone (recipe checks build sections one by one); errors name the section."""
    if overrides:
        section = deep_merge(section or {}, overrides) if isinstance(section, Mapping) or section is None \
            else section
    return model_from_section(SECTIONS[name], section, f"{ROOT}.{name}")


def hyperseyes_config_from_mapping(tree: Mapping[str, Any] | None,
                                   agent_loop_overrides: Mapping[str, Any] | None = None) -> HyperEyesConfig:
    """Build from the plain `hyperseyes` tree (None = all defaults). `agent_loop_overrides`: the agent-loop YAML
    entry's keys, merged over `hyperseyes.agent_loop`. Cached on the JSON of both: a trainer config is read by
    every agent loop, reward manager and epoch end, and a mutated config is a new key, never a stale hit."""
    key = json.dumps([tree, agent_loop_overrides], sort_keys=True, default=str)
    return _cached(key)


@lru_cache(maxsize=64)
def _cached(key: str) -> HyperEyesConfig:
    tree, overrides = json.loads(key)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ValueError(f"trainer config `{ROOT}` must be a mapping, got {tree!r}")
    unknown = sorted(set(tree) - set(HyperEyesConfig.model_fields))
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(f'{ROOT}.{u}' for u in unknown)}: known sections are "
                         f"{sorted(HyperEyesConfig.model_fields)}")
    built: dict[str, Any] = {name: section_from_mapping(name, tree.get(name),
                                                        overrides if name == "agent_loop" else None)
                             for name in SECTIONS if name in tree or (name == "agent_loop" and overrides)}
    if tree.get("selected_trainer") is not None:
        built["selected_trainer"] = str(tree["selected_trainer"])
    return HyperEyesConfig(**built)
