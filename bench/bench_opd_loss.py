"""Overhead of the gated distillation loss (k1_failed_only) vs verl's k1 loss on the same micro-batch.
Run: .venv/bin/python bench/bench_opd_loss.py   (prints median time per call and the ratio, calls interleaved)
"""
import time

import torch
from tensordict import TensorDict


def make_batch(B=64, P=512, R=1024, seed=0):
    from verl.workers.utils.padding import left_right_2_no_padding

    g = torch.Generator().manual_seed(seed)
    L = P + R
    attn = torch.ones(B, L, dtype=torch.long)
    resp_mask = (torch.rand(B, R, generator=g) > 0.3).long()
    t_ids = torch.randint(0, 1000, (B, L, 1), generator=g, dtype=torch.int32)
    t_ids[::2] = -1  # half the rows skipped (successes)
    cols = {"input_ids": torch.randint(0, 1000, (B, L), generator=g), "attention_mask": attn,
            "response_mask": resp_mask, "position_ids": torch.arange(L).expand(B, L).clone(),
            "prompts": torch.zeros(B, P, dtype=torch.long), "responses": torch.zeros(B, R, dtype=torch.long),
            "teacher_ids": t_ids, "teacher_logprobs": -torch.rand(B, L, 1, generator=g)}
    td = left_right_2_no_padding(TensorDict(cols, batch_size=B))
    lp = torch.nested.nested_tensor_from_jagged(-torch.rand(td["input_ids"].values().shape[0], generator=g),
                                                offsets=td["input_ids"].offsets())
    return td, {"log_probs": lp}


def timed_pair(fa, fb, reps=15):
    """Median seconds per call of fa and fb, calls interleaved so machine noise hits both alike."""
    import statistics

    fa(), fb()  # warm-up
    ta, tb = [], []
    for _ in range(reps):
        for fn, out in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def main():
    import hyperseyes_verl.verl.distill_loss  # noqa: F401
    from verl.trainer.distillation.losses import get_distillation_loss_fn

    class Cfg:  # the two fns read only distillation_loss.loss_mode
        def __init__(self, mode):
            self.distillation_loss = type("L", (), {"loss_mode": mode})()

    td, mo = make_batch()
    base, gated = get_distillation_loss_fn("k1"), get_distillation_loss_fn("k1_failed_only")
    t_base, t_gated = timed_pair(lambda: base(None, Cfg("k1"), mo, td),
                                 lambda: gated(None, Cfg("k1_failed_only"), mo, td))
    print("micro-batch 64 x (512 prompt + 1024 response) tokens")
    print(f"verl k1:          {t_base * 1e3:8.2f} ms/call")
    print(f"k1_failed_only:   {t_gated * 1e3:8.2f} ms/call")
    print(f"ratio gated/k1:   {t_gated / t_base:8.2f}x")


if __name__ == "__main__":
    main()
