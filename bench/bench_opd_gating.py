"""Teacher tokens scored per step: gated worker vs verl's ungated path, at success rates 0.25 / 0.5 / 0.75.

Both run verl 0.9.1's real teacher request path (AsyncTeacherLLMServerManager) against a fake teacher
server that counts the tokens it prefills. Goal: gated / ungated = failure rate.
Run: RAY_AUTH_MODE=disabled .venv/bin/python bench/bench_opd_gating.py
"""
import asyncio
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


async def main():
    from hyperseyes_verl.testing.cpu_patches import apply_processor_patch
    from hyperseyes_verl.testing.tiny_vl import build_tiny_vl

    apply_processor_patch()
    import hyperseyes_verl.verl.distill_loss  # noqa: F401
    from test_verl_opd_worker import FakeTeacher, compose_config, make_output, make_worker
    from verl.experimental.teacher_loop.teacher_manager import AsyncTeacherLLMServerManager
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ

    model = str(build_tiny_vl(os.path.join(tempfile.mkdtemp(prefix="hyp_b_"), "m"), "qwen2_5_vl"))
    config = compose_config(model)
    rng = random.Random(0)
    n = 256  # rollouts per step (32 prompts x 8, the official batch)
    print(f"{'success':>8} {'ungated tok':>12} {'gated tok':>10} {'ratio':>6} {'failure rate':>12}")
    for success in (0.25, 0.5, 0.75):
        lens = [(rng.randint(200, 400), rng.randint(50, 300)) for _ in range(n)]
        accs = [1 if rng.random() < success else 0 for _ in range(n)]
        counts = {}
        for label in ("ungated", "gated"):
            teacher = FakeTeacher()
            if label == "gated":
                w = make_worker(config, teacher)
            else:  # verl's own worker: asks the teacher for every rollout
                w = object.__new__(AgentLoopWorkerTQ.__ray_actor_class__)
                w.config, w.distillation_enabled = config, True
                w.teacher_key = config.distillation.teacher_key
                w.teacher_server_manager = AsyncTeacherLLMServerManager(config=config, teacher_client={"default": teacher})
            outs = [make_output(a, n_prompt=p, n_resp=r) for a, (p, r) in zip(accs, lens)]
            await asyncio.gather(*(w._compute_teacher_logprobs(o, o.prompt_ids, o.response_ids, validate=False)
                                   for o in outs))
            counts[label] = teacher.tokens
        fail = 1 - sum(accs) / n
        print(f"{success:>8.2f} {counts['ungated']:>12d} {counts['gated']:>10d} "
              f"{counts['gated'] / counts['ungated']:>6.3f} {fail:>12.3f}")


if __name__ == "__main__":
    asyncio.run(main())
