"""Web backends against real local HTTP servers (hyperseyes_verl/testing/fake_search_server.py): results,
retries, typed failures and their counters, the concurrency cap, the token bucket and image upload."""
from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from hyperseyes_verl.search.base import FailureKind, SearchFailure
from hyperseyes_verl.search.base import backend_metrics
from hyperseyes_verl.search.config import SearchConfigError
from hyperseyes_verl.search.factory import build_backend
from hyperseyes_verl.search.http_client import TokenBucket
from hyperseyes_verl.testing.fake_search_server import API_KEY, FaultState, fault_app
from hyperseyes_verl.testing.local_server import LocalServer, closed_port_url

FAST = {"timeout_s": 0.3, "total_timeout_s": 1.5, "max_attempts": 3, "backoff_s": 0.01, "max_backoff_s": 0.05}
# tests that expect an answer (or a non-timeout failure): a loaded box must not turn them into timeouts
PATIENT = {**FAST, "timeout_s": 10.0, "total_timeout_s": 30.0}


@pytest.fixture(scope="module")
def server():
    state = FaultState()
    with LocalServer(fault_app(state)) as srv:
        srv.state = state
        yield srv


@pytest.fixture
def serper_cfg(server, monkeypatch):
    monkeypatch.setenv("HYP_TEST_SERPER_KEY", API_KEY)
    return {"type": "serper", "base_url": server.url, "api_key_env": "HYP_TEST_SERPER_KEY", "http": FAST}


async def test_serper_text_search_returns_hits(serper_cfg):
    backend = build_backend({**serper_cfg, "http": PATIENT})
    hits = await backend.text_search("eiffel tower", 3)
    assert [h.title for h in hits] == ["eiffel tower result 0", "eiffel tower result 1", "eiffel tower result 2"]
    assert hits[1].url == "https://ex.org/1" and hits[0].snippet == "about eiffel tower #0"
    assert backend_metrics(backend)["search/serper/ok"] == 1
    await backend.aclose()


async def test_wrong_key_is_http_status_without_retry_and_key_never_in_message(server, monkeypatch):
    monkeypatch.setenv("HYP_TEST_SERPER_KEY", "wrong-secret-value")
    backend = build_backend({"type": "serper", "base_url": server.url, "api_key_env": "HYP_TEST_SERPER_KEY",
                             "http": PATIENT})
    with pytest.raises(SearchFailure) as e:
        await backend.text_search("anything", 3)
    assert e.value.kind is FailureKind.HTTP_STATUS and "403" in str(e.value) and "API key" in str(e.value)
    assert "wrong-secret-value" not in str(e.value)
    m = backend_metrics(backend)
    assert m["search/serper/http_status"] == 1 and "search/serper/retries" not in m
    await backend.aclose()


@pytest.mark.parametrize("query, kind", [
    ("boom", FailureKind.HTTP_STATUS),
    ("malformed", FailureKind.BAD_PAYLOAD),
    ("limited", FailureKind.RATE_LIMITED),
    ("slow", FailureKind.TIMEOUT),
    ("shape", FailureKind.BAD_PAYLOAD),
])
async def test_faults_become_typed_counted_failures(serper_cfg, server, query, kind):
    backend = build_backend(serper_cfg)
    before = server.state.calls[("/search", query)]
    with pytest.raises(SearchFailure) as e:
        await backend.text_search(query, 3)
    assert e.value.kind is kind
    m = backend_metrics(backend)
    assert m[f"search/serper/{kind.value}"] == 1 and m.get("search/serper/ok", 0) == 0
    retried = kind in (FailureKind.HTTP_STATUS, FailureKind.RATE_LIMITED, FailureKind.TIMEOUT)
    assert server.state.calls[("/search", query)] - before == (3 if retried else 1)  # max_attempts=3
    await backend.aclose()


async def test_transient_5xx_is_retried_then_answers(serper_cfg):
    backend = build_backend(serper_cfg)
    hits = await backend.text_search("flaky thing", 2)
    assert len(hits) == 2
    m = backend_metrics(backend)
    assert m["search/serper/retries"] == 2 and m["search/serper/ok"] == 1 and "search/serper/http_status" not in m
    await backend.aclose()


async def test_connection_refused_is_retried_then_refused():
    backend = build_backend({"type": "search_r1", "url": closed_port_url(), "http": FAST})
    with pytest.raises(SearchFailure) as e:
        await backend.text_search("anything", 3)
    assert e.value.kind is FailureKind.REFUSED and "3 attempts" in str(e.value)
    assert backend_metrics(backend) == {"search/search_r1/requests": 3.0, "search/search_r1/retries": 2.0,
                                        "search/search_r1/refused": 1.0}
    await backend.aclose()


async def test_total_timeout_bounds_retries_of_slow_server(server):
    cfg = {"type": "search_r1", "url": server.url,
           "http": {**FAST, "timeout_s": 0.2, "total_timeout_s": 0.5, "max_attempts": 11}}
    backend = build_backend(cfg)
    with pytest.raises(SearchFailure) as e:
        await backend.text_search("slow retrieve", 3)
    assert e.value.kind is FailureKind.TIMEOUT and "total" in str(e.value)
    assert backend_metrics(backend)["search/search_r1/requests"] < 11  # stopped by the total budget, not retries
    await backend.aclose()


async def test_concurrency_cap_limits_in_flight_requests(server):
    server.state.max_in_flight, server.state.delay_s = 0, 0.05
    try:
        backend = build_backend({"type": "search_r1", "url": server.url,
                                 "http": {**PATIENT, "max_concurrency": 3, "limit_group": "cap-test"}})
        rows = await asyncio.gather(*(backend.text_search(f"cap{i}", 2) for i in range(12)))
        assert [r[0].title for r in rows] == [f"cap{i} title 0" for i in range(12)]
        assert 1 <= server.state.max_in_flight <= 3  # 12 concurrent searches, cap 3
        await backend.aclose()
    finally:
        server.state.delay_s = 0.0


def test_token_bucket_spends_burst_then_asks_to_wait():
    bucket = TokenBucket(rate=0.001, burst=2)
    assert bucket._take() == 0 and bucket._take() == 0
    wait = bucket._take()
    assert wait > 100  # ~1000 s until the next token at 0.001/s


async def test_token_bucket_paces_requests():
    bucket = TokenBucket(rate=200.0, burst=1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(5):
        await bucket.acquire()
    assert loop.time() - t0 >= 4 / 200 * 0.9  # 4 refills of 5 ms each were awaited (a lower bound, not a timing claim)


async def test_search_r1_parses_titles_scores_and_batches(server):
    backend = build_backend({"type": "search_r1", "url": server.url, "batch_window_ms": 30, "http": PATIENT})
    before = len(server.state.batch_sizes)
    rows = await asyncio.gather(*(backend.text_search(f"batch{i}", 3) for i in range(6)))
    assert [h.title for h in rows[4]] == ["batch4 title 0", "batch4 title 1", "batch4 title 2"]
    assert rows[4][0].snippet == "batch4 text 0" and rows[4][1].score == pytest.approx(0.8)
    assert sum(server.state.batch_sizes[before:]) == 6 and len(server.state.batch_sizes) - before < 6
    await backend.aclose()


async def test_search_r1_batch_failure_reaches_every_waiter(server):
    backend = build_backend({"type": "search_r1", "url": server.url, "batch_window_ms": 20, "http": PATIENT})
    results = await asyncio.gather(backend.text_search("ok one", 3), backend.text_search("malformed", 3),
                                   return_exceptions=True)
    assert all(isinstance(r, SearchFailure) and r.kind is FailureKind.BAD_PAYLOAD for r in results)
    await backend.aclose()


async def test_search_r1_min_score_and_no_image_endpoint(server):
    backend = build_backend({"type": "search_r1", "url": server.url, "min_score": 0.75, "http": PATIENT})
    hits = await backend.text_search("scored", 3)
    assert [h.score for h in hits] == [pytest.approx(0.9), pytest.approx(0.8)]
    with pytest.raises(SearchFailure) as e:
        await backend.image_search(Image.new("RGB", (8, 8)), 3)
    assert e.value.kind is FailureKind.CONFIG and "image_path" in str(e.value)
    await backend.aclose()


@pytest.mark.parametrize("upload", ["data_url", "endpoint"])
async def test_serper_lens_sends_the_image(serper_cfg, server, upload):
    cfg = {**serper_cfg, "image_upload": {"mode": upload, "endpoint_url": f"{server.url}/upload"}}
    backend = build_backend(cfg)
    hits = await backend.image_search(Image.new("RGB", (300, 200), (200, 40, 40)), 3)
    r, g, b = (int(v) for v in hits[0].title.removeprefix("match ").split(","))
    assert abs(r - 200) < 8 and abs(g - 40) < 8 and abs(b - 40) < 8  # the server decoded our JPEG
    assert hits[0].image_url == "https://lens.test/1.jpg" and hits[0].snippet == "lens.test"
    await backend.aclose()


def test_missing_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("HYP_TEST_NO_KEY", raising=False)
    with pytest.raises(SearchConfigError, match="HYP_TEST_NO_KEY"):
        build_backend({"type": "serper", "api_key_env": "HYP_TEST_NO_KEY"})
