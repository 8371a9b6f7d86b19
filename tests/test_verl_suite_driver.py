"""The verl-suite CI driver's own logic: what it extracts, what counts as a difference (the suite itself runs in CI,
.ci/verl_suite.sh, because it downloads verl's sdist)."""
from __future__ import annotations

import io
import tarfile

import pytest

from hyperseyes_verl.testing import verl_suite


def make_sdist(path, names):
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            data = b"def test_x():\n    pass\n"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_only_tests_are_extracted_so_verl_stays_the_installed_one(tmp_path):
    sdist = tmp_path / "verl-0.9.1.tar.gz"
    make_sdist(sdist, ["verl-0.9.1/verl/__init__.py", "verl-0.9.1/tests/__init__.py",
                       "verl-0.9.1/tests/trainer/test_a_on_cpu.py", "verl-0.9.1/tests/tools/_stub_search_tools.py"])
    work = tmp_path / "work"
    files = verl_suite.extract_tests(sdist, work)
    assert files == ["tests/trainer/test_a_on_cpu.py"]
    assert not (work / "verl").exists() and (work / "tests/tools/_stub_search_tools.py").exists()


def test_an_sdist_without_tests_is_refused(tmp_path):
    sdist = tmp_path / "verl-0.9.1.tar.gz"
    make_sdist(sdist, ["verl-0.9.1/verl/__init__.py"])
    with pytest.raises(SystemExit, match="has no tests/ folder"):
        verl_suite.extract_tests(sdist, tmp_path / "work")


def test_any_outcome_difference_is_reported():
    on = {"a::t1": ("passed", ""), "a::t2": ("failed", "boom"), "a::t3": ("skipped", "no gpu")}
    assert verl_suite.compare(on, dict(on)) == []
    off = {"a::t1": ("failed", "KeyError"), "a::t2": ("failed", "other text"), "a::t4": ("passed", "")}
    diff = verl_suite.compare(on, off)
    assert [d.split(":")[0] for d in diff] == ["a", "a", "a"] and len(diff) == 3
    assert "a::t1: plugin on passed () | off failed (KeyError)" in diff
    assert any(d.startswith("a::t3: plugin on skipped") and "off absent" in d for d in diff)
    assert any(d.startswith("a::t4: plugin on absent") for d in diff)


def test_every_left_out_file_has_a_reason():
    assert verl_suite.reason_left_out("tests/checkpoint_engine/test_correctness_on_gpu.py") == "needs a GPU"
    assert "gpt-oss" in verl_suite.reason_left_out("tests/experimental/agent_loop/test_gpt_oss_tool_parser.py")
    assert not set(verl_suite.SELECTED) & set(verl_suite.LEFT_OUT)
