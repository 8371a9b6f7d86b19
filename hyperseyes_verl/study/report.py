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


def counting_table(hist: dict[str, History]) -> str:
    """What the official rule's two countings do to width: release (total = one per call) leaves a wide round
    as cheap as a narrow one; searches (total = queries + crops) ranks a narrower correct round above a wider
    one, so it pushes width (searches per round) down and skimming (search one entity, guess the rest) up."""
    rows = ["| official counting | accuracy | rounds | searches | searches / round (width) | parallel share | "
            "skim share |", "|---|---|---|---|---|---|---|"]
    for name, counting in (("trace_official", "release (tc = calls, total = 1 per call)"),
                           ("trace_official_searches", "searches (tc = rounds, total = queries + crops)")):
        if name in hist:
            f = hist[name].final()
            rows.append(f"| {counting} | {100 * f['acc']:.1f}% | {f['rounds']:.2f} | {f['searches']:.2f} | "
                        f"{f['searches'] / max(f['rounds'], 1e-9):.2f} | {f['share_parallel']:.2f} | "
                        f"{f['share_skim']:.2f} |")
    return "\n".join(rows) if len(rows) > 2 else ""


# A group of correct rollouts against a reference of 1 round / 4 searches (the cold start's): (rounds, calls,
# searches), each round one call. Width is what tells them apart.
EXAMPLE_REF = (1, 4)
EXAMPLE_GROUP = (("1 round, 6 crops (wide)", 1, 1, 6), ("1 round, 4 crops", 1, 1, 4),
                 ("1 round, 2 crops + guess", 1, 1, 2), ("2 rounds, 2 + 2 crops", 2, 2, 4))


def counting_example() -> str:
    """The official group bonus of EXAMPLE_GROUP under both countings (computed by `official_group_scores`)."""
    from hyperseyes_verl.trace.official import official_group_scores

    n = len(EXAMPLE_GROUP)
    by = {}
    for counting in ("release", "searches"):
        tc = [calls if counting == "release" else rounds for _, rounds, calls, _ in EXAMPLE_GROUP]
        total = [calls if counting == "release" else searches for _, _, calls, searches in EXAMPLE_GROUP]
        by[counting] = official_group_scores(acc=[1.0] * n, answered=[True] * n, tool_rounds=tc, searches=total,
                                             ref_rounds=[EXAMPLE_REF[0]] * n, ref_searches=[EXAMPLE_REF[1]] * n)
    rows = [f"| correct rollout (reference {EXAMPLE_REF[0]} round / {EXAMPLE_REF[1]} searches) | release: "
            "category, score | searches: category, score |", "|---|---|---|"]
    for i, (label, *_rest) in enumerate(EXAMPLE_GROUP):
        r, s = by["release"][i], by["searches"][i]
        rows.append(f"| {label} | {r.category} {r.score:+.2f} | {s.category} {s.score:+.2f} |")
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
        counting = counting_table(hist)
        counting = f"{counting}\n\n{counting_example()}" if counting else ""
        f.write(summary_table(hist) + "\n\n" + (f"What each official counting does to width:\n\n{counting}\n\n"
                                                if counting else "") + claims_markdown(claims) + "\n")
    return paths

