"""Synthesis: determinism, answerability from the corpus text, box correctness, user galleries, CLI."""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hyperseyes_verl.data.gallery import DEMO_CLASSES, build_demo_gallery, load_user_gallery, write_gallery
from hyperseyes_verl.data.mosaic import build_mosaic, crop_box
from hyperseyes_verl.data.synth import SynthConfig, read_items, synthesize, write_items

CFG = SynthConfig(n_visual=16, n_textual=8, seed=7, max_entities=9)


def _make(root: Path, cfg: SynthConfig = CFG) -> Path:
    gallery = build_demo_gallery(root, per_class=9, seed=cfg.seed)
    write_gallery(gallery, root)
    write_items(synthesize(gallery, root, cfg), root / "items.jsonl")
    return root


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("synth"))


def test_same_seed_same_bytes_other_seed_differs(synth_dir, tmp_path):
    again = _make(tmp_path / "again")
    assert (again / "items.jsonl").read_text() == (synth_dir / "items.jsonl").read_text()
    assert (again / "corpus.jsonl").read_text() == (synth_dir / "corpus.jsonl").read_text()
    for png in sorted((synth_dir / "mosaics").glob("*.png")):
        assert (again / "mosaics" / png.name).read_bytes() == png.read_bytes()
    other = _make(tmp_path / "other", CFG.model_copy(update={"seed": 8}))
    assert (other / "items.jsonl").read_text() != (synth_dir / "items.jsonl").read_text()


def _facts_from_corpus(root: Path) -> dict[str, tuple[str, dict]]:
    """name -> (class, facts), read back from corpus prose only (each fact sentence parsed by its template)."""
    specs = {c.name: c for c in DEMO_CLASSES}
    out = {}
    for line in (root / "corpus.jsonl").read_text().splitlines():
        doc = json.loads(line)
        cls = doc["id"].split("/")[0]
        facts = {}
        for f in specs[cls].facts:
            m = f.pattern(doc["title"]).search(doc["text"])
            assert m, f"corpus document {doc['id']} does not state {f.key}"
            facts[f.key] = int(m.group(1)) if f.numeric else m.group(1)
        out[doc["title"]] = (cls, facts)
    return out


def _recompute(item: dict, corpus: dict[str, tuple[str, dict]]):
    """An independent evaluator of the item's program over corpus facts."""
    p = item["program"]
    if p["op"] == "constraints":
        ops = {">": lambda a, b: a > b, "<": lambda a, b: a < b, "=": lambda a, b: a == b}
        hits = [n for n, (cls, f) in corpus.items() if cls == p["class"]
                and all(ops[c["cmp"]](f[c["fact"]], c["value"]) for c in p["constraints"])]
        assert len(hits) == 1, f"{item['id']}: {len(hits)} entities match the constraints in the corpus"
        return hits[0]
    ents = item["entities"]
    val = {n: corpus[n][1] for n in ents}
    k = p.get("fact")
    if p["op"] == "argmax":
        return sorted(ents, key=lambda n: -val[n][k])[0]
    if p["op"] == "argmin":
        return sorted(ents, key=lambda n: val[n][k])[0]
    if p["op"] == "compare_lr":
        cx = {n: (b[0] + b[2]) / 2 for n, b in zip(ents, item["boxes"])}
        pair = [min(ents, key=cx.get), max(ents, key=cx.get)]
        return pair[0] if val[pair[0]][k] > val[pair[1]][k] else pair[1]
    if p["op"] == "count_gt":
        return len([n for n in ents if val[n][k] > p["threshold"]])
    if p["op"] == "count_eq":
        return len([n for n in ents if val[n][k] == p["value"]])
    if p["op"] == "sum":
        return sum(val[n][k] for n in ents)
    if p["op"] == "range":
        return max(val[n][k] for n in ents) - min(val[n][k] for n in ents)
    if p["op"] == "combine":
        chosen = sorted(ents, key=lambda n: val[n][p["by"]], reverse=p["pick"] == "max")[0]
        return val[chosen][k]
    raise AssertionError(f"unknown op {p['op']}")


def test_every_answer_follows_from_the_corpus_text(synth_dir):
    corpus = _facts_from_corpus(synth_dir)
    items = read_items(synth_dir / "items.jsonl")
    assert len(items) == CFG.n_visual + CFG.n_textual
    assert {i["kind"] for i in items} == {"visual", "textual"}
    assert len({i["program"]["op"] for i in items}) >= 5  # which / count / aggregate / combine / constraints
    for item in items:
        assert str(_recompute(item, corpus)) == item["answers"][0], item["id"]
        assert set(item["facts_used"]) <= set(corpus)


def test_boxes_crop_to_their_entity(synth_dir):
    items = [i for i in read_items(synth_dir / "items.jsonl") if i["kind"] == "visual"]
    refs = {json.loads(l)["name"]: synth_dir / json.loads(l)["image"]
            for l in (synth_dir / "entities.jsonl").read_text().splitlines()}
    counts = set()
    for item in items:
        mosaic = Image.open(item["images"][0]).convert("RGB")
        assert item["entity_count"] == len(item["entities"]) == len(item["boxes"])
        counts.add(item["entity_count"])
        pix = {n: np.asarray(Image.open(refs[n]).convert("RGB"), dtype=np.float32) for n in item["entities"]}
        for name, box in zip(item["entities"], item["boxes"]):
            assert 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1
            crop = np.asarray(crop_box(mosaic, box).resize((160, 160)), dtype=np.float32)
            dist = {n: float(np.abs(crop - p).mean()) for n, p in pix.items()}
            others = min((d for n, d in dist.items() if n != name), default=float("inf"))
            # the crop is its entity (boxes are inset by < 1 % of a side): clearly closer to it than to any other
            assert dist[name] < 0.75 * others, (item["id"], name, dist[name], others)
    assert len(counts) >= 3  # varied entity counts
    assert {i["layout"] for i in items} >= {"grid", "rows"}


def test_embedded_backend_finds_each_cropped_entity(synth_dir):
    from hyperseyes_verl.search.factory import build_backend
    from hyperseyes_verl.search.embedded import build_index

    build_index(synth_dir / "index", synth_dir / "corpus.jsonl", synth_dir, synth_dir / "images.jsonl", progress=False)
    backend = build_backend({"type": "embedded", "index_dir": str(synth_dir / "index")})
    items = [i for i in read_items(synth_dir / "items.jsonl") if i["kind"] == "visual"][:6]

    async def check():
        for item in items:
            mosaic = Image.open(item["images"][0]).convert("RGB")
            hits = await asyncio.gather(*(backend.image_search(crop_box(mosaic, b), 3) for b in item["boxes"]))
            assert [h[0].title for h in hits] == item["entities"]
        name = items[0]["entities"][0]
        text_hits = await backend.text_search(name, 3)
        assert text_hits[0].title == name
        await backend.aclose()

    asyncio.run(check())


def test_mosaic_boxes_do_not_overlap():
    import random

    imgs = [Image.new("RGB", (50, 50), (i * 25, 0, 0)) for i in range(9)]
    for layout in ("grid", "rows", "irregular", "tiles"):
        for n in (2, 5, 9):
            m = build_mosaic(imgs[:n], random.Random(n), layout=layout)
            for i, a in enumerate(m.boxes):
                for b in m.boxes[i + 1:]:
                    assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (layout, a, b)
    with pytest.raises(ValueError, match="2 to 9"):
        build_mosaic(imgs[:1], random.Random(0))


def test_tiles_fix_the_boxes_and_a_cell_box_finds_its_entity(tmp_path):
    """The demo's layout (issue #12): four entities always land on the same four cells, in reading order, and a
    box up to 2 % of a side off still finds its entity (a tiny model's boxes are not exact)."""
    from hyperseyes_verl.search.embedded import build_index
    from hyperseyes_verl.search.factory import build_backend

    root = _make(tmp_path, SynthConfig(n_visual=6, n_textual=0, seed=3, min_entities=4, max_entities=4,
                                       layout="tiles"))
    build_index(tmp_path / "index", corpus=root / "corpus.jsonl", images_dir=root, images_meta=root / "images.jsonl",
                progress=False)
    items = read_items(root / "items.jsonl")
    assert {i["layout"] for i in items} == {"tiles"}
    cells = [[0.01, 0.01, 0.49, 0.49], [0.51, 0.01, 0.99, 0.49], [0.01, 0.51, 0.49, 0.99], [0.51, 0.51, 0.99, 0.99]]
    assert all(i["boxes"] == cells for i in items)
    backend = build_backend({"type": "embedded", "index_dir": str(tmp_path / "index")})

    async def top(image, box):
        return (await backend.image_search(crop_box(image, box), 1))[0].title

    async def check():
        for item in items:
            mosaic = Image.open(root / item["images"][0]).convert("RGB")
            for off in (0.0, 0.02):  # the exact cell, and one that takes in 2 % of the neighbours / the border
                boxes = [[max(0.0, x1 - off), max(0.0, y1 - off), min(1.0, x2 + off), min(1.0, y2 + off)]
                         for x1, y1, x2, y2 in cells]
                assert [await top(mosaic, b) for b in boxes] == item["entities"], (item["id"], off)
        await backend.aclose()

    asyncio.run(check())
    with pytest.raises(ValueError, match="min_entities"):
        SynthConfig(min_entities=5, max_entities=4)


def _user_gallery(root: Path) -> tuple[Path, Path]:
    (root / "pics").mkdir(parents=True)
    rows = []
    for i, (name, h, c) in enumerate([("Tower A", 100, "red"), ("Tower B", 250, "blue"), ("Tower C", 180, "red")]):
        Image.new("RGB", (64, 64), (40 + 80 * i, 200 - 60 * i, 90)).save(root / "pics" / f"{i}.png")
        rows.append({"name": name, "class": "tower", "image": f"{i}.png", "facts": {"height": h, "paint": c},
                     "units": {"height": "m"}})
    facts = root / "facts.jsonl"
    facts.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root / "pics", facts


def test_user_gallery_feeds_synthesis(tmp_path):
    pics, facts = _user_gallery(tmp_path)
    gallery = load_user_gallery(pics, facts)
    assert gallery.classes["tower"].fact("height").numeric and not gallery.classes["tower"].fact("paint").numeric
    out = tmp_path / "out"
    write_gallery(gallery, out)
    items = synthesize(gallery, out, SynthConfig(n_visual=3, n_textual=1, seed=1, max_entities=3))
    docs = {json.loads(l)["title"]: json.loads(l)["text"] for l in (out / "corpus.jsonl").read_text().splitlines()}
    assert "The height of Tower B is 250 m." in docs["Tower B"]
    assert re.search(r"The paint of Tower A is red\.", docs["Tower A"])
    assert all((out / p).is_file() for i in items for p in i["images"])
    textual = [i for i in items if i["kind"] == "textual"][0]
    assert textual["answers"][0] in {"Tower A", "Tower B", "Tower C"}


def test_user_gallery_rejects_bad_input_clearly(tmp_path):
    pics, facts = _user_gallery(tmp_path)
    facts.write_text(facts.read_text() + '{"name": "X", "class": "tower", "image": "missing.png", "facts": {}}\n')
    with pytest.raises(ValueError, match="missing.png.*not found"):
        load_user_gallery(pics, facts)
    facts.write_text('{"name": "X"}\n')
    with pytest.raises(ValueError, match=r"facts.jsonl:1: entity lacks \['class', 'image', 'facts'\]"):
        load_user_gallery(pics, facts)
    facts.write_text('{"name": "X", "class": "tower", "image": "a.png", "facts": {}}\nnot json\n')
    with pytest.raises(ValueError, match="facts.jsonl:2: not JSON"):
        load_user_gallery(pics, facts)


def test_synth_cli_writes_index_inputs(tmp_path, capsys):
    from hyperseyes_verl.cli import main

    assert main(["synth", "--out", str(tmp_path), "--n-visual", "3", "--n-textual", "2", "--per-class", "4"]) == 0
    summary = json.loads((tmp_path / "synth_summary.json").read_text())
    assert summary["items"] == 5 and summary["by_kind"] == {"visual": 3, "textual": 2}
    for name in ("corpus.jsonl", "images.jsonl", "items.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    meta = [json.loads(l) for l in (tmp_path / "images.jsonl").read_text().splitlines()]
    assert len(meta) == 20 and all((tmp_path / m["path"]).is_file() for m in meta)
    assert "index build" in capsys.readouterr().out


async def test_llm_rewrite_keeps_numbers_and_filter_drops_no_search_items(tmp_path):
    from hyperseyes_verl.testing.fake_chat_server import FakeChatServer, first_user_text

    from hyperseyes_verl.utils.openai_chat import EndpointConfig, OpenAIChatClient
    from hyperseyes_verl.data.synth import rewrite_and_filter

    img = Image.new("RGB", (40, 40))
    img.save(tmp_path / "m.png")
    items = [{"id": "a", "question": "How many are above 120 m, counted?", "answers": ["3"], "images": ["m.png"]},
             {"id": "b", "question": "Which is tallest of 4?", "answers": ["Kelo Spire"], "images": []}]

    def respond(req):
        text = first_user_text(req)
        if text.startswith("Rewrite"):  # drops the number for item b -> rejected, template kept
            return "Counting those taller than 120 m, how many are there?" if "120" in text else "Which is tallest?"
        return "<answer>Kelo Spire</answer>" if "tallest" in text else "<answer>2</answer>"

    with FakeChatServer(respond) as srv:
        async with OpenAIChatClient(EndpointConfig(base_url=srv.base_url, backoff_s=0)) as client:
            kept, counts = await rewrite_and_filter(items, tmp_path, client, "m")
    assert [i["id"] for i in kept] == ["a"]  # b is answered right without tools -> needs no search
    assert kept[0]["question"].startswith("Counting") and kept[0]["rewritten"]
    assert counts == {"synth/rewritten": 1, "synth/rewrite_failed": 1, "synth/dropped_no_search": 1,
                      "synth/filter_failed": 0}
