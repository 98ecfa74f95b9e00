"""The web view as an ASGI application, for an ASGI server or a Starlette/FastAPI program.

:class:`AsgiApp` serves the view's routes (:mod:`~syncstream.processors.web.routes`):
the page, ``/stats``, ``/stream.mjpg`` and ``/snapshot.jpg``, for outputs and cameras.
Written against the ASGI 3 interface itself, so it needs no web framework; it runs on an
asyncio event loop (uvicorn, hypercorn with asyncio).

It keeps what the view decides: the credentials, the ``Host`` check when the server
listens on loopback, the ``max_clients`` cap (shared with the view's own server: 503
beyond), the drop of a client that takes nothing for ``client_timeout``. What concerns
connections (the deadline for a request head, the caps on connections per address and in
all) is the ASGI server's job; uvicorn's options for it are in the docs (webview.md).

A stream is a streaming response: each part is the feed's newest JPEG when the server has
sent the previous one (its ``send`` waits while the client's buffer is full), woken by
the feed's encoder, never polling. It ends when the client disconnects, when the feed
ends (the view closed, the output closed), or when the client takes nothing for
``client_timeout`` (the response is then left incomplete, and the server closes the
connection).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ...errors import ReadTimeout, StreamClosed
from ...logs import Throttle
from .answers import log_stalled
from .feed import MJPEG_CONTENT_TYPE, PART_START, JpegFeed
from .http import COMMON_HEADERS, HttpError, Request, host_port, make_request
from .routes import Computed, Reply, Site, Stream, is_loopback

if TYPE_CHECKING:
    from .view import WebView

__all__ = ["AsgiApp", "Message", "Receive", "Scope", "Send"]

logger = logging.getLogger(__name__)

#: An ASGI connection scope.
Scope = MutableMapping[str, Any]
#: A message of a connection's ``receive`` or ``send``.
Message = MutableMapping[str, Any]
#: What the server gives the app to receive messages with.
Receive = Callable[[], Awaitable[Message]]
#: What the server gives the app to send messages with.
Send = Callable[[Message], Awaitable[None]]

_COOKIE_PATH = re.compile(r"/[\x21-\x3a\x3c-\x7e]*")  # visible ASCII but ";": a cookie attribute


class AsgiApp:
    """The routes of ``view`` as an ASGI 3 application (see the module).

    ``app.mount("/cameras", view.asgi_app())`` in Starlette or FastAPI serves the page at
    ``/cameras/``. Until the view is started (:meth:`WebView.start`, or ``attach`` in a
    group), and once it is closed, every request is answered 503.
    """

    def __init__(self, view: WebView) -> None:
        self.view = view
        self._throttle = Throttle(logger)
        self._warned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: HTTP requests, and the lifespan of a server that
        runs this app alone (nothing to do there: the view has its own life cycle)."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1003})
        else:
            raise NotImplementedError(f"web view: ASGI scope type {kind!r} is not served")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        view = self.view
        root_path = str(scope.get("root_path", ""))
        site = self._site(scope, root_path)
        client = scope.get("client")
        address = "unknown" if not client else host_port(str(client[0]), int(client[1]))
        if not view.started:
            state = "closed" if view.closed else "not started"
            await _reply(send, _text(503, f"web view {state}", "Retry-After: 5"))
            return
        path = _route_path(str(scope["path"]), root_path)
        if not path:  # the mount point itself: the page's relative links need its "/"
            query = scope.get("query_string", b"").decode("latin-1")
            location = root_path + "/" + (f"?{query}" if query else "")
            await _reply(send, Reply(308, "text/plain", b"", (f"Location: {location}",)))
            return
        key = object()  # this request, as the tally counts it
        if not view.tally.serve(key):
            self._throttle.warning(
                ("busy", site.name),
                "web view %s: %s refused: %d requests served already",
                site.name,
                address,
                view.limits.max_clients,
            )
            await _reply(send, _text(503, "too many clients", "Retry-After: 5"))
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._answer(_request(scope, path), address, site, receive, tracked)
        except HttpError as exc:
            await _reply(send, _text(exc.status, exc.message, *exc.headers))
        except Exception:
            logger.exception("web view %s: client %s: request failed", site.name, address)
            view.tally.add("errors")
            if not started:  # else left incomplete: the server closes the connection
                await _reply(send, _text(500, "the answer failed; see the server's log"))
        finally:
            view.tally.served(key)

    async def _answer(
        self, request: Request, address: str, site: Site, receive: Receive, send: Send
    ) -> None:
        answer = self.view.router.route(request, address, site)
        if isinstance(answer, Computed):
            answer = await asyncio.get_running_loop().run_in_executor(None, answer.compute)
        if isinstance(answer, Reply):
            await _reply(send, answer)
        elif isinstance(answer, Stream):
            await self._stream(answer.feed, address, site, receive, send)

    async def _stream(
        self, feed: JpegFeed, address: str, site: Site, receive: Receive, send: Send
    ) -> None:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        gone = asyncio.Event()

        def wake() -> None:  # on the encoder's thread, or close()'s
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError as exc:  # the loop is closed: no task waits any more
                logger.debug("web view %s: client %s: %s", site.name, address, exc)

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            ready.set()

        timeout = self.view.limits.client_timeout
        await send(_start(200, MJPEG_CONTENT_TYPE))
        await send({"type": "http.response.body", "body": PART_START, "more_body": True})
        watcher = asyncio.create_task(watch_disconnect())
        feed.add_waker(wake)
        feed.watch(+1)
        with self.view.watchers.watching(address, feed) as counters:
            try:
                while True:
                    ready.clear()
                    if gone.is_set():
                        return
                    try:
                        jpeg = feed.next_jpeg(counters.number, timeout=0)
                    except ReadTimeout:
                        await ready.wait()
                        continue
                    except StreamClosed:
                        break
                    if counters.number >= 0:
                        counters.dropped += jpeg.number - counters.number - 1
                    counters.number = jpeg.number
                    part = {
                        "type": "http.response.body",
                        "body": jpeg.data + b"\r\n" + PART_START,
                        "more_body": True,
                    }
                    try:
                        await asyncio.wait_for(send(part), timeout)
                    except TimeoutError:
                        self.view.tally.add("stalled")
                        log_stalled(site.name, address, timeout)
                        return  # incomplete: the server closes the connection
                    counters.sent += 1
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                feed.watch(-1)
                feed.remove_waker(wake)
                watcher.cancel()
                counters.dropped = counters.dropped_by(feed.newest_number())

    def _site(self, scope: Scope, root_path: str) -> Site:
        """Where the ASGI server says the request came in."""
        server = scope.get("server")
        scheme = str(scope.get("scheme", "http"))
        if server:
            host, port = str(server[0]), server[1]
            where = host if port is None else host_port(host, int(port))
            name = f"{scheme}://{where}{root_path}/"
            loopback = is_loopback(host)
        else:  # a Unix socket: whoever reaches it is local, but perhaps a proxy
            port, name, loopback = None, f"{scheme}://(socket){root_path}/", False
        if not loopback and not self.view.router.needs_credentials and not self._warned:
            self._warned = True
            logger.warning(
                "web view %s: served without authentication: whoever reaches it sees the "
                "cameras and the stats; set a token or a username and password",
                name,
            )
        cookie_path = root_path + "/" if _COOKIE_PATH.fullmatch(root_path + "/") else "/"
        return Site(
            name=name,
            loopback_only=loopback,
            cookie_name="syncstream" if port is None else f"syncstream-{port}",
            cookie_path=cookie_path,
        )


def _route_path(path: str, root_path: str) -> str:
    """``path`` below the mount point ``root_path``: servers and frameworks differ in
    whether ``path`` still holds it (ASGI says it does)."""
    if root_path and path.startswith(root_path):
        rest = path[len(root_path) :]
        if not rest or rest.startswith("/"):
            return rest
    return path


def _request(scope: Scope, path: str) -> Request:
    headers = {
        bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1").strip()
        for name, value in scope.get("headers", ())
    }
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    return make_request(str(scope["method"]), path, query, headers)


def _text(status: int, message: str, *headers: str) -> Reply:
    return Reply(status, "text/plain; charset=utf-8", f"{message}\n".encode(), headers)


def _start(status: int, content_type: str, *extra: str) -> Message:
    lines = [f"Content-Type: {content_type}", *COMMON_HEADERS, *extra]
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")))
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _reply(send: Send, reply: Reply) -> None:
    start = _start(reply.status, reply.content_type, *reply.headers)
    start["headers"].append((b"content-length", str(len(reply.body)).encode()))
    await send(start)
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})
