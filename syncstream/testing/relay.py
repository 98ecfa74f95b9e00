"""A user-space UDP relay that delays, jitters and drops datagrams, to impair one camera's path.

Tests and benchmarks need one camera to be slower, more jittery or lossier than the others,
and the kernel's ``netem`` qdisc is not available (no root, containers, CI). So the sender is
pointed at an :class:`ImpairmentRelay` on loopback, which holds each datagram for the
configured delay and then forwards it to the real receiver::

    with ImpairmentRelay("udp://127.0.0.1:9001", delay=0.100, jitter=0.010, seed=1) as relay:
        start_camera(destination=relay.url)  # the relay forwards to udp://127.0.0.1:9001
        ...
        print(relay.stats)

How the impairment is drawn, and why:

* **Jitter is drawn per burst.** An encoder splits a video frame into many datagrams sent back
  to back; on a real path they travel together, so the jitter shows up per frame. Datagrams
  arriving less than ``burst_gap`` seconds after the previous one share its draw.
* **Loss is drawn per datagram**, from its own random generator, so with a ``seed`` the set of
  dropped datagrams (by arrival index) does not depend on timing.
* **Order is kept by default**, like netem without reordering: a datagram is never sent before
  the one received before it. With ``keep_order=False`` each datagram leaves at its own due
  time, so a large jitter reorders them.

A datagram's arrival time is when the kernel received it (Linux ``SO_TIMESTAMPNS``), mapped to
:func:`time.monotonic`, so a relay thread that is late to read -- a busy CPU, the GIL held by
a decoder -- neither splits a burst nor shortens the delay. Where the stamp is not available
the time of reading is used. Datagrams still queued when the relay is closed are discarded
and counted nowhere.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType

from ..errors import ConfigError, StreamClosed, SyncStreamError
from ..sources.udp_senders import STAMP_SPACE, arrival_mono, enable_kernel_stamps
from ..urls import parse_udp_destination

__all__ = ["ImpairmentRelay", "RelayStats"]

logger = logging.getLogger(__name__)

#: Largest datagram read (the largest UDP payload is 65507 bytes over IPv4).
_MAX_DATAGRAM = 65535
#: Receive buffer asked for, so a burst of video is not dropped before the relay reads it.
#: Linux caps it at ``net.core.rmem_max``.
_RCVBUF_BYTES = 4 * 1024 * 1024
#: Datagrams read in one go before due ones are sent, so a flood cannot starve the sending.
_RECV_BATCH = 256
#: How long a send may wait for room in the socket buffer before it counts as an error.
_SEND_TIMEOUT = 1.0
_JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class RelayStats:
    """A consistent snapshot of a relay's counters (datagrams since start)."""

    #: Datagrams read from the listen socket.
    received: int
    #: Datagrams handed to the kernel for the target.
    forwarded: int
    #: Datagrams dropped by the ``loss`` draw.
    lost: int
    #: Datagrams dropped because ``max_queue`` datagrams were already held.
    overflowed: int
    #: Errors reported while sending, e.g. ``ConnectionRefusedError`` when nobody listens on
    #: the target (the kernel reports the ICMP error of an earlier datagram on a later send).
    send_errors: int = 0
    #: Datagrams forwarded after one that arrived later than them (``keep_order=False``).
    reordered: int = 0


def _parse_target(target: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(target, str):
        return parse_udp_destination(target, "target")
    host, port = target
    if not host or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"target: expected a host and a port in 1..65535, got {target!r}")
    return host, port


def _check_seconds(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}: must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _udp_address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """Resolve ``host:port`` to the first UDP address (family, (ip, port))."""
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


class ImpairmentRelay:
    """Relays UDP datagrams from ``url`` to ``target`` with delay, jitter and loss.

    ``delay`` and ``jitter`` are seconds: each burst gets a delay of ``delay`` plus a uniform
    draw in ``[-jitter, +jitter]``, clamped at 0. ``loss`` is the probability (0..1) that a
    datagram is dropped. ``seed`` makes the draws reproducible. At most ``max_queue``
    datagrams are held; newer ones are dropped and counted as ``overflowed``. The relay listens
    on ``listen_host:listen_port`` (0: a free port, known after :meth:`start`).
    """

    def __init__(
        self,
        target: str | tuple[str, int],
        *,
        delay: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        keep_order: bool = True,
        burst_gap: float = 0.002,
        seed: int | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        max_queue: int = 10000,
        name: str | None = None,
    ) -> None:
        self.target = _parse_target(target)
        self.delay = _check_seconds("delay", delay)
        self.jitter = _check_seconds("jitter", jitter)
        self.burst_gap = _check_seconds("burst_gap", burst_gap)
        if not 0.0 <= loss <= 1.0:
            raise ConfigError(f"loss: must be a probability in [0, 1], got {loss!r}")
        self.loss = float(loss)
        if not 0 <= listen_port < 65536:
            raise ConfigError(f"listen_port: must be in 0..65535, got {listen_port!r}")
        if max_queue < 1:
            raise ConfigError(f"max_queue: must be >= 1, got {max_queue!r}")
        self.keep_order = keep_order
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.max_queue = max_queue
        self.name = name if name is not None else f"{self.target[0]}:{self.target[1]}"
        # Two generators, so the loss pattern does not depend on where bursts begin.
        seeder = random.Random(seed)
        self._loss_rng = random.Random(seeder.getrandbits(64))
        self._jitter_rng = random.Random(seeder.getrandbits(64))

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._port: int | None = listen_port or None
        self._listen_sock: socket.socket | None = None
        self._send_sock: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._kernel_stamps = False
        # Worker state: a heap of (due_mono, arrival index, payload).
        self._queue: list[tuple[float, int, bytes]] = []
        self._last_arrival_mono: float | None = None
        self._last_due_mono = 0.0
        self._burst_jitter = 0.0
        self._received = 0
        self._forwarded = 0
        self._lost = 0
        self._overflowed = 0
        self._send_errors = 0
        self._reordered = 0
        self._newest_sent = 0  # the highest arrival index forwarded so far

    # -- life cycle -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the relay listens on; known once :meth:`start` has bound it."""
        if self._port is None:
            raise SyncStreamError(f"{self.name}: relay not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``udp://host:port`` of the listen socket: give it to the sender as its destination."""
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"udp://{host}:{self.port}"

    def start(self) -> ImpairmentRelay:
        """Bind the sockets and start the relay thread; idempotent. A closed relay cannot restart.

        Raises ``StreamClosed`` after :meth:`close`, ``SyncStreamError`` when a socket cannot
        be bound or the target cannot be resolved.
        """
        with self._lock:
            if self._closed:
                raise StreamClosed(f"{self.name}: relay is closed and cannot restart")
            if self._thread is not None:
                return self
            try:
                self._open_sockets()
            except OSError as exc:
                self._close_sockets()
                self._port = self.listen_port or None
                raise SyncStreamError(f"{self.name}: cannot open the relay: {exc}") from exc
            self._thread = threading.Thread(
                target=self._run, name=f"syncstream-relay:{self.name}", daemon=True
            )
            self._thread.start()
        logger.debug(
            "%s: relaying %s -> %s:%d (delay %.3f s, jitter %.3f s, loss %.3f)",
            self.name,
            self.url,
            self.target[0],
            self.target[1],
            self.delay,
            self.jitter,
            self.loss,
        )
        return self

    def _open_sockets(self) -> None:
        target_family, target_address = _udp_address(*self.target)
        family, address = _udp_address(self.listen_host, self.listen_port)
        listen = self._listen_sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            listen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
        except OSError as exc:
            logger.debug("%s: cannot set SO_RCVBUF: %s", self.name, exc)
        listen.bind(address)
        listen.setblocking(False)
        self._kernel_stamps = enable_kernel_stamps(listen)
        if not self._kernel_stamps:
            logger.debug("%s: no kernel receive timestamps", self.name)
        self._port = int(listen.getsockname()[1])
        # A connected send socket: unlike an unconnected one, it reports ICMP errors
        # (nobody listening on the target), which are counted as send_errors.
        send = self._send_sock = socket.socket(target_family, socket.SOCK_DGRAM)
        send.settimeout(_SEND_TIMEOUT)
        send.connect(target_address)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)

    def _close_sockets(self) -> None:
        for sock in (self._listen_sock, self._send_sock, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop the relay thread, join it (within ``timeout`` s) and close the sockets.

        Idempotent. Datagrams still queued are discarded. If the relay thread crashed, its
        error is raised here as ``SyncStreamError`` (once).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            thread = self._thread
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"\0")
                except OSError as exc:  # the buffer is full: a wake-up is pending anyway
                    logger.debug("%s: wake-up not sent: %s", self.name, exc)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s: relay thread did not stop within %.1f s", self.name, timeout)
        self._close_sockets()
        logger.debug("%s: relay closed; %s", self.name, self.stats)
        error, self._error = self._error, None
        if error is not None:
            raise SyncStreamError(f"{self.name}: relay thread failed: {error!r}") from error

    def stop(self) -> None:
        """Same as :meth:`close`."""
        self.close()

    def __enter__(self) -> ImpairmentRelay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def stats(self) -> RelayStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return RelayStats(
                received=self._received,
                forwarded=self._forwarded,
                lost=self._lost,
                overflowed=self._overflowed,
                send_errors=self._send_errors,
                reordered=self._reordered,
            )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._thread else "new"
        return f"ImpairmentRelay({self.name!r}, port={self._port}, state={state})"

    # -- relay thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._relay_loop()
        except BaseException as exc:  # a bug must reach the owner, not vanish with the thread
            logger.exception("%s: relay thread crashed", self.name)
            with self._lock:
                self._error = exc

    def _relay_loop(self) -> None:
        listen, wake = self._listen_sock, self._wake_r
        assert listen is not None and wake is not None
        with selectors.DefaultSelector() as selector:
            selector.register(listen, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while not self._stop.is_set():
                timeout = None
                if self._queue:
                    timeout = max(0.0, self._queue[0][0] - time.monotonic())
                for key, _ in selector.select(timeout):
                    if key.fileobj is listen:
                        self._receive(listen)
                self._send_due()

    def _receive(self, listen: socket.socket) -> None:
        """Read the datagrams waiting (at most a batch) and queue or drop each."""
        for _ in range(_RECV_BATCH):
            try:
                if self._kernel_stamps:
                    payload, ancdata, _, _ = listen.recvmsg(_MAX_DATAGRAM, STAMP_SPACE)
                else:
                    payload, ancdata = listen.recv(_MAX_DATAGRAM), []
            except BlockingIOError:
                return
            arrived_mono = arrival_mono(ancdata, time.monotonic())
            last = self._last_arrival_mono
            if last is None or arrived_mono - last >= self.burst_gap:
                self._burst_jitter = (
                    self._jitter_rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
                )
            self._last_arrival_mono = arrived_mono
            lost = self.loss > 0 and self._loss_rng.random() < self.loss
            with self._lock:
                self._received += 1
                if lost:
                    self._lost += 1
                    continue
                if len(self._queue) >= self.max_queue:
                    self._overflowed += 1
                    continue
            due_mono = arrived_mono + max(0.0, self.delay + self._burst_jitter)
            if self.keep_order:
                due_mono = max(due_mono, self._last_due_mono)
                self._last_due_mono = due_mono
            # The arrival index breaks ties, so equal due times keep arrival order.
            heapq.heappush(self._queue, (due_mono, self._received, payload))

    def _send_due(self) -> None:
        """Send every queued datagram whose due time has come, in due-time order."""
        send = self._send_sock
        assert send is not None
        now_mono = time.monotonic()
        while self._queue and self._queue[0][0] <= now_mono:
            _, index, payload = heapq.heappop(self._queue)
            overtaken = index < self._newest_sent
            self._newest_sent = max(self._newest_sent, index)
            sent = errors = 0
            for _attempt in range(2):
                try:
                    send.send(payload)
                    sent = 1
                    break
                except ConnectionRefusedError as exc:
                    # Nobody listens on the target. The kernel reports the ICMP error of an
                    # earlier datagram, and this one was not sent: try it once more.
                    logger.debug("%s: target refused a datagram: %s", self.name, exc)
                    errors += 1
                except OSError as exc:
                    logger.debug("%s: send to the target failed: %s", self.name, exc)
                    errors += 1
                    break
            with self._lock:
                self._forwarded += sent
                self._send_errors += errors
                self._reordered += overtaken
