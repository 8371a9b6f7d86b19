"""`hyperseyes demo` end to end at reduced sizes: data, index, PRS, environment runs, TRACE epochs, report."""
from __future__ import annotations

import json

from hyperseyes_verl.demo.scripted import DemoConfig, run_demo
from hyperseyes_verl.eval.strategies import NOTICE


def test_demo_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "demo"
    res = run_demo(DemoConfig(out=str(out), per_class=3, n_visual=5, n_textual=1, max_entities=3, prs_max_rounds=2,
                              progress=False))
    printed = capsys.readouterr().out
    assert NOTICE in printed and "not a model" in printed  # honest about the scripted policies and teacher
    for f in ("data/items.jsonl", "data/rl.parquet", "index/manifest.json", "prs/results.jsonl", "trace.json",
              "report/report.md", "report/report.json", "report/pareto.png", "runs/parallel/results.jsonl"):
        assert (out / f).stat().st_size > 0, f
    runs = {r["name"]: r["metrics"]["overall"] for r in res["runs"]}
    assert set(runs) == {"scripted-serial", "scripted-parallel", "scripted-oversearch", "scripted-guess"}
    assert all(m["eval/n"] == 6 for m in runs.values())
    # the strategies differ in the way they were built to: width 1 vs wide rounds, no tools for guessing
    assert runs["scripted-serial"]["eval/searches_per_round"] == 1.0
    assert runs["scripted-parallel"]["eval/searches_per_round"] > 1.0
    assert runs["scripted-parallel"]["eval/mean_tool_rounds"] < runs["scripted-serial"]["eval/mean_tool_rounds"]
    assert runs["scripted-guess"]["eval/mean_tool_rounds"] == 0.0
    assert runs["scripted-parallel"]["eval/acc"] > runs["scripted-guess"]["eval/acc"]
    trace = json.loads((out / "trace.json").read_text())
    assert [e["epoch"] for e in trace["epochs"]] == [1, 2]
    e1 = trace["epochs"][0]
    assert set(e1["official_mean"]) == set(runs) and set(e1["paper_mean"]) == set(runs)
    # references never loosen across epochs
    assert trace["epochs"][1]["prompts_with_reference"] >= e1["prompts_with_reference"]
    # cold-start references come from the serial strategy's correct rollouts; the parallel strategy's shorter
    # correct rollouts tighten them at the end of epoch 1, and epoch 2 (same rollouts) has nothing left to tighten
    serial = {r["id"]: r for r in map(json.loads, (out / "runs/serial/results.jsonl").read_text().splitlines())}
    cold = {q for q, r in serial.items() if r["acc"] > 0.5 and r["tool_rounds"] > 0}
    assert e1["prompts_with_reference"] == len(cold) > 0
    assert e1["refs_tightened_at_epoch_end"] > 0
    assert e1["mean_reference_after"]["rounds"] < e1["mean_reference_before"]["rounds"]
    assert trace["epochs"][1]["refs_tightened_at_epoch_end"] == 0
    # every final reference is the lexicographically shortest (rounds, searches) correct tool-using rollout
    rollouts = [json.loads(line) for s in ("serial", "parallel", "oversearch", "guess")
                for line in (out / f"runs/{s}/results.jsonl").read_text().splitlines()]
    shortest: dict[str, tuple[int, int]] = {}
    for r in rollouts:
        if r["acc"] > 0.5 and r["tool_rounds"] > 0:
            shortest[r["id"]] = min(shortest.get(r["id"], (99, 99)), (r["tool_rounds"], r["searches"]))
    assert {q: tuple(v) for q, v in trace["epochs"][1]["references_after"].items()} == shortest
    assert "tightened" in printed and "serial" in printed
    # answers come from observations: a parallel trajectory's answer turn follows its search results
    line = json.loads((out / "runs/parallel/results.jsonl").read_text().splitlines()[0])
    roles = [m["role"] for m in line["trajectory"]]
    assert roles[:2] == ["system", "user"] and roles[-1] == "assistant"
