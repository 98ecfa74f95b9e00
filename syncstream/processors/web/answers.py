"""The answers a web view's handler gives, and the threads that carry those that leave the
connection loop.

A handler answers most requests with bytes, which the loop sends itself. An answer that
takes work (:class:`Deferred`: the stats as JSON, a snapshot's JPEG) is computed by one of
two worker threads and handed back to the loop; an answer that lasts (:class:`Streamed`:
an MJPEG stream) runs on a thread of its own with a blocking socket. :class:`AnswerThreads`
owns both kinds of thread.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .http import HttpError, Request, close_gracefully, text_response
from .limits import Limits, Tally

__all__ = ["Answer", "AnswerThreads", "Deferred", "Handler", "Streamed", "log_stalled"]

logger = logging.getLogger(__name__)

_WORKERS = 2  # threads computing Deferred answers


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

Key = TypeVar("Key", bound=Hashable)  # the loop's connection, as the tally counts it


def log_stalled(name: str, address: str, timeout: float) -> None:
    """Say that client ``address`` of view ``name`` took nothing for ``timeout`` s."""
    logger.info(
        "web view %s: client %s accepted nothing for %.1f s; dropped", name, address, timeout
    )


class AnswerThreads(Generic[Key]):
    """The worker threads, which compute :class:`Deferred` answers and hand each to
    ``deliver(conn, data)``, and a thread per :class:`Streamed` answer, which closes its
    connection (in ``tally`` too) when done. ``name`` (the view's ``host:port``) names the
    threads and the log messages."""

    def __init__(
        self, name: str, limits: Limits, tally: Tally, deliver: Callable[[Key, bytes], None]
    ) -> None:
        self.name = name
        self.limits = limits
        self._tally = tally
        self._deliver = deliver
        self._jobs: queue.SimpleQueue[tuple[Key, str, Deferred] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._streams: dict[Key, tuple[socket.socket, str, threading.Thread]] = {}

    def start(self) -> None:
        """Start the workers."""
        port = self.name.rpartition(":")[2]
        self._workers = [
            threading.Thread(
                target=self._work, name=f"syncstream-web-worker:{port}-{i}", daemon=True
            )
            for i in range(_WORKERS)
        ]
        for thread in self._workers:
            thread.start()

    def close(self, timeout: float) -> None:
        """End every stream, stop the workers, join them all (``timeout`` s each)."""
        with self._lock:
            streams = dict(self._streams)
        for sock, address, _ in streams.values():
            try:  # wakes a thread blocked sending to (or reading from) its client
                sock.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # its thread closed it already
                logger.debug("web view %s: client %s: shutdown: %s", self.name, address, exc)
        for _ in self._workers:
            self._jobs.put(None)
        for thread in [*self._workers, *(thread for _, _, thread in streams.values())]:
            if thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():
                    logger.warning("web view %s: thread %s still running", self.name, thread.name)

    def compute(self, conn: Key, address: str, answer: Deferred) -> None:
        """Have a worker compute ``answer`` for ``conn`` (of client ``address``)."""
        self._jobs.put((conn, address, answer))

    def stream(self, conn: Key, sock: socket.socket, address: str, answer: Streamed) -> None:
        """Run ``answer`` on ``sock`` (of client ``address``), on a thread of its own."""
        sock.settimeout(self.limits.client_timeout)  # blocking, with a timeout
        thread = threading.Thread(
            target=self._stream,
            args=(conn, sock, address, answer),
            name=f"syncstream-web-client:{address}",
            daemon=True,
        )
        with self._lock:
            self._streams[conn] = (sock, address, thread)
        thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            conn, address, deferred = job
            try:
                data = deferred.compute()
            except HttpError as exc:
                data = text_response(exc.status, exc.message, *exc.headers)
            except Exception:
                logger.exception("web view %s: client %s: request failed", self.name, address)
                self._tally.add("errors")
                data = text_response(500, "the answer failed; see the server's log")
            self._deliver(conn, data)

    def _stream(self, conn: Key, sock: socket.socket, address: str, answer: Streamed) -> None:
        stalled = False
        try:
            answer.run(sock)
        except TimeoutError:
            stalled = True
            self._tally.add("stalled")
            log_stalled(self.name, address, self.limits.client_timeout)
        except OSError as exc:  # the client left, or close() ended the connection
            logger.debug("web view %s: client %s: %s", self.name, address, exc)
        except Exception:
            logger.exception("web view %s: client %s: stream failed", self.name, address)
            self._tally.add("errors")
        finally:
            if stalled:  # nothing left to say to it
                sock.close()
            else:
                close_gracefully(sock)
            with self._lock:  # forgotten (and no longer joined by close()) once closed
                self._streams.pop(conn, None)
            self._tally.close(conn)
