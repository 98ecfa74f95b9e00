"""Slowloris clients, to test an HTTP server (the web view) against connections that drip.

:class:`Slowloris` holds ``count`` connections to a server on loopback, from 127.0.0.2 and
up (``per_source`` connections per address, all local on Linux, so a per-address cap can
tell them from a legitimate client on 127.0.0.1). Each sends one byte of a request head
that never ends every 0.5-0.8 s; a connection the server closes, or cannot be opened, is
opened again, as a slowloris attacker does. One thread drives them all over non-blocking
sockets.
"""

from __future__ import annotations

import random
import socket
import threading
import time

from ..errors import StreamClosed

__all__ = ["Slowloris"]

_PAUSE = 0.05  # between two rounds over the connections (s)
_CONNECT_TIMEOUT = 2.0
_RETRY = 0.5  # wait before opening again a connection that could not be opened (s)
_DRIP = (0.5, 0.8)  # range of the wait between two bytes of a connection (s)

_Connection = tuple[socket.socket | None, int, float]  # socket, bytes sent, next due (mono)


class Slowloris:
    """``count`` dripping connections to ``(host, port)`` until :meth:`stop` (see the module).

    >>> with Slowloris(8080, count=100) as attack:  # doctest: +SKIP
    ...     ...
    """

    #: The request head each connection sends, one byte at a time, followed by ``a`` padding.
    HEAD = b"GET /stats HTTP/1.1\r\nHost: localhost\r\nX-Padding: "

    def __init__(
        self,
        port: int,
        *,
        count: int = 100,
        per_source: int = 10,
        host: str = "127.0.0.1",
        seed: int = 7,
    ) -> None:
        self.target = (host, port)
        self.count, self.per_source = count, per_source
        self.name = f"slowloris:{port}"
        #: Connections opened, in all.
        self.opened = 0
        #: Connections that could not be opened (refused, timed out).
        self.failed_connects = 0
        #: Connections the server answered or closed (each opened again).
        self.closed_by_server = 0
        #: Answers that were ``408 Request Timeout``.
        self.answers_408 = 0
        self._data = self.HEAD + b"a" * 8192
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> Slowloris:
        """Start the thread that opens and drips (idempotent while running)."""
        if self._closed:
            raise StreamClosed(f"{self.name}: stopped and cannot restart")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def _open(self, index: int) -> _Connection:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((f"127.0.0.{2 + index // self.per_source}", 0))
            sock.settimeout(_CONNECT_TIMEOUT)
            sock.connect(self.target)
            sock.setblocking(False)
        except OSError:
            sock.close()
            self.failed_connects += 1
            return None, 0, time.monotonic() + _RETRY
        self.opened += 1
        return sock, 0, time.monotonic() + self._rng.uniform(*_DRIP)

    def _run(self) -> None:
        conns: list[_Connection] = [(None, 0, 0.0)] * self.count  # opened in the first round
        while not self._stop.is_set():
            now = time.monotonic()
            for index, (sock, sent, due) in enumerate(conns):
                if sock is None:
                    if now >= due:
                        conns[index] = self._open(index)
                    continue
                gone = False
                try:
                    answer = sock.recv(4096)
                    gone = True  # an answer (408) or the end: the server let go
                    self.answers_408 += answer.startswith(b"HTTP/1.1 408 ")
                except BlockingIOError:
                    pass
                except OSError:
                    gone = True
                if not gone and now >= due:
                    try:
                        sock.send(self._data[sent : sent + 1])
                        conns[index] = (sock, sent + 1, now + self._rng.uniform(*_DRIP))
                    except BlockingIOError:
                        pass
                    except OSError:
                        gone = True
                if gone:
                    self.closed_by_server += 1
                    sock.close()
                    conns[index] = self._open(index)
            self._stop.wait(_PAUSE)
        for sock, _, _ in conns:
            if sock is not None:
                sock.close()

    def stop(self) -> None:
        """Close every connection and join the thread; idempotent."""
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> Slowloris:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
