"""What a web view answers to a request: the same for its own server and its ASGI app.

:class:`Router` checks a request (its method, the ``Host`` a loopback view is asked for,
the credentials) and picks the answer: a :class:`Reply` known at once (the page, the
icon), a :class:`Computed` one that takes some work (the stats, a snapshot) or a
:class:`Stream` of a feed's pictures. Each transport carries the answer its own way: the
connection loop (:mod:`~syncstream.processors.web.connections`) or the ASGI app
(:mod:`~syncstream.processors.web.asgi`).

=========================  ==============================================================
``GET /``                  the page
``GET /stats``             the numbers as JSON; ``?history=1`` adds each camera's chart
                           numbers over the last minute (``history``)
``GET /stream.mjpg``       an output (``?output=NAME``) or a camera (``?camera=NAME``)
                           as MJPEG
``GET /snapshot.jpg``      the same, one picture
``GET /favicon.ico``       the icon (also ``/favicon.svg``); served without credentials
=========================  ==============================================================
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ...logs import Throttle
from .auth import Access, Credentials
from .cameras import CameraFeeds
from .feed import JpegFeed
from .http import HttpError, Request, response

__all__ = [
    "ICON",
    "PAGE_POLICY",
    "Computed",
    "Reply",
    "Route",
    "Router",
    "Site",
    "Stream",
    "is_loopback",
]

logger = logging.getLogger(__name__)

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_ICON_PATHS = frozenset({"/favicon.ico", "/favicon.svg"})

#: The page's icon: two frames in step (SVG, a few hundred bytes, nothing fetched).
ICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="6" fill="#1d1f21"/>'
    b'<rect x="4" y="8" width="11" height="16" rx="2" fill="#6cf"/>'
    b'<rect x="17" y="8" width="11" height="16" rx="2" fill="#fc6"/>'
    b'<path d="M4 16h24" stroke="#1d1f21" stroke-width="2"/></svg>'
)

#: The page's Content-Security-Policy: its own inline script and style, pictures and
#: requests to its own server only, so the page works offline and sends nothing elsewhere.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'"
)


@dataclass(frozen=True)
class Reply:
    """An answer known at once."""

    status: int
    content_type: str
    body: bytes
    #: Extra header lines (``"Name: value"``).
    headers: tuple[str, ...] = ()

    def encoded(self) -> bytes:
        """The whole HTTP/1.1 response, for the view's own server."""
        return response(self.status, self.content_type, self.body, *self.headers)


@dataclass(frozen=True)
class Computed:
    """An answer that takes some work, done off the thread that reads requests:
    ``compute()`` returns it, or raises ``HttpError``."""

    compute: Callable[[], Reply]


@dataclass(frozen=True)
class Stream:
    """A stream of ``feed``'s pictures, until the client leaves or the feed ends."""

    feed: JpegFeed


#: What :meth:`Router.route` answers.
Route = Reply | Computed | Stream


@dataclass(frozen=True)
class Site:
    """What the transport knows about where a request came in."""

    #: The view's name for log messages: its URL, or its ASGI server's address.
    name: str
    #: The server listens on loopback addresses only: only requests naming a loopback
    #: host are answered, so that a page of another site cannot read the view through DNS
    #: rebinding.
    loopback_only: bool
    #: The cookie that lets the page's own requests in after it was opened with ?token=.
    cookie_name: str
    #: The path the cookie is sent for: where the view is mounted.
    cookie_path: str = "/"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address) is a loopback address, IPv4-mapped ones too."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


class Router:
    """Answers requests with the view's page, stats, outputs and cameras."""

    def __init__(
        self,
        *,
        page: bytes,
        outputs: Mapping[str, JpegFeed],
        cameras: CameraFeeds,
        credentials: Credentials | None,
        stats_document: Callable[[bool], bytes],
    ) -> None:
        self._page = page
        self._outputs = dict(outputs)
        self._default = next(iter(self._outputs))
        self._cameras = cameras
        self._credentials = credentials
        self._stats_document = stats_document
        self._lock = threading.Lock()
        self._unauthorized = 0
        self._throttle = Throttle(logger)

    @property
    def needs_credentials(self) -> bool:
        """Whether requests must show credentials."""
        return self._credentials is not None

    @property
    def unauthorized(self) -> int:
        """Requests refused (401) for want of valid credentials."""
        with self._lock:
            return self._unauthorized

    def route(self, request: Request, address: str, site: Site) -> Route:
        """The answer to ``request`` from client ``address`` (``host:port``); raises
        :class:`HttpError` for one to refuse. Quick: no I/O, no encoding."""
        if request.method != "GET":
            raise HttpError(405, "only GET is served", "Allow: GET")
        if site.loopback_only and request.hostname not in (None, *_LOOPBACK_NAMES):
            raise HttpError(403, "this web view answers requests for localhost only")
        if request.path in _ICON_PATHS:  # no secret in it: a 401 page gets its icon too
            return Reply(200, "image/svg+xml", ICON)
        access = self._check(request, address, site)
        if request.path in ("/", "/index.html"):
            cookie: tuple[str, ...] = ()
            if access is Access.QUERY_TOKEN and self._credentials is not None:
                cookie = self._credentials.set_cookie(site.cookie_name, site.cookie_path)
            policy = f"Content-Security-Policy: {PAGE_POLICY}"
            return Reply(200, "text/html; charset=utf-8", self._page, (policy, *cookie))
        if request.path == "/stats":
            history = request.query.get("history", ["0"])[0] == "1"
            document = self._stats_document
            return Computed(lambda: Reply(200, "application/json", document(history)))
        if request.path in ("/stream.mjpg", "/snapshot.jpg"):
            camera = request.query.get("camera", [None])[0]
            if camera is not None:
                feed = self._cameras.get(camera)
                if feed is None:
                    raise HttpError(404, f"no camera named {camera!r}")
                snapshot = self._camera_snapshot
                name = camera
            else:
                name = request.query.get("output", [self._default])[0]
                found = self._outputs.get(name)
                if found is None:
                    raise HttpError(404, f"no output named {name!r}")
                feed, snapshot = found, self._output_snapshot
            if request.path == "/stream.mjpg":
                return Stream(feed)
            return Computed(lambda: snapshot(name))
        raise HttpError(404, f"nothing at {request.path}")

    def _check(self, request: Request, address: str, site: Site) -> Access:
        if self._credentials is None:
            return Access.OPEN
        access = self._credentials.check(request, site.cookie_name)
        if access is None:
            with self._lock:
                self._unauthorized += 1
            self._throttle.warning(
                ("401", address.rpartition(":")[0]),
                "web view %s: %s refused: no valid credentials",
                site.name,
                address,
            )
            raise HttpError(401, "authentication required", *self._credentials.challenges())
        return access

    def _output_snapshot(self, name: str) -> Reply:
        data = self._outputs[name].snapshot()
        if data is None:
            raise HttpError(503, f"output {name!r} has no picture yet", "Retry-After: 1")
        return Reply(200, "image/jpeg", data)

    def _camera_snapshot(self, name: str) -> Reply:
        data = self._cameras.snapshot(name)
        if data is None:
            raise HttpError(503, f"camera {name!r} has no picture yet", "Retry-After: 1")
        return Reply(200, "image/jpeg", data)
