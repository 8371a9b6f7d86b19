"""The one reader of the trainer config's `hyperseyes.*` tree (agent loop, reward manager, trainer, teacher worker,
TRACE state all call it). Module level imports only omegaconf: verl loads this from the plugin's registration path,
and the HyperEyes cores (`hyperseyes_verl.config`) load on the first read (tests/test_plugin.py)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from hyperseyes_verl.config import HyperEyesConfig


def plain(value: Any) -> Any:
    """An OmegaConf node as plain containers (interpolations resolved); anything else as is."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def hyperseyes_tree(trainer_config: Any) -> Any:
    """`trainer_config.hyperseyes` as plain data, None when absent (a DictConfig, a dict, or None)."""
    if trainer_config is None:
        return None
    if isinstance(trainer_config, DictConfig):
        return plain(OmegaConf.select(trainer_config, "hyperseyes", default=None))
    if isinstance(trainer_config, Mapping):
        return plain(trainer_config.get("hyperseyes"))
    return None


def hyperseyes_config(trainer_config: Any, agent_loop_overrides: Mapping[str, Any] | None = None) -> "HyperEyesConfig":
    """Every `hyperseyes.*` section of `trainer_config`, validated (defaults where absent); cached on the
    content. `agent_loop_overrides`: keys of the agent-loop YAML entry, merged over `hyperseyes.agent_loop`."""
    from hyperseyes_verl.config import hyperseyes_config_from_mapping

    overrides = {k: plain(v) for k, v in agent_loop_overrides.items()} if agent_loop_overrides else None
    return hyperseyes_config_from_mapping(hyperseyes_tree(trainer_config), overrides)
