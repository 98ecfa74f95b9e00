"""Length-prefixed JPEG frames over a TCP connection.

The framing is the simplest one that needs no parser state: an 8-byte big-endian unsigned
length, then that many bytes of JPEG. Nothing is ever unpickled. A length of zero or over
``max_frame_bytes`` means the stream is not what we expect (or is hostile); as there is no
marker to resynchronise on, the frame is refused and the connection dropped.
"""

from __future__ import annotations

import logging
import socket
import struct
from urllib.parse import urlsplit

from ..config import StreamConfig
from ..errors import FrameDecodeError, SourceError, UnsupportedSource
from .base import SourceFrame
from .connection import BufferedConnection, Deadline, SocketSource

__all__ = ["TcpFramedSource", "send_framed_jpeg"]

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct(">Q")


def send_framed_jpeg(sock: socket.socket, jpeg: bytes) -> None:
    """Send one frame the way :class:`TcpFramedSource` reads it: 8-byte length, then bytes."""
    try:
        sock.sendall(_LENGTH.pack(len(jpeg)) + jpeg)
    except OSError as exc:
        raise SourceError(f"sending a framed JPEG of {len(jpeg)} bytes failed: {exc}") from exc


def _parse_tcp_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise UnsupportedSource(f"tcp URL has an invalid port: {url!r}") from exc
    if parts.scheme != "tcp" or not parts.hostname or port is None:
        raise UnsupportedSource(f"expected tcp://host:port, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise UnsupportedSource(f"tcp URL takes only host and port: {url!r}")
    return parts.hostname, port


class TcpFramedSource(SocketSource):
    """Reads length-prefixed JPEG frames from a ``tcp://host:port`` server.

    Undecodable JPEGs are counted in ``counters.decode_errors`` and skipped. A length of 0
    or over ``max_frame_bytes`` is counted in ``counters.rejected`` and raises
    ``FrameDecodeError`` (the connection is dropped; the stream reopens). After
    :meth:`interrupt` the source stays interrupted: ``open()`` and ``read()`` raise
    ``SourceError`` within ``POLL_INTERVAL``.
    """

    def __init__(self, config: StreamConfig) -> None:
        super().__init__(config, config.display_name)
        self._host, self._port = _parse_tcp_url(config.url.strip())

    def open(self) -> None:
        """Connect within ``open_timeout``; raise ``SourceError`` on failure."""
        self._drop()
        timeout = self._config.open_timeout
        deadline = Deadline.after(
            timeout, SourceError, f"{self.name}: not connected within {timeout:.1f} s"
        )
        conn = BufferedConnection(self.name, self._interrupted)
        conn.connect(self._host, self._port, deadline)
        self._conn = conn
        logger.info("%s: connected to %s:%s", self.name, self._host, self._port)

    def read(self) -> SourceFrame:
        """Return the next decodable frame; raise ``SourceStalled`` after ``stall_timeout``."""
        conn, deadline = self._begin_read()
        cap = self._config.max_frame_bytes
        while True:
            (length,) = _LENGTH.unpack(conn.read_exact(_LENGTH.size, deadline))
            if not 0 < length <= cap:
                problem = (
                    f"frame length {length} bytes outside 1..{cap} (max_frame_bytes); "
                    "cannot resynchronise"
                )
                self._count(problem, rejected=True)
                self._drop()
                raise FrameDecodeError(f"{self.name}: {problem}")
            frame = self._decode_jpeg(conn.read_exact(length, deadline))
            if frame is not None:
                return frame
            self._count(f"undecodable JPEG of {length} bytes skipped", rejected=False)
