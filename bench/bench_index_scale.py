"""The embedded indexes at scale, before vs after, side by side in one run: image search over --images
fingerprints (default 100k) and text search over --docs documents (default 1M): load time, p50 / p95 per search
(alone, and with --workers searches in flight from as many threads, as the backend's worker pool runs them),
RSS after load and peak RSS.

    .venv/bin/python bench/bench_index_scale.py [--images 100000] [--docs 1000000] [--before-rev b535f28]

"before" is the tree of --before-rev (default b535f28, the last commit before this change; exported read-only
with `git archive`, as bench_runner_encoding.py does), "after" this working tree; each variant loads the same
index folder in a fresh process (PYTHONPATH picks the code), so RSS is that process's. Image fingerprints are
random non-negative unit rows (fingerprinting 100k real images takes minutes; search cost depends only on
N x D); queries are indexed rows with noise. The text corpus is the Zipf corpus of bench_search_text.py;
queries are 4 words of a random document. Building the 1M-document index takes ~3.5 min on 2 cores (100k:
~20 s); pass --docs 100000 for a quicker run. Printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def peak_mb() -> float:  # VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def timed(fn, args: list, workers: int) -> list[float]:
    """Latency of each call, `workers` threads taking calls from one list."""
    lat: list[float] = []
    it = iter(args)
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                a = next(it, None)
            if a is None:
                return
            t = time.perf_counter()
            fn(a)
            lat.append(time.perf_counter() - t)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q))


def worker(kind: str, index_dir: str, n_queries: int, workers: int) -> dict:
    import hyperseyes_verl

    rng = np.random.default_rng(1)
    rss0 = rss_mb()
    t = time.perf_counter()
    if kind == "image":
        from hyperseyes_verl.search.embedded_image import ImageIndex

        index = ImageIndex.load(index_dir)
        load_s = time.perf_counter() - t
        rows = rng.integers(0, len(index.docs), n_queries)
        queries = [(index.features[j] + rng.normal(scale=0.02, size=index.features.shape[1])).astype(np.float32)
                   for j in rows]
        queries = [q / np.linalg.norm(q) for q in queries]

        def search(q):
            return index.search_embeddings([q], 3)[0]
    else:
        from hyperseyes_verl.search.embedded_text import TextIndex

        index = TextIndex.load(index_dir)
        load_s = time.perf_counter() - t
        r = random.Random(2)
        words = [index.rows[r.randrange(len(index.rows))][2].split() for _ in range(n_queries)]
        queries = [" ".join(r.sample(w, min(4, len(w)))) for w in words]

        def search(q):
            return index.search(q, 3)
    rss_loaded = rss_mb()
    search(queries[0])  # first search (the old image index copies its matrix here)
    quiet = timed(search, queries, 1)
    loaded = timed(search, queries, workers)
    try:
        from hyperseyes_verl.search.embedded_image import ThreadpoolController as limited
    except ImportError:
        limited = None
    return {"code": str(Path(hyperseyes_verl.__file__).parent.parent), "load_s": load_s,
            "blas_limited": limited is not None,
            "rss_loaded_mb": rss_loaded - rss0, "peak_mb": peak_mb() - rss0, "p50": pct(quiet, 50),
            "p95": pct(quiet, 95), "p50_loaded": pct(loaded, 50), "p95_loaded": pct(loaded, 95),
            "first": [[d.path if kind == "image" else d.id, round(s, 6)] for d, s in search(queries[1])]}


def run_variant(pythonpath: str, kind: str, index_dir: Path, n_queries: int, workers: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, str(index_dir), "--queries", str(n_queries),
                          "--workers", str(workers)], env={**os.environ, "PYTHONPATH": pythonpath},
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{kind} variant {pythonpath} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_image_index(out: Path, n: int) -> None:
    from hyperseyes_verl.search.embedded_image import ImageDoc, ImageIndex
    from hyperseyes_verl.search.image_fingerprint import EMBEDDING_DIM

    rng = np.random.default_rng(0)
    feats = np.empty((n, EMBEDDING_DIM), np.float32)
    for j in range(0, n, 10_000):
        x = np.abs(rng.normal(size=(min(10_000, n - j), EMBEDDING_DIM))).astype(np.float32)
        feats[j:j + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    docs = [ImageDoc(f"img/{i}.jpg", f"Entity {i}", "", f"https://img.test/{i}") for i in range(n)]
    ImageIndex(feats, docs).save(out)


def build_text_index(root: Path, n: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_search_text import write_corpus

    from hyperseyes_verl.search.embedded_text import TextIndex, read_corpus

    write_corpus(root / "corpus.jsonl", n, random.Random(0))
    TextIndex.build(read_corpus(root / "corpus.jsonl")).save(root / "text")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2, help="threads searching at once in the loaded figures")
    ap.add_argument("--before-rev", default="b535f28", help="the commit measured as 'before'")
    ap.add_argument("--with-path", default="", help="also run 'after' with this folder on PYTHONPATH (e.g. one "
                    "holding threadpoolctl: `pip install --target DIR threadpoolctl`) when it is not installed")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], a.worker[1], a.queries, a.workers)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_runner_encoding import export_tree

    before = export_tree(a.before_rev)
    print(f"{os.cpu_count()} CPUs; BLAS threads: "
          f"{os.environ.get('OPENBLAS_NUM_THREADS') or os.environ.get('OMP_NUM_THREADS') or 'default'}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind, n, build in (("image", a.images, build_image_index), ("text", a.docs, build_text_index)):
            if not n:
                continue
            t = time.perf_counter()
            build(root / "image" if kind == "image" else root, n)
            print(f"{kind}: {n} entries, index built in {time.perf_counter() - t:.0f} s (saved by the new "
                  "code; the old code reads the same files)")
            index_dir = root / ("image" if kind == "image" else "text")
            res = {"before": run_variant(str(before), kind, index_dir, a.queries, a.workers),
                   "after": run_variant(str(ROOT), kind, index_dir, a.queries, a.workers)}
            if a.with_path and kind == "image":
                res["after+path"] = run_variant(f"{ROOT}:{a.with_path}", kind, index_dir, a.queries, a.workers)
            for name, r in res.items():
                print(f"  {name:10s} load {r['load_s']:.2f} s  p50 {r['p50']:.2f} ms  p95 {r['p95']:.2f} ms  "
                      f"{a.workers} in flight p50 {r['p50_loaded']:.2f} ms p95 {r['p95_loaded']:.2f} ms  "
                      f"RSS after load {r['rss_loaded_mb']:.0f} MB  peak {r['peak_mb']:.0f} MB")
            b, f = res["before"], res["after"]
            if "after+path" in res:
                g = res["after+path"]
                print(f"  after+path/before: p50 {g['p50'] / b['p50']:.2f}  in-flight p50 "
                      f"{g['p50_loaded'] / b['p50_loaded']:.2f}  (threadpoolctl: {g['blas_limited']})")
            print(f"  after/before: p50 {f['p50'] / b['p50']:.2f}  in-flight p50 "
                  f"{f['p50_loaded'] / b['p50_loaded']:.2f}  peak RSS {f['peak_mb'] / b['peak_mb']:.2f}  "
                  f"same top-3 for a probe query: {b['first'] == f['first']}")


if __name__ == "__main__":
    main()
