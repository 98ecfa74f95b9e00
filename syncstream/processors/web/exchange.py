"""One connection of the web view's loop: where its exchange stands, and its socket steps.

A connection reads its request head (``HEAD``), waits for a worker's answer (``WORK``),
sends its answer (``WRITE``), drains what its client still sends before it is closed
(``LINGER``), or belongs to its stream's thread (``STREAM``). Its socket is non-blocking:
each step does what the socket allows now and says how far it got; the connection loop
(:mod:`~syncstream.processors.web.connections`) decides what follows.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import time

from .http import LINGER_BYTES, LINGER_SECONDS, MAX_REQUEST_BYTES

__all__ = ["Conn", "State", "answer_at_once"]

logger = logging.getLogger(__name__)


class State(enum.Enum):
    """Where a connection's exchange stands."""

    HEAD = "head"  # reading the request head
    WORK = "work"  # a worker computes the answer
    WRITE = "write"  # sending the answer
    LINGER = "linger"  # answer sent: draining the input before closing
    STREAM = "stream"  # on a thread of its own


class Conn:
    """One connection of view ``view`` (its ``host:port``), owned by the loop thread or by
    its stream's thread."""

    __slots__ = ("address", "buffer", "deadline", "drained", "out", "sock", "state", "view")

    def __init__(self, sock: socket.socket, address: str, deadline: float, view: str) -> None:
        self.sock = sock
        self.address = address  # host:port, for logs
        self.view = view
        self.state = State.HEAD
        self.deadline = deadline  # monotonic: the head, the next progress, the linger
        self.buffer = bytearray()
        self.out = memoryview(b"")
        self.drained = 0

    def receive(self, size: int) -> bytes | None:
        """What the client sent; None when nothing is there; b"" once it has closed, or
        the connection broke."""
        try:
            return self.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:  # reset by the client
            logger.debug("web view %s: client %s: %s", self.view, self.address, exc)
            return b""

    def send_some(self, client_timeout: float) -> bool | None:
        """Send what the socket takes of ``out`` now, the next progress due within
        ``client_timeout``: True once all is sent, False while some is left, None when the
        connection broke."""
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:  # the client left
            logger.debug("web view %s: client %s: %s", self.view, self.address, exc)
            return None
        self.out = self.out[sent:]
        self.deadline = time.monotonic() + client_timeout
        return not self.out

    def linger(self) -> bool:
        """The answer is out: shut the output, so that the client reads to its end and
        closes, and drain the input for ``LINGER_SECONDS``; False when the connection broke."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            logger.debug("web view %s: client %s: %s", self.view, self.address, exc)
            return False
        self.state, self.deadline = State.LINGER, time.monotonic() + LINGER_SECONDS
        return True

    def drain(self) -> bool:
        """Read and drop what the client still sends; True when it is time to close."""
        chunk = self.receive(65536)
        if chunk is None:
            return False
        self.drained += len(chunk)
        return not chunk or self.drained >= LINGER_BYTES


def answer_at_once(sock: socket.socket, data: bytes) -> None:
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
