"""Socket errors in plain words, as ``syncstream probe`` and ``syncstream check`` say them."""

from __future__ import annotations

import errno
import socket

__all__ = ["plain_os_error", "plain_reason"]

#: Socket errors worth saying plainly, by their errno.
PLAIN_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "no answer (timed out)",
}

HOST_NOT_FOUND = "host not found"


def plain_reason(error: str | None) -> str | None:
    """Say "connection refused" and the like when the text ``error`` holds a socket error
    (its ``[Errno N]``), else None."""
    for number, reason in PLAIN_REASONS.items():
        if error is not None and f"[Errno {number}]" in error:
            return reason
    return None


def plain_os_error(exc: OSError) -> str:
    """``exc`` in plain words: those of :data:`PLAIN_REASONS`, "host not found" for a name
    that does not resolve, else the error's own text."""
    if isinstance(exc, socket.gaierror):
        return HOST_NOT_FOUND
    if isinstance(exc, TimeoutError) and exc.errno is None:  # socket.timeout has no errno
        return PLAIN_REASONS[errno.ETIMEDOUT]
    if exc.errno in PLAIN_REASONS:
        return PLAIN_REASONS[exc.errno]
    return exc.strerror or str(exc)
