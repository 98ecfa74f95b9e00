"""ConnectionLoop: one thread accepts every connection of the web view and carries every
short exchange, so that slow or hostile clients cost memory, never threads.

Connections are non-blocking and owned by one selector thread. It accepts them, reads
their request heads as the bytes come and writes each answer as fast as its client takes
it; a client that drips its request, or reads its answer slowly, holds a buffer and a file
descriptor, and nobody waits for it. The bounds (:class:`~.limits.Limits`):

- the whole request head must arrive within ``head_timeout`` of the connection, however
  it is dripped: else 408 and closed (counted in ``timed_out``);
- an answer must make progress every ``client_timeout``: else closed (``stalled``);
- at most ``max_per_address`` connections per client address (an IPv6 /64 counts as one
  address): more are answered 503 if the answer fits at once, and closed (``refused``);
- at most ``max_connections`` in all: a new connection beyond them takes the place of the
  connection that has waited longest for its head (408, ``evicted``), so connections that
  send nothing cannot lock out those that do; only when no connection waits for its head
  is the new one refused;
- at most ``max_clients`` requests served at once, streams included: 503 beyond.

Answers that take work (the stats as JSON, a snapshot's JPEG) are computed by two worker
threads. A stream, which lasts, runs on a thread of its own with a blocking socket: at
most ``max_clients`` of them (see :mod:`~syncstream.processors.web.answers`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from ...logs import Throttle
from .answers import Answer, AnswerThreads, Deferred, Handler, Streamed, log_stalled
from .exchange import Conn, State, answer_at_once
from .http import HttpError, Request, host_port, parse_head, text_response
from .limits import Admission, ConnectionCounts, Limits, Tally, address_key

__all__ = ["Answer", "ConnectionLoop", "Deferred", "Handler", "Streamed"]

logger = logging.getLogger(__name__)

_ACCEPT_BATCH = 64  # connections accepted per wake-up, so reading goes on during a flood
_ACCEPT_PAUSE = 0.1  # s without accepting once the process is out of file descriptors
_RECV_BYTES = 4096
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ConnectionLoop:
    """Serves ``listener``'s connections with ``handler`` within ``limits``.

    ``name`` (the view's ``host:port``) names the threads and the log messages; ``tally``
    counts the connections and requests (one of its own by default; the view shares its
    own with its ASGI app). :meth:`start` starts the loop and worker threads;
    :meth:`close` ends every connection and joins them. The listener stays the caller's
    to close.
    """

    def __init__(
        self,
        listener: socket.socket,
        handler: Handler,
        limits: Limits,
        name: str,
        tally: Tally | None = None,
    ) -> None:
        self.name = name
        self.limits = limits
        self._listener = listener
        self._handler = handler
        self._throttle = Throttle(logger)
        self._tally = tally if tally is not None else Tally(limits)
        self._lock = threading.Lock()
        self._closed = False
        # the loop thread's alone:
        self._owned: set[Conn] = set()  # connections it serves (all but streams)
        self._heads: dict[Conn, None] = {}  # those reading their head, oldest first
        # from the workers to the loop thread:
        self._answers: deque[tuple[Conn, bytes]] = deque()
        self._threads = AnswerThreads[Conn](name, limits, self._tally, self._deliver)
        self._selector: selectors.BaseSelector  # made by start()
        self._wake_pair: tuple[socket.socket, socket.socket] | None = None
        self._loop_thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread and the workers."""
        self._selector = selectors.DefaultSelector()  # select() fails on fds over 1023
        self._wake_pair = socket.socketpair()
        for sock in self._wake_pair:
            sock.setblocking(False)
        self._listener.setblocking(False)
        port = self.name.rpartition(":")[2]
        self._loop_thread = threading.Thread(
            target=self._run, name=f"syncstream-web:{port}", daemon=True
        )
        self._loop_thread.start()
        self._threads.start()

    def close(self, timeout: float) -> None:
        """End every connection and stream, join the threads (``timeout`` s each)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        loop = self._loop_thread
        if loop is not None and loop is not threading.current_thread():
            loop.join(timeout)  # it closes the connections it owns, and starts no stream
            if loop.is_alive():
                logger.warning("web view %s: thread %s still running", self.name, loop.name)
        self._threads.close(timeout)
        for sock in self._wake_pair or ():
            sock.close()

    def counts(self) -> ConnectionCounts:
        """A snapshot of the counters."""
        return self._tally.counts()

    def _deliver(self, conn: Conn, data: bytes) -> None:
        """A worker's answer for ``conn``: the loop thread sends it."""
        self._answers.append((conn, data))
        self._wake()

    def _wake(self) -> None:
        if self._wake_pair is not None:
            # a full buffer means a wake-up is pending anyway
            with contextlib.suppress(OSError):
                self._wake_pair[1].send(b"x")

    # -- the loop thread --------------------------------------------------------------

    def _run(self) -> None:
        assert self._wake_pair is not None
        wake = self._wake_pair[0]
        selector = self._selector
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        paused_until: float | None = None
        try:
            while not self._closed:
                deadline = min((c.deadline for c in self._owned), default=math.inf)
                if paused_until is not None:
                    deadline = min(deadline, paused_until)
                timeout = None if deadline == math.inf else max(0, deadline - time.monotonic())
                for key, _ in selector.select(timeout):
                    if key.fileobj is wake:
                        self._drain_wake(wake)
                    elif key.fileobj is self._listener:
                        if not self._accept():
                            selector.unregister(self._listener)
                            paused_until = time.monotonic() + _ACCEPT_PAUSE
                    else:
                        self._guarded(key.data, self._ready)
                while self._answers:
                    conn, data = self._answers.popleft()
                    if conn in self._owned:
                        self._guarded(conn, partial(self._send, data=data))
                now = time.monotonic()
                for conn in [c for c in self._owned if c.deadline <= now]:
                    self._guarded(conn, self._expire)
                if paused_until is not None and now >= paused_until:
                    selector.register(self._listener, selectors.EVENT_READ)
                    paused_until = None
        except Exception:  # a bug: say so loudly; close() still ends every connection
            logger.exception("web view %s: the connection loop failed; not serving", self.name)
            self._tally.add("errors")
        finally:
            for conn in list(self._owned):
                self._forget(conn)
            selector.close()

    @staticmethod
    def _drain_wake(wake: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError):
            wake.recv(4096)  # what is left wakes the next select() at once

    def _guarded(self, conn: Conn, step: Callable[[Conn], None]) -> None:
        """Run ``step``; a bug closes that connection (logged, counted), not the loop."""
        try:
            step(conn)
        except Exception:
            logger.exception("web view %s: client %s: request failed", self.name, conn.address)
            self._tally.add("errors")
            if conn in self._owned:
                self._forget(conn)

    def _accept(self) -> bool:
        """Accept what waits; False when the process is out of file descriptors."""
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, peer = self._listener.accept()
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:  # the client gave up already
                    continue
                if self._evict("out of file descriptors"):
                    continue
                self._throttle.warning(
                    ("accept", self.name),
                    "web view %s: accept failed: %s; not accepting for %.1f s",
                    self.name,
                    exc,
                    _ACCEPT_PAUSE,
                )
                return False
            self._admit(sock, host_port(str(peer[0]), int(peer[1])), address_key(str(peer[0])))
        return True

    def _admit(self, sock: socket.socket, address: str, key: str) -> None:
        limits = self.limits
        admission = self._tally.admission(key)
        if admission is Admission.ADDRESS_FULL:
            self._refuse(sock, address, f"{limits.max_per_address} connections from {key} open")
            return
        full = f"{limits.max_connections} connections open"
        if admission is Admission.FULL and not self._evict(full):
            self._refuse(sock, address, full)
            return
        conn = Conn(sock, address, time.monotonic() + limits.head_timeout, self.name)
        self._tally.open(conn, key)
        sock.setblocking(False)
        self._owned.add(conn)
        self._heads[conn] = None
        self._selector.register(sock, selectors.EVENT_READ, conn)

    def _refuse(self, sock: socket.socket, address: str, why: str) -> None:
        self._tally.add("refused")
        self._throttle.warning(
            ("refused", why), "web view %s: %s refused: %s", self.name, address, why
        )
        answer_at_once(sock, text_response(503, "too many connections", "Retry-After: 5"))

    def _evict(self, why: str) -> bool:
        """Close the connection that has waited longest for its head; False if none waits."""
        if not self._heads:
            return False
        conn = next(iter(self._heads))
        self._tally.add("evicted")
        self._throttle.warning(
            ("evicted", self.name),
            "web view %s: %s closed before its request came: %s",
            self.name,
            conn.address,
            why,
        )
        self._forget(conn, text_response(408, "closed to make room for others"))
        return True

    def _forget(self, conn: Conn, answer: bytes | None = None) -> None:
        """Close a connection the loop owns (after trying ``answer`` at once)."""
        # not registered while a worker computes its answer
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        self._owned.discard(conn)
        self._heads.pop(conn, None)
        if answer is None:
            conn.sock.close()
        else:
            answer_at_once(conn.sock, answer)
        self._tally.close(conn)

    def _ready(self, conn: Conn) -> None:
        if conn not in self._owned:  # closed earlier in this round (evicted)
            return
        if conn.state is State.HEAD:
            self._read_head(conn)
        elif conn.state is State.WRITE:
            self._write(conn)
        elif conn.state is State.LINGER and conn.drain():
            self._forget(conn)

    def _read_head(self, conn: Conn) -> None:
        chunk = conn.receive(_RECV_BYTES)
        if chunk is None:
            return
        if not chunk:  # it left (or the connection broke) before sending a whole request
            self._forget(conn)
            return
        conn.buffer += chunk
        try:
            request = parse_head(conn.buffer)
        except HttpError as exc:
            del self._heads[conn]
            self._send(conn, text_response(exc.status, exc.message, *exc.headers))
            return
        if request is not None:
            del self._heads[conn]
            conn.buffer = bytearray()
            self._dispatch(conn, request)

    def _dispatch(self, conn: Conn, request: Request) -> None:
        if not self._tally.serve(conn):
            why = f"{self.limits.max_clients} requests served already"
            self._throttle.warning(
                ("busy", self.name), "web view %s: %s refused: %s", self.name, conn.address, why
            )
            self._send(conn, text_response(503, "too many clients", "Retry-After: 5"))
            return
        answer: Answer
        try:
            answer = self._handler(request, conn.address)
        except HttpError as exc:
            answer = text_response(exc.status, exc.message, *exc.headers)
        except Exception:
            logger.exception("web view %s: client %s: request failed", self.name, conn.address)
            self._tally.add("errors")
            answer = text_response(500, "the answer failed; see the server's log")
        if isinstance(answer, Deferred):
            self._selector.unregister(conn.sock)
            conn.state, conn.deadline = State.WORK, math.inf
            self._threads.compute(conn, conn.address, answer)
        elif isinstance(answer, Streamed):
            self._selector.unregister(conn.sock)
            self._owned.discard(conn)
            conn.state = State.STREAM
            self._threads.stream(conn, conn.sock, conn.address, answer)
        else:
            self._send(conn, answer)

    def _send(self, conn: Conn, data: bytes) -> None:
        conn.state, conn.out = State.WRITE, memoryview(data)
        conn.deadline = time.monotonic() + self.limits.client_timeout
        self._write(conn)  # most answers fit in the socket's buffer at once
        if conn.state is State.WRITE and conn in self._owned:
            self._watch(conn, selectors.EVENT_WRITE)

    def _watch(self, conn: Conn, events: int) -> None:
        try:
            self._selector.modify(conn.sock, events, conn)
        except KeyError:  # not registered while a worker computed its answer
            self._selector.register(conn.sock, events, conn)

    def _write(self, conn: Conn) -> None:
        done = conn.send_some(self.limits.client_timeout)
        if not done:
            if done is None:  # the client left
                self._forget(conn)
            return
        self._tally.served(conn)
        if conn.linger():
            self._watch(conn, selectors.EVENT_READ)
        else:
            self._forget(conn)

    def _expire(self, conn: Conn) -> None:
        if conn.state is State.HEAD:
            self._tally.add("timed_out")
            timeout = self.limits.head_timeout
            self._throttle.warning(
                "timed out",
                "web view %s: %s sent no whole request in %.1f s; dropped",
                self.name,
                conn.address,
                timeout,
            )
            del self._heads[conn]
            self._send(conn, text_response(408, f"no whole request in {timeout} s"))
        elif conn.state is State.WRITE:
            self._tally.add("stalled")
            log_stalled(self.name, conn.address, self.limits.client_timeout)
            self._forget(conn)
        else:  # lingered long enough
            self._forget(conn)
