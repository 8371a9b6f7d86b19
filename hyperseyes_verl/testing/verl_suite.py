"""verl's own CPU tests, with the hyperseyes plugin on and off: any outcome that differs is a failure.

    python -m hyperseyes_verl.testing.verl_suite [--sdist verl-0.9.1.tar.gz] [--workdir DIR]

Downloads verl's sdist from the package registry (`pip download --no-deps --no-binary :all: verl==<installed>`;
nothing is copied into this project), extracts its `tests/` only (so `import verl` keeps meaning the installed
package the plugin hooks into), and runs the files in SELECTED twice with pytest: once as installed (verl loads
the `verl.plugins` entry point) and once with `VERL_USE_EXTERNAL_PLUGINS=none`. Exit status 1 when a test's
outcome (passed / failed / error / skipped) differs between the two runs, or when the plugin did not load in
the first run; every file left out and every test pytest skipped is printed with its reason.

The 0.9.1 sdist ships 64 test files. SELECTED holds the CPU ones that exercise what the plugin touches (the
agent-loop registry and tools, core_algos' estimator and loss registries, the V1 trainer's advantage helpers,
TensorDict utilities that verl_fixes patches, the platform layer, verl's config dataclasses); the sdist has no
tests for the reward loop, distillation or datasets. Both runs take ~12 s each on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

# file (relative to the sdist root) -> what of the plugin's reach it covers
SELECTED: dict[str, str] = {
    "tests/experimental/agent_loop/test_agent_loop_extra_fields_schema_on_cpu.py": "agent loop outputs",
    "tests/experimental/agent_loop/test_call_tool_on_cpu.py": "agent loop tool calls",
    "tests/experimental/agent_loop/test_multimodal_position_ids_on_cpu.py": "agent loop multimodal positions",
    "tests/experimental/agent_loop/test_qwen3_tool_parser_on_cpu.py": "agent loop tool parser",
    "tests/experimental/agent_loop/test_tool_call_id_on_cpu.py": "agent loop tool call ids",
    "tests/tools/test_function_tool_on_cpu.py": "agent loop tools",
    "tests/tools/test_mixed_tools_on_cpu.py": "agent loop tools",
    "tests/trainer/ppo/test_core_algos_on_cpu.py": "core_algos estimators (registry shared with hdpo)",
    "tests/trainer/ppo/test_dynamic_policy_losses_on_cpu.py": "core_algos policy losses",
    "tests/trainer/ppo/test_loss_aggregation_on_cpu.py": "core_algos loss aggregation",
    "tests/trainer/ppo/test_reinforce_pp_multiturn_on_cpu.py": "core_algos estimators",
    "tests/trainer/ppo/test_value_loss_normalization_on_cpu.py": "core_algos value loss",
    "tests/trainer/ppo/test_rollout_corr.py": "rollout correction (in the advantage step)",
    "tests/trainer/ppo/test_rollout_corr_integration.py": "rollout correction (in the advantage step)",
    "tests/trainer/ppo/test_metric_utils_on_cpu.py": "trainer metrics",
    "tests/trainer/test_multi_trajectories_advantage_on_cpu.py": "V1 trainer advantage helper",
    "tests/test_protocol_on_cpu.py": "DataProto",
    "tests/test_protocol_v2_on_cpu.py": "TensorDict utilities (verl_fixes patches one)",
    "tests/test_base_config_on_cpu.py": "config dataclasses",
    "tests/plugin/test_platform_abstraction.py": "platform layer",
}

# files left out, by name, with the reason; anything else left out gets a reason from its folder
LEFT_OUT: dict[str, str] = {
    "tests/experimental/agent_loop/test_basic_agent_loop.py": "needs ~/models/Qwen/Qwen3-0.6B and a GPU rollout server",
    "tests/experimental/agent_loop/test_multi_modal.py": "needs ~/models/Qwen/Qwen3.5-2B and a GPU rollout server",
    "tests/experimental/agent_loop/test_standalone_rollout.py": "needs a downloaded model and a GPU rollout server",
    "tests/experimental/agent_loop/test_gpt_oss_tool_parser.py": "downloads the openai/gpt-oss-20b tokenizer",
    "tests/experimental/agent_loop/test_audio_server_contract_on_cpu.py":
        "parses verl's source files by repository path (absent next to an sdist's tests); static, import-free",
    "tests/trainer/test_constants_ppo_on_cpu.py": "Ray runtime-env constants; nothing the plugin touches",
}
FOLDER_REASONS = (
    ("_on_gpu.py", "needs a GPU"), ("_on_npu.py", "needs an NPU"),
    ("tests/checkpoint_engine/", "weight-sync engines (sglang / GPU); not touched by the plugin"),
    ("tests/single_controller/", "Ray worker groups (most need GPUs); not touched by the plugin"),
    ("tests/experimental/fully_async_policy/", "fully-async trainer config; not touched by the plugin"),
    ("tests/special_e2e/", "helpers of verl's GPU end-to-end jobs, no tests"),
)
HELPERS = ("__init__.py", "agent_utils.py", "function_tool_examples.py", "_stub_search_tools.py")


def installed_verl_version() -> str:
    out = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('verl'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def download_sdist(version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           f"verl=={version}", "-d", str(dest)]
    subprocess.run(cmd, check=True)
    found = sorted(dest.glob(f"verl-{version}.tar.gz"))
    if not found:
        raise SystemExit(f"pip download left no verl-{version}.tar.gz in {dest}")
    return found[0]


def extract_tests(sdist: Path, workdir: Path) -> list[str]:
    """`tests/` of the sdist into workdir (the sdist's own `verl/` stays out); returns the test files."""
    files = []
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) > 2 and parts[1] == "tests" and member.isfile():
                rel = Path(*parts[1:])
                target = workdir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src:
                    target.write_bytes(src.read())
                if rel.suffix == ".py" and rel.name not in HELPERS:
                    files.append(rel.as_posix())
    if not files:
        raise SystemExit(f"{sdist.name} has no tests/ folder: nothing to compare (use another verl source)")
    return sorted(files)


def reason_left_out(path: str) -> str:
    if path in LEFT_OUT:
        return LEFT_OUT[path]
    for pattern, reason in FOLDER_REASONS:
        if pattern in path:
            return reason
    return "not touched by the plugin"


def _env(plugin_on: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not plugin_on:
        env["VERL_USE_EXTERNAL_PLUGINS"] = "none"
    return env


def plugin_loaded(plugin_on: bool) -> bool:
    probe = "import sys, verl; print('hyperseyes_verl.verl.plugin' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], env=_env(plugin_on), capture_output=True, text=True)
    return out.stdout.strip().endswith("True")


def run_pytest(workdir: Path, files: list[str], plugin_on: bool, junit: Path) -> tuple[dict, float]:
    """nodeid -> (outcome, message) from one pytest run, and its wall time."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "-o", "asyncio_mode=auto", "--rootdir", str(workdir), f"--junitxml={junit}", *files]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=_env(plugin_on), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if not junit.exists():
        raise SystemExit(f"pytest wrote no report (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    outcomes = {}
    for case in ET.parse(junit).iter("testcase"):
        nodeid = f"{case.get('classname')}::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = next(iter((el.get("message") or "").strip().splitlines()), "")[:200]
                break
        outcomes[nodeid] = (outcome, message)
    return outcomes, wall


def compare(on: dict[str, tuple[str, str]], off: dict[str, tuple[str, str]]) -> list[str]:
    """Lines for every test whose outcome differs (or that ran in one setting only). Pure."""
    lines = []
    for nodeid in sorted(set(on) | set(off)):
        a, b = on.get(nodeid, ("absent", "")), off.get(nodeid, ("absent", ""))
        if a[0] != b[0]:
            lines.append(f"{nodeid}: plugin on {a[0]} ({a[1]}) | off {b[0]} ({b[1]})")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", type=Path, default=None, help="a verl sdist already downloaded (default: pip download)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to extract (default: a temporary folder)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    version = installed_verl_version()
    with tempfile.TemporaryDirectory(prefix="verl_suite_") as tmp:
        workdir = args.workdir or Path(tmp)
        sdist = args.sdist or download_sdist(version, Path(tmp) / "sdist")
        files = extract_tests(sdist, workdir)
        missing = [f for f in SELECTED if f not in files]
        if missing:
            print(f"verl {version}'s sdist lacks selected test files (update SELECTED): {missing}")
            return 1
        print(f"verl {version} sdist: {len(files)} test files; running {len(SELECTED)} with the plugin on and off")
        if not plugin_loaded(True) or plugin_loaded(False):
            print("the hyperseyes plugin must load with verl's default policy and not with "
                  "VERL_USE_EXTERNAL_PLUGINS=none: is the package installed?")
            return 1
        on, wall_on = run_pytest(workdir, list(SELECTED), True, workdir / "junit_on.xml")
        off, wall_off = run_pytest(workdir, list(SELECTED), False, workdir / "junit_off.xml")
        counts = {o: sum(1 for v in on.values() if v[0] == o) for o in ("passed", "failed", "error", "skipped")}
        print(f"plugin on: {len(on)} tests {counts} in {wall_on:.1f} s | off: {len(off)} tests in {wall_off:.1f} s")
        print("\nfiles left out:")
        for f in files:
            if f not in SELECTED:
                print(f"  {f}: {reason_left_out(f)}")
        skipped = sorted((k, v[1]) for k, v in on.items() if v[0] == "skipped")
        print(f"\ntests skipped by pytest ({len(skipped)}):")
        for nodeid, message in skipped:
            print(f"  {nodeid}: {message}")
        not_passing = sorted((k, v) for k, v in on.items() if v[0] in ("failed", "error"))
        if not_passing:
            print(f"\nfailing in both settings is not a plugin effect, listed for the record ({len(not_passing)}):")
            for nodeid, (outcome, message) in not_passing:
                print(f"  {nodeid}: {outcome} {message}")
        diff = compare(on, off)
        print(f"\n{len(diff)} outcome(s) differ between plugin on and off; total {time.perf_counter() - t0:.0f} s")
        for line in diff:
            print(f"  {line}")
        # the closing line CI reads: a test "passes" when its outcome is the same with the plugin on and off
        print(f"plugin_parity: {len(set(on) | set(off)) - len(diff)} passed, {len(diff)} failed")
        return 1 if diff or not on else 0


if __name__ == "__main__":
    sys.exit(main())
