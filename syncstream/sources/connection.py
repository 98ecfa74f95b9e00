"""The TCP (or TLS) client and JPEG decoding shared by the MJPEG and TCP-framed sources.

:class:`BufferedConnection` waits at most ``POLL_INTERVAL`` seconds at a time in every
blocking step, so an interrupt from another thread or a passed :class:`Deadline` ends it
promptly. The parsers read a :class:`ReceiveBuffer`: the connection itself (TCP-framed),
or an HTTP response body fed by httpx over such a connection (MJPEG).
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ..config import StreamConfig
from ..errors import SourceError, SourceStalled
from ..frames import BGRImage
from ..logs import Throttle
from .base import SourceCounters, SourceFrame, check_picture_size

__all__ = [
    "POLL_INTERVAL",
    "BufferedConnection",
    "Deadline",
    "ReceiveBuffer",
    "SocketSource",
    "decode_jpeg_frame",
]

logger = logging.getLogger(__name__)
_throttle = Throttle(logger)  # refusals come once per part or frame: a line per 10 s

POLL_INTERVAL = 0.25
_RECV_CHUNK = 65536
_CONNECT_PENDING = {errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK}


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a blocking network step gives up, and the error it raises then."""

    at_mono: float
    error: type[SourceError]
    message: str

    @classmethod
    def after(cls, seconds: float, error: type[SourceError], message: str) -> Deadline:
        """A deadline ``seconds`` from now on the monotonic clock."""
        return cls(time.monotonic() + seconds, error, message)

    def check(self) -> None:
        """Raise the deadline's error if it has passed."""
        if time.monotonic() >= self.at_mono:
            raise self.error(self.message)


class ReceiveBuffer:
    """Received bytes not yet parsed: parsers consume from the front of :attr:`buffer`.

    Subclasses implement :meth:`fill`, which appends the next bytes (at least one) or
    raises ``SourceError``, and :meth:`close`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        #: Received bytes not yet consumed by the parser.
        self.buffer = bytearray()
        #: The largest size :attr:`buffer` has reached, to show that parsers stay bounded.
        self.high_water = 0

    def fill(self, deadline: Deadline) -> None:
        """Append the next received bytes (at least one) to :attr:`buffer`."""
        raise NotImplementedError

    def _append(self, data: bytes) -> None:
        self.buffer += data
        self.high_water = max(self.high_water, len(self.buffer))

    def read_exact(self, size: int, deadline: Deadline) -> bytes:
        """Remove and return exactly ``size`` bytes from the stream."""
        while len(self.buffer) < size:
            self.fill(deadline)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def close(self) -> None:
        """Drop buffered bytes; idempotent."""
        self.buffer = bytearray()


class BufferedConnection(ReceiveBuffer):
    """A TCP client connection (optionally TLS) with a receive buffer.

    Parsers consume bytes from the front of :attr:`buffer` and call :meth:`fill` for more.
    Every wait is cut into ``POLL_INTERVAL`` slices that check the shared ``interrupted``
    event and the caller's :class:`Deadline`. Socket and TLS errors become ``SourceError``.
    """

    def __init__(self, name: str, interrupted: threading.Event) -> None:
        super().__init__(name)
        self._interrupted = interrupted
        self._sock: socket.socket | None = None

    def connect(
        self, host: str, port: int, deadline: Deadline, tls: ssl.SSLContext | None = None
    ) -> None:
        """Connect to ``host:port`` (each resolved address in turn), then shake hands if TLS."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot resolve {host!r}: {exc}") from exc
        last_error: OSError | None = None
        for family, kind, proto, _canonical, address in infos:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:  # no descriptors left, or no such family here
                last_error = exc
                continue
            try:
                self._connect_socket(sock, address, deadline)
            except SourceError:
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                last_error = exc
                continue
            self._sock = sock if tls is None else self._handshake(sock, tls, host, deadline)
            return
        raise SourceError(
            f"{self.name}: cannot connect to {host}:{port}: {last_error}"
        ) from last_error

    def _connect_socket(
        self, sock: socket.socket, address: tuple[object, ...], deadline: Deadline
    ) -> None:
        # A non-blocking connect polled in slices: a blocking connect() cannot be interrupted,
        # and a timed-out connect() cannot be resumed.
        sock.setblocking(False)
        error = sock.connect_ex(address)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_WRITE)
            while error in _CONNECT_PENDING:
                self._check(deadline)
                if selector.select(POLL_INTERVAL):
                    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
        sock.settimeout(POLL_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def start_tls(self, tls: ssl.SSLContext, host: str, deadline: Deadline) -> None:
        """Shake hands over the connected socket; from then on the connection is TLS."""
        sock, self._sock = self._require(), None
        self._sock = self._handshake(sock, tls, host, deadline)

    def _handshake(
        self, sock: socket.socket, tls: ssl.SSLContext, host: str, deadline: Deadline
    ) -> ssl.SSLSocket:
        try:
            tls_sock = tls.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        except OSError as exc:
            sock.close()
            raise SourceError(f"{self.name}: TLS setup for {host} failed: {exc}") from exc
        while True:
            try:
                self._check(deadline)
                tls_sock.do_handshake()
            except TimeoutError:
                continue  # the handshake resumes where it stopped
            except SourceError:
                tls_sock.close()
                raise
            except OSError as exc:
                tls_sock.close()
                raise SourceError(f"{self.name}: TLS handshake with {host} failed: {exc}") from exc
            return tls_sock

    def _check(self, deadline: Deadline) -> None:
        if self._interrupted.is_set():
            raise SourceError(f"{self.name}: interrupted")
        deadline.check()

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise SourceError(f"{self.name}: connection is closed")
        return self._sock

    def send(self, data: bytes, deadline: Deadline) -> None:
        """Send all of ``data``."""
        sock = self._require()
        view = memoryview(data)
        while view:
            self._check(deadline)
            try:
                sent = sock.send(view)
            except TimeoutError:
                continue
            except OSError as exc:
                raise SourceError(f"{self.name}: send failed: {exc}") from exc
            view = view[sent:]

    def recv(self, max_bytes: int, deadline: Deadline) -> bytes:
        """The next received bytes (up to ``max_bytes``), bypassing :attr:`buffer`.

        Returns ``b""`` when the server closed the connection.
        """
        sock = self._require()
        while True:
            self._check(deadline)
            try:
                return sock.recv(max_bytes)
            except TimeoutError:
                continue
            except OSError as exc:
                raise SourceError(f"{self.name}: receive failed: {exc}") from exc

    def fill(self, deadline: Deadline) -> None:
        """Append the next received bytes (at least one) to :attr:`buffer`."""
        data = self.recv(_RECV_CHUNK, deadline)
        if not data:
            raise SourceError(f"{self.name}: connection closed by server")
        self._append(data)

    def readable(self) -> bool:
        """Whether a read would not block: data waits, or the server closed (or no socket)."""
        sock = self._sock
        if sock is None or sock.fileno() < 0:
            return True
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            return bool(selector.select(0))

    def close(self) -> None:
        """Close the socket and drop buffered bytes; idempotent."""
        sock, self._sock = self._sock, None
        super().close()
        if sock is not None:
            sock.close()


_SOF_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The (width, height) a JPEG's frame header declares, or None when there is none."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:  # garbage before a marker: skip it, as libjpeg does
            pos = data.find(b"\xff", pos)
            if pos < 0:
                return None
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x00:  # a stuffed zero is data, not a marker: libjpeg skips it too
            pos += 2
            continue
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF_MARKERS:
            if pos + 9 > len(data) or length < 7:
                return None
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        # A length under 2 (which counts itself) skips nothing more; libjpeg then looks for
        # the next marker from there, and so does this.
        pos += 2 + max(2, length)
    return None


def decode_jpeg_frame(
    data: bytes, *, max_pixels: int, sender_time: float | None = None
) -> SourceFrame | None:
    """Decode a JPEG into a :class:`SourceFrame`, or return ``None`` if it does not decode.

    A JPEG without a frame header, or declaring more than ``max_pixels``, is not decoded:
    a few hundred bytes can claim 16000x16000, which would make the decoder allocate
    gigabytes, whatever ``max_frame_bytes`` says.
    """
    if not data:
        return None
    size = jpeg_size(data)
    if size is None or size[0] * size[1] > max_pixels:
        return None
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None  # the caller counts and logs the refused frame
    if decoded is None or decoded.ndim != 3:
        return None
    image: BGRImage = np.asarray(decoded, dtype=np.uint8)
    height, width = image.shape[:2]
    return SourceFrame(
        width=int(width), height=int(height), convert=_constant(image), sender_time=sender_time
    )


def _constant(image: BGRImage) -> Callable[[], BGRImage]:
    return lambda: image


class SocketSource:
    """What the socket sources share: the connection, the interrupt flag, refusal counts.

    After :meth:`interrupt` a source stays interrupted: ``open()`` and ``read()`` raise
    ``SourceError`` within ``POLL_INTERVAL``.
    """

    is_live = True

    def __init__(self, config: StreamConfig, name: str) -> None:
        self.name = name
        self.counters = SourceCounters()
        self._config = config
        self._interrupted = threading.Event()
        self._conn: ReceiveBuffer | None = None
        self._high_water = 0

    @property
    def buffer_high_water(self) -> int:
        """The most bytes ever held in the receive buffer (bounded by the size caps)."""
        conn = self._conn
        return max(self._high_water, conn.high_water if conn is not None else 0)

    def _begin_read(self) -> tuple[ReceiveBuffer, Deadline]:
        """The open connection and the stall deadline of one ``read()``."""
        conn = self._conn
        if conn is None:
            raise SourceError(f"{self.name}: source is not open")
        stall = self._config.stall_timeout
        message = f"{self.name}: no complete frame for {stall:.1f} s"
        return conn, Deadline.after(stall, SourceStalled, message)

    def _decode_jpeg(self, data: bytes, sender_time: float | None = None) -> SourceFrame | None:
        """:func:`decode_jpeg_frame` with the stream's ``max_pixels``; a JPEG declaring a
        larger picture raises ``PictureTooLarge`` (counted) before it is decoded."""
        max_pixels = self._config.max_pixels
        size = jpeg_size(data)
        if size is not None:
            check_picture_size(self.name, size[0], size[1], max_pixels, self.counters)
        return decode_jpeg_frame(data, max_pixels=max_pixels, sender_time=sender_time)

    def _count(self, problem: str, *, rejected: bool) -> None:
        if rejected:
            self.counters.rejected += 1
        else:
            self.counters.decode_errors += 1
        self.counters.last_problem = problem
        # Refusals point at a broken or hostile peer; a bad JPEG now and then is routine.
        if rejected:
            _throttle.warning((self.name, "rejected"), "%s: %s", self.name, problem)
        else:
            logger.debug("%s: %s", self.name, problem)

    def interrupt(self) -> None:
        """Make a blocked ``open()`` or ``read()`` raise ``SourceError`` soon. Thread-safe."""
        self._interrupted.set()

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._high_water = max(self._high_water, conn.high_water)
            conn.close()
            logger.debug("%s: connection closed", self.name)
