"""TRACE state across the training job: epoch-end tightening, snapshots next to verl's checkpoints, resume.

Called by the trainer (driver side, e.g. `HyperEyesTrainer.on_step_end` when
`global_steps % steps_per_epoch == 0`, and at init for resume). Works with the shared Ray actor and with the
process-local store alike (`hyperseyes_verl.trace.shared.get_store`).
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hyperseyes_verl.trace.config import TraceConfig, trace_config_from_mapping
from hyperseyes_verl.trace.paper import adapt_lambda
from hyperseyes_verl.trace.shared import StoreHandle, get_store

logger = logging.getLogger(__name__)

REFS_SUBDIR = "hyperseyes_refs"


def trace_config_from_trainer(trainer_config: Any) -> TraceConfig:
    """`hyperseyes.trace` of the trainer config (added with `+hyperseyes.trace.mode=paper` etc.), else defaults."""
    cfg = trainer_config if isinstance(trainer_config, DictConfig) else OmegaConf.create(trainer_config or {})
    section = OmegaConf.select(cfg, "hyperseyes.trace", default=None)
    return trace_config_from_mapping(None if section is None else OmegaConf.to_container(section, resolve=True))


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
    summary = store.call("summary")
    done = int(summary["trace/epoch"])
    if done > epoch:
        logger.info("TRACE epoch %d already ended (store is at %d epoch ends); nothing to do", epoch, done)
        return {**summary, "trace/refs_tightened": 0.0}
    metrics = store.call("end_epoch")
    if config.mode == "paper" and config.paper.schedule == "adaptive":
        lam_now = metrics.get("trace/lambda", config.paper.lam)
        cr, ref = (None if math.isnan(v) else v  # NaN: no correct rollout (with a reference) this epoch
                   for v in (metrics["trace/correct_rounds_mean"], metrics["trace/correct_ref_mean"]))
        lam_new = adapt_lambda(config.paper, lam_now, cr, ref)
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
