"""The verl the adapters were written against: pinned private sources, one-line refusal of another verl."""
from __future__ import annotations

import logging

import pytest

pytestmark = pytest.mark.verl

import verl  # noqa: E402
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, _agent_loop_registry  # noqa: E402

from hyperseyes_verl.verl import plugin, verl_guard  # noqa: E402


@pytest.mark.parametrize("ref", sorted({**verl_guard.PINNED_SOURCES, **verl_guard.WATCHED_SOURCES}))
def test_private_verl_methods_we_rely_on_are_unchanged(ref):
    """Fails when verl's source of an overridden / mirrored / relied-on private method changes: re-read it, adapt
    the HyperEyes side (teacher_worker.py, trainer.py), then record the new hash in verl_guard.py."""
    assert verl.__version__ == verl_guard.SUPPORTED_VERL, "the hashes are recorded for verl 0.9.1"
    obj = verl_guard.resolve(ref)
    assert obj is not None, f"{ref} no longer exists in verl {verl.__version__}"
    pinned = {**verl_guard.PINNED_SOURCES, **verl_guard.WATCHED_SOURCES}[ref]
    assert verl_guard.source_hash(obj) == pinned, f"verl's {ref} changed since it was pinned"


def test_the_pinned_compute_advantage_is_the_one_hyperseyes_trainer_mirrors():
    """trainer.py copies PPOTrainer._compute_advantage; the pin covers it only while PPOTrainerSync (our base)
    inherits that method rather than overriding it."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    from hyperseyes_verl.verl.trainer import HyperEyesTrainer

    assert HyperEyesTrainer.__bases__ == (PPOTrainerSync,)
    assert PPOTrainerSync._compute_advantage is PPOTrainer._compute_advantage
    assert f"{PPOTrainer.__module__}:PPOTrainer._compute_advantage" in verl_guard.PINNED_SOURCES


def test_every_required_callable_exists_in_verl_0_9_1():
    for part in verl_guard.REQUIRED:
        assert verl_guard.check(part) is None, part


def test_verdict_is_one_line_with_the_value_and_the_fix():
    assert verl_guard.verdict("agent_loop", "0.9.1", [], [], skip_version=False) is None
    line = verl_guard.verdict("agent_loop", "0.9.0", ["AgentLoopBase.ct_merge_context_msg"], [], skip_version=False)
    assert "\n" not in line and "found verl 0.9.0" in line and "AgentLoopBase.ct_merge_context_msg" in line
    assert "pip install verl==0.9.1" in line and verl_guard.SKIP_ENV not in line  # skipping would not help
    only_version = verl_guard.verdict("trainer", "0.10.0.dev0", [], [], skip_version=False)
    assert verl_guard.SKIP_ENV in only_version
    assert verl_guard.verdict("trainer", "0.10.0.dev0", [], [], skip_version=True) is None
    changed = verl_guard.verdict("trainer", "0.10.0.dev0", [], ["PPOTrainer._compute_advantage"], skip_version=True)
    assert "changed since 0.9.1" in changed and "PPOTrainer._compute_advantage" in changed


@pytest.fixture
def verl_0_9_0(monkeypatch):
    """verl 0.9.0 as the adapters see it: another version string and no ct_merge_context_msg (new in 0.9.1)."""
    monkeypatch.setattr(verl, "__version__", "0.9.0")
    monkeypatch.delattr(AgentLoopBase, "ct_merge_context_msg")
    monkeypatch.setattr(verl_guard, "_OK", set())
    monkeypatch.delenv(verl_guard.SKIP_ENV, raising=False)


def test_agent_loop_refuses_to_be_built_on_another_verl(verl_0_9_0):
    from hyperseyes_verl.verl.agent_loop import HyperEyesAgentLoop

    with pytest.raises(verl_guard.VerlVersionError, match=r"needs verl==0\.9\.1: found verl 0\.9\.0; missing "
                                                            r"AgentLoopBase\.ct_merge_context_msg") as info:
        HyperEyesAgentLoop(trainer_config=None, server_manager=None, tokenizer=None, processor=None,
                           dataset_cls=None, data_config=None)
    assert "\n" not in str(info.value)


def test_trainer_reward_manager_managers_and_losses_refuse_another_verl(verl_0_9_0, monkeypatch):
    from hyperseyes_verl.verl import distill_loss, teacher_worker
    from hyperseyes_verl.verl.reward_manager import TraceRewardManager
    from hyperseyes_verl.verl.trainer import HyperEyesTrainer

    builds = [lambda: HyperEyesTrainer(None), lambda: TraceRewardManager(None, None),
              lambda: teacher_worker.GatedAgentLoopManager(None, llm_client=None),
              lambda: teacher_worker.GatedAgentLoopManagerTQ(None, llm_client=None),
              lambda: distill_loss.gated_reverse_kl_loss(None, None, {}, None)]
    for build in builds:
        with pytest.raises(verl_guard.VerlVersionError, match="found verl 0.9.0"):
            build()
    # the development branch with the env override: a version string alone no longer stops the trainer...
    monkeypatch.setattr(AgentLoopBase, "ct_merge_context_msg", lambda self: None, raising=False)
    monkeypatch.setenv(verl_guard.SKIP_ENV, "1")
    assert verl_guard.check("trainer") is None
    # ...but a changed private method it mirrors does
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    monkeypatch.setattr(PPOTrainer, "_compute_advantage", lambda self, batch, metrics, **kw: batch)
    assert "changed since 0.9.1 (overridden here) PPOTrainer._compute_advantage" in verl_guard.check("trainer")


def test_plugin_says_it_once_at_registration_and_still_registers(verl_0_9_0, monkeypatch, caplog):
    monkeypatch.setattr(plugin, "_ERRORS", [])
    monkeypatch.delenv(plugin.STRICT_ENV, raising=False)
    monkeypatch.delitem(_agent_loop_registry, plugin.AGENT_NAME, raising=False)
    with caplog.at_level(logging.ERROR, logger="hyperseyes_verl.plugin"):
        plugin.register_agent_loop()
    assert [r.getMessage() for r in caplog.records] == plugin.registration_errors()
    assert len(plugin.registration_errors()) == 1 and "found verl 0.9.0" in plugin.registration_errors()[0]
    # registered anyway: a job that selects it gets the constructor's clear line, not "not registered"
    assert _agent_loop_registry[plugin.AGENT_NAME] == {"_target_": plugin.AGENT_TARGET}
    monkeypatch.setenv(plugin.STRICT_ENV, "1")
    with pytest.raises(verl_guard.VerlVersionError):
        plugin.register_agent_loop()
