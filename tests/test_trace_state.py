"""trace_state (driver-side epoch end / save / restore) with the process-local store."""
from __future__ import annotations

import logging

import pytest
from omegaconf import OmegaConf

from hyperseyes_verl.trace.shared import drop_local_store, local_store
from hyperseyes_verl.trace.store import StoreConfig
from hyperseyes_verl.verl import trace_state


@pytest.fixture
def trainer_cfg(tmp_path):
    drop_local_store()
    cfg = OmegaConf.create({"trainer": {"default_local_dir": str(tmp_path / "ckpt")},
                            "hyperseyes": {"trace": {"mode": "paper", "store": {"use_ray": False},
                                                     "paper": {"schedule": "adaptive", "lam": 0.02, "lam_max": 0.06,
                                                               "adapt_step": 0.02}}}})
    yield cfg
    drop_local_store()


def test_config_section_and_defaults(trainer_cfg):
    cfg = trace_state.trace_config_from_trainer(trainer_cfg)
    assert cfg.mode == "paper" and cfg.paper.schedule == "adaptive"
    assert trace_state.trace_config_from_trainer(OmegaConf.create({"trainer": {}})).mode == "official"
    assert trace_state.refs_dir(trainer_cfg).endswith("ckpt/hyperseyes_refs")
    with pytest.raises(ValueError, match="invalid hyperseyes.trace"):
        trace_state.trace_config_from_trainer(OmegaConf.create({"hyperseyes": {"trace": {"nope": 1}}}))


def test_epoch_end_tightens_adapts_lambda_saves_and_is_idempotent(trainer_cfg):
    store = local_store(StoreConfig(use_ray=False))
    store.record("d/0", 1, 1, True, 3, 3)  # correct with 3 rounds vs reference 1 -> λ grows
    store.record("d/1", -1, -1, True, 2, 4)
    m = trace_state.on_epoch_end(trainer_cfg, epoch=0, global_step=10)
    assert m["trace/refs_tightened"] == 1 and m["trace/lambda"] == pytest.approx(0.04)
    assert m["trace/snapshot_saved"] == 1.0
    again = trace_state.on_epoch_end(trainer_cfg, epoch=0, global_step=10)
    assert again["trace/refs_tightened"] == 0 and again["trace/epoch"] == 1  # same epoch twice: no-op
    store.record("d/1", -1, -1, True, 1, 1)
    m2 = trace_state.on_epoch_end(trainer_cfg, epoch=1)  # no global step: tightened, not saved
    assert m2["trace/snapshot_saved"] == 0.0 and store.peek("d/1").rounds == 1


def test_restore_at_the_right_step_and_fresh_start(trainer_cfg):
    store = local_store(StoreConfig(use_ray=False))
    store.record("d/0", -1, -1, True, 3, 3)
    trace_state.on_epoch_end(trainer_cfg, epoch=0, global_step=10)
    store.record("d/0", -1, -1, True, 1, 1)
    trace_state.on_epoch_end(trainer_cfg, epoch=1, global_step=20)
    assert trace_state.save(trainer_cfg, 25).endswith("step_25.npz")

    m = trace_state.restore(trainer_cfg, 15)  # resume from the step-15 checkpoint -> snapshot of step 10
    assert m["trace/restored_step"] == 10 and store.peek("d/0").rounds == 3 and m["trace/epoch"] == 1
    assert trace_state.restore(trainer_cfg, 0)["trace/restored_step"] == -1  # fresh run: empty
    assert store.peek("d/0") is None


def test_official_mode_warns_once_when_another_trainer_runs(monkeypatch, caplog):
    """The official group rule lives in HyperEyesTrainer: under verl's own trainer the reward manager says so, once."""
    monkeypatch.setattr(trace_state, "_warned_official_without_trainer", False)
    official = trace_state.trace_config_from_trainer({})
    ours = {"trainer": {"v1": {"trainer_mode": "sync"}}, "hyperseyes": {"selected_trainer": "hyperseyes_sync"}}
    verls = {"trainer": {"v1": {"trainer_mode": "sync"}}}
    with caplog.at_level(logging.WARNING, logger=trace_state.__name__):
        assert not trace_state.warn_if_official_without_trainer(ours, official)
        assert not trace_state.warn_if_official_without_trainer(
            verls, trace_state.trace_config_from_trainer({"hyperseyes": {"trace": {"mode": "paper"}}}))
        assert trace_state.warn_if_official_without_trainer(verls, official)
        assert not trace_state.warn_if_official_without_trainer(verls, official)  # once per process
    [record] = caplog.records
    assert "the trainer is sync, not hyperseyes_sync" in record.getMessage()
    assert trace_state.selected_trainer({"trainer": {"use_v1": False}}).startswith("verl's legacy trainer")
