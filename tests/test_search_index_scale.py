"""Index internals that make scale affordable must not change a single result: the image index scores in
float32 and rescores the candidates exactly; the text index ranks from the query's postings and reads its
documents from a memory-mapped store."""
from __future__ import annotations

import random
import threading
import tracemalloc

import numpy as np
import pytest

import hyperseyes_verl.search.embedded_image as embedded_image
from hyperseyes_verl.search.embedded_image import ImageDoc, ImageIndex
from hyperseyes_verl.search.embedded_text import DocStore, TextDoc, TextIndex
from hyperseyes_verl.search.image_fingerprint import EMBEDDING_DIM, image_embedding
from hyperseyes_verl.search.synthetic import entity_image


def _unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = np.abs(rng.normal(size=(n, EMBEDDING_DIM))).astype(np.float32)  # non-negative, like the fingerprints
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _near_tie_index(n: int = 3000, seed: int = 0) -> ImageIndex:
    """Random unit rows plus exact duplicates and rows one float32 ulp away from another in a few components:
    float32 scores of those differ from the exact ones by more than their gaps."""
    rng = np.random.default_rng(seed)
    f = _unit_rows(rng, n)
    for j in range(0, 600, 3):
        f[j + 1] = f[j]  # exact duplicate
        cols = rng.choice(EMBEDDING_DIM, 5, replace=False)
        f[j + 2] = f[j]
        f[j + 2, cols] = np.nextafter(f[j, cols], np.float32(np.inf) if j % 2 else np.float32(-np.inf))
    return ImageIndex(f, [ImageDoc(f"{i}.png", f"image {i}", "", "") for i in range(n)])


def _reference(index: ImageIndex, q: np.ndarray, k: int) -> list[tuple[str, float]]:
    """Exact cosines (float64 of the float32 values), rounded to float32, best first, ties by row."""
    exact = (index.features.astype(np.float64) @ q.astype(np.float64)).astype(np.float32)
    order = np.lexsort((np.arange(len(exact)), -exact))[:k]
    return [(index.docs[j].path, max(0.0, float(exact[j]))) for j in order]


def test_image_search_is_exact_even_when_float32_scores_mislead():
    index = _near_tie_index()
    rng = np.random.default_rng(1)
    queries = [index.features[j] for j in (0, 3, 7, 30)] + list(_unit_rows(rng, 20))
    for k in (1, 2, 3, 5, 40):
        got = index.search_embeddings(queries, k)
        assert [[(d.path, s) for d, s in row] for row in got] == [_reference(index, q, k) for q in queries]
    # the guarantee itself: float32 scores anywhere within the error bound of the exact ones (here perturbed on
    # purpose, in the worst direction for rows just outside the top k) still give the exact top k
    for q in queries[:8]:
        exact = (index.features.astype(np.float64) @ q.astype(np.float64)).astype(np.float32)
        bound = EMBEDDING_DIM * 2.0 ** -24 * 0.999  # the float32 error bound of a unit-vector dot product
        for k in (1, 3, 10):
            kth = np.sort(exact)[-k]
            push = np.where(exact < kth, bound, -bound) * rng.uniform(0.5, 1.0, len(exact))
            misleading = (exact + push).astype(np.float32)
            got = index._exact_top(q, misleading, k, 0.0)
            assert [(d.path, s) for d, s in got] == _reference(index, q, k)


def test_batched_image_search_equals_single_and_scores_match_the_fingerprints():
    entities = [entity_image(i) for i in range(40)]
    index = ImageIndex.from_images(entities, [ImageDoc(f"{i}.png", str(i), "", "") for i in range(40)])
    crops = [entities[i].crop((3, 3, 100, 110)).resize((150, 170)) for i in range(0, 40, 4)]
    batched = index.search_many(crops, 4)
    assert batched == [index.search(c, 4) for c in crops]
    for c, row in zip(crops, batched):
        assert [(d.path, s) for d, s in row] == _reference(index, image_embedding(c), 4)


def test_image_search_makes_no_float64_copy_of_the_index():
    rng = np.random.default_rng(2)
    n = 20_000  # 51 MB of float32; a float64 copy would be 102 MB
    index = ImageIndex(_unit_rows(rng, n), [ImageDoc(str(i), "", "", "") for i in range(n)])
    queries = list(_unit_rows(rng, 8))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        index.search_embeddings(queries, 5)  # the first search (the old code made its copy here)
        index.search_embeddings(queries, 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert index.features.dtype == np.float32
    assert peak < index.features.nbytes / 4, f"search allocated {peak / 1e6:.1f} MB"
    assert not [v for v in vars(index).values() if isinstance(v, np.ndarray) and v.dtype == np.float64]


def test_blas_limit_is_set_once_and_restored_by_the_last_search_out(monkeypatch):
    events = []

    class FakeLimit:
        def restore_original_limits(self):
            events.append("restore")

    class FakeController:
        def limit(self, limits, user_api):
            events.append(("limit", limits, user_api))
            return FakeLimit()

    monkeypatch.setattr(embedded_image, "ThreadpoolController", FakeController)
    monkeypatch.setattr(embedded_image, "_blas_controller", None)
    inside, release = threading.Barrier(3), threading.Event()

    def search():
        with embedded_image.one_blas_thread():
            inside.wait()
            release.wait()

    threads = [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()
    assert events == [("limit", 1, "blas")]  # both searches inside, one limit
    release.set()
    for t in threads:
        t.join()
    assert events == [("limit", 1, "blas"), "restore"]


def _corpus(n: int = 1500, seed: int = 0) -> list[TextDoc]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(400)]
    docs = []
    for i in range(n):
        words = [vocab[min(int(rng.paretovariate(1.1)) - 1, 399)] for _ in range(rng.randint(3, 30))]
        docs.append(TextDoc(str(i), " ".join(words[:2]), " ".join(words[2:]), f"https://d/{i}",
                            None if i % 3 else f"img{i}.png"))
    for j in range(0, 60, 2):  # identical documents: ties, which go to the earlier one
        docs[j + 1] = TextDoc(str(j + 1), docs[j].title, docs[j].text, "u", None)
    docs[5] = TextDoc("5", 'quotes " and \\ and é, 日本', "line\nbreak ,\n", "", None)
    return docs


def _text_reference(index: TextIndex, query: str, k: int) -> list[tuple[str, float]]:
    """bm25s' own dense scores over every document, fully sorted (ties by document order)."""
    from hyperseyes_verl.search.embedded_text import tokenize

    terms = list(dict.fromkeys(tokenize([query])[0]))
    vocab = index.retriever.vocab_dict
    ids = [vocab[t] for t in terms if t in vocab]
    if not ids or k <= 0:
        return []
    ideal = (float(index._idf[ids].sum()) + index._idf_unknown * (len(terms) - len(ids))) / (1.0 + index.k1)
    scores = index.retriever.get_scores_from_ids(ids)
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [(index.rows[j][0], min(1.0, float(scores[j]) / ideal)) for j in order if scores[j] > 0]


def test_text_ranking_from_postings_equals_full_scoring(tmp_path):
    docs = _corpus()
    index = TextIndex.build(docs)
    rng = random.Random(3)
    queries = [" ".join(rng.choice(docs).text.split()[:rng.randint(1, 4)]) or "w0" for _ in range(150)]
    queries += ["w0", "w0 w1 w2", "nothingknown", "w399 w398", "quotes"]
    for k in (1, 3, 10, 200):
        got = index.search_many(queries, k)
        assert [[(d.id, s) for d, s in row] for row in got] == [_text_reference(index, q, k) for q in queries]


def test_document_store_is_mapped_and_reads_back_every_row(tmp_path):
    docs = _corpus(400)
    built = TextIndex.build(docs)
    built.save(tmp_path / "text")
    for mmap in (False, True):
        loaded = TextIndex.load(tmp_path / "text", mmap=mmap)
        assert isinstance(loaded.rows, DocStore) and len(loaded.rows) == len(docs)
        assert loaded.docs == docs and loaded.rows[-1] == built.rows[-1]
        queries = ["w0 w3", "quotes", "w1", "line break"]
        assert loaded.search_many(queries, 5) == built.search_many(queries, 5)
    with pytest.raises(IndexError):
        loaded.rows[len(docs)]
    # docs.json stays one JSON array (readable as before); an index without offsets is read whole
    import json

    assert json.loads((tmp_path / "text" / "docs.json").read_text(encoding="utf-8")) == built.rows
    (tmp_path / "text" / "docs.offsets.npy").unlink()
    legacy = TextIndex.load(tmp_path / "text")
    assert isinstance(legacy.rows, list) and legacy.search_many(["w0 w3"], 5) == built.search_many(["w0 w3"], 5)
