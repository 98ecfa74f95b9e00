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
most ``max_clients`` of them.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import math
import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ...logs import Throttle
from .http import (
    LINGER_BYTES,
    LINGER_SECONDS,
    MAX_REQUEST_BYTES,
    HttpError,
    Request,
    close_gracefully,
    host_port,
    parse_head,
    text_response,
)
from .limits import Admission, ConnectionCounts, Limits, Tally, address_key

__all__ = ["Answer", "ConnectionLoop", "Deferred", "Handler", "Streamed"]

logger = logging.getLogger(__name__)

_WORKERS = 2  # threads computing Deferred answers
_ACCEPT_BATCH = 64  # connections accepted per wake-up, so reading goes on during a flood
_ACCEPT_PAUSE = 0.1  # s without accepting once the process is out of file descriptors
_RECV_BYTES = 4096
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True)
class Deferred:
    """An answer computed on a worker thread: it may take a few milliseconds."""

    compute: Callable[[], bytes]


@dataclass(frozen=True)
class Streamed:
    """An answer that lasts: ``run(sock)`` on a thread of its own, with a blocking socket
    whose timeout is ``client_timeout``. ``TimeoutError`` from it counts as a stall."""

    run: Callable[[socket.socket], None]


#: What a handler answers: the bytes to send, or one of the above.
Answer = bytes | Deferred | Streamed
#: Answers a request from a client (``host:port``), or raises ``HttpError``.
Handler = Callable[[Request, str], Answer]


class _State(enum.Enum):
    HEAD = "head"  # reading the request head
    WORK = "work"  # a worker computes the answer
    WRITE = "write"  # sending the answer
    LINGER = "linger"  # answer sent: draining the input before closing
    STREAM = "stream"  # on a thread of its own


class _Conn:
    """One connection, owned by the loop thread or by its stream's thread."""

    __slots__ = ("address", "buffer", "deadline", "drained", "out", "sock", "state")

    def __init__(self, sock: socket.socket, address: str, deadline: float) -> None:
        self.sock = sock
        self.address = address  # host:port, for logs
        self.state = _State.HEAD
        self.deadline = deadline  # monotonic: the head, the next progress, the linger
        self.buffer = bytearray()
        self.out = memoryview(b"")
        self.drained = 0


def _answer_at_once(sock: socket.socket, data: bytes) -> None:
    """Send what of ``data`` the socket takes now, and close: for a connection that gets no
    more of our time. Input already received is read first, since closing over unread
    input resets the connection, which can destroy the answer before it is read."""
    try:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.recv(MAX_REQUEST_BYTES)
        sock.send(data)
    except OSError as exc:
        logger.debug("web view: answering at once: %s", exc)
    finally:
        sock.close()


class ConnectionLoop:
    """Serves ``listener``'s connections with ``handler`` within ``limits``.

    ``name`` (the view's ``host:port``) names the threads and the log messages.
    :meth:`start` starts the loop and worker threads; :meth:`close` ends every connection
    and joins them. The listener stays the caller's to close.
    """

    def __init__(
        self, listener: socket.socket, handler: Handler, limits: Limits, name: str
    ) -> None:
        self.name = name
        self.limits = limits
        self._listener = listener
        self._handler = handler
        self._throttle = Throttle(logger)
        self._tally = Tally(limits)
        self._lock = threading.Lock()
        self._closed = False
        self._streams: dict[_Conn, threading.Thread] = {}
        # the loop thread's alone:
        self._owned: set[_Conn] = set()  # connections it serves (all but streams)
        self._heads: dict[_Conn, None] = {}  # those reading their head, oldest first
        # from the workers to the loop thread:
        self._jobs: queue.SimpleQueue[tuple[_Conn, Deferred] | None] = queue.SimpleQueue()
        self._answers: deque[tuple[_Conn, bytes]] = deque()
        self._selector: selectors.BaseSelector  # made by start()
        self._wake_pair: tuple[socket.socket, socket.socket] | None = None
        self._loop_thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []

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
        self._workers = [
            threading.Thread(
                target=self._work, name=f"syncstream-web-worker:{port}-{i}", daemon=True
            )
            for i in range(_WORKERS)
        ]
        for thread in (self._loop_thread, *self._workers):
            thread.start()

    def close(self, timeout: float) -> None:
        """End every connection and stream, join the threads (``timeout`` s each)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        loop = self._loop_thread
        if loop is not None:  # it closes the connections it owns, and starts no stream
            loop.join(timeout)
        with self._lock:
            streams = dict(self._streams)
        for conn in streams:
            try:  # wakes a thread blocked sending to (or reading from) its client
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # its thread closed it already
                logger.debug("web view %s: client %s: shutdown: %s", self.name, conn.address, exc)
        for _ in self._workers:
            self._jobs.put(None)
        for thread in [*([] if loop is None else [loop]), *self._workers, *streams.values()]:
            if thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():
                    logger.warning("web view %s: thread %s still running", self.name, thread.name)
        for sock in self._wake_pair or ():
            sock.close()

    def counts(self) -> ConnectionCounts:
        """A snapshot of the counters."""
        return self._tally.counts()

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

    def _guarded(self, conn: _Conn, step: Callable[[_Conn], None]) -> None:
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
        conn = _Conn(sock, address, time.monotonic() + limits.head_timeout)
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
        _answer_at_once(sock, text_response(503, "too many connections", "Retry-After: 5"))

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

    def _forget(self, conn: _Conn, answer: bytes | None = None) -> None:
        """Close a connection the loop owns (after trying ``answer`` at once)."""
        # not registered while a worker computes its answer
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        self._owned.discard(conn)
        self._heads.pop(conn, None)
        if answer is None:
            conn.sock.close()
        else:
            _answer_at_once(conn.sock, answer)
        self._tally.close(conn)

    def _ready(self, conn: _Conn) -> None:
        if conn not in self._owned:  # closed earlier in this round (evicted)
            return
        if conn.state is _State.HEAD:
            self._read_head(conn)
        elif conn.state is _State.WRITE:
            self._write(conn)
        elif conn.state is _State.LINGER:
            self._drain(conn)

    def _recv(self, conn: _Conn, size: int) -> bytes | None:
        """What the client sent (b"" once it has closed); None when nothing is there, or
        the connection broke (then it is closed)."""
        try:
            return conn.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:  # reset by the client
            logger.debug("web view %s: client %s: %s", self.name, conn.address, exc)
            self._forget(conn)
            return None

    def _read_head(self, conn: _Conn) -> None:
        chunk = self._recv(conn, _RECV_BYTES)
        if chunk is None:
            return
        if not chunk:  # it left before sending a whole request
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

    def _dispatch(self, conn: _Conn, request: Request) -> None:
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
            conn.state, conn.deadline = _State.WORK, math.inf
            self._jobs.put((conn, answer))
        elif isinstance(answer, Streamed):
            self._start_stream(conn, answer)
        else:
            self._send(conn, answer)

    def _send(self, conn: _Conn, data: bytes) -> None:
        conn.state, conn.out = _State.WRITE, memoryview(data)
        conn.deadline = time.monotonic() + self.limits.client_timeout
        self._write(conn)  # most answers fit in the socket's buffer at once
        if conn.state is _State.WRITE and conn in self._owned:
            self._watch(conn, selectors.EVENT_WRITE)

    def _watch(self, conn: _Conn, events: int) -> None:
        try:
            self._selector.modify(conn.sock, events, conn)
        except KeyError:  # not registered while a worker computed its answer
            self._selector.register(conn.sock, events, conn)

    def _write(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # the client left
            logger.debug("web view %s: client %s: %s", self.name, conn.address, exc)
            self._forget(conn)
            return
        conn.out = conn.out[sent:]
        conn.deadline = time.monotonic() + self.limits.client_timeout
        if conn.out:
            return
        self._tally.served(conn)
        try:  # the client reads to the end of the answer, then closes
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            logger.debug("web view %s: client %s: %s", self.name, conn.address, exc)
            self._forget(conn)
            return
        conn.state, conn.deadline = _State.LINGER, time.monotonic() + LINGER_SECONDS
        self._watch(conn, selectors.EVENT_READ)

    def _drain(self, conn: _Conn) -> None:
        chunk = self._recv(conn, 65536)
        if chunk is None:
            return
        conn.drained += len(chunk)
        if not chunk or conn.drained >= LINGER_BYTES:
            self._forget(conn)

    def _expire(self, conn: _Conn) -> None:
        if conn.state is _State.HEAD:
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
        elif conn.state is _State.WRITE:
            self._tally.add("stalled")
            logger.info(
                "web view %s: client %s accepted nothing for %.1f s; dropped",
                self.name,
                conn.address,
                self.limits.client_timeout,
            )
            self._forget(conn)
        else:  # lingered long enough
            self._forget(conn)

    # -- workers and streams ----------------------------------------------------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            conn, deferred = job
            try:
                data = deferred.compute()
            except HttpError as exc:
                data = text_response(exc.status, exc.message, *exc.headers)
            except Exception:
                logger.exception("web view %s: client %s: request failed", self.name, conn.address)
                self._tally.add("errors")
                data = text_response(500, "the answer failed; see the server's log")
            self._answers.append((conn, data))
            self._wake()

    def _start_stream(self, conn: _Conn, answer: Streamed) -> None:
        self._selector.unregister(conn.sock)
        self._owned.discard(conn)
        conn.state = _State.STREAM
        conn.sock.settimeout(self.limits.client_timeout)  # blocking, with a timeout
        thread = threading.Thread(
            target=self._stream,
            args=(conn, answer),
            name=f"syncstream-web-client:{conn.address}",
            daemon=True,
        )
        with self._lock:
            self._streams[conn] = thread
        thread.start()

    def _stream(self, conn: _Conn, answer: Streamed) -> None:
        stalled = False
        try:
            answer.run(conn.sock)
        except TimeoutError:
            stalled = True
            self._tally.add("stalled")
            logger.info(
                "web view %s: client %s accepted nothing for %.1f s; dropped",
                self.name,
                conn.address,
                self.limits.client_timeout,
            )
        except OSError as exc:  # the client left, or close() ended the connection
            logger.debug("web view %s: client %s: %s", self.name, conn.address, exc)
        except Exception:
            logger.exception("web view %s: client %s: stream failed", self.name, conn.address)
            self._tally.add("errors")
        finally:
            if stalled:  # nothing left to say to it
                conn.sock.close()
            else:
                close_gracefully(conn.sock)
            with self._lock:  # forgotten (and no longer joined by close()) once closed
                self._streams.pop(conn, None)
            self._tally.close(conn)
