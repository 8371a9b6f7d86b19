"""BM25 text index over a JSONL corpus (bm25s), with relevance scores normalized to [0, 1].

Normalization: bm25s' Lucene BM25 scores a document d for query terms T as
    sum_{t in T} idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl)).
A document of average length containing every query term once scores sum_t idf(t) / (1 + k1); we divide
by that "ideal" score and clip to 1. So relevance is the idf-weighted share of the query the document
covers: 1.0 = all terms (rare terms weigh more), 0.6 = terms carrying 60% of the query's idf mass.
Query terms unknown to the corpus count with the largest idf (df = 0): a query about something the
corpus never mentions cannot look relevant.

Scores are summed from the query terms' postings, term by term in query order, exactly as bm25s'
`get_scores_from_ids` sums them (same float32 additions, so the same scores); the k-th best score among the
rarest term's documents is a floor under the top k, so one vectorised comparison over the scores leaves a
handful of candidates to sort, instead of a selection over the whole corpus; ties go to the earlier document.
(bm25s' own `selection.topk` is that full-array `argpartition` on its numpy backend, the cost this avoids.)

Documents live on disk: docs.json is a JSON array written one row per line, with the byte offset of each row in
docs.offsets.npy; a loaded index memory-maps both and decodes a row when a hit needs it, so a million documents
cost pages touched, not a Python list of them. An index saved without offsets (older versions) is read whole.
"""
from __future__ import annotations

import json
import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import bm25s
import numpy as np

from hyperseyes_verl.utils.jsonl import read_jsonl

_DOCS_FILE = "docs.json"
_OFFSETS_FILE = "docs.offsets.npy"


def tokenize(texts: list[str], show_progress: bool = False) -> list[list[str]]:
    """Lower-cased word tokens without English stopwords (no stemming: stays dependency-free)."""
    return bm25s.tokenize(texts, return_ids=False, stopwords="en", show_progress=show_progress)


@dataclass(frozen=True)
class TextDoc:
    id: str
    title: str
    text: str
    url: str
    image: str | None = None


def read_corpus(path: str | Path) -> list[TextDoc]:
    """Documents of a JSONL corpus (CONTRACTS §6); a malformed line names the file, its number and what is wrong."""
    docs = []
    for n, d in enumerate(read_jsonl(path, required=("text",), what="document"), 1):
        if not isinstance(d["text"], str) or not isinstance(d.get("title", ""), str):
            raise ValueError(f"{path}: document {n}: 'title' and 'text' must be strings, got {str(d)[:120]!r}")
        docs.append(TextDoc(id=str(d.get("id", n)), title=d.get("title", ""), text=d["text"], url=str(d.get("url", "")),
                            image=d.get("image")))
    return docs


class DocStore:
    """Rows `[id, title, text, url, image]` read on demand from docs.json through its offsets (both mapped)."""

    def __init__(self, docs_path: Path, offsets_path: Path):
        self.offsets = np.load(offsets_path, mmap_mode="r")
        with open(docs_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        if len(self.offsets) < 1 or int(self.offsets[-1]) > size:
            raise ValueError(f"{offsets_path} does not match {docs_path}; rebuild the index")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return json.loads(self._map[int(self.offsets[i]):int(self.offsets[i + 1])].rstrip(b",\n"))

    def __iter__(self) -> Iterator[list]:
        return (self[i] for i in range(len(self)))


def write_docs(out: Path, rows: Sequence[list]) -> None:
    """docs.json (a JSON array, one row per line) and where each row starts (docs.offsets.npy, plus where the
    last one ends): row i is bytes offsets[i]:offsets[i+1], less the separator that may follow it."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    tmp = out / (_DOCS_FILE + ".tmp")
    with open(tmp, "wb") as f:
        pos = f.write(b"[\n")
        for i, row in enumerate(rows):
            offsets[i] = pos
            pos += f.write((b",\n" if i else b"") + json.dumps(row, ensure_ascii=False).encode())
            if i:  # the separator belongs to the previous row's slice
                offsets[i] += 2
        offsets[len(rows)] = pos
        f.write(b"\n]")
    np.save(out / _OFFSETS_FILE, offsets)
    os.replace(tmp, out / _DOCS_FILE)


class TextIndex:
    """A BM25 index; `search` is thread-safe (read-only numpy work, the document store only read)."""

    def __init__(self, retriever: bm25s.BM25, rows: Sequence[list]):
        self.retriever = retriever
        self.rows = rows  # [id, title, text, url, image] per document (a list or a DocStore); TextDoc made on demand
        self.k1 = float(retriever.k1)
        indptr = retriever.scores["indptr"]
        df = np.diff(indptr).astype(np.float64)  # documents containing each vocabulary token
        n = len(rows)
        self._idf = np.log1p((n - df + 0.5) / (df + 0.5))
        self._idf_unknown = math.log1p((n + 0.5) / 0.5)

    @classmethod
    def build(cls, docs: list[TextDoc], k1: float = 1.5, b: float = 0.75, show_progress: bool = False) -> "TextIndex":
        if not docs:
            raise ValueError("the corpus has no documents; give a JSONL file with at least one {title, text} line")
        tokens = tokenize([f"{d.title}\n{d.text}" for d in docs], show_progress=show_progress)
        if not any(tokens):
            tokens[0] = ["__empty__"]  # bm25s needs a vocabulary; a corpus of stopwords still loads
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        retriever.index(tokens, show_progress=show_progress)
        return cls(retriever, [[d.id, d.title, d.text, d.url, d.image] for d in docs])

    @property
    def docs(self) -> list[TextDoc]:
        return [TextDoc(*r) for r in self.rows]

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(out), show_progress=False)
        write_docs(out, self.rows)

    @classmethod
    def load(cls, index_dir: str | Path, mmap: bool = False) -> "TextIndex":
        d = Path(index_dir)
        retriever = bm25s.BM25.load(str(d), mmap=mmap, show_progress=False, verbosity=0)
        if (d / _OFFSETS_FILE).exists():
            return cls(retriever, DocStore(d / _DOCS_FILE, d / _OFFSETS_FILE))
        return cls(retriever, json.loads((d / _DOCS_FILE).read_text(encoding="utf-8")))

    def search(self, query: str, k: int, min_score: float = 0.0) -> list[tuple[TextDoc, float]]:
        """Up to `k` (document, relevance in [0,1]) pairs with relevance >= `min_score`, best first."""
        return self.search_many([query], k, min_score)[0]

    def search_many(self, queries: Sequence[str], k: int | Sequence[int],
                    min_score: float = 0.0) -> list[list[tuple[TextDoc, float]]]:
        """`search` for each query (with its own k when `k` is a list). One tokenizer call for the batch; each
        query is then scored exactly as alone, so a batched answer equals the single one."""
        ks = [k] * len(queries) if isinstance(k, int) else list(k)
        if len(ks) != len(queries):
            raise ValueError(f"search_many got {len(queries)} queries but {len(ks)} values of k")
        if not queries:
            return []
        return [self._rank(terms, qk, min_score) for terms, qk in zip(tokenize(list(queries)), ks)]

    def _rank(self, tokens: list[str], k: int, min_score: float) -> list[tuple[TextDoc, float]]:
        terms = list(dict.fromkeys(tokens))  # unique, in order
        if not terms or k <= 0:
            return []
        vocab = self.retriever.vocab_dict
        ids = [vocab[t] for t in terms if t in vocab]
        if not ids:
            return []
        ideal = (float(self._idf[ids].sum()) + self._idf_unknown * (len(terms) - len(ids))) / (1.0 + self.k1)
        scores, rarest = self._scores(ids)
        # A floor under the k-th best score, from the documents of the rarest term alone (few), then one
        # vectorised comparison over the scores: cheaper than a selection over the whole corpus, and exact
        # (every document of the top k scores at least the k-th best of any k distinct documents).
        if len(rarest) >= k:
            vals = scores[rarest]
            cand = np.flatnonzero(scores >= np.partition(vals, len(vals) - k)[len(vals) - k])
        else:
            cand = np.flatnonzero(scores > 0)
        if len(cand) > 4 * k + 64:  # a weak floor (many near-equal scores): select within the candidates
            vals = scores[cand]
            cand = cand[vals >= np.partition(vals, len(vals) - k)[len(vals) - k]]
        top = cand[np.lexsort((cand, -scores[cand]))[:k]]  # best first, ties by document order
        out = []
        for i in top:
            rel = min(1.0, float(scores[i]) / ideal) if ideal > 0 else 0.0
            if scores[i] > 0 and rel >= min_score:
                out.append((TextDoc(*self.rows[int(i)]), rel))
        return out

    def _scores(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(scores of every document, the documents of the rarest term). The scores are bm25s'
        `get_scores_from_ids` (a float32 sum per document in query-term order; a document occurs once per
        posting list, so `+=` adds as its `np.add.at` does, only faster)."""
        r = self.retriever
        if r.nonoccurrence_array is not None:  # BM25L / BM25+: every document scores; not what `build` makes
            scores = r.get_scores_from_ids(ids)
            return scores, np.arange(len(scores))
        data, indices, indptr = r.scores["data"], r.scores["indices"], r.scores["indptr"]
        scores = np.zeros(r.scores["num_docs"], dtype=np.dtype(r.dtype))
        spans = [(int(indptr[t]), int(indptr[t + 1])) for t in ids]
        for a, b in spans:
            scores[indices[a:b]] += data[a:b]
        a, b = min(spans, key=lambda s: s[1] - s[0])
        return scores, indices[a:b]
