"""MJPEG over HTTP(S): the ``multipart/x-mixed-replace`` streams of IP cameras and mjpg-streamer.

The request goes through httpx (see :mod:`.http_client`): Basic or Digest authentication
as the camera asks, TLS, redirects, chunked or read-until-close bodies. The multipart parser
reads the body's bytes: each part by its ``Content-Length`` when it has one (no scanning of
JPEG bytes), else up to the next boundary. Every step has a size cap: the response head
(httpcore's, 100 KiB), an error page (64 KiB), a part's headers (16 KiB), a part body and
the bytes skipped while looking for a boundary (``max_frame_bytes``), so a hostile or
broken server costs bounded memory and time. Bodies are asked for and read unencoded
(no gzip), so no decompression can blow up a capped size.
"""

from __future__ import annotations

import logging
import math
import re
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import httpx

from ..config import StreamConfig
from ..errors import FrameDecodeError, SourceError, UnsupportedSource
from .base import SourceFrame
from .connection import Deadline, ReceiveBuffer, SocketSource
from .http_client import ChallengeAuth, HttpBody, HttpClient

__all__ = ["MAX_HEADER_BYTES", "MjpegHttpSource"]

logger = logging.getLogger(__name__)

#: Largest multipart part header block accepted (bytes).
MAX_HEADER_BYTES = 16 * 1024
_MAX_BOUNDARY_LINE = 256  # the rest of a boundary line: "--", transport padding, CRLF
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_REQUEST_HEADERS = {
    "User-Agent": "syncstream/0.1",
    "Accept": "multipart/x-mixed-replace, */*",
    "Accept-Encoding": "identity",
}


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

    ``user:password@`` in the URL answers the camera's HTTP Digest or Basic challenge (and
    is left out of the source name, errors and logs). HTTPS certificates are verified
    against the system trust store. Redirects are followed (at most
    :data:`~.http_client.MAX_REDIRECTS`); credentials go only to the URL's host. Parts that
    are not decodable JPEGs are counted in ``counters.decode_errors`` and skipped; oversized
    parts are counted in ``counters.rejected`` and skipped up to the next boundary; when no
    boundary turns up within ``max_frame_bytes`` the source raises ``FrameDecodeError``.
    After :meth:`interrupt` the source stays interrupted.
    """

    def __init__(self, config: StreamConfig) -> None:
        url = config.url.strip()
        parts = self._check_url(url)
        netloc = parts.netloc.rpartition("@")[2]
        shown = parts._replace(netloc=netloc).geturl()
        super().__init__(config, config.name or shown)
        try:
            self._url = httpx.URL(urlunsplit(parts._replace(netloc=netloc)))
        except httpx.InvalidURL as exc:
            raise UnsupportedSource(f"not a usable http(s) URL: {shown!r} ({exc})") from exc
        self._auth: ChallengeAuth | None = None
        if parts.username is not None:
            self._auth = ChallengeAuth(unquote(parts.username), unquote(parts.password or ""))
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
        client = HttpClient(self.name, self._interrupted, deadline)
        try:
            response = client.get(self._url, _REQUEST_HEADERS, self._auth)
        except BaseException:
            client.close()
            raise
        body = HttpBody(client, response)  # closes the client with the response
        try:
            self._token = self._check_response(response)
        except BaseException:
            body.close()
            raise
        self._conn = body
        logger.info("%s: connected, boundary %r", self.name, self._token.decode("latin-1"))

    def _check_response(self, response: httpx.Response) -> bytes:
        """Return the boundary token to search for, or raise ``SourceError``."""
        status = response.status_code
        # The raw bytes, read as latin-1 as the parser reads part headers: httpx may have
        # decoded the header as UTF-8.
        content_type = next(
            (v.decode("latin-1") for k, v in response.headers.raw if k.lower() == b"content-type"),
            "",
        )
        if status != 200 or not content_type.lower().startswith("multipart/"):
            raise SourceError(
                f"{self.name}: HTTP {status} {response.reason_phrase}, content type "
                f"{content_type!r}: expected 200 and multipart/x-mixed-replace"
                + self._status_hint(response)
            )
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise SourceError(f"{self.name}: unsupported content encoding {encoding!r}")
        boundary = _multipart_boundary(content_type)
        # Cameras disagree on whether the declared boundary includes the leading "--";
        # searching for it without dashes matches either way.
        token = (boundary or "").lstrip("-").encode("latin-1")
        if not token or len(token) > 200:
            raise SourceError(f"{self.name}: no usable multipart boundary in {content_type!r}")
        return token

    def _status_hint(self, response: httpx.Response) -> str:
        status = response.status_code
        if status == 401 and response.request.url.host != self._url.host:
            return (
                " (authentication required by another host the URL redirected to: "
                "credentials go only to the URL's own host)"
            )
        offered = {
            value.strip().partition(" ")[0].lower()
            for value in response.headers.get_list("www-authenticate")
        }
        if status == 401 and offered and not offered & {"basic", "digest"}:
            schemes = ", ".join(sorted(offered))
            return f" (the camera asks for {schemes!r} authentication; Basic and Digest work)"
        if status == 401 and self._auth is None:
            return " (authentication required: put user:password in the URL)"
        if status == 401:
            return " (authentication failed: check user:password in the URL)"
        if status == 403:
            return " (access denied: check user:password in the URL)"
        return ""

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
            frame = self._decode_jpeg(body, _sender_time(headers))
            if frame is not None:
                return frame
            self._count(f"undecodable JPEG part of {len(body)} bytes skipped", rejected=False)

    def _next_part(
        self, conn: ReceiveBuffer, deadline: Deadline
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

    def _skip_to_boundary(self, conn: ReceiveBuffer, deadline: Deadline) -> None:
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

    def _boundary_line_end(self, conn: ReceiveBuffer, deadline: Deadline) -> int | None:
        """Index of the newline ending the boundary line, or ``None`` if it is too long."""
        while (end := conn.buffer.find(b"\n", 0, _MAX_BOUNDARY_LINE)) < 0:
            if len(conn.buffer) >= _MAX_BOUNDARY_LINE:
                return None
            conn.fill(deadline)
        return end

    def _read_part_headers(self, conn: ReceiveBuffer, deadline: Deadline) -> bytes | None:
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

    def _scan_body(self, conn: ReceiveBuffer, deadline: Deadline) -> bytes | None:
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
