"""WebView: processors' pictures (the wall) and the group's stats in a web browser.

``GET /`` is a page with the live picture and a stats panel; ``GET /stream.mjpg`` streams
an output as MJPEG (``multipart/x-mixed-replace``); ``GET /snapshot.jpg`` is its newest
picture; ``GET /stats`` the numbers as JSON. Each output is encoded once per picture by
its :class:`~syncstream.processors.web.feed.JpegFeed`; each client has its own thread and
takes the newest JPEG whenever it is ready for one, so a slow client skips pictures
(counted) and never slows the other clients, the encoder or the group.
"""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from ...errors import ConfigError, StreamClosed, SyncStreamError, WebViewError
from ...frames import FrameSet
from ..output import HasOutput, ImageOutput
from .feed import JpegFeed, StreamCounters, WebOutputStats, stream_mjpeg
from .http import (
    HttpError,
    Request,
    close_gracefully,
    host_port,
    json_document,
    read_request,
    response,
    send_all,
    text_response,
)
from .page import render_page

if TYPE_CHECKING:
    from ...group import StreamGroup

__all__ = ["Showable", "WebClientStats", "WebView", "WebViewStats"]

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT = 2.0
_SPARE_CONNECTIONS = 8  # beyond max_clients: answered 503; beyond these: closed at once
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
    #: Connections refused (503) because ``max_clients`` were connected.
    refused: int
    #: Clients dropped after accepting no data for ``client_timeout`` seconds.
    stalled: int
    #: Requests that failed on a bug (logged with a traceback).
    errors: int


class _Client:
    """One connection: its socket, its thread and, once it streams, its counters."""

    def __init__(self, sock: socket.socket, address: str, *, refuse: bool) -> None:
        self.sock = sock
        self.address = address
        self.refuse = refuse
        self.output: str | None = None
        self.counters = StreamCounters()
        self.since_mono = time.monotonic()
        self.thread: threading.Thread | None = None


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
    addresses expose the video, without authentication, to whoever can reach them.

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
        title: str = "syncstream",
    ) -> None:
        """Describe the server; nothing listens before :meth:`start`.

        ``port=0`` picks a free port (see :attr:`url`). At most ``max_clients`` connections
        (streams, page and stats requests) are served at once; a few more are answered 503,
        the rest closed. A client that sends no request, or accepts no data, for
        ``client_timeout`` seconds is dropped. Raises :class:`ConfigError` for a bad value.
        """
        resolved = _resolve(outputs)
        if not resolved:
            raise ConfigError("outputs: a WebView needs at least one output")
        if not 1 <= jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be 1..100, got {jpeg_quality}")
        if not 0 <= port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {port}")
        if max_clients < 1:
            raise ConfigError(f"max_clients must be >= 1, got {max_clients}")
        if not client_timeout > 0:
            raise ConfigError(f"client_timeout must be > 0, got {client_timeout}")
        self.host = host
        self.max_clients = max_clients
        self.client_timeout = client_timeout
        self._port = port
        self._feeds = {name: JpegFeed(name, out, jpeg_quality) for name, out in resolved.items()}
        self._default = next(iter(self._feeds))
        self._page = render_page(title, list(self._feeds))
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[_Client] = set()
        self._closed = False
        self._loopback_only = False
        self._group: StreamGroup | None = None
        self._frameset: dict[str, object] | None = None
        self._requests = self._sent = self._dropped = 0
        self._refused = self._stalled = self._errors = 0

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
            self._loopback_only = ipaddress.ip_address(self.address[0]).is_loopback
            self._wake = socket.socketpair()
            for feed in self._feeds.values():
                feed.start()
            self._thread = threading.Thread(
                target=self._accept_loop, name=f"syncstream-web:{self.address[1]}", daemon=True
            )
            self._thread.start()
        logger.info("web view %s serving", self.url)
        return self

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop listening, end every connection and stream, join the threads; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clients = list(self._clients)
        if self._wake is not None:
            self._wake[1].send(b"x")
        for feed in self._feeds.values():
            feed.close()
        for client in clients:
            try:  # wakes a thread blocked sending to (or reading from) its client
                client.sock.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # the client's thread closed it already
                logger.debug("web view: client %s: shutdown: %s", client.address, exc)
        threads = [self._thread, *(c.thread for c in clients)]
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():
                    logger.warning("web view: thread %s still running", thread.name)
        for feed in self._feeds.values():
            feed.join(timeout)
        for sock in (self._listener, *(self._wake or ())):
            if sock is not None:
                sock.close()
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

    def attach(self, group: StreamGroup) -> None:
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
        with self._lock:
            streaming = [c for c in self._clients if c.output is not None]
            clients = tuple(
                WebClientStats(
                    address=c.address,
                    output=c.output or "",
                    sent=c.counters.sent,
                    dropped=c.counters.dropped_by(self._feeds[c.output or ""].newest_number()),
                    connected_for=now - c.since_mono,
                )
                for c in streaming
            )
            return WebViewStats(
                url=None if self._address is None else self.url,
                outputs={name: feed.stats() for name, feed in self._feeds.items()},
                clients=clients,
                requests=self._requests,
                sent=self._sent + sum(c.sent for c in clients),
                dropped=self._dropped + sum(c.dropped for c in clients),
                refused=self._refused,
                stalled=self._stalled,
                errors=self._errors,
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

    def _accept_loop(self) -> None:
        listener, wake = self._listener, self._wake
        assert listener is not None and wake is not None
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake[0], selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake[0]:
                        return
                    try:
                        sock, peer = listener.accept()
                    except OSError as exc:  # out of file descriptors, say: keep serving
                        logger.warning("web view on %s: accept failed: %s", self.host, exc)
                        time.sleep(0.1)  # the listener stays readable; do not spin
                        continue
                    self._admit(sock, host_port(str(peer[0]), int(peer[1])))

    def _admit(self, sock: socket.socket, address: str) -> None:
        with self._lock:
            count = len(self._clients)
            admitted = not self._closed and count < self.max_clients + _SPARE_CONNECTIONS
            if admitted:  # beyond max_clients, a connection only reads its request: 503
                client = _Client(sock, address, refuse=count >= self.max_clients)
                client.thread = threading.Thread(
                    target=self._serve, args=(client,), name=f"syncstream-web-client:{address}"
                )
                client.thread.daemon = True
                self._clients.add(client)
                client.thread.start()
            else:
                self._refused += 1
        if not admitted:
            logger.warning("web view: %s refused without an answer: too many clients", address)
            sock.close()

    def _serve(self, client: _Client) -> None:
        sock = client.sock
        stalled = False
        try:
            sock.settimeout(self.client_timeout)
            try:
                request = read_request(sock)
                with self._lock:
                    self._requests += 1
                    if client.refuse:
                        self._refused += 1
                if client.refuse:
                    logger.warning("web view: %s refused: too many clients", client.address)
                    raise HttpError(503, "too many clients", "Retry-After: 5")
                self._route(client, request)
            except HttpError as exc:
                send_all(sock, text_response(exc.status, exc.message, *exc.headers))
        except TimeoutError:
            stalled = client.output is not None
            if stalled:
                with self._lock:
                    self._stalled += 1
                logger.info("web view: client %s accepted nothing; dropped", client.address)
        except OSError as exc:  # the client left, or close() ended the connection
            logger.debug("web view: client %s: %s", client.address, exc)
        except Exception:
            logger.exception("web view: client %s: request failed", client.address)
            with self._lock:
                self._errors += 1
        finally:
            if stalled:  # nothing left to say to it
                sock.close()
            else:
                close_gracefully(sock)
            with self._lock:  # forgotten (and no longer joined by close()) once closed
                self._clients.discard(client)
                self._sent += client.counters.sent
                self._dropped += client.counters.dropped

    def _route(self, client: _Client, request: Request) -> None:
        if request.method != "GET":
            raise HttpError(405, "only GET is served", "Allow: GET")
        if self._loopback_only and request.hostname not in (None, *_LOOPBACK_NAMES):
            # a page of another site reaching us through DNS rebinding names its own host
            raise HttpError(403, "this web view answers requests for localhost only")
        if request.path in ("/", "/index.html"):
            send_all(client.sock, response(200, "text/html; charset=utf-8", self._page))
        elif request.path == "/stats":
            send_all(client.sock, response(200, "application/json", self._stats_document()))
        elif request.path in ("/stream.mjpg", "/snapshot.jpg"):
            name = request.query.get("output", [self._default])[0]
            feed = self._feeds.get(name)
            if feed is None:
                raise HttpError(404, f"no output named {name!r}")
            if request.path == "/stream.mjpg":
                client.output = feed.name
                stream_mjpeg(client.sock, feed, client.counters)
                return
            data = feed.snapshot()
            if data is None:
                raise HttpError(503, f"output {name!r} has no picture yet", "Retry-After: 1")
            send_all(client.sock, response(200, "image/jpeg", data))
        else:
            raise HttpError(404, f"nothing at {request.path}")

    def _url_or_host(self) -> str:
        return self.host if self._address is None else self.url

    def __repr__(self) -> str:
        return f"WebView({list(self._feeds)}, {self._url_or_host()})"
