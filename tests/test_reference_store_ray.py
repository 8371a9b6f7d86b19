"""The shared store as a named Ray actor: one owner for all reward workers (one Ray init for the module)."""
from __future__ import annotations

import os

import pytest
import ray
from omegaconf import OmegaConf

from hyperseyes_verl.verl.store_actor import get_store
from hyperseyes_verl.trace.store import StoreConfig
from hyperseyes_verl.verl import trace_state

pytestmark = pytest.mark.verl  # starts Ray

CFG = StoreConfig(actor_name="hyp_test_refs")


@pytest.fixture(scope="module")
def ray_session(short_tmp):
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=os.path.join(short_tmp, "ray"),
             runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}}, logging_level="ERROR")
    yield
    ray.shutdown()


@ray.remote(num_cpus=0)
class FakeRewardWorker:
    """Stands in for one of verl's RewardLoopWorker processes."""

    def pid(self):
        return os.getpid()

    async def record(self, worker: int, n: int):
        from hyperseyes_verl.verl.store_actor import get_store
        from hyperseyes_verl.trace.store import StoreConfig

        handle = get_store(StoreConfig(actor_name="hyp_test_refs"))  # get-or-create by name, possibly racing
        refs = []
        for i in range(n):
            info = await handle.arecord(f"ds/{i}", 5, 5, True, 1 + (i + worker) % 4, worker)
            refs.append(info.rounds)
        return handle.is_remote, refs


@ray.remote(num_cpus=0)
class ConcurrentWorker:
    async def record_concurrently(self, n: int):
        import asyncio

        from hyperseyes_verl.verl.store_actor import get_store
        from hyperseyes_verl.trace.store import StoreConfig

        handle = get_store(StoreConfig(actor_name="hyp_batch_refs"))
        infos = await asyncio.gather(*(handle.arecord(f"b/{i}", i % 6, i % 6, True, 1, 1) for i in range(n)))
        return [i.rounds for i in infos]


def test_concurrent_records_are_coalesced_and_answered_in_order(ray_session):
    # 50 concurrent records from one worker travel as micro-batches; each caller gets its own prompt's reference.
    # The worker created the (non-detached) store actor, so it owns it: keep it alive as verl keeps its reward
    # workers for the whole job (a temporary handle lets Ray kill owner and store before the summary below).
    worker = ConcurrentWorker.remote()
    assert ray.get(worker.record_concurrently.remote(50)) == [i % 6 for i in range(50)]
    assert get_store(StoreConfig(actor_name="hyp_batch_refs")).summary()["trace/refs_total"] == 50


def test_workers_in_several_processes_share_one_actor(ray_session, tmp_path):
    workers = [FakeRewardWorker.remote() for _ in range(2)]
    assert len(set(ray.get([w.pid.remote() for w in workers]))) == 2  # really separate processes
    results = ray.get([w.record.remote(k, 20) for k, w in enumerate(workers)])
    assert all(remote for remote, _ in results)
    assert all(r == 5 for _, refs in results for r in refs)  # frozen at the dataset reference during the epoch
    handle = get_store(CFG)
    assert handle.summary()["trace/refs_total"] == 20  # one store, not two
    m = handle.end_epoch()
    assert m["trace/observations"] == 40 and m["trace/refs_tightened"] == 20
    for i in range(20):  # worker k saw prompt i with (rounds, searches) = (1 + (i + k) % 4, k)
        info = handle.peek(f"ds/{i}")
        assert (info.rounds, info.searches) == min((1 + (i + k) % 4, k) for k in range(2))


def test_trace_state_drives_the_actor_and_restores(ray_session, tmp_path):
    trainer_cfg = OmegaConf.create({"trainer": {"default_local_dir": str(tmp_path)},
                                    "hyperseyes": {"trace": {"store": {"actor_name": "hyp_state_refs"}}}})
    handle = get_store(StoreConfig(actor_name="hyp_state_refs"))
    ray.get(handle._actor.record.remote("a/1", -1, -1, True, 2, 2))
    m = trace_state.on_epoch_end(trainer_cfg, epoch=0, global_step=4)
    assert m["trace/refs_tightened"] == 1 and os.path.exists(tmp_path / "hyperseyes_refs" / "step_4.npz")
    handle.reset()
    assert trace_state.restore(trainer_cfg, 4)["trace/restored_step"] == 4
    assert handle.peek("a/1").rounds == 2
