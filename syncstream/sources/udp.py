"""UDP MPEG-TS input read by our own socket, handed to the demuxer as a file object.

FFmpeg's own ``udp://`` reader can only be interrupted by PyAV's read timeout, and a
container whose read was interrupted stays in error: every later read fails at once, so a
short gap in the stream would force a reopen and a wait for the next keyframe. Reading the
socket ourselves keeps the demuxer alive through gaps, lets ``interrupt()`` end a blocked
read at once, and lets us refuse datagrams that are not MPEG-TS before they reach FFmpeg.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import struct
import threading
import time
from urllib.parse import parse_qsl, urlsplit

from ..errors import SourceError, SourceStalled, UnsupportedSource
from .base import SourceCounters

__all__ = ["UdpAddress", "UdpTsReader", "parse_udp_url"]

logger = logging.getLogger(__name__)

TS_PACKET = 188
TS_SYNC = 0x47
_MAX_DATAGRAM = 65536
_POLL_INTERVAL = 0.1
# Query keys ffmpeg users put on udp:// URLs. pkt_size only matters to senders; the others
# tune ffmpeg's reader, which this module replaces; buffer_size sets our receive buffer.
_ACCEPTED_QUERY = {"pkt_size", "buffer_size", "fifo_size", "overrun_nonfatal", "timeout", "reuse"}


class UdpAddress:
    """Where to listen: ``host`` (empty for all interfaces), ``port``, optional buffer size."""

    __slots__ = ("buffer_size", "host", "port")

    def __init__(self, host: str, port: int, buffer_size: int | None) -> None:
        self.host = host
        self.port = port
        self.buffer_size = buffer_size

    @property
    def is_multicast(self) -> bool:
        """True for a multicast group address (joined on open)."""
        try:
            return ipaddress.ip_address(self.host).is_multicast
        except ValueError:
            return False


def parse_udp_url(url: str) -> UdpAddress:
    """Parse ``udp://host:port[?buffer_size=N]``; ``udp://@:port`` listens on all interfaces."""
    parts = urlsplit(url)
    if parts.scheme != "udp":
        raise UnsupportedSource(f"not a udp:// URL: {url!r}")
    netloc = parts.netloc.lstrip("@")
    host, sep, port_text = netloc.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UnsupportedSource(f"udp URL needs a port between 1 and 65535: {url!r}")
    host = host.strip("[]")
    buffer_size: int | None = None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _ACCEPTED_QUERY:
            raise UnsupportedSource(
                f"udp URL option {key!r} is not supported (accepted: {sorted(_ACCEPTED_QUERY)})"
            )
        if key == "buffer_size":
            if not value.isdigit():
                raise UnsupportedSource(f"udp buffer_size must be a number of bytes: {value!r}")
            buffer_size = int(value)
    return UdpAddress(host, int(port_text), buffer_size)


class UdpTsReader:
    """A readable file object over a UDP socket carrying MPEG-TS datagrams.

    ``read()`` blocks until at least one datagram arrives and returns all that are waiting,
    up to the size asked. Datagrams that are not whole TS packets (length not a multiple of
    188 or a packet not starting with 0x47) are dropped and counted in ``counters.rejected``.
    After ``timeout`` seconds without a valid datagram it raises ``SourceStalled``; after
    :meth:`interrupt` it raises ``SourceError``. Exceptions raised here travel through the
    demuxer back to the caller of ``demux()``.
    """

    def __init__(
        self,
        address: UdpAddress,
        *,
        name: str,
        counters: SourceCounters,
        receive_buffer: int,
        timeout: float,
    ) -> None:
        self.name = name
        self.address = address
        self.counters = counters
        self.timeout = timeout
        self._receive_buffer = address.buffer_size or receive_buffer
        self._sock: socket.socket | None = None
        self._buffer = bytearray(_MAX_DATAGRAM)
        self._interrupted = threading.Event()
        self._pending = bytearray()
        self._last_data_mono = time.monotonic()
        self.bytes_received = 0
        self._buffer_warned = False
        #: Why :meth:`read` ended the input, for the source to raise; None while it flows.
        self.failure: SourceError | None = None

    def open(self) -> None:
        """Bind the socket (and join the group for a multicast address)."""
        host = self.address.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._receive_buffer)
            if self.address.is_multicast:  # receivers of a group share its port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("", self.address.port))
                group = socket.inet_aton(host)
                sock.setsockopt(
                    socket.IPPROTO_IP,
                    socket.IP_ADD_MEMBERSHIP,
                    struct.pack("4s4s", group, socket.inet_aton("0.0.0.0")),
                )
            else:
                sock.bind((host, self.address.port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise SourceError(
                f"{self.name}: cannot listen on udp {host or '*'}:{self.address.port}: {exc}"
            ) from exc
        self._sock = sock
        self._last_data_mono = time.monotonic()
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux doubles it
        if granted < self._receive_buffer and not self._buffer_warned:
            self._buffer_warned = True
            logger.warning(
                "%s: UDP receive buffer is %d KiB, not the %d KiB asked: bursts may be lost; "
                "raise it with `sysctl -w net.core.rmem_max=%d`",
                self.name, granted // 1024, self._receive_buffer // 1024, self._receive_buffer,
            )  # fmt: skip

    def readable(self) -> bool:
        """File-object protocol: this object is read from."""
        return True

    def seekable(self) -> bool:
        """File-object protocol: a live socket cannot seek."""
        return False

    def read(self, size: int = -1) -> bytes:
        """Return the TS bytes of all waiting datagrams (at least one), at most ``size``.

        A stall, an interrupt or a socket error ends the input (``b""``, which FFmpeg takes
        as the end of the stream) and is kept in :attr:`failure` for the source to raise:
        an exception raised inside FFmpeg's read callback would be printed and dropped.
        """
        sock = self._sock
        if sock is None:
            raise SourceError(f"{self.name}: udp reader is not open")
        limit = size if size > 0 else _MAX_DATAGRAM
        while not self._pending:
            if self.failure is not None:
                return b""
            if self._interrupted.is_set():
                return self._fail(SourceError(f"{self.name}: interrupted"))
            ready, _, _ = select.select([sock], [], [], _POLL_INTERVAL)
            if ready:
                try:
                    self._drain(sock, limit)
                except SourceError as exc:
                    return self._fail(exc)
            elif time.monotonic() - self._last_data_mono > self.timeout:
                return self._fail(
                    SourceStalled(
                        f"{self.name}: no MPEG-TS datagram on udp port {self.address.port} "
                        f"for {self.timeout:.1f} s"
                    )
                )
        data = bytes(self._pending[:limit])
        del self._pending[:limit]
        return data

    def _fail(self, exc: SourceError) -> bytes:
        self.failure = exc
        return b""

    def _drain(self, sock: socket.socket, limit: int) -> None:
        """Move waiting datagrams into the pending bytes, dropping those that are not TS."""
        view = memoryview(self._buffer)
        while len(self._pending) < limit:
            try:
                length = sock.recv_into(self._buffer)
            except BlockingIOError:
                break
            except OSError as exc:
                raise SourceError(f"{self.name}: udp receive failed: {exc}") from exc
            data = view[:length]
            whole = length > 0 and length % TS_PACKET == 0
            if not whole or bytes(data[::TS_PACKET]).count(TS_SYNC) != length // TS_PACKET:
                self.counters.rejected += 1
                self.counters.last_problem = f"non-MPEG-TS datagram of {length} bytes"
                continue
            self._pending += data
            self.bytes_received += length
            self._last_data_mono = time.monotonic()

    def interrupt(self) -> None:
        """Make a blocked :meth:`read` raise within one poll interval. Thread-safe."""
        self._interrupted.set()

    def close(self) -> None:
        """Close the socket; idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
