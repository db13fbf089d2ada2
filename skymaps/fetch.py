"""Download a sky map named by a notice, within an allow-list, a deadline and a byte cap.

The URL comes from an untrusted message, so before any byte is requested the
scheme must be ``https`` or ``http`` and the host must be on an allow-list
(:data:`DEFAULT_ALLOWED_HOSTS`: the hosts that GCN notices really point to);
redirects are followed only to allowed hosts. The body is read in
chunks and refused as soon as it is known to exceed ``max_bytes``: at once from
``Content-Length``, otherwise after at most one chunk beyond the cap.

Failures of the environment (timeouts, refused or reset connections, 5xx,
408/429, a body shorter than its ``Content-Length``) are retried with
exponential backoff within a total deadline and end in :class:`FetchError`
(a :class:`~mma.errors.TransientError`: the notice is retried later). Failures
of the message end at once: a disallowed scheme or host, or an oversized body,
is :class:`~mma.errors.HostileMessage`; any other 4xx is :class:`SkymapUnavailable`
(a :class:`~mma.errors.BadSkymap`).

Only the standard library is used (``urllib.request``: TLS verification with the
system store, proxies from the environment).
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from mma import __version__
from mma.errors import BadSkymap, HostileMessage, TransientError
from mma.skymaps.cache import SkymapCache
from mma.skymaps.decode import DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from mma.config import Config

__all__ = ("DEFAULT_ALLOWED_HOSTS", "FetchError", "SkymapTooLarge", "SkymapUnavailable",
           "fetch_skymap", "host_allowed")

log = logging.getLogger(__name__)

DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = (
    "gracedb.ligo.org",             # LVK sky maps (VOEvent Skymap_fits, igwn.gwalert urls)
    "gracedb-playground.ligo.org",  # LVK mock (M...) events
    "gcn.nasa.gov",                 # GCN new site
    "gcn.gsfc.nasa.gov",            # GBM gnd_loc_map and Swift FITS links in classic notices
    "heasarc.gsfc.nasa.gov",        # Fermi GBM glg_healpix_all products
    "roc.icecube.wisc.edu",         # IceCube healpix_url (HESE cascades, track alerts)
    "opendata.km3net.de",           # KM3NeT healpix_url
)
"""Hosts allowed by default: exact names, or ``*.domain`` for any subdomain of ``domain``."""

_SCHEMES = ("https", "http")
_CHUNK = 64 * 1024
_MAX_REDIRECTS = 5
_RETRY_STATUS = frozenset({408, 429})


class FetchError(TransientError):
    """Every attempt failed for a reason that may pass (timeout, 5xx, reset, truncation)."""

    def __init__(self, message: str, *, url: str, attempts: int) -> None:
        super().__init__(message)
        self.url = url
        self.attempts = attempts


class SkymapUnavailable(BadSkymap):
    """The server answered with a client error (4xx other than 408/429), e.g. 404."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class SkymapTooLarge(HostileMessage):
    """The body exceeds the byte cap; ``bytes_read`` is what was read before refusing."""

    def __init__(self, message: str, *, bytes_read: int) -> None:
        super().__init__(message)
        self.bytes_read = bytes_read


class _Retryable(Exception):
    """One attempt failed in a way worth retrying."""


def host_allowed(host: str | None, allowed_hosts: Iterable[str]) -> bool:
    """True if ``host`` equals an allowed name or lies under an allowed ``*.domain``."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    for pattern in allowed_hosts:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def _check_url(url: str, allowed_hosts: Iterable[str]) -> None:
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise HostileMessage("skymap URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise HostileMessage(f"malformed skymap URL: {exc}") from exc
    if parts.scheme.lower() not in _SCHEMES:
        raise HostileMessage(f"skymap URL scheme {parts.scheme!r} not allowed")
    if parts.username is not None or parts.password is not None:
        raise HostileMessage("skymap URL carries credentials")
    if not host_allowed(host, allowed_hosts):
        raise HostileMessage(f"skymap host {host!r} is not on the allow-list")


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to an allowed host and scheme."""

    max_redirections = _MAX_REDIRECTS

    def __init__(self, allowed_hosts: tuple[str, ...]) -> None:
        self.allowed_hosts = allowed_hosts

    def http_error_302(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                       headers: Any) -> Any:
        # Checked here, before urllib's own scheme test turns a file:// target into
        # an HTTPError that would look like a plain 3xx failure.
        target = headers.get("location") or headers.get("uri")
        if target is not None:
            _check_url(urljoin(req.full_url, target), self.allowed_hosts)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        # HostileMessage is not a URLError, so urllib lets it through to the caller.
        _check_url(newurl, self.allowed_hosts)
        log.debug("following %d redirect to %s", code, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _read_capped(resp: http.client.HTTPResponse, max_bytes: int, until: float) -> bytes:
    length_header = resp.headers.get("Content-Length")
    expected: int | None = None
    if length_header is not None:
        try:
            expected = int(length_header)
        except ValueError:
            expected = None
        if expected is not None and expected > max_bytes:
            raise SkymapTooLarge(f"skymap Content-Length {expected} exceeds {max_bytes} bytes",
                                 bytes_read=0)
    body = bytearray()
    while True:
        if time.monotonic() > until:
            raise _Retryable(f"download too slow: {len(body)} bytes before the timeout")
        # read1: at most one recv, so a trickling server meets the deadline check often.
        chunk = resp.read1(_CHUNK)
        if not chunk:
            break
        body += chunk
        if len(body) > max_bytes:
            raise SkymapTooLarge(f"skymap exceeds {max_bytes} bytes", bytes_read=len(body))
    if expected is not None and len(body) != expected:
        raise _Retryable(f"truncated body: {len(body)} of {expected} bytes")
    return bytes(body)


def _attempt(opener: urllib.request.OpenerDirector, url: str, timeout_s: float,
             max_bytes: int) -> bytes:
    request = urllib.request.Request(url, headers={
        "User-Agent": f"mma/{__version__} (skymap fetch)", "Accept-Encoding": "identity"})
    until = time.monotonic() + timeout_s
    try:
        with opener.open(request, timeout=timeout_s) as resp:
            return _read_capped(resp, max_bytes, until)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code >= 500 or exc.code in _RETRY_STATUS:
            raise _Retryable(f"HTTP {exc.code}") from exc
        raise SkymapUnavailable(f"HTTP {exc.code} for {url}", status=exc.code) from exc
    except (OSError, http.client.HTTPException) as exc:
        # OSError covers URLError, timeouts and refused/reset connections.
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"{type(reason).__name__}: {reason}") from exc


def fetch_skymap(
    url: str,
    *,
    allowed_hosts: Iterable[str] = DEFAULT_ALLOWED_HOSTS,
    timeout_s: float = 20.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    retries: int = 3,
    backoff_s: float = 1.0,
    deadline_s: float | None = None,
    cache: SkymapCache | None = None,
) -> bytes:
    """Download the sky map at ``url`` (or take it from ``cache``).

    Parameters
    ----------
    url : str
        ``https://`` or ``http://`` URL from a notice.
    allowed_hosts : iterable of str
        Exact host names or ``*.domain`` patterns (ports are not restricted).
        Loopback is never allowed unless listed (tests pass ``["127.0.0.1"]``).
    timeout_s : float
        Per attempt [s]: socket timeout, and the budget of the whole attempt
        (checked between chunks, so an attempt ends within ~2 x ``timeout_s``).
    max_bytes : int
        Largest body accepted [bytes].
    retries : int
        Further attempts after the first, on retryable failures only.
    backoff_s : float
        Sleep before retry ``k`` (1-based) is ``backoff_s * 2**(k - 1)`` [s].
    deadline_s : float, optional
        Total time budget [s] over all attempts and sleeps; by default
        ``(retries + 1) * timeout_s`` plus the backoff sleeps.
    cache : SkymapCache, optional
        Consulted first (a hit makes no request) and filled on success. URLs are
        treated as immutable: GraceDB's versioned file names (``,N``) are.

    Returns
    -------
    bytes
        The body, at most ``max_bytes`` long.

    Raises
    ------
    mma.errors.HostileMessage
        Scheme or host not allowed (no request made), a redirect outside the
        allow-list, or a body beyond ``max_bytes`` (:class:`SkymapTooLarge`).
    SkymapUnavailable
        A 4xx answer other than 408/429 (not retried).
    FetchError
        Retryable failures on every attempt, or the deadline passed.
    """
    hosts = tuple(allowed_hosts)
    _check_url(url, hosts)
    if cache is not None:
        try:
            cached = cache.get(url)
        except OSError as exc:  # the cache is an optimisation, never a failure
            log.warning("skymap cache read failed: %s", exc)
            cached = None
        if cached is not None and len(cached) <= max_bytes:
            log.debug("skymap cache hit for %s", url)
            return cached
    if deadline_s is None:
        deadline_s = (retries + 1) * timeout_s + backoff_s * (2**retries - 1)
    deadline = time.monotonic() + deadline_s
    opener = urllib.request.build_opener(_Redirects(hosts))
    last = "no attempt made"
    made = 0
    for attempt in range(1, retries + 2):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            last += "; total deadline passed"
            break
        made = attempt
        try:
            data = _attempt(opener, url, min(timeout_s, remaining), max_bytes)
        except _Retryable as exc:
            last = str(exc)
            log.info("skymap fetch %s attempt %d/%d failed: %s", url, attempt, retries + 1, last)
            if attempt <= retries:
                time.sleep(max(0.0, min(backoff_s * 2 ** (attempt - 1),
                                        deadline - time.monotonic())))
            continue
        log.info("fetched skymap %s: %d bytes in %d attempt(s)", url, len(data), attempt)
        if cache is not None:
            try:
                cache.put(url, data)
            except OSError as exc:
                log.warning("skymap cache write failed: %s", exc)
        return data
    raise FetchError(f"skymap fetch {url} failed after {made} attempt(s): {last}",
                     url=url, attempts=made)


def fetcher_from_config(config: Config) -> Callable[[str], bytes]:
    """A skymap downloader configured by ``[skymaps]``, caching under the cache dir."""
    conf = config.section("skymaps")
    cache = SkymapCache(config.cache_dir / "skymaps")
    max_bytes = int(config.section("limits")["max_skymap_bytes"])

    def fetch(url: str) -> bytes:
        return fetch_skymap(url, allowed_hosts=conf["allowed_hosts"],
                            timeout_s=conf["timeout_seconds"], max_bytes=max_bytes,
                            retries=conf["retries"], backoff_s=conf["backoff_seconds"],
                            deadline_s=conf["deadline_seconds"], cache=cache)

    return fetch
