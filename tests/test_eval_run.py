"""Evaluation against a real local OpenAI-compatible HTTP server: hand-checked episode metrics, endpoint
faults counted and survived, resume after an interruption, report and plot files."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from hyperseyes_verl.eval.evaluate import EvalConfig, evaluate
from hyperseyes_verl.eval.loaders import EvalItem
from hyperseyes_verl.eval.metrics import full_metrics, summarize
from hyperseyes_verl.eval.report import report_from_dirs
from hyperseyes_verl.eval.results import ResultsFile
from hyperseyes_verl.search.base import Hit, InMemoryBackend
from hyperseyes_verl.testing.fake_chat_server import FakeChatServer, Reply, first_user_text, n_assistant
from hyperseyes_verl.utils.openai_chat import EndpointConfig, OpenAIChatClient

SEARCH = '<reason>two facts</reason><tool_call>{"name": "text_search", "arguments": {"input": ["capital france", "river paris"]}}</tool_call>'
CROP = ('<reason>both</reason><tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", '
        '"area": [[0, 0, 0.5, 1], [0.5, 0, 1, 1]]}}</tool_call>')


def responder(req):
    q, turn = first_user_text(req), n_assistant(req)
    if "alpha" in q:  # 2 searches in one round, then right
        return [Reply(SEARCH, completion_tokens=40), Reply("<answer>Paris</answer>", completion_tokens=10)][min(turn, 1)]
    if "beta" in q:  # 2 crops in round 1, 1 query in round 2, then wrong
        script = [Reply(CROP, completion_tokens=30),
                  Reply('<tool_call>{"name": "text_search", "arguments": {"input": ["x"]}}</tool_call>',
                        completion_tokens=20),
                  Reply("<answer>Lyon</answer>", completion_tokens=10)]
        return script[min(turn, 2)]
    if "server-error" in q:
        return Reply(status=503)
    if "slow" in q:
        return Reply("<answer>late</answer>", delay_s=2.0)
    if "garbage" in q:
        return Reply("I think it is Paris but I will not use the format", completion_tokens=12)
    if "guess" in q:
        return Reply("<answer>Paris</answer>", completion_tokens=5)
    return Reply("<answer>?</answer>")


def _item(name: str, answer: str = "Paris", domain: str = "geo", entities: int = 2) -> EvalItem:
    img = Image.new("RGB", (40, 20), (10, 200, 30))
    return EvalItem(id=f"t/{name}", benchmark="t", question=f"{name}: which city?", answers=[answer],
                    image_refs=[img], domain=domain, entity_count=entities)


@pytest.fixture(scope="module")
def server():
    with FakeChatServer(responder) as srv:
        yield srv


def _backend():
    return InMemoryBackend(text={"capital": [Hit("Paris", "capital of France", score=0.9)],
                                 "river": [Hit("Seine", "river of Paris", score=0.9)]})


def _client(srv, timeout=0.5):
    return OpenAIChatClient(EndpointConfig(base_url=srv.base_url, timeout_s=timeout, max_attempts=2, backoff_s=0))


async def test_hand_checked_episodes_and_faults(server, tmp_path):
    items = [_item("alpha"), _item("beta", domain="art", entities=3), _item("server-error"), _item("slow"),
             _item("garbage"), _item("guess")]
    async with _client(server) as client:
        res = await evaluate(items, client, _backend(), tmp_path / "run", EvalConfig(model="m", progress=False))
    by = {r.id: r for r in res}
    assert len(res) == 6
    a = by["t/alpha"]
    assert (a.acc, a.tool_rounds, a.tool_calls, a.searches, a.searches_per_round, a.generated_tokens) == \
        (1.0, 1, 1, 2, [2], 50)
    b = by["t/beta"]
    assert (b.acc, b.tool_rounds, b.searches_per_round, b.generated_tokens, b.prediction) == (0.0, 2, [2, 1], 60, "Lyon")
    assert (a.searches_empty, b.searches_empty) == (0, 1)  # both crops hit; the query "x" finds nothing
    for bad in ("t/server-error", "t/slow"):
        assert by[bad].endpoint_errors == 1 and by[bad].error and by[bad].acc == 0.0
    assert "timeout" in by["t/slow"].error and "server_error" in by["t/server-error"].error
    g = by["t/garbage"]
    assert not g.answered and g.finish_reason == "no_action" and g.acc == 0.0
    m = full_metrics(res)
    o, f = m["overall"], m["failures"]
    assert o["eval/acc"] == pytest.approx(2 / 6)  # alpha + guess; failures stay in the denominator
    assert o["eval/mean_tool_rounds"] == pytest.approx(3 / 6)
    assert o["eval/searches_per_round"] == pytest.approx(5 / 3)  # rounds of width 2, 2, 1
    assert o["eval/multi_search_round_share"] == pytest.approx(2 / 3)
    assert o["eval/empty_search_share"] == pytest.approx(1 / 5)
    tokens_k = (50 + 60 + 12 + 5) / 6 / 1000
    assert o["eval/cas"] == pytest.approx((1 / 9) * 100 / (tokens_k + 2 * 0.5 + 1))
    assert f["failures/episodes_failed"] == 2 and f["failures/endpoint_errors"] == 2
    assert f["failures/no_answer"] == 3  # garbage + the two dead episodes
    assert m["by"]["domain"]["art"]["eval/n"] == 1 and m["by"]["entities"]["3"]["eval/acc"] == 0.0


async def test_resume_after_interruption_has_no_duplicates_and_same_metrics(server, tmp_path):
    items = [_item("alpha"), _item("beta"), _item("guess"), _item("garbage")]
    cfg = EvalConfig(model="m", progress=False, concurrency=2)
    async with _client(server) as client:
        full = await evaluate(items, client, _backend(), tmp_path / "full", cfg)
        part = await evaluate(items, client, _backend(), tmp_path / "resumed", cfg, max_new=2)
        assert len(part) == 2
        # a kill in the middle of a write leaves a cut line: it is ignored and that item is simply run again
        with (tmp_path / "resumed" / "results.jsonl").open("a") as fh:
            fh.write('{"id": "t/guess", "benchmark": "t", "acc": 1.0, "tool_ro')
        n_requests = len(server.requests)
        resumed = await evaluate(items, client, _backend(), tmp_path / "resumed", cfg)
        # only the two missing items (guess, garbage: one turn each) went to the endpoint
        assert len(server.requests) - n_requests == 2
        again = await evaluate(items, client, _backend(), tmp_path / "resumed", cfg)
    ids = [json.loads(line)["id"] for line in (tmp_path / "resumed" / "results.jsonl").read_text().splitlines()
           if line.strip().endswith("}")]
    assert sorted(ids) == sorted(it.id for it in items)  # every item exactly once
    assert len(ResultsFile(tmp_path / "resumed").load()) == 4
    def no_time(m):
        return {k: v for k, v in m.items() if k != "eval/mean_wall_s"}

    assert no_time(summarize(resumed)) == pytest.approx(no_time(summarize(full)))
    assert no_time(summarize(again)) == pytest.approx(no_time(summarize(full)))


async def test_report_and_plot_files(server, tmp_path):
    async with _client(server) as client:
        for name, model in (("a", "m1"), ("b", "m2")):
            await evaluate([_item("alpha"), _item("beta")], client, _backend(), tmp_path / name,
                           EvalConfig(model=model, progress=False))
    paths = report_from_dirs([tmp_path / "a", tmp_path / "b"], tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| m1 |" in md and "| m2 |" in md and "Failures" in md and "By entity count" in md
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [r["name"] for r in data["runs"]] == ["m1", "m2"]
    png = (tmp_path / "rep" / "pareto.png").read_bytes()
    assert paths["plot"].endswith("pareto.png") and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_report_of_missing_run_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="hyperseyes eval --out"):
        report_from_dirs([tmp_path / "nothing"], tmp_path / "rep")
