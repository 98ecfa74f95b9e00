"""The web view's caps on connections, and the counts that enforce them.

:class:`Limits` says what connections may take; :class:`Tally` keeps, for the connection
loop and the stream threads alike, the open connections by client address, the requests
being served and the counters that ``/stats`` shows.
"""

from __future__ import annotations

import enum
import ipaddress
import threading
from dataclasses import dataclass, fields
from typing import Literal

__all__ = ["Admission", "ConnectionCounts", "Counter", "Limits", "Tally", "address_key"]

#: The counters :meth:`Tally.add` adds to.
Counter = Literal["refused", "timed_out", "evicted", "stalled", "errors"]


@dataclass(frozen=True)
class Limits:
    """What connections may take (see :class:`~syncstream.processors.web.WebView`)."""

    #: Requests served at once (streams, page, stats, snapshots): 503 beyond.
    max_clients: int
    #: Connections open at once, also those still sending their request.
    max_connections: int
    #: Connections open at once from one address (an IPv6 /64 counts as one).
    max_per_address: int
    #: Seconds from the connection to the end of its request head.
    head_timeout: float
    #: Seconds an answer may make no progress.
    client_timeout: float


@dataclass(frozen=True)
class ConnectionCounts:
    """A snapshot of the counters; all but ``connections`` are totals since start."""

    #: Connections open now, also those still sending their request head.
    connections: int
    #: Request heads received whole.
    requests: int
    #: Connections answered 503 or closed at once: over a cap.
    refused: int
    #: Connections that sent no whole request head within ``head_timeout``.
    timed_out: int
    #: Connections closed before their head came, to make room within ``max_connections``.
    evicted: int
    #: Connections dropped after taking no data for ``client_timeout``.
    stalled: int
    #: Requests that failed on a bug (logged with a traceback).
    errors: int


class Admission(enum.Enum):
    """Whether a new connection may be opened."""

    OPEN = "open"
    #: ``max_per_address`` connections from its address are open: refuse it.
    ADDRESS_FULL = "address full"
    #: ``max_connections`` are open: make room, or refuse it.
    FULL = "full"


def address_key(host: str) -> str:
    """What a client address counts as for ``max_per_address``: the address itself, an
    IPv6 address's /64 (one subscriber's network), an IPv4-mapped address as IPv4."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Tally:
    """Open connections by address, requests being served and the counters; thread-safe.

    A connection is any hashable object; :meth:`close` may be called more than once.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._open: dict[object, str] = {}  # connection -> its address key
        self._per_key: dict[str, int] = {}
        self._serving: set[object] = set()
        self._counts = dict.fromkeys((f.name for f in fields(ConnectionCounts)), 0)

    def admission(self, key: str) -> Admission:
        """Whether a connection from ``key`` may be opened now."""
        with self._lock:
            if self._per_key.get(key, 0) >= self.limits.max_per_address:
                return Admission.ADDRESS_FULL
            if len(self._open) >= self.limits.max_connections:
                return Admission.FULL
            return Admission.OPEN

    def open(self, conn: object, key: str) -> None:
        """Count ``conn``, from ``key``, as open."""
        with self._lock:
            self._open[conn] = key
            self._per_key[key] = self._per_key.get(key, 0) + 1

    def close(self, conn: object) -> None:
        """Count ``conn`` as closed (and no longer served)."""
        with self._lock:
            key = self._open.pop(conn, None)
            if key is None:
                return
            left = self._per_key.pop(key) - 1
            if left:
                self._per_key[key] = left
            self._serving.discard(conn)

    def serve(self, conn: object) -> bool:
        """Count a request of ``conn``, and take a place among the ``max_clients`` served;
        False (counted as refused) when there is none."""
        with self._lock:
            self._counts["requests"] += 1
            if len(self._serving) >= self.limits.max_clients:
                self._counts["refused"] += 1
                return False
            self._serving.add(conn)
            return True

    def served(self, conn: object) -> None:
        """Give ``conn``'s place among those served back (its answer is out)."""
        with self._lock:
            self._serving.discard(conn)

    def add(self, counter: Counter) -> None:
        """One more of ``counter`` (a field of :class:`ConnectionCounts`)."""
        with self._lock:
            self._counts[counter] += 1

    def counts(self) -> ConnectionCounts:
        """A snapshot of the counters."""
        with self._lock:
            return ConnectionCounts(**{**self._counts, "connections": len(self._open)})
