"""Search backends: protocol, embedded offline index, web clients, cache."""
from hyperseyes_verl.search.base import FailureKind, Hit, InMemoryBackend, SearchBackend, SearchFailure

__all__ = ["FailureKind", "Hit", "InMemoryBackend", "SearchBackend", "SearchFailure"]
