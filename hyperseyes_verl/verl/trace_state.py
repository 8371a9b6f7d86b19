"""TRACE state across the training job: epoch-end tightening, snapshots next to verl's checkpoints, resume.

Called by the trainer (driver side, e.g. `HyperEyesTrainer.on_step_end` when
`global_steps % steps_per_epoch == 0`, and at init for resume). Works with the shared Ray actor and with the
process-local store alike (`hyperseyes_verl.verl.store_actor.get_store`).
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hyperseyes_verl.trace.config import TraceConfig
from hyperseyes_verl.trace.paper import adapt_lambda
from hyperseyes_verl.trace.shared import StoreHandle
from hyperseyes_verl.verl.config_reader import hyperseyes_config
from hyperseyes_verl.verl.store_actor import get_store

logger = logging.getLogger(__name__)

REFS_SUBDIR = "hyperseyes_refs"
# trainer.TRAINER_NAME, repeated on purpose: trainer.py is imported when verl registers trainers and must not load
# this module's TRACE cores then (tests/test_plugin.py); a test checks the two names agree
HYPERSEYES_TRAINER = "hyperseyes_sync"
# HyperEyesTrainer resets trainer.v1.trainer_mode to "sync" (verl compares that literal), so it records itself here
SELECTED_TRAINER_KEY = "hyperseyes.selected_trainer"

_warned_official_without_trainer = False


def _as_config(trainer_config: Any) -> DictConfig:
    return trainer_config if isinstance(trainer_config, DictConfig) else OmegaConf.create(trainer_config or {})


def trace_config_from_trainer(trainer_config: Any) -> TraceConfig:
    """`hyperseyes.trace` of the trainer config (added with `+hyperseyes.trace.mode=paper` etc.), else defaults."""
    return hyperseyes_config(trainer_config).trace


def selected_trainer(trainer_config: Any) -> str:
    """The trainer running this job: HyperEyesTrainer's own record, else verl's `trainer.v1.trainer_mode`."""
    recorded = hyperseyes_config(trainer_config).selected_trainer
    if recorded is not None:
        return recorded
    cfg = _as_config(trainer_config)
    if OmegaConf.select(cfg, "trainer.use_v1", default=True) is False:
        return "verl's legacy trainer (trainer.use_v1=false)"
    return str(OmegaConf.select(cfg, "trainer.v1.trainer_mode", default="unset"))


def warn_if_official_without_trainer(trainer_config: Any, trace_config: TraceConfig) -> bool:
    """Warn once per process when TRACE `official` mode runs under another trainer; True when it warned now.

    The official group rule is applied in HyperEyesTrainer's advantage step, not in the reward: under another
    trainer each rollout silently keeps its per-rollout score. The reward manager calls this, as the one
    place that sees both the TRACE mode and the trainer (verl builds it after the trainer, from its config).
    """
    global _warned_official_without_trainer
    if trace_config.mode != "official" or _warned_official_without_trainer:
        return False
    trainer = selected_trainer(trainer_config)
    if trainer == HYPERSEYES_TRAINER:
        return False
    _warned_official_without_trainer = True
    logger.warning("hyperseyes.trace.mode=official, but the trainer is %s, not %s: the official TRACE group rule "
                   "runs only in HyperEyesTrainer's advantage step, so these rewards go to verl without it. Set "
                   "trainer.v1.trainer_mode=%s, or +hyperseyes.trace.mode=paper for a per-rollout reward.",
                   trainer, HYPERSEYES_TRAINER, HYPERSEYES_TRAINER)
    return True


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
    summary = store.summary()
    done = int(summary["trace/epoch"])
    if done > epoch:
        logger.info("TRACE epoch %d already ended (store is at %d epoch ends); nothing to do", epoch, done)
        return {**summary, "trace/refs_tightened": 0.0}
    metrics = store.end_epoch()
    if config.mode == "paper" and config.paper.schedule == "adaptive":
        lam_now = metrics.get("trace/lambda", config.paper.lam)
        cr, ref = (None if math.isnan(v) else v  # NaN: no correct rollout (with a reference) this epoch
                   for v in (metrics["trace/correct_rounds_mean"], metrics["trace/correct_ref_mean"]))
        lam_new = adapt_lambda(config.paper, lam_now, cr, ref)
        store.set_lambda(lam_new)
        metrics["trace/lambda"] = lam_new
    if global_step is not None:
        store.save(refs_dir(trainer_config, config), global_step)
        metrics["trace/snapshot_saved"] = 1.0
    else:
        logger.warning("TRACE on_epoch_end(epoch=%d) without global_step: references tightened but not saved; "
                       "pass global_step=trainer.global_steps so a resume can restore them", epoch)
        metrics["trace/snapshot_saved"] = 0.0
    return metrics


def save(trainer_config: Any, global_step: int) -> str:
    """Snapshot now (e.g. with every verl checkpoint, so a mid-epoch resume keeps the epoch's observations)."""
    config, store = _store(trainer_config)
    return store.save(refs_dir(trainer_config, config), global_step)


def restore(trainer_config: Any, global_step: int) -> dict[str, float]:
    """Load the newest snapshot at or before `global_step`; none found → start empty (a fresh run)."""
    config, store = _store(trainer_config)
    loaded = store.load(refs_dir(trainer_config, config), int(global_step))
    if loaded is None:
        store.reset()
    return {**store.summary(), "trace/restored_step": float(-1 if loaded is None else loaded)}
