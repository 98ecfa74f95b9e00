"""The clients watching a web view's streams, for its stats: the same for the view's own
server and for its ASGI app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .feed import JpegFeed, StreamCounters

__all__ = ["Watchers", "WebClientStats"]


@dataclass(frozen=True)
class WebClientStats:
    """One client watching a stream."""

    #: The client's ``host:port``.
    address: str
    #: The output it watches (``camera/NAME`` for a camera).
    output: str
    #: Pictures sent to it.
    sent: int
    #: Pictures it missed because it was still receiving an earlier one.
    dropped: int
    #: Seconds since it connected.
    connected_for: float


class _Client:
    """One client watching a stream: its address, feed and counters."""

    def __init__(self, address: str, feed: JpegFeed) -> None:
        self.address = address
        self.feed = feed
        self.counters = StreamCounters()
        self.since_mono = time.monotonic()


class Watchers:
    """The clients watching now, and the totals of those gone; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: set[_Client] = set()
        self._sent = self._dropped = 0

    @contextmanager
    def watching(self, address: str, feed: JpegFeed) -> Iterator[StreamCounters]:
        """Count client ``address`` as watching ``feed`` while the block runs; its
        counters are added to the totals when it ends."""
        client = _Client(address, feed)
        with self._lock:
            self._clients.add(client)
        try:
            yield client.counters
        finally:
            with self._lock:
                self._clients.discard(client)
                self._sent += client.counters.sent
                self._dropped += client.counters.dropped

    def snapshot(self) -> tuple[tuple[WebClientStats, ...], int, int]:
        """The clients watching now, and the pictures sent and dropped in all."""
        now = time.monotonic()
        with self._lock:
            clients = tuple(
                WebClientStats(
                    address=c.address,
                    output=c.feed.name,
                    sent=c.counters.sent,
                    dropped=c.counters.dropped_by(c.feed.newest_number()),
                    connected_for=now - c.since_mono,
                )
                for c in self._clients
            )
            sent, dropped = self._sent, self._dropped
        return (
            clients,
            sent + sum(c.sent for c in clients),
            dropped + sum(c.dropped for c in clients),
        )
