"""Which senders a UDP port takes: an allow-list of addresses, and one sender at a time.

Anyone who can reach a UDP port can send to it. ``allowed_senders`` (addresses or
networks) refuses datagrams from every other address before they are read. Among the
senders it takes, the first whose PAT the reader reads holds the port. Another source
(address and port) that sends packets on the programme's PIDs while the holder still
sends is a second sender (two cameras set to one port, a test sender left running): its
datagrams would mix its pictures into the camera's, so they are dropped. Once the holder
has been silent for twice its longest gap between datagrams (0.1 s at least, 1 s at most),
the port is free again and the next sender whose PAT arrives holds it, as when a camera
restarts (from a new source port).

Datagram arrival times are the kernel's receive stamps where Linux gives them, so that
datagrams read in a burst after the reader was busy keep the gaps they arrived with.
"""

from __future__ import annotations

import ipaddress
import platform
import socket
import struct
import sys
import time
from collections.abc import Iterable, Sequence

__all__ = [
    "STAMP_SPACE",
    "Network",
    "SenderGate",
    "arrival_mono",
    "enable_kernel_stamps",
    "parse_networks",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Source = tuple[str, int]  # (address, port) of a datagram's sender

#: Shortest and longest silence of the holder before another sender may take the port (s).
MIN_HANDOVER = 0.1
MAX_HANDOVER = 1.0
_MAX_VERDICTS = 1024  # source addresses whose allow-list verdict is remembered

#: Linux ``SO_TIMESTAMPNS`` (not exported by the socket module): the kernel stamps each
#: datagram with its receive time. The value is 35 except on parisc and sparc.
_SO_TIMESTAMPNS = 35
_TIMESTAMPS_SUPPORTED = sys.platform == "linux" and not platform.machine().startswith(
    ("parisc", "sparc")
)
_TIMESPEC = struct.Struct("@ll")  # the stamp: struct timespec
_MAX_STAMP_AGE_NS = 1_000_000_000  # an older stamp (a wall-clock step) is not believed
#: Ancillary buffer size for ``recvmsg`` to receive the stamp (0 where there is none).
STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if _TIMESTAMPS_SUPPORTED else 0


def enable_kernel_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp each datagram of ``sock`` with its receive time."""
    if not _TIMESTAMPS_SUPPORTED:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def arrival_mono(ancdata: list[tuple[int, int, bytes]], now_mono: float) -> float:
    """When a datagram arrived, on the monotonic clock: its kernel stamp if any, else now."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds: int
            nanoseconds: int
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            # The stamp is on the wall clock: its age maps it onto the monotonic clock.
            age_ns = time.time_ns() - (seconds * 1_000_000_000 + nanoseconds)
            return now_mono - min(max(age_ns, 0), _MAX_STAMP_AGE_NS) * 1e-9
    return now_mono


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses (``192.0.2.7``, ``::1``) or networks (``10.1.0.0/16``) as networks.

    Raises ``ValueError`` naming the value that is neither.
    """
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address or network (such as 192.0.2.7 or 10.1.0.0/16)"
            ) from None
    return tuple(networks)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # an IPv4 sender seen by a dual-stack socket
    return address


class SenderGate:
    """The allow-list of a UDP port and its current sender; used by one reader thread."""

    def __init__(self, allowed: Sequence[str] = ()) -> None:
        #: Networks datagrams are taken from; empty: from anywhere.
        self.networks = parse_networks(allowed)
        self._verdicts: dict[str, bool] = {}
        #: The source (address, port) that holds the port, None before a PAT was read.
        self.holder: Source | None = None
        self._last_mono = 0.0  # the holder's last datagram (arrival time)
        self._longest_gap = 0.0  # between two of the holder's datagrams

    def allows(self, host: str) -> bool:
        """Whether a datagram from address ``host`` may be read."""
        if not self.networks:
            return True
        verdict = self._verdicts.get(host)
        if verdict is None:
            address = _address(host)
            verdict = address is not None and any(address in net for net in self.networks)
            if len(self._verdicts) >= _MAX_VERDICTS:  # many spoofed addresses: start over
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    @property
    def handover(self) -> float:
        """How long the holder must be silent before another sender may take the port (s)."""
        return min(MAX_HANDOVER, max(MIN_HANDOVER, 2 * self._longest_gap))

    def rival(self, source: Source, arrival: float) -> Source | None:
        """The holder, when ``source`` is another sender and the holder still sends."""
        holder = self.holder
        if holder is None or source == holder or arrival - self._last_mono > self.handover:
            return None
        return holder

    def passed(self, source: Source, arrival: float, pat: bool) -> Source | None:
        """Note a datagram read from ``source``; ``pat``: it carried the current PAT.

        The first sender of a PAT takes the port; another takes it over when the holder
        has been silent for :attr:`handover`. Returns the former holder on a takeover.
        """
        holder = self.holder
        if source == holder:
            self._longest_gap = max(self._longest_gap, arrival - self._last_mono)
            self._last_mono = arrival
            return None
        if not pat or (holder is not None and arrival - self._last_mono <= self.handover):
            return None
        self.holder, self._last_mono, self._longest_gap = source, arrival, 0.0
        return holder
