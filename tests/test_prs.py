"""Progressive Rejection Sampling against a scripted local OpenAI-compatible server."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from hyperseyes_verl.data.prs import PRSConfig, read_results, run_prs
from hyperseyes_verl.search.base import Hit, InMemoryBackend
from hyperseyes_verl.testing.fake_chat_server import EpisodeScript, FakeChatServer, Reply, first_user_text
from hyperseyes_verl.utils.openai_chat import EndpointConfig, OpenAIChatClient

CROP2 = ('<reason>two entities</reason><tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", '
         '"area": [[0, 0, 0.5, 1], [0.5, 0, 1, 1]]}}</tool_call>')
TEXT = '<tool_call>{"name": "text_search", "arguments": {"input": ["alpha height", "beta height"]}}</tool_call>'


def answer(a: str) -> str:
    return f"<reason>so</reason><answer>{a}</answer>"


def make_items(root: Path) -> list[dict]:
    root.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (240, 120), (250, 250, 250))
    img.paste(Image.new("RGB", (100, 100), (200, 0, 0)), (10, 10))
    img.paste(Image.new("RGB", (100, 100), (0, 0, 200)), (130, 10))
    img.save(root / "m.png")
    qs = {"it-a": "QA: which is taller?", "it-b": "QB: total height?", "it-c": "QC: impossible?",
          "it-d": "QD: endpoint down?"}
    answers = {"it-a": ["Beta Spire"], "it-b": ["500", "500 m"], "it-c": ["Gamma"], "it-d": ["x"]}
    return [{"id": k, "question": q, "answers": answers[k], "images": [str(root / "m.png")], "index": n,
             "entity_count": 2, "domain": "landmark", "kind": "visual"} for n, (k, q) in enumerate(qs.items())]


SCRIPT = {
    # budget 1 -> wrong, budget 2 -> right (the shortest correct one is budget 2)
    "QA": [[CROP2, answer("Alpha Spire")], [CROP2, TEXT, answer("Beta Spire")], [answer("never reached")]],
    # budget 1 suffices, with one wide round
    "QB": [[CROP2 + TEXT, answer("500 metres")]],
    "QC": [[CROP2, answer("Delta")]],  # never right
}


def backend() -> InMemoryBackend:
    return InMemoryBackend(text={"height": [Hit("Beta Spire", "Beta Spire rises 300 metres.", score=0.9)]},
                           image_fn=lambda im: [Hit("Alpha Spire" if im.getpixel((5, 5))[0] > 100 else "Beta Spire",
                                                    "a spire", score=1.0)])


def responder(script: EpisodeScript, down: set[str]):
    def respond(req):
        text = first_user_text(req)  # the question only: "QD" may occur by chance in an image's base64
        return Reply(status=503) if any(k in text for k in down) else script(req)

    return respond


async def test_prs_keeps_shortest_correct_and_resumes(tmp_path):
    items = make_items(tmp_path / "items")
    out = tmp_path / "prs"
    script = EpisodeScript(SCRIPT)
    cfg = PRSConfig(model="teacher", max_rounds=3, concurrency=2, limit=2)
    with FakeChatServer(responder(script, down={"QD"})) as srv:
        client = OpenAIChatClient(EndpointConfig(base_url=srv.base_url, max_attempts=2, backoff_s=0, timeout_s=5))
        first = await run_prs(items, backend(), client, cfg, out, progress=False)  # "killed" after 2 items
        assert first["prs/finished"] == 2 and set(read_results(out / "results.jsonl")) == {"it-a", "it-b"}
        n_requests = len(srv.requests)
        summary = await run_prs(items, backend(), client, cfg.model_copy(update={"limit": None}), out, progress=False)
        await client.aclose()
    lines = (out / "results.jsonl").read_text().splitlines()
    ids = [json.loads(l)["id"] for l in lines]
    assert len(ids) == 4 and set(ids[:2]) == {"it-a", "it-b"} and set(ids[2:]) == {"it-c", "it-d"}
    assert script.episode_counts["QA"] == 2  # not re-run on resume
    assert len(srv.requests) > n_requests
    res = read_results(out / "results.jsonl")
    a, b, c, d = (res[k] for k in ("it-a", "it-b", "it-c", "it-d"))
    assert a["status"] == "solved" and a["budget"] == 2 and a["ref_rounds"] == 2 and a["ref_searches"] == 4
    assert [x["correct"] for x in a["attempts"]] == [False, True]
    assert b["budget"] == 1 and b["ref_rounds"] == 1 and b["ref_searches"] == 4
    assert c["status"] == "unsolved" and len(c["attempts"]) == 3
    assert d["status"] == "endpoint_failure" and d["attempts"][0]["endpoint_errors"][0]["kind"] == "server_error"
    # the kept trajectory: input image + 2 crops (round 1); images on disk in ref order
    assert len(a["trajectory_images"]) == 3 and all((out / p).is_file() for p in a["trajectory_images"])
    assert [m["role"] for m in a["trajectory"]["messages"]][-1] == "assistant"
    assert summary["prs/solved"] == 2 and summary["prs/unsolved"] == 1 and summary["prs/endpoint_failures"] == 1
    assert summary["prs/solved_by_budget"] == {"1": 1, "2": 1} and summary["prs/pending"] == 1
    assert json.loads((out / "summary.json").read_text()) == summary


async def test_endpoint_failures_are_retried_on_the_next_run_and_torn_lines_ignored(tmp_path):
    items = make_items(tmp_path / "items")[:1] + make_items(tmp_path / "items")[3:]
    out = tmp_path / "prs"
    script = EpisodeScript({**SCRIPT, "QD": [[answer("x")]]})
    down = {"QD"}
    with FakeChatServer(responder(script, down)) as srv:
        client = OpenAIChatClient(EndpointConfig(base_url=srv.base_url, max_attempts=1, backoff_s=0, timeout_s=5))
        cfg = PRSConfig(model="teacher", max_rounds=2)
        s1 = await run_prs(items, backend(), client, cfg, out, progress=False)
        assert s1["prs/endpoint_failures"] == 1
        with (out / "results.jsonl").open("a") as f:
            f.write('{"id": "it-a", "status": "sol')  # a crash mid-write
        down.clear()  # the endpoint is back
        s2 = await run_prs(items, backend(), client, cfg, out, progress=False)
        await client.aclose()
    assert s2["prs/solved"] == 2 and s2["prs/endpoint_failures"] == 0 and s2["prs/pending"] == 0
    assert read_results(out / "results.jsonl")["it-d"]["budget"] == 1


def test_prs_cli_runs_against_an_index(tmp_path):
    """The CLI end to end on a tiny synthesized set and its embedded index."""
    from hyperseyes_verl.cli import main
    from hyperseyes_verl.data.synth import read_items
    from hyperseyes_verl.search.embedded import build_index

    syn = tmp_path / "syn"
    assert main(["synth", "--out", str(syn), "--n-visual", "1", "--n-textual", "1", "--per-class", "3"]) == 0
    build_index(syn / "index", syn / "corpus.jsonl", syn, syn / "images.jsonl", progress=False)
    items = read_items(syn / "items.jsonl")
    script = EpisodeScript({items[0]["question"][:40]: [[answer(items[0]["answers"][0])]],
                            items[1]["question"][:40]: [[answer("nobody")]]})
    with FakeChatServer(script) as srv:
        rc = main(["prs", "--items", str(syn / "items.jsonl"), "--index", str(syn / "index"), "--endpoint",
                   srv.base_url, "--model", "t", "--out", str(tmp_path / "prs"), "--max-rounds", "2", "--no-progress"])
    assert rc == 0
    summary = json.loads((tmp_path / "prs" / "summary.json").read_text())
    assert summary["prs/solved"] == 1 and summary["prs/unsolved"] == 1
