"""README "First hour": the bash block is run verbatim (issue 15), in a fresh folder holding a user's photos, facts
and schema, against a local OpenAI-compatible server. The server's "model" is the scripted parallel strategy
(real tool calls, answers computed from what its searches returned), so PRS solves items and eval scores them."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hyperseyes_verl.testing.fake_chat_server import FakeChatServer, Reply
from test_usability_data import user_gallery

pytestmark = pytest.mark.slow  # runs the README block end to end

ROOT = Path(__file__).resolve().parents[1]


def first_hour_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## First hour", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


class ScriptedModel:
    """Chat replies of the scripted parallel strategy for the items `hyperseyes synth` wrote into `data_dir`
    (loaded at the first episode: the block creates them)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.policy = None
        self._lock = threading.Lock()

    def _load(self):
        from hyperseyes_verl.data.gallery import load_classes
        from hyperseyes_verl.eval.loaders import load_benchmark
        from hyperseyes_verl.eval.strategies import ScriptedPolicy, specs_from_items

        with self._lock:
            if self.policy is None:
                items = load_benchmark(self.data_dir / "items.jsonl")
                self.policy = ScriptedPolicy("parallel", specs_from_items(items),
                                             load_classes(self.data_dir / "classes.json"))
        return self.policy

    def __call__(self, request):
        if request.get("max_tokens") == 1:  # the preflight of prs / eval
            return Reply("OK")
        return Reply(self._load().next_turn(request["messages"]))


def test_first_hour_block_runs_verbatim(tmp_path):
    user_gallery(tmp_path)  # my_photos/ with photos, facts.jsonl and schema.yaml
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")  # the block runs from a checkout's root
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    with FakeChatServer(ScriptedModel(tmp_path / "work" / "data")) as srv:
        env["ENDPOINT"] = srv.base_url
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", first_hour_block()], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        models = {r.get("model") for r in srv.requests}
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert models == {"Qwen/Qwen2.5-VL-7B-Instruct"}
    assert re.search(r"\d\.\d{3}  Aurora Tower", out)  # the index query found the entity
    prs = json.loads((tmp_path / "work" / "prs" / "summary.json").read_text())
    assert prs["prs/items"] == 20 and prs["prs/solved"] == 20 and prs["prs/endpoint_failures"] == 0
    results = [json.loads(line) for line in (tmp_path / "work" / "prs" / "results.jsonl").read_text().splitlines()]
    index_of = {json.loads(line)["id"]: json.loads(line)["index"]
                for line in (tmp_path / "work" / "data" / "items.jsonl").read_text().splitlines()}
    solved = {index_of[r["id"]] for r in results if r["status"] == "solved"}
    rows = [e for f in ("rl_train", "rl_val")
            for e in pq.read_table(tmp_path / "work" / "parquet" / f"{f}.parquet").column("extra_info").to_pylist()]
    assert len(rows) == 20 and {e["index"] for e in rows if e["ref_rounds"] >= 1} == solved  # every reference kept
    assert pq.read_metadata(tmp_path / "work" / "parquet" / "sft.parquet").num_rows == len(solved)
    assert "OK: no problems found" in out
    report = json.loads((tmp_path / "work" / "report" / "report.json").read_text())
    acc = {r["name"]: r["metrics"]["overall"]["eval/acc"] for r in report["runs"]}
    # the served "model" is the scripted parallel strategy: through HTTP it must score exactly as the script does
    # (items sharing one question text over different mosaics are told apart by their image: all are answered)
    assert acc["Qwen/Qwen2.5-VL-7B-Instruct"] == acc["scripted-parallel"] == 1.0
