"""Gated teacher worker on real verl 0.9.1 objects: AgentLoopOutput, verl's AsyncTeacherLLMServerManager
(the teacher request path, images included) and the V1 worker class; only the teacher server is faked."""
import asyncio
import logging
import os

import pytest
import torch
from PIL import Image

from hyperseyes_verl.opd import TEACHER_SENTINEL_ID, TeacherStatus

pytestmark = pytest.mark.verl


def compose_config(model_dir, extra=()):
    import verl
    from hydra import compose, initialize_config_dir

    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer/config")
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=[
            f"actor_rollout_ref.model.path={model_dir}",
            "actor_rollout_ref.rollout.name=vllm",
            "distillation.enabled=true",
            "distillation.n_gpus_per_node=1",
            "distillation.nnodes=1",
            f"distillation.teacher_models.teacher_model.model_path={model_dir}",
            "distillation.teacher_models.teacher_model.inference.tensor_model_parallel_size=1",
            "distillation.distillation_loss.loss_mode=k1_failed_only",
            "distillation.distillation_loss.use_policy_gradient=true",
            "+hyperseyes.opd.teacher_retry_backoff_s=0",
            "+hyperseyes.opd.teacher_timeout_s=0.5",
            *extra,
        ])


class FakeTeacher:
    """verl LLMServerClient stand-in: prompt_logprobs for every position; faults on demand."""

    def __init__(self, faults=()):
        self.faults = list(faults)  # per call: None | "error" | "timeout" | "short" | "nan"
        self.calls = []
        self.tokens = 0

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        self.calls.append({"len": len(prompt_ids), "images": len(image_data or []), "params": dict(sampling_params)})
        fault = self.faults.pop(0) if self.faults else None
        if fault == "error":
            raise ConnectionError("teacher replica down")
        if fault == "timeout":
            await asyncio.sleep(5)
        self.tokens += len(prompt_ids)
        n = len(prompt_ids) - (1 if fault == "short" else 0)
        logprobs = [[-0.5]] * (n - 1) + [[float("nan") if fault == "nan" else -0.5]]
        return TokenOutput(token_ids=[0], extra_fields={"prompt_ids": [[t] for t in prompt_ids[:n]],
                                                        "prompt_logprobs": logprobs})


def make_worker(config, teacher):
    from verl.experimental.teacher_loop.teacher_manager import AsyncTeacherLLMServerManager

    from hyperseyes_verl.verl.teacher_worker import gated_worker_tq_class

    w = object.__new__(gated_worker_tq_class())  # the TQ __init__ would connect to TransferQueue
    w.config = config
    w.distillation_enabled = True
    w.teacher_key = config.distillation.teacher_key
    w.teacher_server_manager = AsyncTeacherLLMServerManager(config=config, teacher_client={"default": teacher})
    return w


def make_output(acc, n_prompt=6, n_resp=5, images=1, **info):
    from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput

    out = AgentLoopOutput(prompt_ids=list(range(10, 10 + n_prompt)), response_ids=list(range(50, 50 + n_resp)),
                          response_mask=[1, 1, 0, 0, 1][:n_resp] + [1] * max(0, n_resp - 5),
                          multi_modal_data={"images": [Image.new("RGB", (32, 32))] * images},
                          reward_score=float(acc), metrics=AgentLoopMetrics())
    out.extra_fields["reward_extra_info"] = {"acc": float(acc), "opd_eligible": int(acc <= 0), **info}
    return out


@pytest.fixture(scope="module")
def config(tiny_qwen25_dir):
    import hyperseyes_verl.verl.distill_loss  # noqa: F401  (loss_mode must be registered before validation)

    return compose_config(tiny_qwen25_dir)


async def run(worker, outputs):
    for o in outputs:
        await worker._compute_teacher_logprobs(o, o.prompt_ids, o.response_ids, validate=False, sample_kwargs={})


async def test_teacher_only_scores_failures_and_sees_images(config):
    teacher = FakeTeacher()
    w = make_worker(config, teacher)
    # a correct answer with a negative TRACE bonus still counts as a success (components, not the total)
    outs = [make_output(1, trace_bonus=-0.1), make_output(0), make_output(0, images=3), make_output(1)]
    await run(w, outs)
    assert len(teacher.calls) == 2
    assert [c["images"] for c in teacher.calls] == [1, 3]  # the teacher sees the same images (crops included)
    assert teacher.calls[0]["params"]["prompt_logprobs"] == 0 and teacher.calls[0]["len"] == 11
    # per-row fields the advantage step sums into opd/teacher_tokens_scored
    assert sum(o.extra_fields["opd_teacher_tokens"] for o in outs) == teacher.tokens == 22
    for o, status in zip(outs, ["skipped", "scored", "scored", "skipped"]):
        assert o.extra_fields["opd_teacher_status"] == status
        assert o.extra_fields["teacher_ids"].shape == o.extra_fields["teacher_logprobs"].shape == (11, 1)
    assert (outs[0].extra_fields["teacher_ids"] == TEACHER_SENTINEL_ID).all()
    assert (outs[1].extra_fields["teacher_ids"] >= 0).all()
    assert torch.allclose(outs[1].extra_fields["teacher_logprobs"], torch.full((11, 1), -0.5))


@pytest.mark.parametrize("faults,kind,calls", [
    (["error", "error", "error"], "teacher_errors", 3),  # bounded: 3 attempts, then masked
    (["timeout", "timeout", "timeout"], "teacher_timeouts", 3),
    (["short"], "teacher_wrong_length", 1),  # deterministic: not retried
    (["nan"], "teacher_nonfinite_logprobs", 1),  # a NaN would turn the loss into NaN: masked, not retried
])
async def test_teacher_faults_are_masked_and_logged(config, caplog, faults, kind, calls):
    teacher = FakeTeacher(faults)
    w = make_worker(config, teacher)
    out = make_output(0)
    with caplog.at_level(logging.WARNING, logger="hyperseyes_verl.verl.teacher_worker"):
        await run(w, [out])
    assert len(teacher.calls) == calls and f"OPD teacher failed ({kind})" in caplog.text
    # the status the advantage step counts into opd/teacher_failures
    assert out.extra_fields["opd_teacher_status"] == TeacherStatus.FAILED.value
    # never the official silent fall-back to the student's own log-probs: a sentinel row, masked later
    assert (out.extra_fields["teacher_ids"] == TEACHER_SENTINEL_ID).all()
    assert out.extra_fields["opd_teacher_tokens"] == 0


async def test_transient_error_then_success_is_retried(config):
    teacher = FakeTeacher(["error", None])
    w = make_worker(config, teacher)
    out = make_output(0)
    await run(w, [out])
    assert len(teacher.calls) == 2 and out.extra_fields["opd_teacher_status"] == "scored"


async def test_validation_and_disabled_distillation_do_nothing(config):
    teacher = FakeTeacher()
    w = make_worker(config, teacher)
    out = make_output(0)
    await w._compute_teacher_logprobs(out, out.prompt_ids, out.response_ids, validate=True)
    assert not teacher.calls and "teacher_ids" not in out.extra_fields


async def test_ungated_when_reward_is_unknown(config):
    # colocated reward model path: no reward_extra_info yet -> ask the teacher (the trainer's opd_mask gates)
    teacher = FakeTeacher()
    w = make_worker(config, teacher)
    out = make_output(1)
    del out.extra_fields["reward_extra_info"]
    await run(w, [out])
    assert len(teacher.calls) == 1


async def test_opd_disabled_asks_the_teacher_for_every_row(tiny_qwen25_dir):
    # hyperseyes.opd.enabled=false leaves verl's plain distillation, which reads every row's teacher outputs:
    # a sentinel placeholder there would be distilled towards as if it were a teacher log-prob
    import hyperseyes_verl.verl.distill_loss  # noqa: F401

    teacher = FakeTeacher()
    w = make_worker(compose_config(tiny_qwen25_dir, ["+hyperseyes.opd.enabled=false"]), teacher)
    outs = [make_output(1), make_output(0)]
    await run(w, outs)
    assert len(teacher.calls) == 2 and [o.extra_fields["opd_teacher_status"] for o in outs] == ["scored"] * 2


def test_manager_installs_the_gated_worker():
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ

    from hyperseyes_verl.verl import teacher_worker as tw
    from verl.utils.import_utils import load_class_from_fqn

    # exactly how TaskRunnerV1 resolves +actor_rollout_ref.rollout.agent.agent_loop_manager_class
    cls = load_class_from_fqn("hyperseyes_verl.verl.teacher_worker.GatedAgentLoopManagerTQ", "AgentLoopManager")
    assert issubclass(cls, AgentLoopManagerTQ)
    m = object.__new__(cls)
    # run the real __init__ chain with minimal arguments (no Ray call happens in __init__)
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"actor_rollout_ref": {"rollout": {}, "model": {}}})
    cls.__init__(m, cfg, llm_client=None)
    worker_cls = m.agent_loop_workers_class.__ray_actor_class__
    assert issubclass(worker_cls, tw.GatedTeacherMixin) and worker_cls.__name__ == "GatedAgentLoopWorkerTQ"
    legacy = object.__new__(tw.GatedAgentLoopManager)
    tw.GatedAgentLoopManager.__init__(legacy, cfg, llm_client=None)
    assert legacy.agent_loop_workers_class.__ray_actor_class__ is tw.GatedAgentLoopWorker


async def test_extra_arguments_of_a_newer_verl_reach_verl_s_method(config):
    """verl's hook is private; a newer verl calls it with more keyword arguments (an open PR adds global_steps=).
    The override passes them on instead of failing every teacher call with a TypeError."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    from hyperseyes_verl.verl.teacher_worker import GatedTeacherMixin

    seen = []

    class NewerVerlWorker(AgentLoopWorker):  # the hook as that PR changes it
        async def _compute_teacher_logprobs(self, output, prompt_ids, response_ids, validate, sample_kwargs=None,
                                            global_steps=None):
            seen.append(global_steps)
            await super()._compute_teacher_logprobs(output, prompt_ids, response_ids, validate, sample_kwargs)

    teacher = FakeTeacher()
    w = object.__new__(type("W", (GatedTeacherMixin, NewerVerlWorker), {}))
    w.__dict__.update(make_worker(config, teacher).__dict__)
    failed, ok = make_output(0), make_output(1)
    for o in (failed, ok):
        await w._compute_teacher_logprobs(o, o.prompt_ids, o.response_ids, validate=False, sample_kwargs={},
                                          global_steps=7)
    assert seen == [7] and len(teacher.calls) == 1  # the success is still skipped without asking verl
    assert failed.extra_fields["opd_teacher_status"] == "scored"


def test_gated_worker_class_survives_workers_started_inside_init():
    """The managers do not depend on verl starting its workers after __init__: a manager that starts them
    inside __init__ (right after verl assigns its default class) still gets the gated worker."""
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import AgentLoopManager
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ

    from hyperseyes_verl.verl import teacher_worker as tw

    cfg = OmegaConf.create({"actor_rollout_ref": {"rollout": {}, "model": {}}})
    for verl_base, gated in ((AgentLoopManagerTQ, tw.GatedAgentLoopManagerTQ),
                             (AgentLoopManager, tw.GatedAgentLoopManager)):
        class EagerVerl(verl_base):  # a verl that starts the workers in __init__
            def __init__(self, *args, **kwargs):
                self.agent_loop_workers_class = "verl's default worker"
                super().__init__(*args, **kwargs)
                self.started_with = self.agent_loop_workers_class

        manager_cls = type("M", (tw._GatedWorkersMixin, EagerVerl),
                           {"_build_worker": staticmethod(gated._build_worker), "_guard_parts": gated._guard_parts})
        m = manager_cls(cfg, llm_client=None)
        assert issubclass(m.started_with.__ray_actor_class__, tw.GatedTeacherMixin)
        assert m.started_with is m.agent_loop_workers_class  # one remote class per manager
