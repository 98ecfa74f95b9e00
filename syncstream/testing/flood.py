"""A UDP flood of MPEG-TS lookalikes, to test a reader's port under load.

:func:`random_ts_datagrams` makes datagrams of TS packets that pass every check short of
the program tables: a sync byte, a random PID, payload only, a random continuity
counter and payload-start flag, and a PES header where that flag is set (a misdirected
sender's video, a scan). :class:`UdpFlood` sends them at a steady rate from its own
thread and socket, optionally bound to a given source address (any of 127.0.0.0/8 on
Linux loopback), until stopped.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType

import numpy as np

from ..errors import ConfigError, StreamClosed

__all__ = ["UdpFlood", "random_ts_datagrams"]

TS_PACKET = 188
_TICK = 0.01  # the flood sends its datagrams in batches this far apart (s)


def random_ts_datagrams(count: int, *, packets: int = 7, seed: int = 0) -> list[bytes]:
    """``count`` datagrams of ``packets`` TS packets each, on random PIDs (see the module)."""
    rng = np.random.default_rng(seed)
    total = count * packets
    data = rng.integers(0, 256, size=(total, TS_PACKET), dtype=np.uint8)
    pids = rng.integers(0, 0x2000, size=total)
    starts = rng.integers(0, 2, size=total).astype(bool)
    data[:, 0] = 0x47
    data[:, 1] = (pids >> 8) | np.where(starts, 0x40, 0)
    data[:, 2] = pids & 0xFF
    data[:, 3] = 0x10 | rng.integers(0, 16, size=total)
    data[starts, 4:8] = [0, 0, 1, 0xE0]  # PES start code, a video stream id ...
    data[starts, 7] |= rng.integers(0, 16, size=int(starts.sum()), dtype=np.uint8)
    data[starts, 8:13] = [0, 0, 0x80, 0x80, 5]  # ... no length, a PTS
    return [row.tobytes() for row in data.reshape(count, packets * TS_PACKET)]


class UdpFlood:
    """Sends ``rate`` datagrams a second to ``(host, port)``, cycling through
    ``datagrams`` (default: 2000 of :func:`random_ts_datagrams`), from ``source``
    (address, port; default: any) until :meth:`stop`. :attr:`sent` counts them.

    >>> with UdpFlood(9001, rate=1000):  # doctest: +SKIP
    ...     ...
    """

    def __init__(
        self,
        port: int,
        *,
        rate: float = 1000.0,
        host: str = "127.0.0.1",
        source: tuple[str, int] | None = None,
        datagrams: Sequence[bytes] | None = None,
        seed: int = 0,
    ) -> None:
        if not 0 < rate <= 1_000_000:
            raise ConfigError(f"rate must be in (0, 1e6] datagrams per second, got {rate!r}")
        self.target = (host, port)
        self.rate = rate
        self.source = source
        self.datagrams = list(datagrams) if datagrams else random_ts_datagrams(2000, seed=seed)
        #: Datagrams sent so far.
        self.sent = 0
        #: Sends that failed (nobody listened: the kernel reports its ICMP error on a later
        #: send; or the socket buffer was full). The flood goes on.
        self.send_errors = 0
        #: The (address, port) datagrams are sent from, once started.
        self.address: tuple[str, int] | None = None
        self.name = f"udp-flood:{port}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._closed = False

    def start(self) -> UdpFlood:
        """Bind the socket and start sending (idempotent while running)."""
        if self._closed:
            raise StreamClosed(f"{self.name}: the flood was stopped and cannot restart")
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.source is not None:
                sock.bind(self.source)
            sock.connect(self.target)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"{self.name}: cannot send from {self.source}: {exc}") from exc
        host, port = sock.getsockname()[:2]
        self.address = (str(host), int(port))
        self._sock = sock
        self._thread = threading.Thread(target=self._run, args=(sock,), name=self.name)
        self._thread.start()
        return self

    def _run(self, sock: socket.socket) -> None:
        per_tick = self.rate * _TICK
        due = 0.0
        next_mono = time.monotonic()
        count = len(self.datagrams)
        while not self._stop.is_set():
            due += per_tick
            while due >= 1:
                try:
                    sock.send(self.datagrams[self.sent % count])
                except OSError:
                    self.send_errors += 1
                self.sent += 1
                due -= 1
            next_mono += _TICK
            delay = next_mono - time.monotonic()
            if delay < -1.0:  # fell far behind (a stalled machine): no catch-up burst
                next_mono = time.monotonic()
            elif delay > 0:
                self._stop.wait(delay)

    def stop(self) -> None:
        """Stop sending, join the thread and close the socket; idempotent."""
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> UdpFlood:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
