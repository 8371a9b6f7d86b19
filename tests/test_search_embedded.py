"""The embedded offline backend: BM25 relevance normalization, crop-robust reverse image search on
generated mosaics, index build / save / load through the CLI, concurrent lookups, and serve-search
spoken to by the Search-R1 client."""
from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from hyperseyes_verl.cli import main as hyperseyes
from hyperseyes_verl.search.base import FailureKind, SearchFailure
from hyperseyes_verl.search.config import SearchConfigError
from hyperseyes_verl.search.factory import build_backend
from hyperseyes_verl.search.embedded import EmbeddedIndex
from hyperseyes_verl.search.embedded_image import ImageDoc, ImageIndex
from hyperseyes_verl.search.embedded_text import TextDoc, TextIndex
from hyperseyes_verl.search.serve import create_app
from hyperseyes_verl.search.synthetic import entity_image, jittered_crop, mosaic
from hyperseyes_verl.testing.local_server import LocalServer

DOCS = [
    ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889 for the World's Fair."),
    ("Louvre", "The Louvre in Paris is the world's most-visited art museum and holds the Mona Lisa."),
    ("Big Ben", "Big Ben is the nickname of the Great Bell of the clock at the Palace of Westminster in London."),
    ("Colosseum", "The Colosseum is an oval amphitheatre in the centre of Rome, built of travertine and concrete."),
    ("Sagrada Familia", "The Sagrada Familia is a basilica in Barcelona designed by Antoni Gaudi."),
]
N_ENTITIES = 60


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """A JSONL corpus and a folder of procedural entity images with images.jsonl."""
    root = tmp_path_factory.mktemp("corpus")
    with open(root / "corpus.jsonl", "w") as f:
        for i, (title, text) in enumerate(DOCS):
            f.write(json.dumps({"id": f"d{i}", "title": title, "text": text, "url": f"https://wiki.test/{i}"}) + "\n")
    (root / "images").mkdir()
    with open(root / "images.jsonl", "w") as f:
        for i in range(N_ENTITIES):
            entity_image(i).save(root / "images" / f"e{i}.png")
            f.write(json.dumps({"path": f"e{i}.png", "title": f"Entity {i}", "text": f"facts about entity {i}",
                                "url": f"https://ent.test/{i}", "entity": f"E{i}"}) + "\n")
    return root


@pytest.fixture(scope="module")
def index_dir(corpus_dir) -> Path:
    out = corpus_dir / "index"
    rc = hyperseyes(["index", "build", "--corpus", str(corpus_dir / "corpus.jsonl"), "--images", str(corpus_dir / "images"),
                     "--images-meta", str(corpus_dir / "images.jsonl"), "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_relevance_is_idf_weighted_query_coverage():
    index = TextIndex.build([TextDoc(str(i), t, x, "") for i, (t, x) in enumerate(DOCS)])
    full = index.search("eiffel tower", 3)
    assert full[0][0].title == "Eiffel Tower" and full[0][1] == pytest.approx(1.0)
    partial = dict((d.title, s) for d, s in index.search("eiffel tower zanzibar", 3))
    assert 0.2 < partial["Eiffel Tower"] < 0.8  # an unknown rare term takes its share of the query away
    assert all(0.0 <= s <= 1.0 for _, s in index.search("paris museum tower clock rome", 5))
    assert index.search("the of and", 3) == [] and index.search("zanzibar", 3) == []
    strict = index.search("paris museum", 5, min_score=0.6)
    assert [d.title for d, _ in strict] == ["Louvre"]  # the Eiffel doc only covers "paris"


def test_text_index_save_load_round_trip(tmp_path):
    index = TextIndex.build([TextDoc(str(i), t, x, f"u{i}", "img.png" if i == 1 else None) for i, (t, x) in enumerate(DOCS)])
    index.save(tmp_path / "t")
    loaded = TextIndex.load(tmp_path / "t")
    for q in ["gaudi basilica", "amphitheatre rome", "mona lisa paris", "westminster"]:
        assert [(d, round(s, 6)) for d, s in loaded.search(q, 3)] == [(d, round(s, 6)) for d, s in index.search(q, 3)]
    assert loaded.docs[1].image == "img.png"


def test_crops_of_mosaic_tiles_find_their_entity():
    """Agent-style crops (edges off by up to 5%, rescaled 0.6-1.6x, JPEG q60-90) of 3x3 mosaic tiles."""
    entities = [entity_image(i) for i in range(N_ENTITIES)]
    index = ImageIndex.from_images(entities, [ImageDoc(f"e{i}.png", f"Entity {i}", "", "") for i in range(N_ENTITIES)])
    rng, correct, total = random.Random(7), 0, 0
    for _ in range(12):
        ids = rng.sample(range(N_ENTITIES), 9)
        image, boxes = mosaic([entities[i] for i in ids], cols=3)
        for i, box in zip(ids, boxes):
            top = index.search(jittered_crop(image, box, rng), 1)
            correct += top[0][0].path == f"e{i}.png"
            total += 1
    assert correct / total >= 0.97, f"top-1 {correct}/{total}"
    unrelated = index.search(entity_image(10_000), 1, min_score=0.7)  # an entity not in the index
    assert unrelated == [] or unrelated[0][1] < 0.8


async def test_embedded_backend_answers_concurrent_queries(index_dir, corpus_dir):
    backend = build_backend({"type": "embedded", "index_dir": str(index_dir), "threads": 2})
    queries = ["eiffel tower paris", "gaudi barcelona basilica", "colosseum rome", "big ben clock", "louvre museum"] * 8
    concurrent = await asyncio.gather(*(backend.text_search(q, 3) for q in queries))
    sequential = [await backend.text_search(q, 3) for q in queries]
    assert concurrent == sequential and concurrent[0][0].title == "Eiffel Tower"
    assert concurrent[0][0].url == "https://wiki.test/0" and concurrent[0][0].score >= 0.6
    from PIL import Image

    crop = Image.open(corpus_dir / "images" / "e5.png").crop((4, 4, 120, 122)).resize((300, 300))
    hits = await backend.image_search(crop, 3)
    assert hits[0].title == "Entity 5" and hits[0].snippet == "facts about entity 5" and hits[0].url == "https://ent.test/5"
    assert backend.metrics()["search/embedded/text"] == 80
    await backend.aclose()


def test_index_info_and_manifest(index_dir, capsys):
    assert hyperseyes(["index", "info", str(index_dir), "--query", "mona lisa"]) == 0
    out = capsys.readouterr().out
    assert '"text_docs": 5' in out and '"images": 60' in out and "Louvre" in out
    index = EmbeddedIndex(index_dir)
    assert index.text is not None and index.image is not None and len(index.image.docs) == N_ENTITIES


def test_build_refuses_foreign_folder_and_bad_corpus(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"title": "a", "text": "alpha beta"}\n')
    assert hyperseyes(["index", "build", "--corpus", str(corpus), "--out", str(foreign), "--no-progress"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err and (foreign / "notes.txt").exists()
    corpus.write_text('{"title": "a", "text": "alpha"}\nnot json\n')
    assert hyperseyes(["index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "c.jsonl:2" in err and not (tmp_path / "idx").exists()  # nothing half-built left behind


def test_rebuild_replaces_an_index_atomically(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"title": "first", "text": "alpha"}\n')
    assert hyperseyes(["index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--no-progress"]) == 0
    corpus.write_text('{"title": "second", "text": "gamma"}\n{"title": "third", "text": "delta"}\n')
    assert hyperseyes(["index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--no-progress"]) == 0
    index = EmbeddedIndex(tmp_path / "idx")
    assert [d.title for d in index.text.docs] == ["second", "third"] and index.image is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "idx"]


async def test_text_only_index_has_no_image_search(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"title": "a", "text": "alpha"}\n')
    assert hyperseyes(["index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--no-progress"]) == 0
    backend = build_backend({"type": "embedded", "index_dir": str(tmp_path / "idx")})
    with pytest.raises(SearchFailure) as e:
        await backend.image_search(entity_image(1), 3)
    assert e.value.kind is FailureKind.CONFIG
    await backend.aclose()


def test_damaged_index_is_a_config_error(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"title": "a", "text": "alpha"}\n')
    assert hyperseyes(["index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--no-progress"]) == 0
    (tmp_path / "idx" / "text" / "docs.json").unlink()
    with pytest.raises(SearchConfigError, match="damaged"):
        build_backend({"type": "embedded", "index_dir": str(tmp_path / "idx")})


async def test_serve_search_over_search_r1_protocol(index_dir):
    with LocalServer(create_app(EmbeddedIndex(index_dir))) as srv:
        backend = build_backend({"type": "search_r1", "url": srv.url, "image_path": "/image_retrieve"})
        hits = await backend.text_search("gaudi basilica barcelona", 3)
        assert hits[0].title == "Sagrada Familia" and hits[0].snippet.startswith("The Sagrada Familia")
        assert hits[0].url == "https://wiki.test/4" and 0.6 <= hits[0].score <= 1.0
        assert await backend.text_search("zanzibar", 3) == []
        img_hits = await backend.image_search(entity_image(11).resize((500, 500)), 2)
        assert img_hits[0].title == "Entity 11" and img_hits[0].snippet == "facts about entity 11"
        import httpx

        async with httpx.AsyncClient() as client:
            bad = await client.post(f"{srv.url}/image_retrieve", json={"images": ["%%%"], "topk": 1})
            assert bad.status_code == 400 and "images[0]" in bad.text
        await backend.aclose()


def test_batched_lookups_equal_single_lookups(index_dir):
    """The coalesced path (search_many) must answer exactly what one query alone gets: documents, order, scores."""
    index = EmbeddedIndex(index_dir)
    words = "eiffel tower paris louvre museum mona lisa big ben clock rome colosseum gaudi basilica the of zanzibar".split()
    rng = random.Random(3)
    queries = [" ".join(rng.sample(words, rng.randint(1, 4))) for _ in range(60)] + ["", "the of and"]
    ks = [rng.randint(0, 6) for _ in queries]
    assert index.text.search_many(queries, ks, 0.3) == [index.text.search(q, k, 0.3) for q, k in zip(queries, ks)]
    assert any(index.text.search_many(queries, 3))  # the comparison above is not between empty answers
    entities = [entity_image(i) for i in range(N_ENTITIES)]
    crops = []
    for i in range(0, 40, 4):
        image, boxes = mosaic(entities[i:i + 4], cols=2)
        crops += [jittered_crop(image, box, rng) for box in boxes]
    batched = index.image.search_many(crops, 5)
    assert batched == [index.image.search(c, 5) for c in crops] and all(len(r) == 5 for r in batched)
    with pytest.raises(ValueError, match="2 queries but 1 values of k"):
        index.text.search_many(["a", "b"], [3])


async def test_concurrent_backend_searches_share_batches_and_isolate_bad_images(index_dir):
    backend = build_backend({"type": "embedded", "index_dir": str(index_dir), "threads": 1, "batch_window_ms": 5})
    index = backend.index
    queries = [f"{a} {b}" for a in ("paris", "rome", "clock", "gaudi") for b in ("tower", "museum", "basilica", "bell")]
    rows = await asyncio.gather(*(backend.text_search(q, 2) for q in queries))
    for q, row in zip(queries, rows):
        assert [(h.title, h.score) for h in row] == [(d.title, round(s, 4)) for d, s in index.text.search(q, 2, 0.6)]
    assert backend.metrics()["search/embedded/text_batch_mean"] > 1  # 16 searches were not 16 lookups
    from PIL import Image

    good = [entity_image(i).resize((90, 90)) for i in (3, 4)]
    out = await asyncio.gather(backend.image_search(good[0], 1), backend.image_search(Image.new("RGB", (0, 0)), 1),
                               backend.image_search(good[1], 1), return_exceptions=True)
    assert out[0][0].title == "Entity 3" and out[2][0].title == "Entity 4"
    assert isinstance(out[1], SearchFailure) and out[1].kind is FailureKind.INTERNAL and "0x0" in str(out[1])
    assert backend.metrics()["search/embedded/internal"] == 1
    await backend.aclose()


async def test_serve_search_is_shared_by_two_clients(index_dir):
    """Two independent clients (as two rollout workers would be) query one server at the same time."""
    with LocalServer(create_app(EmbeddedIndex(index_dir))) as srv:
        a = build_backend({"type": "search_r1", "name": "worker_a", "url": srv.url, "batch_window_ms": 2})
        b = build_backend({"type": "search_r1", "name": "worker_b", "url": srv.url, "image_path": "/image_retrieve"})
        qa = ["colosseum rome amphitheatre", "mona lisa louvre"] * 5
        qb = ["westminster clock bell", "gaudi basilica barcelona"] * 5
        rows = await asyncio.gather(*(a.text_search(q, 1) for q in qa), *(b.text_search(q, 1) for q in qb),
                                    b.image_search(entity_image(7), 1))
        titles = [r[0].title for r in rows]
        assert titles == ["Colosseum", "Louvre"] * 5 + ["Big Ben", "Sagrada Familia"] * 5 + ["Entity 7"]
        assert a.metrics()["search/worker_a/requests"] < 10  # worker a batched its ten queries
        assert b.metrics()["search/worker_b/requests"] == 11
        await a.aclose()
        await b.aclose()


def test_index_build_shows_progress_and_loads_without_the_sources(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"title": f"doc {i}", "text": f"alpha{i} beta"}) + "\n" for i in range(30)))
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        entity_image(i).save(tmp_path / "imgs" / f"thing_{i}.png")
    assert hyperseyes(["index", "build", "--corpus", str(corpus), "--images", str(tmp_path / "imgs"),
                       "--out", str(tmp_path / "idx")]) == 0
    err = capsys.readouterr().err
    assert "fingerprinting images" in err and "3/3" in err  # tqdm bars go to stderr
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    corpus.unlink()
    for p in (tmp_path / "imgs").iterdir():
        p.unlink()  # loading must use the index alone: nothing is re-read or rebuilt
    index = EmbeddedIndex(tmp_path / "idx")
    assert index.manifest == manifest and index.text.search("alpha7", 1)[0][0].title == "doc 7"
    assert index.image.search(entity_image(2), 1)[0][0].title == "thing 2"


def test_corpus_errors_name_the_file_and_entry(tmp_path):
    from hyperseyes_verl.search.embedded_image import read_images_meta
    from hyperseyes_verl.search.embedded_text import read_corpus

    bad = tmp_path / "c.jsonl"
    bad.write_text('{"title": "a", "text": "x"}\n\n{"title": "b"}\n')
    with pytest.raises(ValueError, match=r"c.jsonl:3: document lacks \['text'\]"):
        read_corpus(bad)
    bad.write_text('{"title": "a", "text": 5}\n')
    with pytest.raises(ValueError, match="c.jsonl: document 1: 'title' and 'text' must be strings"):
        read_corpus(bad)
    meta = tmp_path / "images.jsonl"
    meta.write_text('{"path": "a.png"}\n[1, 2]\n')
    with pytest.raises(ValueError, match="images.jsonl:2: a metadata entry must be a JSON object"):
        read_images_meta(tmp_path, meta)
