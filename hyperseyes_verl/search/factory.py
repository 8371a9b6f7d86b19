"""`build_backend(cfg)`: the search backend a config describes.

Kept apart from config.py because it imports every backend, and the backends import their config classes:
config.py stays a leaf that anything can import.

    build_backend({"type": "embedded", "index_dir": "idx", "cache": {"path": "cache.sqlite"}})
    build_backend({"type": "composite", "text": {"type": "search_r1", "url": "http://127.0.0.1:8000"},
                   "image": {"type": "embedded", "index_dir": "idx"}})
"""
from __future__ import annotations

import os
from typing import Any

from hyperseyes_verl.search.base import Hit, InMemoryBackend, SearchBackend
from hyperseyes_verl.search.config import (
    BACKEND_TYPES,
    CompositeConfig,
    EmbeddedConfig,
    MemoryConfig,
    SearchConfigError,
    SearchR1Config,
    SerperConfig,
    parse_backend_config,
)


def _api_key(cfg: SerperConfig) -> str:
    key = os.environ.get(cfg.api_key_env, "").strip()
    if not key:
        raise SearchConfigError(f"backend {cfg.name!r} needs an API key in the environment variable {cfg.api_key_env!r}, "
                                "which is not set; export it, or use the offline 'embedded' backend")
    return key


def _build_uncached(cfg: Any) -> SearchBackend:
    # backends are imported only when selected: a job on the offline index never loads the HTTP client
    if isinstance(cfg, EmbeddedConfig):
        from hyperseyes_verl.search.embedded import EmbeddedBackend

        return EmbeddedBackend(cfg)
    if isinstance(cfg, SerperConfig):
        from hyperseyes_verl.search.serper import SerperBackend

        return SerperBackend(cfg, api_key=_api_key(cfg))
    if isinstance(cfg, SearchR1Config):
        from hyperseyes_verl.search.search_r1 import SearchR1Backend

        return SearchR1Backend(cfg)
    if isinstance(cfg, MemoryConfig):
        return InMemoryBackend(text={k: [Hit.from_dict(h) for h in v] for k, v in cfg.text.items()},
                               latency_s=cfg.latency_s, name=cfg.name)
    if isinstance(cfg, CompositeConfig):
        from hyperseyes_verl.search.composite import CompositeBackend

        return CompositeBackend(text=build_backend(cfg.text), image=build_backend(cfg.image))
    raise SearchConfigError(f"unknown search backend config {type(cfg).__name__}; valid types: {', '.join(BACKEND_TYPES)}")


def build_backend(cfg: Any) -> SearchBackend:
    """The backend described by `cfg` (a `BackendConfig` or its dict), wrapped in its cache if configured."""
    cfg = parse_backend_config(cfg)
    backend = _build_uncached(cfg)
    if cfg.cache is not None:
        from hyperseyes_verl.search.cache import CachedBackend

        return CachedBackend(backend, cfg.cache)
    return backend
