"""What `make train-tiny` proves, read back from the run's own artefacts (verl's metric files, checkpoints and
the TRACE reference snapshots). Every check records its figures and whether it passed; `ok` is all of them.

Metric files are verl's `file` logger output: one JSON line per step, {"step": s, "data": {metric: value}}.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LOGPROB_GAP_MAX = 1e-3
TRACE_KEYS = ("trace/official_score_mean", "trace/acc", "trace/rounds_mean", "trace/frac_no_answer")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """[{step, **metrics}] of one verl metric file, in step order; [] when the file is missing."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(({"step": int(r["step"]), **r["data"]} for r in rows), key=lambda r: r["step"])


def weight_change(before: Path, after: Path) -> dict[str, Any]:
    """How many tensors differ between two HF checkpoint folders, and the largest absolute change."""
    from safetensors.torch import load_file

    def tensors(folder: Path) -> dict:
        out = {}
        for f in sorted(folder.glob("*.safetensors")):
            out.update(load_file(str(f)))
        return out

    a, b = tensors(before), tensors(after)
    common = sorted(set(a) & set(b))
    diffs = {k: float((a[k].float() - b[k].float()).abs().max()) for k in common if a[k].shape == b[k].shape}
    return {"tensors_compared": len(diffs), "tensors_changed": sum(d > 0 for d in diffs.values()),
            "max_abs_change": max(diffs.values(), default=0.0), "ok": any(d > 0 for d in diffs.values())}


def teacher_gating(step: dict[str, Any]) -> dict[str, Any]:
    """Teacher rows of one step against its failed (OPD-eligible) rollouts."""
    scored, skipped, failed = (int(step.get(f"opd/teacher_{k}", 0)) for k in ("scored", "skipped", "failures"))
    rollouts = scored + skipped + failed
    eligible = round(float(step.get("opd/eligible_frac", 0.0)) * rollouts)
    return {"step": step["step"], "rollouts": rollouts, "eligible": eligible, "scored": scored,
            "skipped": skipped, "failed": failed,
            "ok": rollouts > 0 and scored + failed == eligible and skipped == rollouts - eligible}


def reference_rows(snapshot: Path) -> dict[str, tuple[int, int]]:
    from hyperseyes_verl.trace.store import ReferenceStore

    store = ReferenceStore()
    store.load_file(str(snapshot))
    return {r["prompt_key"]: (r["ref_rounds"], r["ref_searches"]) for r in store.rows()}


def summarize(paths: dict[str, Path], *, sft_model: Path, rl_model: Path, cfg: dict[str, Any],
              timings: dict[str, float]) -> dict:
    """`sft_model`: the stage-1 model stage 2 started from; `rl_model`: stage 2's last actor, both as HF folders."""
    logs, ckpt = paths["logs"], paths["ckpt"]
    sft = read_metrics(logs / "stage1.jsonl")
    run1, run2 = read_metrics(logs / "stage2_run1.jsonl"), read_metrics(logs / "stage2_run2.jsonl")
    rl = run1 + run2
    checks: dict[str, Any] = {}

    checks["sft_steps"] = {"steps_completed": max((r["step"] for r in sft), default=0)}
    checks["sft_steps"]["ok"] = checks["sft_steps"]["steps_completed"] >= 2
    checks["rl_steps"] = {"steps_completed": max((r["step"] for r in rl), default=0),
                          "steps": [r["step"] for r in rl]}
    checks["rl_steps"]["ok"] = checks["rl_steps"]["steps_completed"] >= 2
    checks["sft_weights_changed"] = weight_change(paths["model"], sft_model)
    checks["rl_weights_changed"] = weight_change(sft_model, rl_model)

    gaps = [r.get("hyperseyes/rollout_logprob_gap_mean") for r in rl]
    checks["rollout_logprob_gap"] = {"per_step": gaps, "threshold": LOGPROB_GAP_MAX,
                                     "ok": bool(gaps) and all(g is not None and g < LOGPROB_GAP_MAX for g in gaps)}

    gating = [teacher_gating(r) for r in run1]
    checks["teacher_gating"] = {"per_step": gating, "ok": bool(gating) and all(g["ok"] for g in gating)}
    opd = [{"step": r["step"], "reverse_kl_mean": r.get("opd/reverse_kl_mean"),
            "shaped_tokens": r.get("opd/shaped_tokens")} for r in run1]
    checks["opd_nonzero"] = {"per_step": opd, "ok": bool(opd) and all(
        (o["reverse_kl_mean"] or 0) > 0 and (o["shaped_tokens"] or 0) > 0 for o in opd)}
    faults = [teacher_gating(r) | {"teacher_valid_frac": r.get("opd/teacher_valid_frac")} for r in run2]
    checks["teacher_faults"] = {
        "fault_frac": cfg.get("teacher_fault_frac"), "per_step": faults,
        "ok": cfg.get("teacher_fault_frac", 0) == 0 or (bool(faults) and all(
            f["ok"] and f["failed"] > 0 and (f["teacher_valid_frac"] or 0) < 1 for f in faults))}

    missing = {r["step"]: [k for k in TRACE_KEYS if k not in r] for r in rl}
    checks["trace_every_step"] = {"missing": {s: m for s, m in missing.items() if m}, "ok": bool(rl) and not any(
        missing.values())}

    last1 = max((r["step"] for r in run1), default=0)
    resumed = {"run1_last_step": last1, "run2_first_step": run2[0]["step"] if run2 else None,
               "restored_step": run2[0].get("trace/restored_step") if run2 else None}
    snaps = ckpt / "stage2" / "hyperseyes_refs"
    before, after = snaps / f"step_{last1}.npz", snaps / f"step_{checks['rl_steps']['steps_completed']}.npz"
    if before.is_file() and after.is_file():
        refs_before, refs_after = reference_rows(before), reference_rows(after)
        resumed["references_saved"] = len(refs_before)
        resumed["references_restored"] = run2[0].get("trace/refs_total") if run2 else None
        # no epoch ended between the two snapshots, so every saved reference must come back unchanged
        resumed["references_kept"] = sum(refs_after.get(k) == v for k, v in refs_before.items())
    resumed["ok"] = (resumed["run2_first_step"] == last1 + 1 and resumed["restored_step"] == last1
                     and resumed.get("references_saved") is not None
                     and resumed["references_restored"] == resumed["references_saved"]
                     and resumed["references_kept"] == resumed["references_saved"])
    checks["resume"] = resumed

    ok = all(c["ok"] for c in checks.values())
    report = [f"{'PASS' if c['ok'] else 'FAIL'}  {name}: " + json.dumps({k: v for k, v in c.items() if k != "ok"})
              for name, c in checks.items()]
    return {"ok": ok, "checks": checks, "timings": timings, "config": cfg,
            "rl_metrics": [{k: v for k, v in r.items() if k.startswith(("trace/", "opd/", "hyperseyes/", "step",
                                                                         "actor/pg_loss", "actor/grad_norm"))}
                           for r in rl],
            "report": report}
