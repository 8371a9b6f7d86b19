"""The trajectory viewer built from each source: an eval run, a PRS folder, verl rollout dumps with a metrics
file, and the demo's layout; what the pages show, and that nothing from a model reaches the HTML unescaped."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from hyperseyes_verl.cli import main
from hyperseyes_verl.ugs.images import ImageRegistry
from hyperseyes_verl.view import build_from_paths
from hyperseyes_verl.view.build import load_sources
from hyperseyes_verl.view.items import ItemIndex
from hyperseyes_verl.view.sources import discover
from hyperseyes_verl.view.steps import read_metrics, series
from hyperseyes_verl.view.transcript import split_rollout
from view_scenario import BLUE, RED, XSS_QUERY, XSS_TITLE, write_eval_run, write_prs, write_rollout_dump

SRC_RE = re.compile(r'<img src="([^"]+)"')


def episodes_of(path: Path, data: Path | None = None):
    return load_sources(discover(path), ItemIndex.from_file(data) if data else None)[0]


def page_of(site: Path, uid: str) -> str:
    return (site / "e" / f"{uid}.html").read_text()


def index_rows(site: Path) -> list[dict]:
    js = (site / "data" / "episodes.js").read_text()
    return json.loads(js[js.index("=") + 1:].strip().rstrip(";"))


def mean_rgb(im: Image.Image) -> tuple[float, ...]:
    px = list(im.convert("RGB").getdata())
    return tuple(sum(p[c] for p in px) / len(px) for c in range(3))


def assert_escaped(html: str) -> None:
    assert "<script>window.__xss" not in html and "onerror=" not in html.replace("onerror=&quot;", "")
    assert 'href="javascript:' not in html


async def test_eval_run_boxes_crops_hits_and_errors(tmp_path):
    run, items = await write_eval_run(tmp_path)
    eps = {e.question: e for e in episodes_of(run)}  # images found through run.json's `data`
    ep = eps["Which spire is taller?"]
    assert ep.source == "eval" and ep.verdict == "correct" and ep.prediction == "Beta <b>Spire</b>"
    assert [len(t.calls) for t in ep.turns] == [2, 1, 0] and ep.turns[2].answer == ep.prediction
    crops = ep.turns[0].calls[0].crops
    assert [(c.image_id, c.ok, c.error_kind) for c in crops] == [
        ("img_1", True, None), ("img_2", True, None), ("img_3", False, "bad_box_inverted")]
    assert crops[0].box == (0.0, 0.0, 0.5, 1.0) and crops[2].box == (0.9, 0.5, 0.2, 0.9)
    assert [h.title for h in crops[0].search.hits] == ["Alpha Spire"]
    assert [h.title for h in crops[1].search.hits] == ["Beta Spire"]
    queries = ep.turns[0].calls[1].queries
    assert [q.query for q in queries] == ["alpha height", XSS_QUERY, "outage probe"]
    assert queries[0].search.hits[0].url == "https://example.org/alpha" and queries[0].search.hits[0].score == 0.9
    assert queries[1].search.hits[0].title == XSS_TITLE
    assert queries[2].search.failure_kind == "timeout"
    # a crop of a crop: img_4 is the top-left quarter of img_1 (the left half), re-cut from the input's pixels
    inner = ep.turns[1].calls[0].crops[0]
    assert (inner.image_id, inner.source_id, inner.ok) == ("img_4", "img_1", True)
    expected = ImageRegistry([Image.open(items.parent / "m.png")]).crop("img_0", [0.0, 0.0, 0.5, 1.0]).image
    expected = ImageRegistry([expected]).crop("img_0", [0.0, 0.0, 0.5, 0.5]).image
    assert list(inner.image.load().getdata()) == list(expected.getdata())
    assert mean_rgb(crops[1].image.load())[2] > 150  # img_2: the blue right half

    site = tmp_path / "site"
    info = build_from_paths([run], site, workers=1)
    assert info["episodes"] == 2
    html = page_of(site, ep.uid)
    assert re.search(r'class="box ok" data-box-id="img_1"', html) and 'data-box-id="img_4"' in html
    assert re.search(r'class="box fail" data-box-id="img_3"', html) and "img_3 ✗ bad_box_inverted" in html
    assert "search failed (timeout)" in html and "Alpha Spire" in html
    assert_escaped(html)
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html and "Beta &lt;b&gt;Spire&lt;/b&gt;" in html
    srcs = SRC_RE.findall(html)
    assert len(srcs) >= 5 and all((site / "e" / s).resolve().is_file() for s in srcs)
    rows = {r["question"]: r for r in index_rows(site)}
    assert rows["Which spire is taller?"]["verdict"] == "correct"
    assert rows["Which spire is older?"]["verdict"] == "wrong"
    assert "bad_box_inverted" in rows["Which spire is taller?"]["errors"]
    assert rows["Which spire is taller?"]["rounds"] == 2 and rows["Which spire is taller?"]["searches"] == 6


async def test_prs_folder_uses_the_stored_crops(tmp_path):
    prs, items = await write_prs(tmp_path)
    eps = {e.item_id: e for e in episodes_of(prs, items)}
    solved, unsolved = eps["it-0"], eps["it-1"]
    assert solved.verdict == "correct" and solved.trace["ref_rounds"] == 2 and solved.trace["budget"] == 2
    crops = [c for t in solved.turns for call in t.calls for c in call.crops]
    assert [c.image_id for c in crops] == ["img_1", "img_2", "img_3", "img_4"]
    ok = [c for c in crops if c.ok]
    assert all(c.image.path and c.image.path.startswith(str(prs)) for c in ok)  # the saved files, not re-cut
    assert mean_rgb(ok[0].image.load())[0] > 150 and mean_rgb(ok[1].image.load())[2] > 150
    assert unsolved.verdict == "wrong" and not unsolved.turns and unsolved.gold == ["Beta Spire", "Beta <b>Spire</b>"]
    assert len(unsolved.details["attempts"]) == 3 and unsolved.input_images  # inputs from the items file

    site = tmp_path / "site"
    build_from_paths([prs], site, data=items, workers=1)
    html = page_of(site, solved.uid)
    assert 'data-box-id="img_2"' in html and "img_3 ✗ bad_box_inverted" in html
    assert "attempts" in page_of(site, unsolved.uid)


def test_split_rollout_both_decodings():
    obs = "image_search #1:\nimg_1:  (crop of img_0, box [0.000, 0.000, 0.500, 1.000])\n  1. Alpha (relevance 0.90)"
    qwen = ('<reason>a</reason><tool_call>{"name": "image_search", "arguments": {}}</tool_call>\nuser\n'
            f"<tool_response>\n{obs}\n</tool_response>\nassistant\n<answer>x</answer>")
    msgs = split_rollout(qwen)
    assert [m.role for m in msgs] == ["assistant", "user", "assistant"]
    assert msgs[1].text == obs and msgs[2].text == "<answer>x</answer>"
    kept = qwen.replace("\nuser\n", "<|im_end|>\n<|im_start|>user\n").replace("\nassistant\n",
                                                                              "<|im_end|>\n<|im_start|>assistant\n")
    assert [(m.role, m.text) for m in split_rollout(kept)] == [(m.role, m.text) for m in msgs]
    bare = qwen.replace("<tool_response>", "").replace("</tool_response>", "")  # tags special and dropped too
    assert [m.role for m in split_rollout(bare)] == ["assistant", "user", "assistant"]
    assert "crop of img_0" in split_rollout(bare)[1].text


@pytest.mark.verl
async def test_verl_rollout_dumps_and_metrics(tmp_path, tiny_qwen25_dir):
    from transformers import AutoTokenizer

    train, items = await write_rollout_dump(tmp_path, AutoTokenizer.from_pretrained(tiny_qwen25_dir))
    kinds = sorted((s.kind, s.name) for s in discover(train))
    assert kinds == [("metrics", "metrics.jsonl"), ("rollouts", "rollouts"), ("rollouts", "v1_rollouts"),
                     ("rollouts", "val_generations")]
    everything = episodes_of(train, items)
    assert [(e.run, e.step, e.verdict) for e in everything if e.run == "val_generations"] == [
        ("val_generations", 2, "correct")]
    # the V1 dump has no reward fields: judged with the rule judge, rounds and searches counted from the text
    v1 = [e for e in everything if e.run == "v1_rollouts"]
    assert [(e.verdict, e.judge_source, e.tool_rounds, e.searches) for e in v1] == [
        ("correct", "rule (by the viewer)", 2, 6), ("wrong", "rule (by the viewer)", 1, 1)]
    assert v1[0].item_id == "u7_0_0" and "category" not in v1[0].trace  # no reference, no TRACE category
    eps = [e for e in everything if e.run == "rollouts"]
    assert [(e.step, e.verdict) for e in eps] == [(1, "correct"), (1, "wrong"), (2, "correct"), (2, "wrong")]
    s1 = eps[0]  # decoded as a real Qwen tokenizer does: tool calls and responses keep their tags
    assert s1.question == "Which spire is taller?" and s1.prediction == "Beta <b>Spire</b>" and s1.reward == 1.0
    crops = [c for t in s1.turns for call in t.calls for c in call.crops]
    assert [(c.image_id, c.ok) for c in crops] == [("img_1", True), ("img_2", True), ("img_3", False), ("img_4", True)]
    assert crops[0].box == (0.0, 0.0, 0.5, 1.0)  # from the call, not the rounded observation line
    assert mean_rgb(crops[3].image.load())[0] > 150  # re-cut from the input image of the RL items
    assert s1.trace["category"] == "good" and s1.trace["official_bonus"] == 0.2
    assert eps[1].trace["category"] == "wrong_penalized" and eps[1].trace["official_bonus"] == -0.1
    assert eps[1].training["opd_eligible"] == 1 and eps[3].training["opd_teacher_status"] == "scored"
    assert eps[2].tool_errors == {"bad_box_inverted": 1} and eps[2].searches_per_round == [5, 1]
    # step 2 decoded with the tiny tokenizer, whose tool tags are special: turns are still split, crops found
    assert [c.image_id for t in eps[2].turns for call in t.calls for c in call.crops] == [
        "img_1", "img_2", "img_3", "img_4"]

    metrics = read_metrics(train / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2] and metrics[1]["trace/rounds_mean"] == 3.5
    site = tmp_path / "site"
    build_from_paths([train], site, data=items, workers=2)
    index = (site / "index.html").read_text()
    sections = dict(re.findall(r'<section class="steps" data-run="([^"]+)">(.*?)</section>', index, re.S))
    assert set(sections) == {"rollouts", "v1_rollouts", "val_generations"}  # training and validation kept apart
    train_section = sections["rollouts"]
    for name in ("reward", "accuracy", "rounds", "width"):
        assert f'data-series="{name}"' in train_section
    steps = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td><td>([\d.]+)</td><td>([\d.]+)</td>", train_section)
    assert steps == [("1", "2", "0.5", "0.5"), ("2", "2", "0.5", "0.5")]
    assert "trace/rounds_mean" in train_section and "trace/rounds_mean" not in sections["val_generations"]
    html = page_of(site, s1.uid)
    assert "good" in html and 'data-box-id="img_4"' in html
    assert_escaped(html)


def test_step_series_fall_back_to_logged_metrics():
    rows = [{"step": 1, "critic/score/mean": 0.1, "trace/acc": 0.2}, {"step": 2, "critic/score/mean": 0.3}]
    pts = series(rows)
    assert pts["reward"] == [(1, 0.1), (2, 0.3)] and pts["accuracy"] == [(1, 0.2)] and pts["width"] == []
    assert series([{"step": 1, "reward": 0.9, "critic/score/mean": 0.1}])["reward"] == [(1, 0.9)]


async def test_cli_on_a_demo_layout(tmp_path, capsys):
    run, items = await write_eval_run(tmp_path / "demo")
    (tmp_path / "demo" / "runs").mkdir()
    run.rename(tmp_path / "demo" / "runs" / "scripted")
    (tmp_path / "demo" / "runs" / "scripted" / "run.json").unlink()  # the demo records no data file
    await write_prs(tmp_path / "demo")
    assert main(["view", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "4 episodes from 2 sources" in out and "prs: prs" in out and "eval: runs/scripted" in out
    site = tmp_path / "demo" / "view"
    rows = index_rows(site)
    assert len(rows) == 4 and {r["run"] for r in rows} == {"prs", "runs/scripted"}
    ep_page = page_of(site, next(r["uid"] for r in rows if r["run"] == "runs/scripted" and r["verdict"] == "correct"))
    assert "pixels not recorded" not in ep_page  # images found through data/items.jsonl
    assert main(["view", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


async def test_refused_calls_and_unit_errors_from_the_real_environment():
    from hyperseyes_verl.ugs.environment import SearchEnvironment
    from hyperseyes_verl.view.transcript import Message, build_turns
    from view_scenario import backend

    image = Image.new("RGB", (200, 100), RED)
    call = '<tool_call>{"name": "text_search", "arguments": {"input": ["alpha %d"]}}</tool_call>'
    units = ('<tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", '
             '"area": [[0.1, 0.1, 0.5, 0.5], [0, 0, 500, 600]]}}</tool_call>')
    text = units + "".join(call % i for i in range(9)) + "<tool_call>{broken</tool_call>"
    env = SearchEnvironment(backend(), "q", [image])
    step = await env.step(text)
    turn = build_turns([Message("assistant", text), Message("user", step.observation.text)], [])[0]
    assert [c.name for c in turn.calls] == ["image_search"] + ["text_search"] * 7  # 8 run, the rest refused
    crops = turn.calls[0].crops
    assert [(c.image_id, c.error_kind) for c in crops] == [("img_1", "bad_box_units"), ("img_2", "bad_box_units")]
    assert crops[0].box == (0.1, 0.1, 0.5, 0.5) and crops[1].box is None  # no box in other units is drawn
    kinds = [k for k, _ in turn.turn_errors]
    assert sorted(kinds) == ["bad_json", "too_many_calls"]  # each once: the parser's own errors not repeated
    assert all(not c.errors for c in turn.calls[1:])  # the refusal is the turn's, not the last run call's
    assert [q.query for c in turn.calls[1:] for q in c.queries] == [f"alpha {i}" for i in range(7)]


def test_thumbnails_leave_the_pixels_crops_are_cut_from(tmp_path):
    from hyperseyes_verl.view.model import ImageRef
    from hyperseyes_verl.view.thumbs import INPUT_SIDE, ThumbStore

    big = Image.new("RGB", (1600, 800), BLUE)
    big.paste(Image.new("RGB", (800, 800), RED), (0, 0))
    big.save(tmp_path / "big.png")
    source = ImageRef(path=str(tmp_path / "big.png"))
    crop = ImageRef(parent=source, box=(0.25, 0.0, 0.75, 1.0))
    store = ThumbStore(tmp_path / "site")
    rel, w, h = store.thumb(source, INPUT_SIDE)  # the input first, as a page draws it
    assert (w, h) == (INPUT_SIDE, INPUT_SIDE // 2) and (tmp_path / "site" / rel).is_file()
    expected = ImageRegistry([Image.open(tmp_path / "big.png")]).crop("img_0", [0.25, 0.0, 0.75, 1.0]).image
    got = crop.load()
    assert got.size == expected.size == (800, 800) and list(got.getdata()) == list(expected.getdata())
    assert store.thumb(ImageRef(), 240) is None  # no pixels: the page draws an empty frame instead
