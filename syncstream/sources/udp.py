"""UDP MPEG-TS input read by our own socket, handed to the demuxer as a file object.

FFmpeg's own ``udp://`` reader can only be interrupted by PyAV's read timeout, and a
container whose read was interrupted stays in error: every later read fails at once, so a
short gap in the stream would force a reopen and a wait for the next keyframe. Reading the
socket ourselves keeps the demuxer alive through gaps, lets ``interrupt()`` end a blocked
read at once, and lets us refuse datagrams that are not MPEG-TS before they reach FFmpeg.

The reader also sees the TS packets before FFmpeg does: it passes on only the packets of
the programme's PIDs (see :meth:`~syncstream.sources.mpegts.ProgramWatch.filter`), and
only datagrams from allowed senders, one sender at a time (see
:mod:`~syncstream.sources.udp_senders`); it ends the input when datagrams keep coming but
no frame is decoded (null packets only, PIDs outside the programme), and when the PAT or
PMT changes (a sender restarted with other PIDs or another codec), keeping the datagrams
from the change on for a new demuxer.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit

from ..errors import SourceChanged, SourceError, SourceStalled, UnsupportedSource
from ..logs import Throttle
from .base import SourceCounters
from .frame_ends import FrameEnds
from .mpegts import ProgramWatch
from .udp_senders import STAMP_SPACE, SenderGate, arrival_mono, enable_kernel_stamps

__all__ = ["UdpAddress", "UdpTsReader", "parse_udp_url"]

logger = logging.getLogger(__name__)
_throttle = Throttle(logger)

TS_PACKET = 188
TS_SYNC = 0x47
_MAX_DATAGRAM = 65536
_POLL_INTERVAL = 0.1
#: Datagrams read in one go at most, so that a flood of dropped ones cannot keep a read
#: from looking at its interrupt and timeouts.
_DRAIN_BATCH = 256
# Query keys ffmpeg users put on udp:// URLs. pkt_size only matters to senders; the others
# tune ffmpeg's reader, which this module replaces; buffer_size sets our receive buffer.
_ACCEPTED_QUERY = {"pkt_size", "buffer_size", "fifo_size", "overrun_nonfatal", "timeout", "reuse"}


def _shown(source: tuple[str, int]) -> str:
    """``192.0.2.7:5000`` or ``[2001:db8::7]:5000``."""
    host, port = source
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
    Datagrams from an address outside ``allowed_senders`` (empty: any), and those of a
    second sender of the programme, are dropped and counted in
    ``counters.foreign_datagrams`` (see :class:`~syncstream.sources.udp_senders.SenderGate`);
    TS packets on PIDs outside the programme are dropped and counted in
    ``counters.foreign_packets``. From :meth:`open` to the first valid datagram,
    ``counters.waiting_for`` says so (``"no data on udp port 9001"``). After ``timeout``
    seconds without a valid datagram, or without a decoded frame (the source sets
    :attr:`last_frame_mono`), it ends the input with ``SourceStalled``; after
    :meth:`interrupt` with ``SourceError``; when the PAT or a PMT changes (see
    :class:`~syncstream.sources.mpegts.ProgramWatch`) with ``SourceChanged``, once the data
    before the change is read, and :meth:`resume` hands the data from the change on to the
    next demuxer. The reason is kept in :attr:`failure`.
    """

    def __init__(
        self,
        address: UdpAddress,
        *,
        name: str,
        counters: SourceCounters,
        receive_buffer: int,
        timeout: float,
        allowed_senders: Sequence[str] = (),
        mark_frame_ends: bool = False,
    ) -> None:
        """``mark_frame_ends``: mark where each video frame of unknown length ends for the
        demuxer (see :mod:`~syncstream.sources.frame_ends`); for a demuxer that takes each
        PES packet as a frame, without FFmpeg's parser."""
        self.name = name
        self.address = address
        self.counters = counters
        self.timeout = timeout
        self._gate = SenderGate(allowed_senders)
        self._stamp_space = 0  # ancillary room for the kernel's receive stamps, once enabled
        self._receive_buffer = address.buffer_size or receive_buffer
        self._sock: socket.socket | None = None
        self._buffer = bytearray(_MAX_DATAGRAM)
        self._interrupted = threading.Event()
        self._pending = bytearray()
        self._last_data_mono = time.monotonic()
        #: When the demuxer last gave a frame (monotonic); the source keeps it current.
        self.last_frame_mono = time.monotonic()
        self._programs = ProgramWatch()
        self._frame_ends = FrameEnds(name) if mark_frame_ends else None
        self._change: SourceChanged | None = None
        self._held = bytearray()  # from the datagram that changed the tables on
        self.bytes_received = 0
        self._buffer_warned = False
        #: Why :meth:`read` ended the input, for the source to raise; None while it flows.
        self.failure: SourceError | None = None

    def open(self) -> None:
        """Bind the socket (and join the group for a multicast address)."""
        host = self.address.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:  # no descriptors left, say
            raise SourceError(f"{self.name}: cannot open a udp socket: {exc}") from exc
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
            self._stamp_space = STAMP_SPACE if enable_kernel_stamps(sock) else 0
        except OSError as exc:
            sock.close()
            raise SourceError(
                f"{self.name}: cannot listen on udp {host or '*'}:{self.address.port}: {exc}"
            ) from exc
        self._sock = sock
        self._last_data_mono = time.monotonic()
        self.counters.waiting_for = f"no data on udp port {self.address.port}"
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

        A stall (no datagram, or no frame, for ``timeout``), an interrupt, a change of the
        PAT or PMT or a socket error ends the input (``b""``, which FFmpeg takes as the
        end of the stream) and is kept in :attr:`failure` for the source to raise:
        an exception raised inside FFmpeg's read callback would be printed and dropped.
        """
        sock = self._sock
        if sock is None:
            raise SourceError(f"{self.name}: udp reader is not open")
        limit = size if size > 0 else _MAX_DATAGRAM
        if self.failure is None and time.monotonic() - self.last_frame_mono > self.timeout:
            return self._fail(self._no_frame())  # data the demuxer cannot make a frame of
        while not self._pending:
            if self.failure is not None:
                return b""
            if self._interrupted.is_set():
                return self._fail(SourceError(f"{self.name}: interrupted"))
            if self._change is not None:
                return self._fail(self._change)
            now = time.monotonic()
            if now - self._last_data_mono > self.timeout:
                return self._fail(
                    SourceStalled(
                        f"{self.name}: no MPEG-TS datagram on udp port {self.address.port} "
                        f"for {self.timeout:.1f} s"
                    )
                )
            if now - self.last_frame_mono > self.timeout:
                return self._fail(self._no_frame())  # null packets, PIDs outside the programme
            ready, _, _ = select.select([sock], [], [], _POLL_INTERVAL)
            if ready:
                try:
                    self._drain(sock, limit)
                except SourceError as exc:
                    return self._fail(exc)
        data = bytes(self._pending[:limit])
        del self._pending[:limit]
        return data

    def _fail(self, exc: SourceError) -> bytes:
        self.failure = exc
        return b""

    def _no_frame(self) -> SourceStalled:
        return SourceStalled(
            f"{self.name}: MPEG-TS data on udp port {self.address.port} but no "
            f"decodable frame for {self.timeout:.1f} s"
        )

    def watch(self, timeout: float) -> None:
        """End the input after ``timeout`` s without a datagram or a frame, from now on."""
        self.timeout = timeout
        self.last_frame_mono = time.monotonic()

    def resume(self) -> None:
        """After a ``SourceChanged``: hand the data from the change on to the next reader."""
        if not isinstance(self.failure, SourceChanged):
            return
        self._pending += self._held
        self._held.clear()
        self._change = self.failure = None

    def _drain(self, sock: socket.socket, limit: int) -> None:
        """Move waiting datagrams into the pending bytes, dropping those that are not TS,
        not from the programme's sender, and the packets that are not the programme's."""
        view = memoryview(self._buffer)
        buffers = [view]
        for _ in range(_DRAIN_BATCH):
            if len(self._pending) >= limit:
                break
            try:
                length, ancdata, _, address = sock.recvmsg_into(buffers, self._stamp_space)
            except BlockingIOError:
                break
            except OSError as exc:
                raise SourceError(f"{self.name}: udp receive failed: {exc}") from exc
            source = (str(address[0]), int(address[1]))
            if not self._gate.allows(source[0]):
                self._refuse(source)
                continue
            data = view[:length]
            whole = length > 0 and length % TS_PACKET == 0
            if not whole or bytes(data[::TS_PACKET]).count(TS_SYNC) != length // TS_PACKET:
                self.counters.rejected += 1
                self.counters.last_problem = f"non-MPEG-TS datagram of {length} bytes"
                if self.bytes_received == 0:
                    self.counters.waiting_for = (
                        f"no MPEG-TS data on udp port {self.address.port}: "
                        f"{self.counters.rejected} datagrams refused"
                    )
                continue
            now = time.monotonic()
            arrival = arrival_mono(ancdata, now)
            holder = self._gate.rival(source, arrival)
            if holder is not None and self._programs.carries(data):
                self._second_sender(source, holder)
                continue
            kept = self._programs.filter(data)
            former = self._gate.passed(source, arrival, kept.pat)
            if former is not None:
                logger.info(
                    "%s: udp port %d: %s sends the stream now (%s fell silent)",
                    self.name, self.address.port, _shown(source), _shown(former),
                )  # fmt: skip
            if kept.foreign:
                self._foreign(kept.foreign, source)
            change = kept.change
            if change is not None:
                self._change = SourceChanged(
                    f"{self.name}: the stream on udp port {self.address.port} changed "
                    f"({change}): reopening its demuxer"
                )
            (self._pending if change is None else self._held).extend(self._marked(kept.data))
            self.bytes_received += length
            self.counters.waiting_for = None
            self._last_data_mono = now
            if change is not None:
                break  # the datagrams after it wait in the socket for the new demuxer

    def _marked(self, data: bytes) -> bytes:
        """``data`` with the ends of its video frames marked, when that is on."""
        ends = self._frame_ends
        if ends is None:
            return data
        found, waited = ends.found, ends.waited
        data = ends.mark(data, self._programs.video_pids)
        counters = self.counters  # kept over reopens: add what this reader saw
        counters.frame_ends_found += ends.found - found
        counters.frame_ends_waited += ends.waited - waited
        return data

    def _refuse(self, source: tuple[str, int]) -> None:
        """Count and report a datagram from an address outside ``allowed_senders``."""
        counters = self.counters
        counters.foreign_datagrams += 1
        counters.last_problem = f"datagram from {source[0]} refused: not an allowed sender"
        if self.bytes_received == 0:
            counters.waiting_for = (
                f"no data from an allowed sender on udp port {self.address.port}: "
                f"{counters.foreign_datagrams} datagrams from others refused"
            )
        _throttle.warning(
            (self.name, "refused sender"),
            "%s: udp port %d: datagrams from %s refused, not in allowed_senders (%s); "
            "%d refused so far",
            self.name, self.address.port, source[0],
            ", ".join(str(n) for n in self._gate.networks), counters.foreign_datagrams,
        )  # fmt: skip

    def _second_sender(self, source: tuple[str, int], holder: tuple[str, int]) -> None:
        """Count and report a datagram of the programme from a second sender."""
        counters = self.counters
        counters.foreign_datagrams += 1
        counters.last_problem = f"a second sender, {_shown(source)}, on the port"
        _throttle.warning(
            (self.name, "second sender"),
            "%s: udp port %d: two senders share the port: %s sends the stream and %s "
            "sends on its PIDs too; the datagrams of %s are dropped (%d so far)",
            self.name, self.address.port, _shown(holder), _shown(source), _shown(source),
            counters.foreign_datagrams,
        )  # fmt: skip

    def _foreign(self, packets: int, source: tuple[str, int]) -> None:
        """Count and report TS packets dropped for their PID."""
        counters = self.counters
        counters.foreign_packets += packets
        counters.last_problem = f"TS packets on PIDs outside the programme from {_shown(source)}"
        _throttle.warning(
            (self.name, "foreign PIDs"),
            "%s: udp port %d: TS packets on PIDs outside its programme dropped, the last "
            "from %s (%d so far)",
            self.name, self.address.port, _shown(source), counters.foreign_packets,
        )  # fmt: skip

    def interrupt(self) -> None:
        """Make a blocked :meth:`read` raise within one poll interval. Thread-safe."""
        self._interrupted.set()

    def close(self) -> None:
        """Close the socket; idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
