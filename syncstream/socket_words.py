"""Socket errors in plain words, one table for every place that says them: SSH errors
(:mod:`~syncstream.ssh`), ``syncstream check`` and ``syncstream probe``."""

from __future__ import annotations

import errno
import socket

__all__ = ["plain_socket_error", "plain_socket_error_in"]

#: Socket errors in plain words, by their errno: as the CLI and SSH errors say them.
_SOCKET_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "no answer (timed out)",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTDOWN: "host is down",
    errno.ECONNRESET: "connection reset",
}


def plain_socket_error(
    exc: BaseException,
    *,
    host: str | None = None,
    port: int | None = None,
    timeout: float | None = None,
) -> str | None:
    """A socket error in plain words ("connection refused", "host not found", "no answer
    (timed out)", ...), None for any other error. ``host``, ``port`` and ``timeout`` add
    what was tried: "host not found: 'cam1'", "connection refused: nothing listens on port
    22", "no answer within 5 s (timed out)"."""
    if isinstance(exc, socket.gaierror):
        found = "host not found"
        return found if host is None else f"{found}: {host!r} ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError) and exc.errno is None:  # socket.timeout has no errno
        number: int | None = errno.ETIMEDOUT
    elif isinstance(exc, OSError):
        number = exc.errno
    else:
        return None
    words = _SOCKET_WORDS.get(number) if number is not None else None
    if words is not None and number == errno.ECONNREFUSED and port is not None:
        return f"{words}: nothing listens on port {port}"
    if words is not None and number == errno.ETIMEDOUT and timeout is not None:
        return f"no answer within {timeout:g} s (timed out)"
    return words


def plain_socket_error_in(text: str | None) -> str | None:
    """The plain words of the socket error whose ``[Errno N]`` the error text ``text``
    holds (a source's last error), else None."""
    for number, words in _SOCKET_WORDS.items():
        if text is not None and f"[Errno {number}]" in text:
            return words
    return None
