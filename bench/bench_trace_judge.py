"""Rule-judge and full TRACE scoring throughput per process (goal: >= 5k trajectories/s).

    .venv/bin/python bench/bench_trace_judge.py [--n 20000]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import time

from hyperseyes_verl.judge import RuleJudge
from hyperseyes_verl.trace.config import TraceConfig
from hyperseyes_verl.trace.scorer import RolloutInput, TraceScorer
from hyperseyes_verl.trace.shared import StoreHandle
from hyperseyes_verl.trace.store import ReferenceStore

WORDS = "the eiffel tower paris france river seine mount fuji japan 1,234 km red fort delhi".split()


def _cases(n: int, seed: int = 0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        truth = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
        pred = truth if rng.random() < 0.4 else " ".join(rng.sample(WORDS, rng.randint(1, 6)))
        out.append((f"It is {pred}, case x{i}.", [truth, "alias " + truth]))  # unique predictions: no cache hits
    return out


async def _score_all(scorer: TraceScorer, rows):
    for r in rows:
        await scorer.score(r)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()
    cases = _cases(args.n)
    judge = RuleJudge()
    t0 = time.perf_counter()
    correct = sum(judge.judge(p, a).correct for p, a in cases)
    rule_rate = args.n / (time.perf_counter() - t0)

    rows = [RolloutInput(response_text=f"<reason>r</reason><answer>{p}</answer><|im_end|>", ground_truth=a,
                         data_source="bench", index=i % 5000, extra_info={"index": i % 5000, "ref_rounds": 3,
                                                                         "ref_searches": 5},
                         tool_extra_fields={"tool_rewards": [0.0] * (i % 4)}, num_turns=2 + 2 * (i % 4))
            for i, (p, a) in enumerate(cases)]
    scorer = TraceScorer(TraceConfig(), store=StoreHandle(store=ReferenceStore()))
    t0 = time.perf_counter()
    asyncio.run(_score_all(scorer, rows))
    full_rate = args.n / (time.perf_counter() - t0)
    print(f"rule judge: {rule_rate:,.0f} trajectories/s ({correct}/{args.n} correct)  goal 5,000/s -> "
          f"{rule_rate / 5000:.1f}x")
    print(f"full TRACE scoring (parse answer + judge + counts + reference store): {full_rate:,.0f} trajectories/s "
          f"-> {full_rate / 5000:.1f}x goal")


if __name__ == "__main__":
    main()
