"""BM25 text index over a JSONL corpus (bm25s), with relevance scores normalized to [0, 1].

Normalization: bm25s' Lucene BM25 scores a document d for query terms T as
    sum_{t in T} idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl)).
A document of average length containing every query term once scores sum_t idf(t) / (1 + k1); we divide
by that "ideal" score and clip to 1. So relevance is the idf-weighted share of the query the document
covers: 1.0 = all terms (rare terms weigh more), 0.6 = terms carrying 60% of the query's idf mass.
Query terms unknown to the corpus count with the largest idf (df = 0): a query about something the
corpus never mentions cannot look relevant.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import bm25s
import numpy as np

from hyperseyes_verl.utils.jsonl import read_jsonl

_DOCS_FILE = "docs.json"


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


class TextIndex:
    """An in-memory BM25 index; `search` is thread-safe (read-only numpy work)."""

    def __init__(self, retriever: bm25s.BM25, rows: list[list]):
        self.retriever = retriever
        self.rows = rows  # [id, title, text, url, image] per document; TextDoc made on demand (fast load)
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
        tmp = out / (_DOCS_FILE + ".tmp")
        tmp.write_text(json.dumps(self.rows, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, out / _DOCS_FILE)

    @classmethod
    def load(cls, index_dir: str | Path, mmap: bool = False) -> "TextIndex":
        d = Path(index_dir)
        retriever = bm25s.BM25.load(str(d), mmap=mmap, show_progress=False, verbosity=0)
        rows = json.loads((d / _DOCS_FILE).read_text(encoding="utf-8"))
        return cls(retriever, rows)

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
        scores = self.retriever.get_scores_from_ids(ids)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        out = []
        for i in top:
            rel = min(1.0, float(scores[i]) / ideal) if ideal > 0 else 0.0
            if scores[i] > 0 and rel >= min_score:
                out.append((TextDoc(*self.rows[int(i)]), rel))
        return out
