"""The recipe's default agent-loop manager starts its gated worker in Ray (issue #11, defect 1).

The worker class used to be importable by reference; Ray then failed to construct it with `super(type, obj):
obj must be an instance or subtype of type` from verl's agent_loop_tq.py. Here the class the manager installs is
started in a real Ray actor with a config verl cannot use: construction must reach verl's own __init__ body
(which fails on the empty config), not die in the class machinery. The whole worker serving a training job is
tests/test_train_tiny_e2e.py."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.verl


@pytest.fixture(scope="module")
def ray_session(short_tmp):
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=f"{short_tmp}/ray_tw")
    yield ray
    ray.shutdown()


def test_manager_installs_a_worker_that_ray_can_construct(ray_session):
    from omegaconf import OmegaConf
    from verl.utils.import_utils import load_class_from_fqn

    from hyperseyes_verl.verl.teacher_worker import GatedTeacherMixin

    cls = load_class_from_fqn("hyperseyes_verl.verl.teacher_worker.GatedAgentLoopManagerTQ", "AgentLoopManager")
    manager = object.__new__(cls)
    cls.__init__(manager, OmegaConf.create({"actor_rollout_ref": {"rollout": {}, "model": {}}}), llm_client=None)
    worker_cls = manager.agent_loop_workers_class
    assert issubclass(worker_cls.__ray_actor_class__, GatedTeacherMixin)
    actor = worker_cls.remote(None, llm_client=None, teacher_client=None, reward_loop_worker_handles=None)
    with pytest.raises(Exception) as info:
        ray_session.get(actor.__ray_ready__.remote(), timeout=120)
    text = str(info.value)
    assert "super(type, obj)" not in text
    assert "'NoneType' object has no attribute 'actor_rollout_ref'" in text  # inside verl's AgentLoopWorker

