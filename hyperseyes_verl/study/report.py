"""Outputs of a study run: per-epoch histories (JSON), the summary table and claims (markdown), the plot."""
from __future__ import annotations

import json
import os

from hyperseyes_verl.study.claims import Claim
from hyperseyes_verl.study.train import History, StudyConfig


def summary_table(hist: dict[str, History]) -> str:
    base = hist["acc_only"].final()
    rows = ["| signal | accuracy | Δ acc vs acc-only (points) | mean rounds (start → end) | × fewer rounds than "
            "acc-only | searches / round | parallel share | give-up share, hard chained |",
            "|---|---|---|---|---|---|---|---|"]
    for h in hist.values():
        s, f = h.epochs[0], h.final()
        rows.append(
            f"| {h.label} | {100 * f['acc']:.1f}% | {100 * (f['acc'] - base['acc']):+.1f} | {s['rounds']:.2f} → "
            f"{f['rounds']:.2f} | {base['rounds'] / f['rounds']:.2f}× | {f['searches'] / max(f['rounds'], 1e-9):.2f} "
            f"| {f['share_parallel']:.2f} | {f['shortcut_hard_chained']:.2f} |")
    return "\n".join(rows)


def claims_markdown(claims: list[Claim]) -> str:
    return "\n".join(f"- **{'holds' if c.holds else 'does NOT hold'}** — {c.name}: {c.detail}" for c in claims)


def plot(hist: dict[str, History], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(13, 9))
    main = [n for n in ("acc_only", "trace_official", "trace_paper", "hdpo", "trace_official_opd",
                        "trace_paper_bad_guard") if n in hist]
    for n in main:
        h = hist[n]
        style = "--" if n in ("trace_paper_bad_guard", "trace_official_opd") else "-"
        ax[0, 0].plot(h.series("rounds"), style, label=h.label)
        ax[0, 1].plot(100 * h.series("acc"), style, label=h.label)
    ax[0, 0].set(title="mean tool rounds per prompt (exact, whole population)", xlabel="epoch", ylabel="rounds")
    ax[0, 1].set(title="accuracy (exact, whole population)", xlabel="epoch", ylabel="accuracy %")
    for n, color in (("trace_paper", "C2"), ("trace_paper_bad_guard", "C3")):
        if n in hist:
            h = hist[n]
            ax[1, 0].plot(h.series("shortcut_hard_chained"), "-", color=color, label=f"{h.label}: give-up share")
            ax[1, 0].plot(h.series("acc_hard_chained"), ":", color=color, label=f"{h.label}: accuracy")
    ax[1, 0].set(title="hard queries (chained, ≥ 6 entities)", xlabel="epoch", ylabel="share / accuracy")
    for n, style in (("trace_official", "-"), ("trace_official_nowarmup", "--"), ("trace_paper_relative", "-"),
                     ("trace_paper_relative_nowarmup", "--")):
        if n in hist:
            ax[1, 1].plot(hist[n].series("rounds"), style, label=hist[n].label)
    ax[1, 1].set(title="reference tightening: warm-up vs none", xlabel="epoch", ylabel="rounds")
    for a in ax.flat:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_outputs(out_dir: str, cfg: StudyConfig, hist: dict[str, History], claims: list[Claim],
                  seconds: float) -> dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f) for k, f in (("histories", "histories.json"), ("claims", "claims.json"),
                                                       ("summary", "summary.md"), ("plot", "study.png"))}
    with open(paths["histories"], "w") as f:
        json.dump({"config": cfg.model_dump(), "runs": {n: {"label": h.label, "epochs": h.epochs}
                                                        for n, h in hist.items()}}, f, indent=1)
    with open(paths["claims"], "w") as f:
        json.dump([c.as_dict() for c in claims], f, indent=1)
    plot(hist, paths["plot"])
    with open(paths["summary"], "w") as f:
        f.write(f"Study: seed {cfg.seed}, {cfg.prompts} prompts, {cfg.epochs} epochs, {cfg.batch_prompts} prompts × "
                f"{cfg.n} rollouts per step, lr {cfg.lr}; {len(hist)} runs in {seconds:.0f} s.\n\n")
        f.write(summary_table(hist) + "\n\n" + claims_markdown(claims) + "\n")
    return paths

