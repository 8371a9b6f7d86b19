"""The equal-length position_ids workaround (hyperseyes_verl/verl/verl_fixes.py, patches/README.md), on verl's
own functions: a batch whose trajectories all have one length, packed the way TransferQueue packs it."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

pytestmark = pytest.mark.verl


def rows(lengths):
    return [torch.arange(4 * n).reshape(4, n) + 1000 * i for i, n in enumerate(lengths)]


def packed(rs):
    # what transfer_queue's storage manager does with the per-trajectory (4, L) position ids
    pos = torch.nested.as_nested_tensor([r.clone() for r in rs], layout=torch.jagged)
    return TensorDict({"position_ids": pos, "uid": torch.arange(len(rs))}, batch_size=[len(rs)])


def test_verls_own_function_breaks_an_equal_length_batch():
    import verl.utils.tensordict_utils as tu

    original = getattr(tu.maybe_fix_3d_position_ids, "__wrapped__", tu.maybe_fix_3d_position_ids)
    data = packed(rows([5, 5, 5, 5]))
    original(data)
    with pytest.raises(Exception):  # split_with_sizes / cond: the crash the end-to-end run met
        tu.index_select_tensor_dict(data, torch.tensor([2, 0]))["position_ids"].unbind()


@pytest.mark.parametrize("lengths", [[5, 5, 5, 5], [3, 7, 5, 6], [4, 4]])
def test_wrapped_function_keeps_every_row(lengths):
    import verl.utils.tensordict_utils as tu

    from hyperseyes_verl.verl import verl_fixes

    verl_fixes.install_position_ids_fix()
    rs = rows(lengths)
    data = packed(rs)
    tu.maybe_fix_3d_position_ids(data)
    picked = tu.index_select_tensor_dict(data, torch.tensor([1, 0]))["position_ids"].unbind()
    assert torch.equal(picked[0], rs[1]) and torch.equal(picked[1], rs[0])
    assert data["position_ids"]._ragged_idx == 2


def test_plugin_wrapped_the_function_verls_engine_uses():
    import verl  # noqa: F401  (loads the plugin, which installs the wrap before the engine modules import it)
    from verl.workers.engine import base as engine_base
    from verl.workers import engine_workers

    assert getattr(engine_base.maybe_fix_3d_position_ids, "_hyperseyes_fixed", False)
    assert getattr(engine_workers.maybe_fix_3d_position_ids, "_hyperseyes_fixed", False)


def test_text_only_sample_runs_through_verls_qwen2_vl_forward(tiny_qwen25_dir):
    """verl's Qwen2/2.5-VL embedding step for a sample without images (a textual question in an RL batch)."""
    import transformers
    from verl.models.transformers import qwen2_vl

    from hyperseyes_verl.verl import verl_fixes

    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen25_dir).model
    ids = torch.tensor([[5, 9, 17, 33]])
    original = getattr(qwen2_vl._get_input_embeds, "__wrapped__", qwen2_vl._get_input_embeds)
    with pytest.raises(AttributeError, match="mean"):
        original(model, ids)
    verl_fixes.install_qwen2_vl_text_only_fix()
    embeds, mask = qwen2_vl._get_input_embeds(model, ids, attention_mask=torch.ones_like(ids))
    assert torch.equal(embeds, model.get_input_embeddings()(ids)) and mask.shape == ids.shape
    embeds.sum().backward()  # the dummy vision pass stays in the graph (every FSDP rank runs the tower)
    assert any(p.grad is not None for p in model.visual.parameters())
