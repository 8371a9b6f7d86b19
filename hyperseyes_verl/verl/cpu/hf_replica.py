"""verl glue for the HF rollout: a RolloutReplica (registered as `rollout.name=hf`) and the in-worker adapter.

- `HFReplica` starts one `HFRolloutServer` Ray actor per replica in every mode verl uses: hybrid (the
  student's rollout next to the FSDP actor), colocated and standalone (the OPD teacher pool). The actor takes
  no Ray CPU slot: on a 2-core box the slots belong to verl's workers.
- `HFServerAdapter` is what verl's actor worker builds with `get_rollout_class("hf", "async")`: verl's V1
  trainer syncs weights with the `naive` checkpoint engine, which hands it the actor's (name, tensor) pairs.
  Every rank drains the generator (FSDP gathers are collective); the first rank of each replica sends.
"""
from __future__ import annotations

import logging

import ray
from omegaconf import OmegaConf

from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutMode, RolloutReplica

logger = logging.getLogger(__name__)


def server_name(role: str, replica_rank: int) -> str:
    """Ray actor name of a replica's server; role = rollout | teacher<suffix> | reward<suffix>."""
    return f"hyperseyes_hf_{role}_{replica_rank}"


def _model_path(model_config) -> str:
    for key in ("local_path", "path"):
        value = (OmegaConf.select(model_config, key, default=None) if OmegaConf.is_config(model_config)
                 else getattr(model_config, key, None))
        if value:
            return str(value)
    raise ValueError(f"the HF rollout needs a model path; got a model config without one: {model_config!r}")


class HFReplica(RolloutReplica):
    def _role(self) -> str:
        kind = "teacher" if self.is_teacher_model else "reward" if self.is_reward_model else "rollout"
        return kind + self.name_suffix

    async def launch_servers(self):
        # imported here: a Ray worker that unpickles the server class imports hf_server, whose verl import
        # fires the plugin's registration hook, which imports this module
        from hyperseyes_verl.verl.cpu.hf_server import HFRolloutServer

        name = server_name(self._role(), self.replica_rank)
        actor = ray.remote(HFRolloutServer).options(name=name, num_cpus=0, max_concurrency=64)
        server = actor.remote(_model_path(self.model_config), self.config.prompt_length,
                              self.config.response_length, seed=int(getattr(self.config, "seed", 0) or 0))
        await server.ready.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = name

    async def init_standalone(self):
        self.rollout_mode = RolloutMode.STANDALONE
        await self.launch_servers()

    async def init_colocated(self, resource_pool):
        self.rollout_mode = RolloutMode.COLOCATED
        self.resource_pool = resource_pool
        await self.launch_servers()


class HFServerAdapter(BaseRollout):
    def __init__(self, config, model_config, device_mesh, *args, **kwargs):
        super().__init__(config, model_config, device_mesh, *args, **kwargs)
        self.sleep_level = 2
        mesh = self.device_mesh
        self.replica_rank = mesh["dp"].get_local_rank() if mesh is not None else 0
        self.is_sender = mesh is None or (mesh["infer_tp"].get_local_rank() == 0
                                          and mesh["infer_pp"].get_local_rank() == 0)

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(self, weights, wire_format: str = "named_tensors", **kwargs):
        if wire_format != "named_tensors":
            raise ValueError(f"the HF rollout takes full named tensors, not wire_format={wire_format!r}")
        if kwargs.get("peft_config") is not None:
            raise ValueError("the HF rollout takes merged weights: set actor_rollout_ref.model.lora.merge=true")
        named = []
        async_iter = hasattr(weights, "__aiter__")
        iterator = weights.__aiter__() if async_iter else iter(weights)
        while True:
            try:
                name, tensor = (await iterator.__anext__()) if async_iter else next(iterator)
            except (StopIteration, StopAsyncIteration):
                break
            if hasattr(tensor, "full_tensor"):  # a DTensor shard: gather (collective, every rank)
                tensor = tensor.full_tensor()
            if self.is_sender:
                named.append((name, tensor.detach().to("cpu", copy=True)))
        if not self.is_sender:
            return
        server = ray.get_actor(server_name("rollout", self.replica_rank))
        loaded = await server.load_weights.remote(named, kwargs.get("global_steps"))
        logger.info("HF rollout replica %d: %d tensors synced (global_steps=%s)", self.replica_rank, loaded,
                    kwargs.get("global_steps"))


def register() -> None:
    """Make `rollout.name=hf` known to verl's replica registry and to the in-worker adapter lookup."""
    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    from hyperseyes_verl.verl.cpu import ROLLOUT_NAME

    RolloutReplicaRegistry.register(ROLLOUT_NAME, lambda: HFReplica)
    base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = f"{__name__}.HFServerAdapter"


