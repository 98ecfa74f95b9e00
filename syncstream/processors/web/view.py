"""WebView: processors' pictures (the wall) and the group's stats in a web browser.

``GET /`` is a page with the live picture and a stats panel; ``GET /stream.mjpg`` streams
an output as MJPEG (``multipart/x-mixed-replace``); ``GET /snapshot.jpg`` is its newest
picture; ``GET /stats`` the numbers as JSON. Each output is encoded once per picture by
its :class:`~syncstream.processors.web.feed.JpegFeed`; each streaming client has its own
thread and takes the newest JPEG whenever it is ready for one, so a slow client skips
pictures (counted) and never slows the other clients, the encoder or the group. Everything
else (accepting, reading requests, short answers) is one thread's work, under deadlines
and caps: see :mod:`~syncstream.processors.web.connections`.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING

from ...errors import ConfigError, StreamClosed, SyncStreamError, WebViewError
from ...frames import FrameSet
from ...logs import Throttle
from ..output import HasOutput, ImageOutput
from .auth import Access, Credentials
from .connections import Answer, ConnectionLoop, Deferred, Streamed
from .feed import JpegFeed, StreamCounters, WebOutputStats, stream_mjpeg
from .http import HttpError, Request, host_port, json_document, response
from .limits import Limits
from .options import WebViewOptions
from .page import render_page

if TYPE_CHECKING:
    from ..group_view import GroupView

__all__ = ["Showable", "WebClientStats", "WebView", "WebViewStats"]

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT = 2.0
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

#: What a web view shows: an output, or a processor that has one (the wall).
Showable = ImageOutput | HasOutput


@dataclass(frozen=True)
class WebClientStats:
    """One client watching a stream."""

    #: The client's ``host:port``.
    address: str
    output: str
    #: Pictures sent to it.
    sent: int
    #: Pictures it missed because it was still receiving an earlier one.
    dropped: int
    #: Seconds since it connected.
    connected_for: float


@dataclass(frozen=True)
class WebViewStats:
    """A snapshot of a web view's counters; totals count closed connections too."""

    #: The page's address; None before start().
    url: str | None
    outputs: dict[str, WebOutputStats]
    #: The clients watching a stream now.
    clients: tuple[WebClientStats, ...]
    requests: int
    #: Pictures sent, and dropped for clients still busy with an earlier one.
    sent: int
    dropped: int
    #: Connections refused (503, or closed at once): ``max_clients`` requests served, or
    #: ``max_connections_per_address`` or ``max_connections`` connections open.
    refused: int
    #: Clients dropped after accepting no data for ``client_timeout`` seconds.
    stalled: int
    #: Requests that failed on a bug (logged with a traceback).
    errors: int
    #: Connections open now, also those still sending their request.
    connections: int
    #: Connections that sent no whole request head within ``head_timeout`` (408).
    timed_out: int
    #: Connections closed before their request came, to make room for a new one when
    #: ``max_connections`` were open (the one that had waited longest).
    evicted: int
    #: Requests refused (401) for want of valid credentials.
    unauthorized: int


class _Client:
    """One client watching a stream: its address, output and counters."""

    def __init__(self, address: str, output: str) -> None:
        self.address = address
        self.output = output
        self.counters = StreamCounters()
        self.since_mono = time.monotonic()


def _resolve(
    outputs: Showable | Sequence[Showable] | Mapping[str, Showable],
) -> dict[str, ImageOutput]:
    def output_of(item: Showable) -> ImageOutput:
        return item if isinstance(item, ImageOutput) else item.output

    if isinstance(outputs, Mapping):
        return {str(name): output_of(item) for name, item in outputs.items()}
    items = [outputs] if isinstance(outputs, ImageOutput | HasOutput) else list(outputs)
    resolved: dict[str, ImageOutput] = {}
    for item in items:
        output = output_of(item)
        if output.name in resolved:
            raise ConfigError(f"two outputs are named {output.name!r}; pass a mapping of names")
        resolved[output.name] = output
    return resolved


class WebView:
    """An HTTP server showing processors' pictures and the group's stats to many browsers.

    ``outputs``: an :class:`ImageOutput`, a processor that has one (the wall), a list of
    them (named by their outputs) or a mapping name -> either; the first is the page's
    default. As a processor (:meth:`StreamGroup.add_processor`) it is started by
    ``attach`` and serves the group's stats and its newest frame set's timing; alone, use
    ``with WebView(output) as view:``. It binds to 127.0.0.1 unless told otherwise: other
    addresses expose the video to whoever can reach them, unless ``token`` or
    ``username`` and ``password`` are set (without them, a warning says so at start).

    >>> with WebView(wall, port=8080) as view:  # doctest: +SKIP
    ...     print("open", view.url)
    """

    #: As a processor it only keeps the newest set's timing (GroupConfig.convert).
    uses_pictures = False

    def __init__(
        self,
        outputs: Showable | Sequence[Showable] | Mapping[str, Showable],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        jpeg_quality: int = 80,
        max_clients: int = 32,
        client_timeout: float = 10.0,
        head_timeout: float = 5.0,
        max_connections: int = 256,
        max_connections_per_address: int = 16,
        title: str = "syncstream",
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        """Describe the server; nothing listens before :meth:`start`.

        ``port=0`` picks a free port (see :attr:`url`). At most ``max_clients`` requests
        (streams, page, stats and snapshot requests) are served at once, 503 beyond. A
        client must send its whole request within ``head_timeout`` seconds (408 else), and
        is dropped when it accepts no data for ``client_timeout`` seconds. At most
        ``max_connections_per_address`` connections from one address (503, closed) and
        ``max_connections`` in all are open; beyond those, the connection that has waited
        longest for its request is closed to make room. With ``token`` or ``username``
        and ``password``, every request must show them (401 else); see
        :mod:`~syncstream.processors.web.auth`. Raises :class:`ConfigError` for a value
        beyond the limits of :class:`WebViewOptions` (kept in :attr:`options`), naming the
        field, never a secret.
        """
        resolved = _resolve(outputs)
        if not resolved:
            raise ConfigError("outputs: a WebView needs at least one output")
        self.options = options = WebViewOptions.check(
            "web view",
            host=host,
            port=port,
            jpeg_quality=jpeg_quality,
            max_clients=max_clients,
            client_timeout=client_timeout,
            head_timeout=head_timeout,
            max_connections=max_connections,
            max_connections_per_address=max_connections_per_address,
            title=title,
            token=token,
            username=username,
            password=password,
        )
        token, password = options.token_value, options.password_value
        self._credentials = (
            None
            if token is None and options.username is None and password is None
            else Credentials(token=token, username=options.username, password=password)
        )
        self.host = options.host
        self.max_clients = options.max_clients
        self.client_timeout = options.client_timeout
        self.limits = Limits(
            max_clients=options.max_clients,
            max_connections=options.max_connections,
            max_per_address=options.max_connections_per_address,
            head_timeout=options.head_timeout,
            client_timeout=options.client_timeout,
        )
        self._port = options.port
        quality = options.jpeg_quality
        self._feeds = {name: JpegFeed(name, out, quality) for name, out in resolved.items()}
        self._default = next(iter(self._feeds))
        self._page = render_page(options.title, list(self._feeds))
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._connections: ConnectionLoop | None = None
        self._clients: set[_Client] = set()
        self._closed = False
        self._loopback_only = False
        self._cookie_name = "syncstream"
        self._group: GroupView | None = None
        self._frameset: dict[str, object] | None = None
        self._sent = self._dropped = self._unauthorized = 0
        self._throttle = Throttle(logger)

    @classmethod
    def from_options(
        cls,
        outputs: Showable | Sequence[Showable] | Mapping[str, Showable],
        options: WebViewOptions,
    ) -> WebView:
        """A view of ``outputs`` with ``options`` (a session file's ``[web]`` table)."""
        values = options.model_dump(include=set(WebViewOptions.model_fields))
        values.update(token=options.token_value, password=options.password_value)
        return cls(outputs, **values)

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> WebView:
        """Listen and serve; idempotent. Raises :class:`WebViewError` naming the address
        when it cannot be bound (taken, or not an address of this machine); a closed view
        cannot restart."""
        with self._lock:
            if self._closed:
                raise StreamClosed("web view is closed and cannot restart")
            if self._listener is not None:
                return self
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            try:
                listener = socket.create_server((self.host, self._port), family=family)
            except OSError as exc:
                where = host_port(self.host, self._port)
                raise WebViewError(f"web view cannot listen on {where}: {exc}") from exc
            self._listener = listener
            host, port = listener.getsockname()[:2]
            self._address = (str(host), int(port))
            bound = ipaddress.ip_address(self.address[0])
            mapped = bound.ipv4_mapped if isinstance(bound, ipaddress.IPv6Address) else None
            self._loopback_only = (mapped or bound).is_loopback
            # cookies are not kept apart by port: one per view on a host
            self._cookie_name = f"syncstream-{port}"
            for feed in self._feeds.values():
                feed.start()
            where = host_port(*self.address)
            self._connections = ConnectionLoop(listener, self._handle, self.limits, where)
            self._connections.start()
        logger.info("web view %s serving", self.url)
        if not self._loopback_only and self._credentials is None:
            logger.warning(
                "web view %s: listening on %s without authentication: whoever reaches it "
                "sees the cameras and the stats; set a token or a username and password",
                self.url,
                where,
            )
        return self

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop listening, end every connection and stream, join the threads; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for feed in self._feeds.values():  # ends the streams
            feed.close()
        if self._connections is not None:
            self._connections.close(timeout)
        for feed in self._feeds.values():
            feed.join(timeout)
        if self._listener is not None:
            self._listener.close()
        logger.info("web view %s closed", self._url_or_host())

    def __enter__(self) -> WebView:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port; raises ``SyncStreamError`` before :meth:`start`."""
        if self._address is None:
            raise SyncStreamError("web view not started; call start() or use `with`")
        return self._address

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8080/`` (a wildcard host shows as
        loopback); raises ``SyncStreamError`` before :meth:`start`."""
        host, port = self.address
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://{host_port(host, port)}/"

    # -- as a processor ---------------------------------------------------------------

    def attach(self, group: GroupView) -> None:
        """Serve ``group``'s stats, and start serving (called by ``add_processor``)."""
        self._group = group
        self.start()

    def __call__(self, frameset: FrameSet) -> None:
        """Keep the newest set's timing for ``/stats``."""
        self._frameset = {
            "seq": frameset.seq,
            "cameras": list(frameset),
            "missing": list(frameset.missing),
            "skew": frameset.skew,
            "latency": frameset.latency,
            "clock": frameset.clock,
            "capture_time": frameset.capture_time,
        }

    # -- stats ------------------------------------------------------------------------

    @property
    def stats(self) -> WebViewStats:
        """A snapshot of the counters of the view, its outputs and its streaming clients."""
        now = time.monotonic()
        loop = self._connections
        counts = None if loop is None else loop.counts()
        with self._lock:
            clients = tuple(
                WebClientStats(
                    address=c.address,
                    output=c.output,
                    sent=c.counters.sent,
                    dropped=c.counters.dropped_by(self._feeds[c.output].newest_number()),
                    connected_for=now - c.since_mono,
                )
                for c in self._clients
            )
            sent, dropped, unauthorized = self._sent, self._dropped, self._unauthorized
        return WebViewStats(
            url=None if self._address is None else self.url,
            outputs={name: feed.stats() for name, feed in self._feeds.items()},
            clients=clients,
            requests=0 if counts is None else counts.requests,
            sent=sent + sum(c.sent for c in clients),
            dropped=dropped + sum(c.dropped for c in clients),
            refused=0 if counts is None else counts.refused,
            stalled=0 if counts is None else counts.stalled,
            errors=0 if counts is None else counts.errors,
            connections=0 if counts is None else counts.connections,
            timed_out=0 if counts is None else counts.timed_out,
            evicted=0 if counts is None else counts.evicted,
            unauthorized=unauthorized,
        )

    def _stats_document(self) -> bytes:
        group = self._group
        return json_document(
            {
                "web": self.stats,
                "group": None if group is None else group.stats,
                "frameset": self._frameset,
            }
        )

    # -- serving ----------------------------------------------------------------------

    def _handle(self, request: Request, address: str) -> Answer:
        """Answer a request (on the connection loop's thread: only quick work here)."""
        if request.method != "GET":
            raise HttpError(405, "only GET is served", "Allow: GET")
        if self._loopback_only and request.hostname not in (None, *_LOOPBACK_NAMES):
            # a page of another site reaching us through DNS rebinding names its own host
            raise HttpError(403, "this web view answers requests for localhost only")
        access = Access.OPEN
        if self._credentials is not None:
            checked = self._credentials.check(request, self._cookie_name)
            if checked is None:
                with self._lock:
                    self._unauthorized += 1
                self._throttle.warning(
                    ("401", address.rpartition(":")[0]),
                    "web view %s: %s refused: no valid credentials",
                    self._url_or_host(),
                    address,
                )
                raise HttpError(401, "authentication required", *self._credentials.challenges())
            access = checked
        if request.path in ("/", "/index.html"):
            cookie: tuple[str, ...] = ()
            if access is Access.QUERY_TOKEN and self._credentials is not None:
                cookie = self._credentials.set_cookie(self._cookie_name)
            return response(200, "text/html; charset=utf-8", self._page, *cookie)
        if request.path == "/stats":
            return Deferred(lambda: response(200, "application/json", self._stats_document()))
        if request.path in ("/stream.mjpg", "/snapshot.jpg"):
            name = request.query.get("output", [self._default])[0]
            feed = self._feeds.get(name)
            if feed is None:
                raise HttpError(404, f"no output named {name!r}")
            if request.path == "/stream.mjpg":
                return Streamed(partial(self._stream, feed, address))
            return Deferred(partial(self._snapshot, feed))
        raise HttpError(404, f"nothing at {request.path}")

    @staticmethod
    def _snapshot(feed: JpegFeed) -> bytes:
        data = feed.snapshot()
        if data is None:
            raise HttpError(503, f"output {feed.name!r} has no picture yet", "Retry-After: 1")
        return response(200, "image/jpeg", data)

    def _stream(self, feed: JpegFeed, address: str, sock: socket.socket) -> None:
        client = _Client(address, feed.name)
        with self._lock:
            self._clients.add(client)
        try:
            stream_mjpeg(sock, feed, client.counters)
        finally:
            with self._lock:
                self._clients.discard(client)
                self._sent += client.counters.sent
                self._dropped += client.counters.dropped

    def _url_or_host(self) -> str:
        return self.host if self._address is None else self.url

    def __repr__(self) -> str:
        return f"WebView({list(self._feeds)}, {self._url_or_host()})"
