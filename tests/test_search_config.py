"""Backend configs: the `type` union, clear errors, cache wrapping and the composite backend."""
from __future__ import annotations

import pytest
from PIL import Image

from hyperseyes_verl.search.base import InMemoryBackend, SearchBackend, backend_metrics
from hyperseyes_verl.search.cache import CachedBackend
from hyperseyes_verl.search.composite import CompositeBackend
from hyperseyes_verl.search.config import (
    EmbeddedConfig,
    HttpConfig,
    SearchConfigError,
    SearchR1Config,
    parse_backend_config,
)
from hyperseyes_verl.search.factory import build_backend


def test_unknown_type_lists_valid_types():
    with pytest.raises(SearchConfigError) as e:
        build_backend({"type": "bing"})
    assert "'bing'" in str(e.value) and "embedded, serper, search_r1, memory, composite" in str(e.value)
    with pytest.raises(SearchConfigError, match="'google'"):
        build_backend({"type": "composite", "text": {"type": "google"}, "image": {"type": "memory"}})


def test_missing_or_unreadable_index_dir(tmp_path):
    with pytest.raises(SearchConfigError, match="does not exist.*hyperseyes index build"):
        build_backend({"type": "embedded", "index_dir": str(tmp_path / "nope")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(SearchConfigError, match="not a readable search index"):
        build_backend(EmbeddedConfig(index_dir=str(tmp_path / "empty")))


def test_invalid_fields_name_the_backend_and_field():
    with pytest.raises(SearchConfigError) as e:
        parse_backend_config({"type": "embedded", "index_dir": "x", "min_score": 1.7})
    assert "'embedded'" in str(e.value) and "min_score" in str(e.value)
    with pytest.raises(SearchConfigError, match="typo_field"):
        parse_backend_config({"type": "search_r1", "typo_field": 1})
    with pytest.raises(SearchConfigError, match="dict or a config object"):
        parse_backend_config(["embedded"])


def test_image_upload_endpoint_mode_needs_its_url():
    with pytest.raises(SearchConfigError, match="endpoint_url"):
        parse_backend_config({"type": "serper", "image_upload": {"mode": "endpoint"}})


def test_configs_are_frozen_and_defaults_are_official():
    cfg = parse_backend_config({"type": "embedded", "index_dir": "idx"})
    assert isinstance(cfg, EmbeddedConfig) and cfg.min_score == 0.6
    with pytest.raises(Exception):
        cfg.min_score = 0.1  # type: ignore[misc]
    assert SearchR1Config().http.max_attempts == 4 == HttpConfig(max_retries=3).max_attempts  # old key still loads


async def test_memory_backend_with_cache_and_composite(tmp_path):
    mem = {"type": "memory", "text": {"paris": [{"title": "Paris", "snippet": "capital", "score": 0.9}]}}
    cached = build_backend({**mem, "cache": {"path": str(tmp_path / "c.sqlite")}})
    assert isinstance(cached, CachedBackend) and isinstance(cached, SearchBackend)
    assert (await cached.text_search("Paris facts", 3))[0].title == "Paris"
    await cached.text_search("paris  FACTS", 3)
    assert backend_metrics(cached)["search/cache/hits"] == 1
    await cached.aclose()

    composite = build_backend({"type": "composite", "text": mem, "image": {"type": "memory", "name": "img"}})
    assert isinstance(composite, CompositeBackend) and composite.name == "memory+img"
    assert (await composite.text_search("paris", 3))[0].snippet == "capital"
    assert (await composite.image_search(Image.new("RGB", (5, 7)), 3))[0].title == "image 5x7"
    assert isinstance(composite.text, InMemoryBackend) and composite.image.calls == [("image", "5x7")]
    assert composite.text.calls == [("text", "paris")]
    await composite.aclose()
