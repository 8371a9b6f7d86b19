"""TRACE state across the training job: epoch-end tightening, snapshots next to verl's checkpoints, resume.

Called by the trainer (driver side, e.g. `HyperEyesTrainer.on_step_end` when
`global_steps % steps_per_epoch == 0`, and at init for resume). Works with the shared Ray actor and with the
process-local store alike (`hyperseyes_verl.trace.shared.get_store`).
"""
from __future__ import annotations

import logging
import os
from typing import Any

from hyperseyes_verl.trace.config import TraceConfig, trace_config_from_mapping
from hyperseyes_verl.trace.paper import adapt_lambda
from hyperseyes_verl.trace.shared import StoreHandle, get_store

logger = logging.getLogger(__name__)

REFS_SUBDIR = "hyperseyes_refs"


def trace_config_from_trainer(trainer_config: Any) -> TraceConfig:
    """`hyperseyes.trace` of the trainer config (added with `+hyperseyes.trace.mode=paper` etc.), else defaults."""
    section = None
    hs = trainer_config.get("hyperseyes") if trainer_config is not None and hasattr(trainer_config, "get") else None
    if hs is not None and hasattr(hs, "get"):
        section = hs.get("trace")
    if section is not None and not isinstance(section, dict):
        from omegaconf import OmegaConf

        section = OmegaConf.to_container(section, resolve=True)
    return trace_config_from_mapping(section)


def refs_dir(trainer_config: Any, config: TraceConfig | None = None) -> str:
    """`hyperseyes.trace.store.dir`, else `<trainer.default_local_dir>/hyperseyes_refs`."""
    config = config or trace_config_from_trainer(trainer_config)
    if config.store.dir:
        return config.store.dir
    try:
        root = trainer_config.trainer.default_local_dir
    except (AttributeError, KeyError) as e:
        raise ValueError("no place for TRACE reference snapshots: set trainer.default_local_dir or "
                         "+hyperseyes.trace.store.dir") from e
    return os.path.join(str(root), REFS_SUBDIR)


def _store(trainer_config: Any) -> tuple[TraceConfig, StoreHandle]:
    config = trace_config_from_trainer(trainer_config)
    return config, get_store(config.store)


def on_epoch_end(trainer_config: Any, epoch: int, global_step: int | None = None) -> dict[str, float]:
    """Tighten the references after epoch `epoch` (0-based, the one that just ended), adapt λ, snapshot.

    Idempotent per epoch (a repeated call for an epoch already ended does nothing). The snapshot is named by
    `global_step` so `restore` finds it on resume; without it no snapshot is written (and a warning says so).
    """
    config, store = _store(trainer_config)
    done = int(store.call("summary")["trace/epoch"])
    if done > epoch:
        logger.info("TRACE epoch %d already ended (store is at %d epoch ends); nothing to do", epoch, done)
        return {**store.call("summary"), "trace/refs_tightened": 0.0}
    metrics = store.call("end_epoch")
    if config.mode == "paper" and config.paper.schedule == "adaptive":
        lam_now = metrics.get("trace/lambda", config.paper.lam)
        cr, ref = metrics["trace/correct_rounds_mean"], metrics["trace/correct_ref_mean"]
        lam_new = adapt_lambda(config.paper, lam_now, None if cr != cr else cr, None if ref != ref else ref)
        store.call("set_lambda", lam_new)
        metrics["trace/lambda"] = lam_new
    if global_step is not None:
        store.call("save", refs_dir(trainer_config, config), int(global_step))
        metrics["trace/snapshot_saved"] = 1.0
    else:
        logger.warning("TRACE on_epoch_end(epoch=%d) without global_step: references tightened but not saved; "
                       "pass global_step=trainer.global_steps so a resume can restore them", epoch)
        metrics["trace/snapshot_saved"] = 0.0
    return metrics


def save(trainer_config: Any, global_step: int) -> str:
    """Snapshot now (e.g. with every verl checkpoint, so a mid-epoch resume keeps the epoch's observations)."""
    config, store = _store(trainer_config)
    return store.call("save", refs_dir(trainer_config, config), int(global_step))


def restore(trainer_config: Any, global_step: int) -> dict[str, float]:
    """Load the newest snapshot at or before `global_step`; none found → start empty (a fresh run)."""
    config, store = _store(trainer_config)
    loaded = store.call("load", refs_dir(trainer_config, config), int(global_step))
    if loaded is None:
        store.call("reset")
    return {**store.call("summary"), "trace/restored_step": float(-1 if loaded is None else loaded)}
