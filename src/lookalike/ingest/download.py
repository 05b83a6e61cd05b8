"""Fetch images from http(s) URLs into an on-disk download cache, concurrently and defensively.

Each URL is downloaded once: the file lands in ``cache_dir()/downloads`` under
the SHA-256 of the URL, written beside and renamed into place, so a re-run (or
a second model over the same URLs) reads the local copy and the embedding
cache, keyed by path, size and mtime, recognises it too. Only successes are
cached: a failure of any kind (404 included) is tried again on the next run,
since a missing page or a flaky server may be fixed by then.

Every download is bounded: connect and read timeouts, a total deadline per
attempt (a server that drips a byte a second never trips a read timeout, so
only a wall-clock deadline stops it), a size cap checked against
``Content-Length`` and again while streaming, and a redirect limit. Transient
failures (HTTP 429 and 5xx, refused or reset connections, connect timeouts)
are retried with exponential backoff; nothing else is. What arrives is kept
only if Pillow recognises it as an image from its bytes: the extension and the
``Content-Type`` are never trusted.

The downloads run on an asyncio event loop in a worker thread (httpx's
``AsyncClient``), so cancelling one at its deadline is clean, the number in
flight is bounded, and callers (including notebooks that run their own event
loop) simply call :func:`download` or :func:`localize` and wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lookalike.config import cache_dir
from lookalike.errors import Failure, ImageError, InvalidArgument, InvalidType
from lookalike.ingest.decode import probe, source_name
from lookalike.store.files import commit_file

if TYPE_CHECKING:
    import httpx  # imported where used: it costs ~0.1 s at startup, and most runs download nothing

#: Schemes lookalike downloads; any other ``scheme://`` value is refused with a reason.
URL_SCHEMES = ("http", "https")
#: HTTP statuses worth retrying: rate limiting and server-side trouble.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")  # two letters at least: "C://" is a Windows path
_CHUNK = 64 * 1024


def url_scheme(value: Any) -> str | None:
    """The lower-case scheme of a ``scheme://...`` string, else None (a plain path or not a string)."""
    if not isinstance(value, str):
        return None
    match = _SCHEME.match(value.strip())
    return match.group(1).lower() if match else None


def is_url(value: Any) -> bool:
    """True for an http or https URL string."""
    return url_scheme(value) in URL_SCHEMES


@dataclass(frozen=True)
class DownloadSettings:
    """Limits for fetching image URLs.

    Parameters
    ----------
    concurrency : int, default 16
        Downloads in flight at once.
    connect_timeout : float, default 10
        Seconds to establish a connection.
    read_timeout : float, default 30
        Seconds to wait for any data from the server.
    deadline : float, default 120
        Seconds for one whole attempt (connect, headers and body). Stops
        servers that send a trickle of bytes, which a read timeout never does.
    max_bytes : int, default 50 MiB
        Largest image accepted; bigger downloads are aborted mid-stream.
    retries : int, default 3
        Extra attempts after a transient failure (HTTP 408/425/429/5xx,
        connection refused or reset, connect timeout).
    backoff : float, default 0.5
        Seconds before the first retry, doubling for each next one (a
        ``Retry-After`` header in seconds is honoured instead), at most ``max_backoff``.
    max_backoff : float, default 10
    max_redirects : int, default 5

    Examples
    --------
    >>> import lookalike as lk
    >>> model = lk.create("urls.csv", label="id", download={"deadline": 30})  # doctest: +SKIP
    """

    concurrency: int = 16
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = 120.0
    max_bytes: int = 50 * 1024 * 1024
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 10.0
    max_redirects: int = 5

    def __post_init__(self) -> None:
        for name in ("concurrency", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"download setting {name} must be a positive integer, got {value!r}")
        for name in ("retries", "max_redirects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgument(f"download setting {name} must be a non-negative integer, got {value!r}")
        for name in ("connect_timeout", "read_timeout", "deadline", "backoff", "max_backoff"):
            value = getattr(self, name)
            least = 0 if name in ("backoff", "max_backoff") else 1e-3
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= least:
                kind = "non-negative" if least == 0 else "positive"
                raise InvalidArgument(f"download setting {name} must be a {kind} number of seconds, got {value!r}")

    @classmethod
    def of(cls, value: DownloadSettings | dict | None) -> DownloadSettings:
        """Settings from None (defaults), a dict of overrides, or settings."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise InvalidArgument(f"unknown download settings {unknown}; known ones are {sorted(known)}")
            return replace(cls(), **value)
        raise InvalidType(f"download must be a dict or DownloadSettings, got {type(value).__name__}")


@dataclass(frozen=True)
class Download:
    """The outcome for one URL: a local ``path``, or the ``reason`` it could not be fetched and its ``kind``."""

    url: str
    path: Path | None = None
    reason: str | None = None
    kind: str | None = None  # "HTTP 404", "timeout", "too large", "not an image"...
    cached: bool = False  # found in the download cache: no request was made


class DownloadCache:
    """Downloaded files under ``root``, one per URL, named by the URL's SHA-256.

    Examples
    --------
    >>> cache = DownloadCache("/tmp/lookalike-downloads")
    >>> cache.path("https://example.com/cat.jpg").name[:12]
    '777460dbe029'
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "downloads"

    def path(self, url: str) -> Path:
        """Where ``url``'s file is (or would be) kept."""
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.root / digest[:2] / digest

    def get(self, url: str) -> Path | None:
        """The cached file of ``url``, or None (also for an empty file, which a crash before the data was flushed leaves)."""
        path = self.path(url)
        try:
            return path if path.stat().st_size > 0 else None
        except OSError:
            return None

    def writer(self, url: str) -> _PartFile:
        """A temporary file beside ``url``'s place: :meth:`_PartFile.commit` moves it there atomically."""
        return _PartFile(self.path(url))


class _PartFile:
    """A ``.part`` file that becomes ``final`` on commit and is deleted otherwise (error, cancel, deadline)."""

    def __init__(self, final: Path):
        self.final = final
        self.size = 0
        final.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=final.parent, prefix=final.name + ".", suffix=".part")
        self.temp = Path(name)
        self._file = os.fdopen(handle, "wb")

    def __enter__(self) -> _PartFile:
        return self

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def finish(self) -> Path:
        """Close the data and return the temporary path (for sniffing before commit)."""
        self._file.close()
        return self.temp

    def commit(self) -> Path:
        self._file.close()
        return commit_file(self.temp, self.final)

    def __exit__(self, *exc_info: Any) -> None:
        self._file.close()
        self.temp.unlink(missing_ok=True)  # already gone after a commit


class _Retryable(Exception):
    """A transient failure: worth another attempt after ``delay`` seconds (None: the backoff schedule)."""

    def __init__(self, kind: str, reason: str, delay: float | None = None):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.delay = delay


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


async def _fetch_once(
    client: httpx.AsyncClient, url: str, settings: DownloadSettings, cache: DownloadCache
) -> Download:
    """One attempt: stream ``url`` into the cache, or say why not. Transient failures raise :class:`_Retryable`."""
    async with client.stream("GET", url) as response:
        status = response.status_code
        if not 200 <= status < 300:
            kind = f"HTTP {status}"
            reason = kind + (f" ({response.reason_phrase})" if response.reason_phrase else "")
            if status in RETRY_STATUSES or status >= 500:
                raise _Retryable(kind, reason, _retry_after(response))
            return Download(url, reason=reason, kind=kind)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > settings.max_bytes:
            reason = f"too large (> {settings.max_bytes} bytes: Content-Length is {declared})"
            return Download(url, reason=reason, kind="too large")
        with cache.writer(url) as part:
            async for chunk in response.aiter_bytes(_CHUNK):  # decoded bytes: a gzip bomb hits the cap too
                if part.size + len(chunk) > settings.max_bytes:
                    return Download(url, reason=f"too large (> {settings.max_bytes} bytes)", kind="too large")
                part.write(chunk)
            if part.size == 0:
                return Download(url, reason="empty response (0 bytes)", kind="empty")
            try:
                probe(part.finish())  # the bytes decide whether this is an image, not the URL or Content-Type
            except ImageError as exc:
                return Download(url, reason=exc.reason, kind=exc.kind)
            return Download(url, path=part.commit())


def _transport_failure(exc: Exception, settings: DownloadSettings) -> tuple[str, str, bool]:
    """(kind, reason, worth retrying) for an exception raised while fetching."""
    import httpx

    if isinstance(exc, httpx.ConnectTimeout):
        return "timeout", f"timeout (no connection within {settings.connect_timeout:g} s)", True
    if isinstance(exc, httpx.PoolTimeout):
        return "timeout", "timeout (no free connection)", False
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", f"timeout (no data for {settings.read_timeout:g} s)", False
    if isinstance(exc, httpx.TooManyRedirects):
        return "too many redirects", f"too many redirects (more than {settings.max_redirects})", False
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "bad URL", f"unsupported URL scheme ({exc})", False
    if isinstance(exc, httpx.InvalidURL):
        return "bad URL", f"invalid URL ({exc})", False
    if isinstance(exc, httpx.ConnectError):
        return "connection failed", f"connection failed ({exc or type(exc).__name__})", True
    if isinstance(exc, httpx.RemoteProtocolError) and "complete message body" in str(exc):
        # h11's "peer closed connection without sending complete message body: received X bytes, expected Y"
        return "truncated", f"truncated download ({exc})", True
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        return "connection failed", f"connection broken mid-response ({exc or type(exc).__name__})", True
    if isinstance(exc, OSError):  # writing the cache: a full disk, permissions
        return "cache write failed", f"cannot write the download cache ({exc})", False
    return "download failed", f"download failed ({type(exc).__name__}: {exc})", False


#: Connections a host may refuse in a row (with none accepted since) before its other URLs are not tried:
#: retrying each of 1,000 URLs on a port where nothing listens took 225 s, for nothing.
REFUSALS_BEFORE_GIVING_UP = 3


class _RefusingHosts:
    """Counts refused connections per host (scheme, name, port); an accepted connection clears its count."""

    def __init__(self) -> None:
        self.refused: Counter[str] = Counter()

    @staticmethod
    def _host(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.lower()}"

    def given_up(self, url: str) -> bool:
        return self.refused[self._host(url)] >= REFUSALS_BEFORE_GIVING_UP

    def refused_once(self, url: str) -> None:
        self.refused[self._host(url)] += 1

    def accepted(self, url: str) -> None:
        self.refused.pop(self._host(url), None)


async def _fetch(
    client: httpx.AsyncClient, url: str, settings: DownloadSettings, cache: DownloadCache, hosts: _RefusingHosts
) -> Download:
    """Fetch ``url`` with retries and a deadline per attempt; never raises for a bad URL or server."""
    import httpx

    kind = reason = ""
    for attempt in range(settings.retries + 1):
        if hosts.given_up(url):
            reason = f"connection failed (the host refused {REFUSALS_BEFORE_GIVING_UP} connections in a row, not tried)"
            return Download(url, reason=reason, kind="connection failed")
        delay = None
        try:
            result = await asyncio.wait_for(_fetch_once(client, url, settings, cache), settings.deadline)
            hosts.accepted(url)
            return result
        except asyncio.TimeoutError:
            return Download(url, reason=f"timeout (download took over {settings.deadline:g} s)", kind="timeout")
        except _Retryable as exc:
            hosts.accepted(url)  # it answered
            kind, reason, delay = exc.kind, exc.reason, exc.delay
        except Exception as exc:  # one odd URL or server must never stop the others
            kind, reason, transient = _transport_failure(exc, settings)
            if isinstance(exc, httpx.ConnectError) and not isinstance(exc, httpx.ConnectTimeout):
                hosts.refused_once(url)
            if not transient:
                return Download(url, reason=reason, kind=kind)
        if attempt < settings.retries:
            await asyncio.sleep(min(settings.max_backoff, settings.backoff * 2**attempt if delay is None else delay))
    tries = settings.retries + 1
    return Download(url, reason=reason if tries == 1 else f"{reason}, after {tries} tries", kind=kind)


async def _fetch_all(
    urls: Sequence[str], settings: DownloadSettings, cache: DownloadCache, done: Callable[[Download], None]
) -> list[Download]:
    import httpx

    results: list[Download | None] = [None] * len(urls)
    queue = iter(enumerate(urls))  # shared by the workers: one event loop thread, so no lock is needed
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.deadline,
        ),
        limits=httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency),
        follow_redirects=True,
        max_redirects=settings.max_redirects,
        # identity: a compressed body could inflate a thousandfold in memory before the size cap sees it
        headers={"User-Agent": "lookalike (image similarity indexer)", "Accept-Encoding": "identity"},
    )

    hosts = _RefusingHosts()

    async def worker() -> None:
        for position, url in queue:
            results[position] = result = await _fetch(client, url, settings, cache, hosts)
            done(result)

    async with client:
        await asyncio.gather(*(worker() for _ in range(min(settings.concurrency, len(urls)))))
    return results  # type: ignore[return-value]


def _run_in_thread(coroutine: Any) -> Any:
    """Run ``coroutine`` on a fresh event loop in a worker thread and wait; Ctrl-C cancels it cleanly.

    A thread of its own works whether or not the caller already runs an
    event loop (Jupyter does), where ``asyncio.run`` would refuse. The wait is
    on an Event, not ``Thread.join``: after a KeyboardInterrupt, a second
    ``join`` can return before the thread ends (CPython gh-90882), which
    would leave the cancelled downloads' partial files behind.
    """
    loop = asyncio.new_event_loop()
    task = loop.create_task(coroutine)
    finished = threading.Event()

    def run() -> None:
        try:
            loop.run_until_complete(task)
        except BaseException:  # task.result() below re-raises it in the caller's thread
            pass
        finally:
            loop.close()
            finished.set()

    threading.Thread(target=run, name="lookalike-download", daemon=True).start()
    try:
        finished.wait()
    except BaseException:  # KeyboardInterrupt: stop the downloads (removing partial files) before giving up
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to cancel
            loop.call_soon_threadsafe(task.cancel)
        finished.wait()
        raise
    return task.result()


class _Progress:
    """A progress bar of downloads: done/total, rate, and how many were fetched, cached or failed."""

    def __init__(self, total: int, cached: int, verbose: bool):
        self.ok, self.failed, self.cached = 0, 0, cached
        self.bar = tqdm(
            total=total, initial=cached, unit="img", desc="Downloading", disable=None if verbose else True, leave=False
        )
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix(downloaded=self.ok, cached=self.cached, failed=self.failed, refresh=False)

    def __call__(self, result: Download) -> None:
        if result.path is None:
            self.failed += 1
        else:
            self.ok += 1
        self._show()
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def download(
    urls: Sequence[str],
    settings: DownloadSettings | dict | None = None,
    cache: DownloadCache | None = None,
    verbose: bool = True,
) -> list[Download]:
    """Fetch http(s) URLs into the download cache: one :class:`Download` per URL, in order.

    URLs already in the cache are not requested again. Failures never
    raise: each one has a ``reason`` and its ``kind`` (``"HTTP 404"``,
    ``"timeout"``, ``"too large"``, ``"too many redirects"``, ``"connection
    failed"``, ``"not an image"``, ``"unsupported format"``, ``"bad URL"``...).

    Parameters
    ----------
    urls : sequence of str
    settings : DownloadSettings or dict, optional
        Timeouts, size cap, retries, concurrency (see :class:`DownloadSettings`).
    cache : DownloadCache, optional
        Defaults to ``lookalike.config.cache_dir() / "downloads"``.
    verbose : bool, default True
        Show a progress bar (downloaded, cached, failed, images per second).

    Examples
    --------
    >>> from lookalike.ingest.download import download
    >>> [(d.kind, d.reason) for d in download(["https://example.com/missing.jpg"], verbose=False)]  # doctest: +SKIP
    [('HTTP 404', 'HTTP 404 (Not Found)')]
    """
    settings = DownloadSettings.of(settings)
    cache = cache or DownloadCache()
    urls = [url.strip() if isinstance(url, str) else url for url in urls]  # as typed in a CSV cell: " https://..."
    unique = list(dict.fromkeys(urls))
    if not unique:
        return []
    found: dict[str, Download] = {}
    missing = []
    for url in unique:
        scheme = url_scheme(url)
        if scheme not in URL_SCHEMES:
            reason = (
                f"unsupported URL scheme {scheme!r} (only http and https URLs are downloaded)"
                if scheme
                else "not a URL (expected http:// or https://)"
            )
            found[url] = Download(url, reason=reason, kind="bad URL")
        elif (path := cache.get(url)) is not None:
            found[url] = Download(url, path=path, cached=True)
        else:
            missing.append(url)
    if missing:
        progress = _Progress(len(unique), len(unique) - len(missing), verbose)
        try:
            fetched = _run_in_thread(_fetch_all(missing, settings, cache, progress))
        finally:
            progress.close()
        found.update((result.url, result) for result in fetched)
    return [found[url] for url in urls]


@dataclass
class Localized:
    """Image sources with URLs swapped for downloaded files (see :func:`localize`)."""

    inputs: Sequence[Any]  # the sources as given
    sources: list[Any] = field(default_factory=list)  # the ones that can be decoded, URLs replaced by local paths
    ok: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # their positions in ``inputs``
    failures: list[Failure] = field(default_factory=list)  # of the inputs that were not fetched
    downloaded: int = 0
    from_cache: int = 0

    def merge(self, ok: np.ndarray, failures: list[Failure]) -> tuple[np.ndarray, list[Failure]]:
        """Map a later stage's ``ok``/``failures`` over :attr:`sources` back to the inputs, adding these failures.

        A failure of a downloaded file is named by its URL, not by its place in the download cache.
        """
        mapped = [
            replace(f, position=int(self.ok[f.position]), source=source_name(self.inputs[self.ok[f.position]]))
            for f in failures
        ]
        return self.ok[np.asarray(ok, dtype=np.int64)], sorted(self.failures + mapped, key=lambda f: f.position)

    def stats(self) -> dict[str, int]:
        """``downloaded`` and ``downloads_cached`` counts, or nothing when no URL was fetched."""
        if not (self.downloaded or self.from_cache):
            return {}
        return {"downloaded": self.downloaded, "downloads_cached": self.from_cache}


def localize(
    sources: Sequence[Any], settings: DownloadSettings | dict | None = None, verbose: bool = True
) -> Localized:
    """Download the http(s) URLs among ``sources`` and put their local files in their place.

    Other values (paths, bytes, PIL images, arrays) pass through unchanged.
    Strings with another scheme (``file://``, ``s3://``...), empty values
    (None, NaN) and URLs that cannot be fetched are left out, each with its reason.

    Examples
    --------
    >>> local = localize(["photo.jpg", "https://example.com/a.jpg"], verbose=False)  # doctest: +SKIP
    >>> local.sources, local.ok.tolist()  # doctest: +SKIP
    (['photo.jpg', '~/.cache/lookalike/downloads/3f/3f...'], [0, 1])
    """
    schemes = [url_scheme(s) for s in sources]
    results = iter(
        download([s for s, scheme in zip(sources, schemes, strict=True) if scheme], settings, verbose=verbose)
    )
    local = Localized(sources)
    ok = []
    for position, (source, scheme) in enumerate(zip(sources, schemes, strict=True)):
        if scheme is None:
            if pd.api.types.is_scalar(source) and pd.isna(source):
                local.failures.append(
                    Failure(position, source_name(source), "missing value", "no path or URL (empty value)")
                )
            else:
                local.sources.append(source)
                ok.append(position)
            continue
        result = next(results)
        if result.path is None:
            local.failures.append(Failure(position, source_name(source), result.kind, result.reason))
            continue
        local.sources.append(str(result.path))
        ok.append(position)
        local.from_cache += result.cached
        local.downloaded += not result.cached
    local.ok = np.asarray(ok, dtype=np.int64)
    return local
