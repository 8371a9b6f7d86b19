"""The `verl.plugins` entry point: lazy registration on `import verl`, and loud failures."""
from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from hyperseyes_verl.verl import plugin

pytestmark = pytest.mark.verl

PROBE = textwrap.dedent("""
    import importlib.util, json, sys
    import verl
    r = {"plugin_loaded": "hyperseyes_verl.verl.plugin" in sys.modules,
         "lazy": not any(m in sys.modules for m in ("verl.experimental.agent_loop", "verl.trainer.distillation",
                                                     "verl.trainer.ppo.v1", "hyperseyes_verl.verl.agent_loop"))}
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
    r["entry"] = dict(_agent_loop_registry.get("hyperseyes_agent", {}))
    r["distill_exists"] = importlib.util.find_spec("hyperseyes_verl.verl.distill_loss") is not None
    import verl.trainer.distillation
    r["distill_loaded"] = "hyperseyes_verl.verl.distill_loss" in sys.modules
    r["trainer_exists"] = importlib.util.find_spec("hyperseyes_verl.verl.trainer") is not None
    import verl.trainer.ppo.v1
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY
    r["trainer_modes"] = sorted(k for k, v in TRAINER_REGISTRY.items() if v.__module__.startswith("hyperseyes_verl"))
    from hyperseyes_verl.verl.plugin import registration_errors
    r["errors"] = registration_errors()
    # a job that selects no HyperEyes part: none of the cores, none of their dependencies
    heavy = ("hyperseyes_verl.judge", "hyperseyes_verl.trace", "hyperseyes_verl.opd", "hyperseyes_verl.hdpo",
             "hyperseyes_verl.episode", "hyperseyes_verl.utils.openai_chat", "hyperseyes_verl.search",
             "hyperseyes_verl.ugs", "tenacity", "openai")
    r["heavy"] = sorted(m for m in sys.modules if m.startswith(heavy))
    r["ours"] = sorted(m for m in sys.modules if m.startswith("hyperseyes_verl"))
    from omegaconf import OmegaConf
    from hyperseyes_verl.verl.trainer import resolve_opd_config
    resolve_opd_config(OmegaConf.create({}))  # what building the trainer does first: the OPD core loads now
    r["opd_after_use"] = "hyperseyes_verl.opd" in sys.modules
    print("RESULT " + json.dumps(r))
""")


def test_import_verl_registers_lazily_through_the_entry_point():
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    env.update(RAY_AUTH_MODE="disabled", HYPERSEYES_STRICT_PLUGIN="0")
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT "):])
    assert r["plugin_loaded"], "the verl.plugins entry point did not run (is the package installed?)"
    assert r["lazy"], "the plugin imported a heavy verl registry during `import verl`"
    assert r["entry"] == {"_target_": "hyperseyes_verl.verl.agent_loop.HyperEyesAgentLoop"}
    assert r["distill_loaded"] == r["distill_exists"]
    assert bool(r["trainer_modes"]) == r["trainer_exists"]  # registered on `import verl.trainer.ppo.v1`
    assert r["errors"] == []
    assert r["heavy"] == [], "importing verl's registries loaded HyperEyes cores a job may not use"
    assert set(r["ours"]) <= {"hyperseyes_verl", "hyperseyes_verl.verl", "hyperseyes_verl.verl.plugin",
                              "hyperseyes_verl.verl.cpu", "hyperseyes_verl.verl.verl_guard",
                              "hyperseyes_verl.verl.verl_fixes", "hyperseyes_verl.verl.trainer",
                              "hyperseyes_verl.verl.distill_loss"}, r["ours"]
    assert r["opd_after_use"]


@pytest.fixture
def fresh_plugin_state(monkeypatch, tmp_path):
    monkeypatch.setattr(plugin, "_ERRORS", [])
    monkeypatch.setattr(plugin, "_DONE", set())
    monkeypatch.setattr(plugin, "HOOKS", dict(plugin.HOOKS))
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def make_package(name: str, body: str = "REG = {}\n") -> str:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(body)
        created.append(name)
        importlib.invalidate_caches()
        return name

    yield make_package
    for name in created:
        sys.modules.pop(name, None)


def test_hook_registers_after_the_package_finished_loading(fresh_plugin_state):
    pkg = fresh_plugin_state("hyp_fake_registry_ok", "REG = {}\nLOADED = True\n")
    seen = []

    def register():
        module = sys.modules[pkg]
        seen.append(getattr(module, "LOADED", False))  # the package body has run completely
        module.REG["hyperseyes_agent"] = "x"

    plugin.HOOKS[pkg] = ("registering the fake", register, "no fix needed")
    module = importlib.import_module(pkg)
    assert module.REG == {"hyperseyes_agent": "x"} and seen == [True]
    assert type(module.__loader__).__name__ != "_AfterImportLoader"  # the real loader is restored
    assert plugin.registration_errors() == []


def test_install_runs_hooks_of_already_imported_packages(fresh_plugin_state):
    pkg = fresh_plugin_state("hyp_fake_registry_early")
    module = importlib.import_module(pkg)  # imported before the hook exists
    plugin.HOOKS[pkg] = ("registering the fake", lambda: module.REG.update(done=1), "no fix needed")
    plugin.install()
    plugin.install()  # idempotent: one finder, one run
    assert module.REG == {"done": 1}
    assert sum(isinstance(f, plugin._AfterImportFinder) for f in sys.meta_path) == 1


def test_failing_registration_is_loud_but_not_fatal(fresh_plugin_state, caplog, monkeypatch):
    monkeypatch.delenv(plugin.STRICT_ENV, raising=False)
    pkg = fresh_plugin_state("hyp_fake_registry_bad")

    def register():
        raise RuntimeError("registry exploded")

    plugin.HOOKS[pkg] = ("registering the fake thing", register, "reinstall the fake thing")
    with caplog.at_level(logging.ERROR, logger="hyperseyes_verl.plugin"):
        importlib.import_module(pkg)  # the user's import still works
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "registering the fake thing failed" in errors[0].getMessage()
    assert "reinstall the fake thing" in errors[0].getMessage()
    assert "RuntimeError: registry exploded" in errors[0].getMessage()  # the traceback is in the message
    assert len(plugin.registration_errors()) == 1 and "Traceback" in plugin.registration_errors()[0]


def test_strict_mode_reraises(fresh_plugin_state, monkeypatch):
    monkeypatch.setenv(plugin.STRICT_ENV, "1")
    pkg = fresh_plugin_state("hyp_fake_registry_strict")
    plugin.HOOKS[pkg] = ("registering the fake", lambda: 1 / 0, "none")
    with pytest.raises(ZeroDivisionError):
        importlib.import_module(pkg)
    assert len(plugin.registration_errors()) == 1


def test_optional_module_missing_is_skipped_broken_is_an_error(fresh_plugin_state, tmp_path, monkeypatch):
    monkeypatch.delenv(plugin.STRICT_ENV, raising=False)
    plugin._import_optional("hyp_no_such_module_anywhere")()  # absent: silently skipped
    (tmp_path / "hyp_broken_registration.py").write_text("raise ImportError('transfer_queue is missing')\n")
    importlib.invalidate_caches()
    pkg = fresh_plugin_state("hyp_fake_registry_opt")
    plugin.HOOKS[pkg] = ("importing hyp_broken_registration", plugin._import_optional("hyp_broken_registration"),
                         "pip install TransferQueue")
    importlib.import_module(pkg)
    assert "transfer_queue is missing" in plugin.registration_errors()[0]
    sys.modules.pop("hyp_broken_registration", None)
