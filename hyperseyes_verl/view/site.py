"""Write the static site: `index.html`, `data/episodes.js`, `assets/`, one `e/<uid>.html` per episode and the
thumbnails under `img/`. Opens from disk, no server.

Pages and thumbnails are built by `workers` forked processes, each taking a contiguous slice of the episodes
(inherited through fork, never pickled: they may hold decoded images).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from . import assets
from .model import Episode
from .render_episode import episode_page
from .render_index import episodes_js, index_page, index_row
from .thumbs import ThumbStore

_EPISODES: Sequence[Episode] = ()  # set before forking the page workers


def unique_uids(episodes: Sequence[Episode]) -> None:
    """Make page names unique (two runs may share a folder name, a dump may repeat a key)."""
    seen: Counter = Counter()
    for ep in episodes:
        seen[ep.uid] += 1
        if seen[ep.uid] > 1:
            ep.uid = f"{ep.uid}~{seen[ep.uid]}"


def _write_pages(site: str, start: int, stop: int) -> int:
    store = ThumbStore(site)
    for ep in _EPISODES[start:stop]:
        (Path(site) / "e" / f"{ep.uid}.html").write_text(episode_page(ep, store), encoding="utf-8")
    return stop - start


def build_site(episodes: Sequence[Episode], out_dir: str | os.PathLike, *, title: str = "HyperEyes trajectories",
               step_tables: dict[str, Sequence[dict[str, Any]]] | None = None, sources: Sequence[str] = (),
               workers: int | None = None) -> dict[str, Any]:
    """Write the site for `episodes` into `out_dir`; returns its paths and how long it took."""
    global _EPISODES
    t0 = time.perf_counter()
    out = Path(out_dir)
    if (out / "data" / "episodes.js").exists():  # a site built before: drop its pages, keep shared thumbnails
        for page in (out / "e").glob("*.html"):
            page.unlink()
    for sub in ("e", "img", "assets", "data"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    unique_uids(episodes)
    (out / "assets" / "view.css").write_text(assets.CSS, encoding="utf-8")
    (out / "assets" / "index.js").write_text(assets.INDEX_JS, encoding="utf-8")
    (out / "data" / "episodes.js").write_text(episodes_js([index_row(i, ep) for i, ep in enumerate(episodes)]),
                                              encoding="utf-8")
    (out / "index.html").write_text(index_page(title, episodes, step_tables or {}, sources), encoding="utf-8")

    workers = max(1, min(workers or os.cpu_count() or 1, len(episodes) // 50 or 1))
    _EPISODES = episodes
    try:
        if workers == 1 or "fork" not in mp.get_all_start_methods():
            _write_pages(str(out), 0, len(episodes))
        else:
            bounds = [round(i * len(episodes) / workers) for i in range(workers + 1)]
            with mp.get_context("fork").Pool(workers) as pool:
                pool.starmap(_write_pages, [(str(out), a, b) for a, b in zip(bounds, bounds[1:])])
    finally:
        _EPISODES = ()
    return {"index": str(out / "index.html"), "episodes": len(episodes), "workers": workers,
            "seconds": round(time.perf_counter() - t0, 2)}
