"""WebView: processors' pictures (the wall), each camera and the group's stats in a browser.

``GET /`` is a page with the live picture, charts and tables; ``GET /stream.mjpg`` streams
an output or a camera as MJPEG (``multipart/x-mixed-replace``); ``GET /snapshot.jpg`` is
its newest picture; ``GET /stats`` the numbers as JSON (see
:mod:`~syncstream.processors.web.routes`). Each output and each watched camera is encoded
once per picture by its :class:`~syncstream.processors.web.feed.JpegFeed`; each streaming
client takes the newest JPEG whenever it is ready for one, so a slow client skips pictures
(counted) and never slows the other clients, the encoder or the group. The view serves
them itself (accepting, reading requests and short answers are one thread's work, under
deadlines and caps: see :mod:`~syncstream.processors.web.connections`; each stream has
a thread), or through an ASGI server that mounts :meth:`WebView.asgi_app`, or both.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING

from ...errors import ConfigError, StreamClosed, SyncStreamError, WebViewError
from ...frames import FrameSet
from ..output import HasOutput, ImageOutput
from .auth import Credentials
from .cameras import CameraFeeds
from .clients import Watchers, WebClientStats
from .connections import Answer, ConnectionLoop, Deferred, Streamed
from .feed import JpegFeed, WebOutputStats, stream_mjpeg
from .history import ChartHistory
from .http import Request, host_port, json_document
from .limits import Limits, Tally
from .options import WebViewOptions
from .page import render_page
from .routes import Computed, Reply, Router, Site, is_loopback

if TYPE_CHECKING:
    from ..group_view import GroupView
    from .asgi import AsgiApp

__all__ = ["Showable", "WebClientStats", "WebView", "WebViewStats"]

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT = 2.0

#: What a web view shows: an output, or a processor that has one (the wall).
Showable = ImageOutput | HasOutput


@dataclass(frozen=True)
class WebViewStats:
    """A snapshot of a web view's counters; totals count closed connections too."""

    #: The page's address; None before start(), or when the view does not listen itself.
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
    #: Each camera's one-camera view (``stream.mjpg?camera=NAME``), by camera name: its
    #: encoder works while somebody watches it. Empty without a group.
    cameras: dict[str, WebOutputStats] = field(default_factory=dict)


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
    """An HTTP server showing processors' pictures, the cameras and the group's stats to
    many browsers.

    ``outputs``: an :class:`ImageOutput`, a processor that has one (the wall), a list of
    them (named by their outputs) or a mapping name -> either; the first is the page's
    default. As a processor (:meth:`StreamGroup.add_processor`) it is started by
    ``attach`` and serves the group's stats, each camera's picture and its newest frame
    set's timing; alone, use ``with WebView(output) as view:``. It binds to 127.0.0.1
    unless told otherwise: other addresses expose the video to whoever can reach them,
    unless ``token`` or ``username`` and ``password`` are set (without them, a warning
    says so at start). :meth:`asgi_app` serves the same routes in an ASGI server (a
    Starlette or FastAPI program mounts it); with ``listen=False`` that is the only way.

    >>> with WebView(wall, port=8080) as view:  # doctest: +SKIP
    ...     print("open", view.url)
    """

    #: As a processor it only keeps the newest set's timing (GroupConfig.convert).
    uses_pictures = False
    #: Its worker's name in a group (``group.stats.processors["web"]``).
    name = "web"

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
        listen: bool = True,
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
        :mod:`~syncstream.processors.web.auth`. ``listen=False``: no server of its own
        (``host``, ``port`` and the connection caps unused), only :meth:`asgi_app`.
        Raises :class:`ConfigError` for a value beyond the limits of
        :class:`WebViewOptions` (kept in :attr:`options`), naming the field, never a
        secret.
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
            listen=listen,
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
        self._cameras = CameraFeeds(quality)
        #: Each camera's chart numbers over the last minute (sampled once attached).
        self.history = ChartHistory()
        #: Connections and requests of both transports (one ``max_clients`` for both).
        self.tally = Tally(self.limits)
        #: The clients watching streams, through either transport.
        self.watchers = Watchers()
        #: What a request is answered (for both transports).
        self.router = Router(
            page=render_page(options.title, list(self._feeds)),
            outputs=self._feeds,
            cameras=self._cameras,
            credentials=self._credentials,
            stats_document=self._stats_document,
        )
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._connections: ConnectionLoop | None = None
        self._started = False
        self._closed = False
        self._site = Site(name=self.host, loopback_only=False, cookie_name="syncstream")
        self._group: GroupView | None = None
        self._frameset: dict[str, object] | None = None

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
        cannot restart. With ``listen=False`` it only starts the encoders, for
        :meth:`asgi_app`."""
        with self._lock:
            if self._closed:
                raise StreamClosed("web view is closed and cannot restart")
            if self._started:
                return self
            if not self.options.listen:
                self._start_feeds()
                self._started = True
                logger.info("web view %s serving through its ASGI app only", self._url_or_host())
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
            # cookies are not kept apart by port: one per view on a host
            self._site = Site(
                name=self.url,
                loopback_only=is_loopback(self.address[0]),
                cookie_name=f"syncstream-{port}",
            )
            self._start_feeds()
            where = host_port(*self.address)
            self._connections = ConnectionLoop(
                listener, self._handle, self.limits, where, self.tally
            )
            self._connections.start()
            self._started = True
        logger.info("web view %s serving", self.url)
        if not self._site.loopback_only and self._credentials is None:
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
        self._cameras.close()
        self.history.close(timeout)
        if self._connections is not None:
            self._connections.close(timeout)
        for feed in self._feeds.values():
            feed.join(timeout)
        self._cameras.join(timeout)
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

    def _start_feeds(self) -> None:
        for feed in self._feeds.values():
            feed.start()
        self._cameras.start()

    @property
    def started(self) -> bool:
        """Whether it serves: started, and not closed."""
        return self._started and not self._closed

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def asgi_app(self) -> AsgiApp:
        """The view's routes as an ASGI application, for an ASGI server (uvicorn,
        hypercorn) or to mount in a Starlette or FastAPI program
        (``app.mount("/cameras", view.asgi_app())``); see
        :class:`~syncstream.processors.web.asgi.AsgiApp`. It answers 503 until the view
        is started (by :meth:`start`, or by ``attach`` in a group), and its streams end
        when the view closes."""
        from .asgi import AsgiApp

        return AsgiApp(self)

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port; raises ``SyncStreamError`` before :meth:`start`, or
        when the view does not listen itself (``listen=False``)."""
        if self._address is None:
            if not self.options.listen:
                raise SyncStreamError("web view does not listen (listen=False): see asgi_app()")
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
        """Serve ``group``'s stats and cameras, and start serving (called by
        ``add_processor``)."""
        self._group = group
        self._cameras.add(list(group.names))
        if self.started:
            self._cameras.start()
        self.start()
        self.history.start(lambda: group.stats, self._url_or_host())

    def __call__(self, frameset: FrameSet) -> None:
        """Keep the newest set's timing for ``/stats``, and its frames for the cameras'
        views (converted only for the cameras somebody watches)."""
        self._cameras.offer(frameset)
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
        """A snapshot of the counters of the view, its outputs, cameras and streaming
        clients (those of its own server and of its ASGI app together)."""
        counts = self.tally.counts()
        clients, sent, dropped = self.watchers.snapshot()
        return WebViewStats(
            url=None if self._address is None else self.url,
            outputs={name: feed.stats() for name, feed in self._feeds.items()},
            clients=clients,
            requests=counts.requests,
            sent=sent,
            dropped=dropped,
            refused=counts.refused,
            stalled=counts.stalled,
            errors=counts.errors,
            connections=counts.connections,
            timed_out=counts.timed_out,
            evicted=counts.evicted,
            unauthorized=self.router.unauthorized,
            cameras=self._cameras.stats(),
        )

    def _stats_document(self, history: bool) -> bytes:
        group = self._group
        document: dict[str, object] = {
            "web": self.stats,
            "group": None if group is None else group.stats,
            "frameset": self._frameset,
        }
        if history:  # the page's first request: its charts start with the last minute
            document["history"] = self.history.document(time.monotonic())
        return json_document(document)

    # -- serving ----------------------------------------------------------------------

    def _handle(self, request: Request, address: str) -> Answer:
        """Answer a request to the view's own server (on the connection loop's thread)."""
        answer = self.router.route(request, address, self._site)
        if isinstance(answer, Reply):
            return answer.encoded()
        if isinstance(answer, Computed):
            compute = answer.compute
            return Deferred(lambda: compute().encoded())
        return Streamed(partial(self._stream, answer.feed, address))

    def _stream(self, feed: JpegFeed, address: str, sock: socket.socket) -> None:
        with self.watchers.watching(address, feed) as counters:
            stream_mjpeg(sock, feed, counters)

    def _url_or_host(self) -> str:
        if self._address is not None:
            return self.url
        return self.host if self.options.listen else f"of {self._feeds_names()}"

    def _feeds_names(self) -> str:
        return ", ".join(self._feeds)

    def __repr__(self) -> str:
        return f"WebView({list(self._feeds)}, {self._url_or_host()})"
