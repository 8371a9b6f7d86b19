"""`hyperseyes eval` as a new user meets it (issue 15): failed items retried on resume, resume refused across
runs, a preflight that names the problem, structured tool calls, estimated tokens flagged, reports that tell
runs apart, column typos and scripted baselines refused with a line instead of a silent 0 %."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from hyperseyes_verl.cli import main
from hyperseyes_verl.testing.fake_chat_server import FakeChatServer, Reply, first_user_text, n_assistant

CROP_CALL = {"id": "call_0", "type": "function", "function": {
    "name": "image_search", "arguments": json.dumps({"image_id": "img_0", "area": [[0, 0, 0.5, 1], [0.5, 0, 1, 1]]})}}


class Switchable:
    """A model that answers right, or (while `down`) fails every request with HTTP 503."""

    def __init__(self):
        self.down = False
        self.usage = True

    def __call__(self, req):
        if self.down:
            return Reply(status=503)
        if req.get("max_tokens") == 1:  # the preflight
            return Reply("OK")
        q = first_user_text(req)
        if "structured" in q and n_assistant(req) == 0:
            return Reply("", tool_calls=[CROP_CALL], completion_tokens=12)
        return Reply("<answer>Paris</answer>", completion_tokens=5 if self.usage else None)


@pytest.fixture()
def model():
    responder = Switchable()
    with FakeChatServer(responder) as srv:
        srv.responder_state = responder
        yield srv


def _bench(tmp: Path, questions=("alpha", "beta", "gamma"), name="bench.jsonl") -> Path:
    (tmp / "img.png").exists() or Image.new("RGB", (64, 32), (200, 30, 30)).save(tmp / "img.png")
    rows = [{"id": q, "question": f"{q}: which city?", "answer": "Paris", "image": "img.png"} for q in questions]
    path = tmp / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _backend(tmp: Path) -> Path:
    path = tmp / "search.yaml"
    path.write_text("type: memory\n")
    return path


def _eval(srv_url, model, data, out, *extra):
    return main(["eval", "--endpoint", srv_url, "--model", model, "--data", str(data), "--backend-config",
                 str(_backend(Path(data).parent)), "--out", str(out), "--no-progress", "--max-attempts", "1",
                 *extra])


def _results(out: Path) -> dict:
    from hyperseyes_verl.eval.results import ResultsFile

    return {r.id: r for r in ResultsFile(out).load()}


def test_rerun_retries_items_that_failed_on_the_endpoint(model, tmp_path, capsys):
    data = _bench(tmp_path)
    # the server goes down after the preflight: every item fails, the run says so and exits 1
    model.responder_state.down = False
    state = model.responder_state
    calls = {"n": 0}

    def flaky(req):
        calls["n"] += 1
        return Reply(status=503) if calls["n"] > 1 else state(req)

    model.responder = flaky
    assert _eval(model.base_url, "m", data, tmp_path / "run") == 1
    assert "rerun the same command to retry" in capsys.readouterr().err
    assert all(r.finish_reason == "endpoint_error" for r in _results(tmp_path / "run").values())
    model.responder = state  # back up: the same command retries the three failures and reaches 100 %
    assert _eval(model.base_url, "m", data, tmp_path / "run") == 0
    res = _results(tmp_path / "run")
    assert len(res) == 3 and all(r.acc == 1.0 and r.endpoint_errors == 0 for r in res.values())
    assert "acc 100.0%" in capsys.readouterr().out


def test_resume_refuses_another_model_or_data_file_and_restart_starts_afresh(model, tmp_path, capsys):
    data = _bench(tmp_path)
    assert _eval(model.base_url, "model-a", data, tmp_path / "run") == 0
    n = len(model.requests)
    assert _eval(model.base_url, "model-b", data, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "another run" in err and "model-a" in err and "model-b" in err and "--restart" in err
    other = _bench(tmp_path, questions=("alpha", "beta", "gamma", "delta"), name="other.jsonl")  # repeating ids
    assert _eval(model.base_url, "model-a", other, tmp_path / "run") == 2
    assert "data_sha256" in capsys.readouterr().err
    assert len(model.requests) == n  # nothing was sent, nothing was reused
    assert _eval(model.base_url, "model-b", data, tmp_path / "run", "--restart") == 0
    assert len(model.requests) == n + 1 + 3  # preflight + every item, for model B this time
    assert {r["model"] for r in model.requests[n:]} == {"model-b"}
    assert list(tmp_path.joinpath("run").glob("results.replaced-*.jsonl"))


@pytest.mark.parametrize("case", ["down", "no_v1", "500"])
def test_preflight_names_the_problem_before_any_item_runs(model, tmp_path, capsys, case):
    data = _bench(tmp_path)
    url = {"down": "http://127.0.0.1:9/v1", "no_v1": model.base_url.removesuffix("/v1"),
           "500": model.base_url}[case]
    model.responder_state.down = case == "500"
    assert _eval(url, "m", data, tmp_path / "run") == 2
    err = capsys.readouterr().err
    expected = {"down": "nothing answers at http://127.0.0.1:9/v1", "no_v1": f"try --endpoint {url}/v1",
                "500": "fails a one-token request"}[case]
    assert expected in err
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_structured_tool_calls_are_executed_not_no_action(model, tmp_path):
    data = _bench(tmp_path, questions=("structured",))
    assert _eval(model.base_url, "m", data, tmp_path / "run") == 0
    r = _results(tmp_path / "run")["bench/structured"]
    assert (r.tool_rounds, r.tool_calls, r.searches_per_round, r.finish_reason) == (1, 1, [2], "answer")
    assert r.tool_errors == {}


def test_estimated_tokens_are_flagged_and_runs_of_one_model_told_apart(model, tmp_path, capsys):
    data = _bench(tmp_path)
    assert _eval(model.base_url, "m", data, tmp_path / "a") == 0
    model.responder_state.usage = False
    assert _eval(model.base_url, "m", data, tmp_path / "b", "--limit", "2") == 0
    out = capsys.readouterr().out
    assert "note: m: gen tokens and CAS are estimated" in out
    assert main(["eval", "report", "--runs", str(tmp_path / "a"), str(tmp_path / "b"),
                 "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"| m ({tmp_path / 'a'}) |" in md and f"| m ({tmp_path / 'b'}) |" in md
    assert "≈" in md.split(f"| m ({tmp_path / 'b'}) |")[1].splitlines()[0]  # b's tokens and CAS marked
    assert "cover different items" in md and "3" in md and "2 in common" in md
    assert main(["eval", "report", "--runs", str(tmp_path / "a"), str(tmp_path / "b"), "--common-only",
                 "--out", str(tmp_path / "rep2")]) == 0
    rows = json.loads((tmp_path / "rep2" / "report.json").read_text())["runs"]
    assert [r["metrics"]["overall"]["eval/n"] for r in rows] == [2, 2]


def test_column_typo_is_refused_not_text_only(model, tmp_path, capsys):
    data = _bench(tmp_path)
    rc = _eval(model.base_url, "m", data, tmp_path / "run", "--columns", "question=question,answer=answer,images=imgae")
    assert rc == 2
    err = capsys.readouterr().err
    assert "images=imgae" in err and "'image'" in err


def test_scripted_baselines_refuse_a_bad_name_and_run_on_a_user_gallery(tmp_path, capsys):
    from test_usability_data import user_gallery

    pics, facts, schema = user_gallery(tmp_path)
    out = tmp_path / "data"
    assert main(["synth", "--gallery", str(pics), "--facts", str(facts), "--schema", str(schema), "--out", str(out),
                 "--n-visual", "6", "--n-textual", "2"]) == 0
    assert main(["index", "build", "--corpus", str(out / "corpus.jsonl"), "--images", str(out), "--images-meta",
                 str(out / "images.jsonl"), "--out", str(out / "index"), "--no-progress"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit, match="no such scripted strategy.*scripted-parallel"):
        main(["eval", "--endpoint", "scripted", "--model", "foo", "--data", str(out / "items.jsonl"),
              "--index", str(out / "index"), "--out", str(tmp_path / "foo"), "--no-progress"])
    assert main(["eval", "--endpoint", "scripted", "--model", "scripted-parallel", "--data", str(out / "items.jsonl"),
                 "--index", str(out / "index"), "--out", str(tmp_path / "par"), "--no-progress"]) == 0
    res = _results(tmp_path / "par")
    # the user's classes (towers, not the demo's landmarks) are known: real searches, mostly right answers
    assert sum(r.acc for r in res.values()) / len(res) >= 0.75
    assert all(r.tool_rounds >= 1 for r in res.values())


def test_malformed_structured_arguments_become_a_counted_tool_error():
    from hyperseyes_verl.utils.openai_chat import tool_calls_text
    from hyperseyes_verl.ugs.parser import parse_turn

    good = tool_calls_text([CROP_CALL, {"type": "function", "function": {"name": "text_search",
                                                                          "arguments": {"input": ["a", "b"]}}}])
    assert [c.name for c in parse_turn(good).calls] == ["image_search", "text_search"]
    bad = parse_turn(tool_calls_text([{"function": {"name": "text_search", "arguments": '{"input": ["a"'}}]))
    assert not bad.calls and bad.errors  # a broken call is reported to the model, not silently dropped


def test_bad_search_settings_are_one_line_not_a_traceback(tmp_path, capsys):
    data = _bench(tmp_path)
    (tmp_path / "bad.yaml").write_text("type: serper\nbogus: 1\n")
    common = ["eval", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--data", str(data),
              "--out", str(tmp_path / "run")]
    assert main([*common, "--backend-config", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1  # one line
    assert "serper.bogus: Extra inputs are not permitted (got 1)" in err
    assert main([*common, "--index", str(tmp_path / "no_index")]) == 2
    assert "does not exist; build one with `hyperseyes index build" in capsys.readouterr().err


def test_demo_with_an_unreachable_endpoint_stops_at_once(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--endpoint", "http://127.0.0.1:9/v1", "--model", "m"]) == 2
    assert "nothing answers at http://127.0.0.1:9/v1" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # nothing was built before the check


def test_environment_flags_reach_the_eval_config():
    """`--max-rounds 3 --max-turns 4 --no-tool-schemas`: the tiny recipe's environment, as its rows state it."""
    import argparse

    from hyperseyes_verl.eval.cli import add_arguments, build_config

    p = argparse.ArgumentParser()
    add_arguments(p)
    base = ["--endpoint", "http://x/v1", "--model", "m", "--data", "d.jsonl"]
    cfg = build_config(p.parse_args(base))
    assert cfg.ugs.tool_schemas and (cfg.ugs.max_tool_rounds, cfg.ugs.max_turns) == (8, 9)
    cfg = build_config(p.parse_args(base + ["--max-rounds", "3", "--max-turns", "4", "--no-tool-schemas"]))
    assert not cfg.ugs.tool_schemas and (cfg.ugs.max_tool_rounds, cfg.ugs.max_turns) == (3, 4)
