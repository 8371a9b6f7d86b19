"""What the hyperseyes plugin adds to a verl process that never uses it: modules and time per verl import.

For each target (`verl.trainer.ppo.v1`, `verl.experimental.agent_loop`, `verl.trainer.distillation`) a fresh
interpreter imports `verl`, then times `import <target>` and lists the modules it loaded, with the plugin on
(verl's default entry-point discovery) and off (`VERL_USE_EXTERNAL_PLUGINS=none`). Runs alternate on/off;
medians are printed. The difference is what the plugin costs a job that does not select any HyperEyes part; the
wall-clock difference is within the noise of a shared box, so the import time of the added modules alone
(`-X importtime`, self time summed) and, where the plugin records it, the time spent in its hooks are printed too.

    .venv/bin/python bench/bench_plugin_import.py [--runs 5] [--code-dir DIR]

`--code-dir` puts another copy of the package first on PYTHONPATH, e.g. the last commit:
    mkdir -p /tmp/before && git archive HEAD | tar -x -C /tmp/before
    .venv/bin/python bench/bench_plugin_import.py --code-dir /tmp/before
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

TARGETS = ("verl.trainer.ppo.v1", "verl.experimental.agent_loop", "verl.trainer.distillation")

PROBE = """
import importlib, json, sys, time
import verl
before = set(sys.modules)
t0 = time.perf_counter()
importlib.import_module(sys.argv[1])
dt = time.perf_counter() - t0
plugin = sys.modules.get("hyperseyes_verl.verl.plugin")
hooks = plugin.hook_seconds() if hasattr(plugin, "hook_seconds") else None
print("RESULT " + json.dumps({"s": dt, "added": sorted(set(sys.modules) - before), "hooks": hooks}))
"""


def probe(target: str, plugin_on: bool, code_dir: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    if not plugin_on:
        env["VERL_USE_EXTERNAL_PLUGINS"] = "none"
    if code_dir:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (code_dir, env.get("PYTHONPATH")) if p)
    # cwd away from the checkout: `python -c` puts the working directory first on sys.path
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", PROBE, target], env=env, capture_output=True,
                          text=True, timeout=600, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(f"probe of {target} (plugin {'on' if plugin_on else 'off'}) failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    # -X importtime: "import time: self [us] | cumulative | name", one line per module actually executed
    result["self_us"] = {}
    for ln in proc.stderr.splitlines():
        if ln.startswith("import time:") and "|" in ln and "self [us]" not in ln:
            self_us, _, name = (x.strip() for x in ln[len("import time:"):].split("|"))
            result["self_us"][name] = int(self_us)
    return result


def top_packages(modules: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in modules:
        top = m.split(".")[0]
        key = ".".join(m.split(".")[:2]) if top in ("hyperseyes_verl", "verl") else top
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="interpreters per target and plugin setting")
    ap.add_argument("--code-dir", default=None, help="a copy of the package to import instead of the installed one")
    ap.add_argument("--targets", nargs="*", default=list(TARGETS))
    args = ap.parse_args()
    where = args.code_dir or "installed package"
    print(f"plugin import cost ({where}); {args.runs} interpreters per setting, medians")
    for target in args.targets:
        on, off = [], []
        for _ in range(args.runs):
            on.append(probe(target, True, args.code_dir))
            off.append(probe(target, False, args.code_dir))
        t_on = statistics.median(r["s"] for r in on)
        t_off = statistics.median(r["s"] for r in off)
        mods_on, mods_off = set(on[0]["added"]), set(off[0]["added"])
        extra = mods_on - mods_off
        print(f"\n== import {target}")
        own_ms = statistics.median(sum(r["self_us"].get(m, 0) for m in extra) for r in on) / 1000
        hooks = [r["hooks"] for r in on if r.get("hooks") is not None]
        hook_ms = statistics.median(sum(h.values()) for h in hooks) * 1000 if hooks else None
        print(f"  plugin on {t_on:.2f} s ({len(mods_on)} modules) | off {t_off:.2f} s ({len(mods_off)} modules) | "
              f"added by the plugin: {t_on - t_off:+.2f} s, {len(extra)} modules, whose own import time "
              f"(-X importtime, self) is {own_ms:.1f} ms")
        if hook_ms is not None:  # includes the imports a hook makes, so this is the plugin's whole share
            print(f"  time in the plugin's hooks in this process (registration, verl check, their imports): "
                  f"{hook_ms:.1f} ms")
        if extra:
            print("  modules added, by package: " + ", ".join(f"{k} {v}" for k, v in top_packages(extra).items()))
            ours = sorted(m for m in extra if m.startswith("hyperseyes_verl"))
            print(f"  hyperseyes modules ({len(ours)}): " + ", ".join(ours))


if __name__ == "__main__":
    main()
