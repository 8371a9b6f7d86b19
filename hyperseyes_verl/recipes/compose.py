"""Compose a recipe exactly as the verl entry point will: the recipe YAML is a hydra primary config whose
`defaults` pull verl's own `ppo_trainer` / `sft_trainer_engine` from `pkg://verl.trainer.config`, then the
command-line overrides are applied. The validator therefore checks the same config object training receives."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


class RecipeError(ValueError):
    """The recipe cannot be composed at all (missing file, bad override, unknown key)."""


def compose_recipe(config_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    path = Path(config_path).expanduser().resolve()
    if not path.is_file():
        raise RecipeError(f"recipe file {str(config_path)!r} does not exist: pass the path of a recipe YAML, "
                          "e.g. recipes/stage2_rl_30b.yaml")
    if path.suffix not in (".yaml", ".yml"):
        raise RecipeError(f"recipe file {str(path)!r} is not a .yaml file")
    GlobalHydra.instance().clear()  # another caller (tests, notebooks) may have left hydra initialised
    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base=None):
            cfg = compose(config_name=path.stem, overrides=list(overrides))
    except Exception as exc:  # hydra raises several exception types; all mean "cannot compose"
        raise RecipeError(f"cannot compose {path.name} with overrides {list(overrides)}: "
                          f"{type(exc).__name__}: {exc}") from exc
    OmegaConf.set_struct(cfg, True)
    return cfg


def select(cfg: DictConfig, key: str, default=None):
    """Resolved value at a dotted key, or `default` if absent, missing (???) or not resolvable."""
    try:
        value = OmegaConf.select(cfg, key, default=default, throw_on_missing=False, throw_on_resolution_failure=False)
    except Exception:
        return default
    if isinstance(value, DictConfig) or OmegaConf.is_list(value):
        return OmegaConf.to_container(value, resolve=True)
    return value
