"""HyperEyesTrainer._compute_advantage against a real local TransferQueue on a CPU Ray: the columns the
agent loop writes (nested tensors, extra_fields with reward_extra_info, teacher rows) in, advantages /
returns / opd_mask / hdpo_tool_advantages out, as verl's update_actor would fetch them."""
import os

import pytest
import torch

pytestmark = pytest.mark.verl  # starts Ray


@pytest.fixture(scope="module")
def tq_session(short_tmp):
    import ray
    import transfer_queue as tq
    import verl
    from hydra import compose, initialize_config_dir

    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer/config")
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=[
            "algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.n=4", "distillation.enabled=true",
            "+hyperseyes.trace.mode=official", "+hyperseyes.opd.beta=0.05"])
    cfg.transfer_queue.enable = True
    cfg.transfer_queue.backend.SimpleStorage.num_data_storage_units = 1
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=os.path.join(short_tmp, "ray"))
    try:
        tq.init(cfg.transfer_queue)
        yield cfg
    finally:
        try:
            tq.close()
        finally:
            ray.shutdown()


def test_compute_advantage_on_transfer_queue(tq_session):
    import transfer_queue as tq
    from tensordict import TensorDict
    from transfer_queue import KVBatchMeta
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    from hyperseyes_verl.verl.trainer import HyperEyesTrainer
    from test_verl_trainer import INFOS

    keys = [f"uidA_{i}_0" for i in range(4)]
    P, R = 3, 4
    rows = []
    for i, info in enumerate(INFOS):
        failed_teacher = i == 3
        t_ids = torch.full((P + R, 1), -1 if failed_teacher or not info["opd_eligible"] else 7, dtype=torch.int32)
        rm = torch.zeros(R)
        rm[-1] = [1.0, 1.0, 0.0, -0.5][i]
        rows.append({"uid": "uidA", "prompts": torch.arange(P), "responses": torch.arange(R),
                     "response_mask": torch.tensor([1, 0, 1, 1]), "rm_scores": rm,
                     "old_log_probs": torch.full((R,), -1.0), "teacher_ids": t_ids,
                     "teacher_logprobs": torch.full((P + R, 1), -3.0),
                     "extra_fields": {"reward_extra_info": info,
                                      "opd_teacher_status": "failed" if failed_teacher else
                                      ("scored" if info["opd_eligible"] else "skipped"),
                                      "opd_teacher_tokens": P + R}})
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(rows))

    t = object.__new__(HyperEyesTrainer)
    t.config = tq_session
    from hyperseyes_verl.hdpo import HDPOConfig
    from hyperseyes_verl.opd import OPDConfig

    from hyperseyes_verl.verl.config_reader import hyperseyes_config

    t.opd_config, t.hdpo_config = OPDConfig(beta=0.05), HDPOConfig()
    t.trace_config = hyperseyes_config(tq_session).trace  # what __init__ sets
    t.trace_mode = t.trace_config.mode
    metrics = {}
    meta = t._compute_advantage(KVBatchMeta(partition_id="train", keys=keys, tags=[{}] * 4), metrics)
    assert {"advantages", "returns", "opd_mask", "token_level_rewards"} <= set(meta.fields)
    out = tq.kv_batch_get(keys=keys, partition_id="train",
                          select_fields=["advantages", "returns", "opd_mask", "token_level_rewards"])
    adv = out["advantages"].to_padded_tensor(0.0)
    ret = out["returns"].to_padded_tensor(0.0)
    # official scores [1.2, .98, 0, -.5] -> GRPO; OPD -0.05*(−1 − (−3)) = -0.1 on row 2 only (row 3's teacher failed)
    r = torch.tensor([1.2, 0.98, 0.0, -0.5])
    g = (r - r.mean()) / (r.std() + 1e-6)
    m = torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert torch.allclose(ret, g[:, None] * m, atol=1e-5)
    assert torch.allclose(adv, (g + torch.tensor([0, 0, -0.1, 0]))[:, None] * m, atol=1e-5)
    opd_mask = out["opd_mask"]
    opd_mask = opd_mask.to_padded_tensor(0.0) if opd_mask.is_nested else opd_mask
    assert opd_mask.reshape(4).tolist() == [0.0, 0.0, 1.0, 0.0]
    assert torch.allclose(out["token_level_rewards"].to_padded_tensor(0.0).sum(-1), r)
    assert metrics["opd/teacher_failures"] == 1.0 and metrics["opd/teacher_skipped"] == 2.0
    assert metrics["opd/teacher_tokens_scored"] == 7.0 and metrics["opd/eligible_frac"] == 0.5
    tq.kv_clear(keys=keys, partition_id="train")
