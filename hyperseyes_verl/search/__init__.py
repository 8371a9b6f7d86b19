"""Search backends: protocol, embedded offline index, web clients, cache.

Build one from config with `hyperseyes_verl.search.factory.build_backend(cfg)`."""
from hyperseyes_verl.search.base import FailureKind, Hit, InMemoryBackend, SearchBackend, SearchFailure

__all__ = ["FailureKind", "Hit", "InMemoryBackend", "SearchBackend", "SearchFailure"]
