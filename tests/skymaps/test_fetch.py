"""mma.skymaps.fetch against a loopback HTTP server serving real corpus sky maps."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mma.errors import BadSkymap, HostileMessage, TransientError
from mma.skymaps.cache import SkymapCache
from mma.skymaps.decode import read_multiorder
from mma.skymaps.fetch import (
    DEFAULT_ALLOWED_HOSTS,
    FetchError,
    SkymapTooLarge,
    SkymapUnavailable,
    fetch_skymap,
    host_allowed,
)
from tests.conftest import CORPUS
from tests.skymaps.slow_http import StreamServer

GW = CORPUS / "skymaps" / "gw"
SMALL = GW / "G1028259_cwb_rrt_small_area.multiorder.fits"
BAYESTAR = GW / "MS181101ab_bayestar.multiorder.fits"
LOCAL = ["127.0.0.1"]
FAST: dict[str, Any] = {"allowed_hosts": LOCAL, "timeout_s": 0.3, "retries": 2, "backoff_s": 0.02}


def test_download_decodes_and_second_fetch_is_a_cache_hit(http_sink, tmp_path):
    data = BAYESTAR.read_bytes()
    url = http_sink.add_file("/api/superevents/MS181101ab/files/bayestar.multiorder.fits,0",
                             data)
    cache = SkymapCache(tmp_path / "cache")
    got = fetch_skymap(url, allowed_hosts=LOCAL, cache=cache)
    assert got == data
    assert len(read_multiorder(got)) > 1000
    assert len(http_sink.requests) == 1
    assert http_sink.requests[0].header("accept-encoding") == "identity"
    assert fetch_skymap(url, allowed_hosts=LOCAL, cache=cache) == data
    assert len(http_sink.requests) == 1  # no second request


def test_server_errors_are_retried_then_succeed(http_sink):
    data = SMALL.read_bytes()
    url = http_sink.add_file("/small.fits", data)
    http_sink.queue_error(503, count=2)
    assert fetch_skymap(url, **FAST) == data
    assert len(http_sink.requests) == 3


def test_slow_response_times_out_is_retried_and_fails(http_sink):
    url = http_sink.add_file("/slow.fits", SMALL.read_bytes(), delay=1.0)
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetch_skymap(url, **FAST)
    assert isinstance(info.value, TransientError)
    assert info.value.attempts == 3
    assert len(http_sink.wait_for(3, timeout=5)) == 3
    assert time.monotonic() - start < 2.0


def test_trickling_download_is_cut_by_the_total_deadline(http_sink):
    url = http_sink.add_file("/trickle.fits", BAYESTAR.read_bytes(), chunk_size=4096,
                             chunk_delay=0.05)
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"deadline|too slow"):
        fetch_skymap(url, allowed_hosts=LOCAL, timeout_s=0.4, retries=5, backoff_s=0.05,
                     deadline_s=1.0)
    assert time.monotonic() - start < 1.8


def test_truncated_body_is_an_error_and_retried(http_sink):
    data = SMALL.read_bytes()
    url = http_sink.add_file("/cut.fits", data, truncate_at=len(data) // 2)
    with pytest.raises(FetchError, match="truncated"):
        fetch_skymap(url, **FAST)
    assert len(http_sink.requests) == 3


def test_oversized_with_content_length_is_refused_before_reading(http_sink):
    data = BAYESTAR.read_bytes()
    url = http_sink.add_file("/big.fits", data)
    with pytest.raises(SkymapTooLarge) as info:
        fetch_skymap(url, allowed_hosts=LOCAL, max_bytes=len(data) - 1)
    assert isinstance(info.value, HostileMessage)
    assert info.value.bytes_read == 0
    assert len(http_sink.requests) == 1  # hostile: not retried


def test_oversized_without_content_length_is_refused_while_streaming():
    cap = 200_000
    with StreamServer(size=50_000_000) as server:
        with pytest.raises(SkymapTooLarge) as info:
            fetch_skymap(server.url, allowed_hosts=LOCAL, max_bytes=cap, timeout_s=5)
        assert cap < info.value.bytes_read <= cap + 64 * 1024
        assert server.requests == 1
    assert server.bytes_sent < 50_000_000


def test_not_found_is_not_retried(http_sink):
    with pytest.raises(SkymapUnavailable) as info:
        fetch_skymap(http_sink.url_for("/missing.fits"), **FAST)
    assert info.value.status == 404
    assert isinstance(info.value, BadSkymap)
    assert len(http_sink.requests) == 1


@pytest.mark.parametrize("url", [
    "https://evil.example.org/bayestar.fits",
    "https://gracedb.ligo.org.evil.example/bayestar.fits",
    "file:///etc/passwd",
    "ftp://heasarc.gsfc.nasa.gov/x.fits",
    "https://user:pw@gracedb.ligo.org/x.fits",
    "https://gracedb.ligo.org/x y.fits",
    "gracedb.ligo.org/x.fits",
])
def test_disallowed_urls_are_refused_without_a_request(url):
    with pytest.raises(HostileMessage):
        fetch_skymap(url)


def test_loopback_is_not_allowed_by_default(http_sink):
    url = http_sink.add_file("/small.fits", SMALL.read_bytes())
    with pytest.raises(HostileMessage):
        fetch_skymap(url)
    assert "127.0.0.1" not in DEFAULT_ALLOWED_HOSTS
    assert http_sink.requests == []


def test_redirects_stay_on_the_allow_list(http_sink):
    data = SMALL.read_bytes()
    target = http_sink.add_file("/real.fits", data)
    http_sink.queue_response(302, b"", {"Location": target}, path="/moved.fits")
    assert fetch_skymap(http_sink.url_for("/moved.fits"), **FAST) == data
    http_sink.queue_response(302, b"", {"Location": "https://evil.example.org/x.fits"},
                             path="/away.fits")
    with pytest.raises(HostileMessage):
        fetch_skymap(http_sink.url_for("/away.fits"), **FAST)
    http_sink.queue_response(302, b"", {"Location": "file:///etc/passwd"}, path="/file.fits")
    with pytest.raises(HostileMessage):
        fetch_skymap(http_sink.url_for("/file.fits"), **FAST)


def test_connection_refused_is_retried(http_sink):
    port = http_sink.port
    http_sink_url = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/x.fits"
    with pytest.raises(FetchError) as info:
        fetch_skymap(http_sink_url, **FAST)
    assert info.value.attempts == 3


@pytest.mark.parametrize(("host", "allowed"), [
    ("gcn.nasa.gov", True), ("GCN.NASA.GOV", True), ("a.b.nasa.gov", True),
    ("nasa.gov", False), ("evilnasa.gov", False), ("nasa.gov.evil.com", False), (None, False),
    ("gracedb.ligo.org.", True),
])
def test_host_patterns(host, allowed):
    assert host_allowed(host, ["*.nasa.gov", "gracedb.ligo.org"]) is allowed
