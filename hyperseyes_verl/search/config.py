"""One frozen pydantic config per search backend and the `BackendConfig` union (field `type`). Keys are never
stored here: a config names the environment variable to read. Plain data with no backend imports, so every
backend can import its config; `hyperseyes_verl.search.factory.build_backend(cfg)` turns one into a backend.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from hyperseyes_verl.utils.config import accept_old_names


class SearchConfigError(ValueError):
    """A backend cannot be built from this configuration (missing key, missing index, unknown type)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CacheConfig(_Frozen):
    """Persistent SQLite cache in front of a backend (safe to share between processes)."""

    path: str = Field(description="SQLite file; created with its folder if missing. Share it between workers.")
    ttl_s: float | None = Field(None, gt=0, description="entries older than this are misses; None = keep forever")
    namespace: str = Field("", description="extra key prefix, e.g. the index version, so stale answers are not reused")
    busy_timeout_s: float = Field(30.0, gt=0, description="how long a writer waits for another process's lock")
    cache_empty: bool = Field(True, description="also cache searches that found nothing (they are answers too)")
    max_entry_bytes: int = Field(1 << 20, ge=1024, description="answers whose JSON is larger are not stored "
                                 "(counted as search/cache/oversized)")


class HttpConfig(_Frozen):
    """Retries, timeouts and limits of the shared async HTTP client."""

    timeout_s: float = Field(10.0, gt=0, description="per HTTP attempt (connect + read)")
    total_timeout_s: float = Field(30.0, gt=0, description="per search, all retries included; never exceeded")
    max_attempts: int = Field(4, ge=1, description="tries per search (the first included) on timeouts, 5xx, 429 and "
                              "refused connections; old key max_retries = max_attempts - 1")
    backoff_s: float = Field(0.5, ge=0, description="first retry delay; doubles per retry, with jitter "
                             "(old key backoff_initial_s)")
    max_backoff_s: float = Field(8.0, ge=0, description="cap of one retry delay (also caps a server's Retry-After; "
                                 "old key backoff_max_s)")
    max_concurrency: int = Field(64, ge=1, description="in-flight requests per limit group in one event loop")
    rate_per_s: float | None = Field(None, gt=0, description="token-bucket rate per limit group and process; None = unlimited")
    burst: int = Field(8, ge=1, description="token-bucket capacity")
    limit_group: str = Field("", description="backends with the same group share limits; default: the backend name")
    max_connections: int = Field(100, ge=1, description="connection-pool size")
    max_response_bytes: int = Field(8 << 20, ge=1024, description="a larger answer (decoded size) is a bad_payload, "
                                    "read no further and never cached; a search answer is a few KB")
    max_redirects: int = Field(0, ge=0, le=10, description="redirects followed per attempt, only within the request's "
                               "origin (a redirect to another host is always refused: the key never leaves); "
                               "0 = a redirect is an http_status failure")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return accept_old_names(data, {"max_retries": ("max_attempts", lambda n: int(n) + 1),
                                       "backoff_initial_s": ("backoff_s", None),
                                       "backoff_max_s": ("max_backoff_s", None)})


class ImageUploadConfig(_Frozen):
    """How an image becomes the URL that Serper's /lens needs.

    Serper's Lens endpoint takes only `{"url": ...}` of a publicly reachable image. `data_url` sends the
    image inline as `data:image/jpeg;base64,...` (accepted by compatible proxies and our test server; the
    public Serper API may reject it). `endpoint` POSTs the JPEG as multipart field `field` to `endpoint_url`
    (your own uploader: S3 presign proxy, an image host) and reads the public URL from JSON key `url_key`.
    """

    mode: Literal["data_url", "endpoint"] = Field("data_url", description="data_url | endpoint")
    endpoint_url: str | None = Field(None, description="upload endpoint for mode=endpoint")
    field: str = Field("file", description="multipart field name of the upload")
    url_key: str = Field("url", description="JSON key of the public URL in the upload response")
    max_side: int = Field(1024, ge=16, description="images are downscaled to this long side before upload")
    jpeg_quality: int = Field(90, ge=30, le=100, description="JPEG quality of the uploaded image")

    @model_validator(mode="after")
    def _endpoint_needs_url(self) -> "ImageUploadConfig":
        if self.mode == "endpoint" and not self.endpoint_url:
            raise ValueError("image_upload.mode='endpoint' needs image_upload.endpoint_url (where to POST the image)")
        return self


class EmbeddedConfig(_Frozen):
    """The offline default: BM25 text + fingerprint image search over an index built by `hyperseyes index build`."""

    type: Literal["embedded"] = "embedded"
    index_dir: str = Field(description="folder written by `hyperseyes index build`")
    name: str = Field("embedded", description="backend name in metrics and cache keys")
    min_score: float = Field(0.6, ge=0, le=1, description="text hits below this relevance are dropped (official 0.6)")
    image_min_score: float = Field(0.7, ge=0, le=1,
                                   description="image hits below this cosine are dropped (unrelated images score ~0.5-0.65)")
    snippet_chars: int = Field(600, ge=20, description="snippet = the document text cut to this length")
    threads: int = Field(2, ge=1, description="worker threads for index lookups, each answering one batch at a time "
                                                "(keeps the event loop free; more threads than cores only add contention)")
    batch_window_ms: float = Field(0.5, ge=0, le=100, description="a lookup waits this long for other concurrent "
                                                                  "searches to join its batch (adds at most this latency)")
    batch_max: int = Field(64, ge=1, description="most searches answered by one batched lookup")
    mmap: bool = Field(False, description="memory-map the index arrays (many processes on one host)")
    cache: CacheConfig | None = Field(None, description="persistent cache in front of this backend; None = uncached")


class SerperConfig(_Frozen):
    """Serper-style web search: POST {base_url}/search and /lens with header X-API-KEY."""

    type: Literal["serper"] = "serper"
    name: str = Field("serper", description="backend name in metrics and cache keys")
    base_url: str = Field("https://google.serper.dev", description="API root; a compatible proxy works too")
    api_key_env: str = Field("SERPER_API_KEY", description="environment variable holding the API key (never logged)")
    gl: str | None = Field(None, description="country code passed through to the API")
    hl: str | None = Field(None, description="language code passed through to the API")
    image_upload: ImageUploadConfig = Field(ImageUploadConfig(), description="how /lens gets the image as a URL")
    http: HttpConfig = Field(HttpConfig(), description="timeouts, retries and rate limits")
    cache: CacheConfig | None = Field(None, description="persistent cache in front of this backend; None = uncached")


class SearchR1Config(_Frozen):
    """Client of a Search-R1 retrieval server (or `hyperseyes serve-search`): POST {url}/retrieve."""

    type: Literal["search_r1"] = "search_r1"
    name: str = Field("search_r1", description="backend name in metrics and cache keys")
    url: str = Field("http://127.0.0.1:8000", description="server root")
    min_score: float | None = Field(None, ge=0, le=1, description="drop hits below this score (only scores in [0,1] are kept)")
    image_path: str | None = Field(None, description="image endpoint of `hyperseyes serve-search` ('/image_retrieve'); "
                                                     "None = this server has no image search")
    image_max_side: int = Field(256, ge=32, description="crops are downscaled to this before sending (the fingerprint uses 64 px)")
    batch_window_ms: float = Field(0.0, ge=0, description="gather text queries arriving within this window into one request; 0 = off")
    batch_max: int = Field(32, ge=1, description="most queries per batched request")
    http: HttpConfig = Field(HttpConfig(), description="timeouts, retries and rate limits")
    cache: CacheConfig | None = Field(None, description="persistent cache in front of this backend; None = uncached")


class MemoryConfig(_Frozen):
    """The in-memory test backend: lower-cased query substring -> hits."""

    type: Literal["memory"] = "memory"
    name: str = Field("memory", description="backend name in metrics and cache keys")
    text: dict[str, list[dict[str, Any]]] = Field(default_factory=dict, description="needle -> list of Hit dicts")
    latency_s: float = Field(0.0, ge=0, description="awaited per search, to make concurrency observable")
    cache: CacheConfig | None = Field(None, description="persistent cache in front of this backend; None = uncached")


class CompositeConfig(_Frozen):
    """Text from one backend, images from another (e.g. text: search_r1, image: embedded)."""

    type: Literal["composite"] = "composite"
    text: "BackendConfig" = Field(description="backend answering text searches")
    image: "BackendConfig" = Field(description="backend answering reverse image searches")
    cache: CacheConfig | None = Field(None, description="persistent cache in front of both; None = uncached")


_BACKEND_MODELS = (EmbeddedConfig, SerperConfig, SearchR1Config, MemoryConfig, CompositeConfig)
BackendConfig = Annotated[Union[_BACKEND_MODELS], Field(discriminator="type")]
CompositeConfig.model_rebuild()
BACKEND_TYPES = tuple(m.model_fields["type"].default for m in _BACKEND_MODELS)
_ADAPTER: TypeAdapter = TypeAdapter(BackendConfig)


def parse_backend_config(cfg: Any) -> Any:
    """A `BackendConfig` from a config object or a plain dict (e.g. from YAML), with a readable error."""
    if isinstance(cfg, BaseModel):
        return cfg
    if not isinstance(cfg, dict):
        raise SearchConfigError(f"a search backend config must be a dict or a config object, got {type(cfg).__name__}")
    # null = unset: an override such as `backend={type: serper}` is merged by hydra into the recipe's node and
    # leaves that node's other keys (index_dir: null) behind
    cfg = {k: v for k, v in cfg.items() if v is not None}
    kind = cfg.get("type")
    if kind not in BACKEND_TYPES:
        raise SearchConfigError(f"unknown search backend type {kind!r}; valid types: {', '.join(BACKEND_TYPES)}")
    if kind == "composite":
        for part in ("text", "image"):
            if isinstance(cfg.get(part), dict):
                parse_backend_config(cfg[part])  # nested unknown types get the same clear message
    try:
        return _ADAPTER.validate_python(cfg)
    except ValidationError as e:
        raise SearchConfigError(f"invalid {kind!r} search backend config: {e}") from None
