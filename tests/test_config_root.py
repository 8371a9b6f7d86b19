"""HyperEyesConfig (the one `hyperseyes.*` model), its reader in verl/, the retry vocabulary, and CLI options
derived from pydantic fields."""
from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Literal

import pytest
from omegaconf import OmegaConf
from pydantic import BaseModel, Field

from hyperseyes_verl.episode.runner import SamplingParams
from hyperseyes_verl.config import AgentLoopConfig, HyperEyesConfig, hyperseyes_config_from_mapping
from hyperseyes_verl.opd import OPDConfig
from hyperseyes_verl.search.config import HttpConfig
from hyperseyes_verl.ugs.types import MAX_TOKENS_PER_TURN, UGSConfig
from hyperseyes_verl.utils.cli import add_model_options, config_from_argv, model_kwargs


def test_reader_builds_every_section_once_and_names_bad_fields():
    from hyperseyes_verl.verl.config_reader import hyperseyes_config

    cfg = OmegaConf.create({"hyperseyes": {"trace": {"mode": "paper"}, "opd": {"beta": 0.1},
                                           "hdpo": {"w_tool": 0.3}, "agent_loop": {"ugs": {"max_tool_rounds": 4}},
                                           "recipe": {"required": ["model.path"]}}})
    hc = hyperseyes_config(cfg)
    assert (hc.trace.mode, hc.opd.beta, hc.hdpo.w_tool, hc.agent_loop.ugs.max_tool_rounds) == ("paper", 0.1, 0.3, 4)
    assert hc.judge is hc.trace.judge and hc.search is None
    assert hyperseyes_config(cfg) is hc  # cached on the content
    cfg.hyperseyes.opd.beta = 0.2  # a changed config is a new key, never a stale hit
    assert hyperseyes_config(cfg).opd.beta == 0.2
    assert hyperseyes_config(None) == hyperseyes_config({}) == HyperEyesConfig()
    merged = hyperseyes_config(cfg, {"ugs": {"top_k": 5}}).agent_loop.ugs
    assert (merged.max_tool_rounds, merged.top_k) == (4, 5)  # YAML-entry keys merged over the section
    with pytest.raises(ValueError, match=r"hyperseyes\.opd.*beta"):
        hyperseyes_config({"hyperseyes": {"opd": {"beta": -1}}})
    with pytest.raises(ValueError, match=r"hyperseyes\.traec"):
        hyperseyes_config({"hyperseyes": {"traec": {"mode": "paper"}}})
    with pytest.raises(ValueError, match=r"hyperseyes\.trace.*mode"):
        hyperseyes_config_from_mapping({"trace": {"mode": "offical"}})


def test_one_per_turn_cap_default():
    assert AgentLoopConfig().max_tokens_per_turn == SamplingParams().max_tokens == MAX_TOKENS_PER_TURN == 1524
    assert AgentLoopConfig(max_tokens_per_turn=None).max_tokens_per_turn is None  # response budget only


def test_retry_settings_have_one_vocabulary_and_old_keys_still_load():
    assert HttpConfig(max_retries=2, backoff_initial_s=0.1, backoff_max_s=1.0) == \
        HttpConfig(max_attempts=3, backoff_s=0.1, max_backoff_s=1.0)
    assert OPDConfig.from_mapping({"teacher_retry_backoff_s": 0}).teacher_backoff_s == 0
    with pytest.raises(ValueError, match="give `max_attempts` only"):
        HttpConfig(max_retries=2, max_attempts=3)


def test_config_module_stays_free_of_verl_and_the_reader_loads_it_lazily():
    probe = ("import sys; import hyperseyes_verl.verl.config_reader; "
             "assert 'hyperseyes_verl.config' not in sys.modules; import hyperseyes_verl.config; "
             "bad = [m for m in sys.modules if m.split('.')[0] in ('verl', 'ray', 'torch')]; "
             "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


class _Demo(BaseModel):
    name: str = Field(description="required: no default")
    rounds: int = Field(8, ge=1, description="tool rounds")
    mode: Literal["a", "b"] = Field("a", description="which")
    limit: int | None = Field(None, ge=0, description="optional")
    keep: bool = Field(False, description="a switch")


def test_options_come_from_the_fields():
    p = argparse.ArgumentParser()
    add_model_options(p, _Demo, flags={"rounds": "max-rounds"})
    with pytest.raises(SystemExit):
        p.parse_args([])  # --name is required: the field has no default
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "x", "--mode", "c"])  # choices from the Literal
    args = p.parse_args(["--name", "x", "--max-rounds", "3", "--limit", "2", "--keep"])
    assert args.max_rounds == 3 and args.mode == "a"  # dest follows the flag, as argparse makes it
    assert _Demo(**model_kwargs(args, _Demo, flags={"rounds": "max-rounds"})) == \
        _Demo(name="x", rounds=3, limit=2, keep=True)
    assert "tool rounds" in p.format_help()


def test_config_from_argv_reports_bad_values_as_one_usage_line(capsys):
    assert config_from_argv(_Demo, ["--name", "x"], "prog", "d").rounds == 8
    with pytest.raises(SystemExit):
        config_from_argv(_Demo, ["--name", "x", "--rounds", "0"], "prog", "d")
    assert "--rounds: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_cli_defaults_are_the_config_defaults():
    from hyperseyes_verl.cli import build_parser

    ev = build_parser(["eval"]).parse_args(["eval"])
    assert (ev.max_tokens, ev.temperature, ev.top_p) == (MAX_TOKENS_PER_TURN, 0.0, 1.0)
    assert ev.max_rounds == UGSConfig().max_tool_rounds and ev.max_turns is None and ev.max_attempts == 4
    prs = build_parser(["prs"]).parse_args(["prs", "--items", "i", "--endpoint", "e", "--model", "m", "--out", "o"])
    assert (prs.max_tokens, prs.max_rounds, prs.timeout, prs.observation_format) == \
        (MAX_TOKENS_PER_TURN, 4, 120.0, "hyperseyes")
