"""The little HTTP/1.1 the web view speaks: a capped request reader and response heads.

Only what a browser watching a stream needs: one GET per connection (``Connection:
close``), no request bodies, no keep-alive. A request head longer than
``MAX_REQUEST_BYTES`` is answered 431 without being read further. Heads are parsed from
what a non-blocking connection has received so far (:func:`parse_head`), so waiting for
them costs no thread; see :mod:`~syncstream.processors.web.connections`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import selectors
import socket
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "COMMON_HEADERS",
    "LINGER_BYTES",
    "LINGER_SECONDS",
    "MAX_REQUEST_BYTES",
    "HttpError",
    "Request",
    "close_gracefully",
    "host_port",
    "json_document",
    "make_request",
    "parse_head",
    "peer_closed",
    "response",
    "response_head",
    "send_all",
    "text_response",
]

logger = logging.getLogger(__name__)

#: Largest request head (request line and headers) read, in bytes.
MAX_REQUEST_BYTES = 8 * 1024
_MAX_QUERY_FIELDS = 16
#: After its answer, a connection's input is drained (see :func:`close_gracefully`) for at
#: most this long and this many bytes.
LINGER_SECONDS = 1.0
LINGER_BYTES = 64 * 1024
#: Header lines of every answer: never cached, never sniffed, no address passed on (the
#: page can be opened with ?token=: no link or request may pass it on).
COMMON_HEADERS = (
    "Cache-Control: no-store",
    "X-Content-Type-Options: nosniff",
    "Referrer-Policy: no-referrer",
)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    401: "Unauthorized",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """A request answered with an error status (``headers`` are extra header lines)."""

    def __init__(self, status: int, message: str, *headers: str) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class Request(NamedTuple):
    """A parsed request head."""

    method: str
    path: str
    query: dict[str, list[str]]
    #: The Host header's host name (lower case, no port or brackets); None without one.
    hostname: str | None
    #: The header fields, by lower-case name (the last of a repeated one).
    headers: Mapping[str, str] = MappingProxyType({})


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_head(buffer: bytes | bytearray) -> Request | None:
    """The request whose head ``buffer`` starts with, or None while the head is incomplete;
    anything after the head (a body) is ignored.

    Raises :class:`HttpError` (400, 431) for a head to refuse: one that has not ended
    within ``MAX_REQUEST_BYTES`` is refused without waiting for the rest.
    """
    end = buffer.find(b"\r\n\r\n", 0, MAX_REQUEST_BYTES)
    if end < 0:
        if len(buffer) >= MAX_REQUEST_BYTES:
            raise HttpError(431, f"request head over {MAX_REQUEST_BYTES} bytes")
        return None
    request_line, *lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    fields = request_line.split(" ")
    if len(fields) != 3 or not fields[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    try:
        target = urlsplit(fields[1])
    except ValueError as exc:
        raise HttpError(400, f"malformed request: {exc}") from exc
    return make_request(fields[0], target.path, target.query, headers)


def make_request(method: str, path: str, query: str, headers: dict[str, str]) -> Request:
    """The :class:`Request` of a parsed head (``headers`` by lower-case name): the query
    parsed within its cap, the Host header's host name. Raises :class:`HttpError` (400)
    for a malformed query or Host."""
    try:
        fields = parse_qs(query, max_num_fields=_MAX_QUERY_FIELDS)
        host = headers.get("host")
        hostname = None if host is None else urlsplit("//" + host).hostname
    except ValueError as exc:
        raise HttpError(400, f"malformed request: {exc}") from exc
    return Request(method, path, fields, hostname, MappingProxyType(headers))


def response_head(status: int, content_type: str, length: int | None, *extra: str) -> bytes:
    """A response head: never cached, the connection closed after the body."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        "Connection: close",
        *COMMON_HEADERS,
        *extra,
    ]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response(status: int, content_type: str, body: bytes, *extra: str) -> bytes:
    """A whole response: head and body."""
    return response_head(status, content_type, len(body), *extra) + body


def text_response(status: int, message: str, *extra: str) -> bytes:
    """A plain-text response, for errors."""
    return response(status, "text/plain; charset=utf-8", f"{message}\n".encode(), *extra)


def send_all(sock: socket.socket, data: bytes) -> None:
    """Send all of ``data``. The socket's timeout bounds each wait for progress, so a
    client that accepts no byte for that long raises ``TimeoutError`` (``sendall`` would
    bound the whole transfer instead)."""
    view = memoryview(data)
    while view:
        view = view[sock.send(view) :]


def peer_closed(sock: socket.socket) -> bool:
    """True when the client has closed its side of the connection (or it is broken)."""
    try:
        with selectors.DefaultSelector() as selector:  # select() fails on fds over 1023
            selector.register(sock, selectors.EVENT_READ)
            readable = bool(selector.select(0))
        return readable and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def close_gracefully(sock: socket.socket) -> None:
    """Close after the client has read the answer.

    Closing a socket with unread input (a request body, a request to refuse) makes the
    kernel send a reset, which can destroy the answer before the client reads it; so the
    sending side is shut first and the input drained, for at most a second and 64 KiB.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(LINGER_SECONDS)
        drained = 0
        while drained < LINGER_BYTES and (chunk := sock.recv(65536)):
            drained += len(chunk)
    except OSError as exc:  # reset or timed out: the client got what it was going to get
        logger.debug("closing a connection: %s", exc)
    finally:
        sock.close()


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def json_document(value: object) -> bytes:
    """``value`` as JSON: dataclasses as objects, enums as their values, NaN and
    infinities as null (JavaScript's ``JSON.parse`` refuses them)."""
    return json.dumps(_jsonable(value), allow_nan=False).encode()
