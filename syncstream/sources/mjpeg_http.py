"""MJPEG over HTTP(S): the ``multipart/x-mixed-replace`` streams of IP cameras and mjpg-streamer.

The request is HTTP/1.0, so the server may not answer with chunked transfer encoding and
the body is the raw multipart stream. Each part is read by its ``Content-Length`` when it
has one (no scanning of JPEG bytes), else up to the next boundary. Every step has a size
cap: the response head and a part's headers (16 KiB), a part body and the bytes skipped
while looking for a boundary (``max_frame_bytes``), so a hostile or broken server costs
bounded memory and time.
"""

from __future__ import annotations

import base64
import logging
import math
import re
import ssl
from urllib.parse import SplitResult, unquote, urlsplit

from ..config import StreamConfig
from ..errors import FrameDecodeError, SourceError, UnsupportedSource
from .base import SourceFrame
from .connection import BufferedConnection, Deadline, SocketSource, decode_jpeg_frame

__all__ = ["MAX_HEADER_BYTES", "MjpegHttpSource"]

logger = logging.getLogger(__name__)

#: Largest HTTP response head or multipart part header block accepted (bytes).
MAX_HEADER_BYTES = 16 * 1024
_MAX_BOUNDARY_LINE = 256  # the rest of a boundary line: "--", transport padding, CRLF
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_USER_AGENT = "syncstream/0.1"


def _parse_headers(block: bytes) -> dict[str, str]:
    """Header lines to a dict with lower-case names; lines without a colon are ignored."""
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _multipart_boundary(content_type: str) -> str | None:
    """The ``boundary`` parameter of a Content-Type value, unquoted."""
    _, _, params = content_type.partition(";")
    for param in params.split(";"):
        key, sep, value = param.partition("=")
        if sep and key.strip().lower() == "boundary":
            return value.strip().strip('"') or None
    return None


def _decimal(text: str, limit: int) -> int | None:
    """``text`` as a decimal number from 0 to ``limit``, else ``None``.

    ``str.isdigit()`` alone also passes "²" and numbers over 4300 digits, which ``int()``
    refuses with ``ValueError``.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(limit)):
        return None
    value = int(digits)
    return value if value <= limit else None


def _sender_time(headers: dict[str, str]) -> float | None:
    """The ``X-Timestamp`` header (epoch seconds) that mjpg-streamer puts on each part."""
    text = headers.get("x-timestamp")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class MjpegHttpSource(SocketSource):
    """Reads an MJPEG ``multipart/x-mixed-replace`` stream from an ``http(s)://`` URL.

    ``user:password@`` in the URL is sent as HTTP Basic auth (and left out of the source
    name). HTTPS certificates are verified against the system trust store. Parts that are
    not decodable JPEGs are counted in ``counters.decode_errors`` and skipped; oversized
    parts are counted in ``counters.rejected`` and skipped up to the next boundary; when no
    boundary turns up within ``max_frame_bytes`` the source raises ``FrameDecodeError``.
    After :meth:`interrupt` the source stays interrupted.
    """

    def __init__(self, config: StreamConfig) -> None:
        url = config.url.strip()
        self._parts = self._check_url(url)
        netloc = self._parts.netloc.rpartition("@")[2]
        super().__init__(config, config.name or self._parts._replace(netloc=netloc).geturl())
        self._host_header = netloc
        self._token = b""

    @staticmethod
    def _check_url(url: str) -> SplitResult:
        if any(char in url for char in "\r\n\t "):
            raise UnsupportedSource(f"URL contains whitespace or control characters: {url!r}")
        parts = urlsplit(url)
        try:
            _ = parts.port  # raises ValueError for a bad port
        except ValueError as exc:
            raise UnsupportedSource(f"URL has an invalid port: {url!r}") from exc
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise UnsupportedSource(f"expected an http:// or https:// URL, got {url!r}")
        return parts

    # -- opening --------------------------------------------------------------------------

    def open(self) -> None:
        """Send the request; check for status 200 and a multipart content type."""
        self._drop()
        timeout = self._config.open_timeout
        deadline = Deadline.after(
            timeout, SourceError, f"{self.name}: no HTTP response within {timeout:.1f} s"
        )
        parts = self._parts
        tls = parts.scheme.lower() == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if tls else 80)
        conn = BufferedConnection(self.name, self._interrupted)
        opened = False
        try:
            conn.connect(host, port, deadline, ssl.create_default_context() if tls else None)
            conn.send(self._request(), deadline)
            status, reason, headers = self._read_response_head(conn, deadline)
            self._token = self._check_response(status, reason, headers)
            opened = True
        finally:
            if not opened:
                self._high_water = max(self._high_water, conn.high_water)
                conn.close()
        self._conn = conn
        logger.info("%s: connected, boundary %r", self.name, self._token.decode("latin-1"))

    def _request(self) -> bytes:
        parts = self._parts
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {target} HTTP/1.0",
            f"Host: {self._host_header}",
            f"User-Agent: {_USER_AGENT}",
            "Accept: multipart/x-mixed-replace, */*",
        ]
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
            lines.append(f"Authorization: Basic {token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    def _read_response_head(
        self, conn: BufferedConnection, deadline: Deadline
    ) -> tuple[int, str, dict[str, str]]:
        while (match := _HEADER_END.search(conn.buffer, 0, MAX_HEADER_BYTES + 4)) is None:
            if len(conn.buffer) > MAX_HEADER_BYTES:
                raise SourceError(f"{self.name}: HTTP response head exceeds {MAX_HEADER_BYTES} B")
            conn.fill(deadline)
        head = bytes(conn.buffer[: match.start()])
        del conn.buffer[: match.end()]
        status_line, _, rest = head.partition(b"\n")
        fields = status_line.decode("latin-1").strip().split(None, 2)
        status = _decimal(fields[1], 999) if len(fields) >= 2 else None
        if status is None or not fields[0].startswith("HTTP/"):
            raise SourceError(f"{self.name}: not an HTTP response: {status_line[:80]!r}")
        reason = fields[2] if len(fields) > 2 else ""
        return status, reason, _parse_headers(rest)

    def _check_response(self, status: int, reason: str, headers: dict[str, str]) -> bytes:
        """Return the boundary token to search for, or raise ``SourceError``."""
        content_type = headers.get("content-type", "")
        if status != 200 or not content_type.lower().startswith("multipart/"):
            hint = " (check user:password in the URL)" if status in (401, 403) else ""
            raise SourceError(
                f"{self.name}: HTTP {status} {reason}, content type {content_type!r}: "
                f"expected 200 and multipart/x-mixed-replace{hint}"
            )
        encoding = headers.get("transfer-encoding", "identity").lower()
        if encoding != "identity":
            raise SourceError(f"{self.name}: unsupported transfer encoding {encoding!r}")
        boundary = _multipart_boundary(content_type)
        # Cameras disagree on whether the declared boundary includes the leading "--";
        # searching for it without dashes matches either way.
        token = (boundary or "").lstrip("-").encode("latin-1")
        if not token or len(token) > 200:
            raise SourceError(f"{self.name}: no usable multipart boundary in {content_type!r}")
        return token

    # -- reading --------------------------------------------------------------------------

    def read(self) -> SourceFrame:
        """Return the next decodable JPEG part; ``SourceStalled`` after ``stall_timeout``."""
        conn, deadline = self._begin_read()
        while True:
            try:
                part = self._next_part(conn, deadline)
            except FrameDecodeError:
                self._drop()
                raise
            if part is None:
                continue  # refused and counted; resynchronise on the next boundary
            headers, body = part
            frame = decode_jpeg_frame(body, sender_time=_sender_time(headers))
            if frame is not None:
                return frame
            self._count(f"undecodable JPEG part of {len(body)} bytes skipped", rejected=False)

    def _next_part(
        self, conn: BufferedConnection, deadline: Deadline
    ) -> tuple[dict[str, str], bytes] | None:
        """Read one part; ``None`` when it was refused (already counted)."""
        self._skip_to_boundary(conn, deadline)
        block = self._read_part_headers(conn, deadline)
        if block is None:
            return None
        headers = _parse_headers(block)
        length_text = headers.get("content-length")
        if length_text is None:
            body = self._scan_body(conn, deadline)
            return None if body is None else (headers, body)
        cap = self._config.max_frame_bytes
        length = _decimal(length_text, cap)
        if length is None:
            self._count(
                f"part Content-Length {length_text[:32]!r} over {cap} (max_frame_bytes) "
                "or invalid; skipping to the next boundary",
                rejected=True,
            )
            return None
        return headers, conn.read_exact(length, deadline)

    def _skip_to_boundary(self, conn: BufferedConnection, deadline: Deadline) -> None:
        """Consume bytes up to and including the next boundary line."""
        token, buf, cap = self._token, conn.buffer, self._config.max_frame_bytes
        skipped = 0
        while True:
            position = buf.find(token)
            if position < 0:
                # Keep only a tail that may hold the start of a token split across reads.
                drop = max(0, len(buf) - (len(token) - 1))
                skipped += drop
                del buf[:drop]
            else:
                skipped += position
                del buf[: position + len(token)]
                end = self._boundary_line_end(conn, deadline)
                if end is not None:
                    line = bytes(buf[:end])
                    del buf[: end + 1]
                    if line.startswith(b"--"):
                        raise SourceError(f"{self.name}: server ended the multipart stream")
                    return
                skipped += len(token)  # no line end: the token was part of the data
            if skipped > cap:
                problem = (
                    f"no multipart boundary in {skipped} bytes (max_frame_bytes {cap}); "
                    "cannot resynchronise"
                )
                self._count(problem, rejected=True)
                raise FrameDecodeError(f"{self.name}: {problem}")
            if position < 0:
                conn.fill(deadline)

    def _boundary_line_end(self, conn: BufferedConnection, deadline: Deadline) -> int | None:
        """Index of the newline ending the boundary line, or ``None`` if it is too long."""
        while (end := conn.buffer.find(b"\n", 0, _MAX_BOUNDARY_LINE)) < 0:
            if len(conn.buffer) >= _MAX_BOUNDARY_LINE:
                return None
            conn.fill(deadline)
        return end

    def _read_part_headers(self, conn: BufferedConnection, deadline: Deadline) -> bytes | None:
        """The part's header block (empty when it has none); ``None`` if over the cap."""
        buf = conn.buffer
        while True:
            for blank in (b"\r\n", b"\n"):
                if buf.startswith(blank):
                    del buf[: len(blank)]
                    return b""
            match = _HEADER_END.search(buf, 0, MAX_HEADER_BYTES + 4)
            if match is not None:
                block = bytes(buf[: match.start()])
                del buf[: match.end()]
                return block
            if len(buf) > MAX_HEADER_BYTES:
                self._count(f"part headers over {MAX_HEADER_BYTES} bytes", rejected=True)
                return None
            conn.fill(deadline)

    def _scan_body(self, conn: BufferedConnection, deadline: Deadline) -> bytes | None:
        """A body without Content-Length: the bytes before the next boundary token."""
        token, buf, cap = self._token, conn.buffer, self._config.max_frame_bytes
        limit = cap + len(b"\r\n--")  # the most bytes before the token: a body at the cap
        search_from = 0
        while (position := buf.find(token, search_from)) < 0:
            if len(buf) >= limit + len(token):  # the token can only start after the limit
                self._count(f"part without Content-Length over {cap} bytes", rejected=True)
                del buf[: len(buf) - (len(token) - 1)]
                return None
            search_from = max(0, len(buf) - (len(token) - 1))
            conn.fill(deadline)
        if position > limit:  # over the cap, though its end came in the same read
            self._count(f"part without Content-Length over {cap} bytes", rejected=True)
            del buf[:position]
            return None
        # The token stays in the buffer for _skip_to_boundary. Strip the delimiter's
        # "\r\n--": a JPEG ends with FF D9, so this never cuts picture data.
        body = bytes(buf[:position]).rstrip(b"-")
        del buf[:position]
        return body.removesuffix(b"\n").removesuffix(b"\r")

    # -- life cycle -----------------------------------------------------------------------
