"""A FIFO (named pipe) given as a source, read by our own descriptor as a file object.

Opening a FIFO for reading blocks until a writer opens it, and FFmpeg's own reads of it
cannot be interrupted: a stream closed meanwhile would leave its reader thread behind.
:class:`PipeReader` opens the FIFO non-blocking and waits for data in short slices, so
``interrupt()`` ends a wait within one slice and ``close()`` returns promptly. A FIFO is
read as a live stream: no pacing by timestamps; when its writer goes, the input ends and
the stream reopens it, waiting for the next writer.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import threading
import time

from ..errors import SourceError, SourceStalled
from .base import SourceCounters

__all__ = ["PipeReader", "is_fifo"]

logger = logging.getLogger(__name__)

_POLL_INTERVAL = 0.1
_READ_CHUNK = 65536


def is_fifo(path: str) -> bool:
    """Whether ``path`` names a FIFO (without opening it, which could block)."""
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


class PipeReader:
    """A readable file object over a FIFO, with the interface PyAVSource gives its readers.

    ``read()`` waits for data in slices of 0.1 s; after ``timeout`` seconds without data,
    or without a decoded frame (the source sets :attr:`last_frame_mono`), it ends the input
    with ``SourceStalled``, after :meth:`interrupt` with ``SourceError``; the reason is kept
    in :attr:`failure`. When the writer closes its end, the input ends (``b""``).
    """

    def __init__(self, path: str, *, name: str, counters: SourceCounters, timeout: float) -> None:
        self.path = path
        self.name = name
        self.counters = counters
        self.timeout = timeout
        self._fd: int | None = None
        self._interrupted = threading.Event()
        self._last_data_mono = time.monotonic()
        #: When the demuxer last gave a frame (monotonic); the source keeps it current.
        self.last_frame_mono = time.monotonic()
        #: Why :meth:`read` ended the input, for the source to raise; None while it flows.
        self.failure: SourceError | None = None

    def open(self) -> None:
        """Open the FIFO without waiting for a writer."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot open FIFO {self.path!r}: {exc}") from exc
        self._fd = fd
        self._last_data_mono = time.monotonic()
        self.counters.waiting_for = f"no data from FIFO {self.path}"

    def readable(self) -> bool:
        """File-object protocol: this object is read from."""
        return True

    def seekable(self) -> bool:
        """File-object protocol: a pipe cannot seek."""
        return False

    def read(self, size: int = -1) -> bytes:
        """Return the next bytes written (at least one, at most ``size``); ``b""`` when the
        writer closed its end, or when a stall or an interrupt ended the input (FFmpeg
        takes it as the end of the stream; the reason is in :attr:`failure`)."""
        fd = self._fd
        if fd is None:
            raise SourceError(f"{self.name}: FIFO reader is not open")
        limit = size if size > 0 else _READ_CHUNK
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while self.failure is None:
            if self._interrupted.is_set():
                return self._fail(SourceError(f"{self.name}: interrupted"))
            now = time.monotonic()
            if now - self._last_data_mono > self.timeout:
                return self._fail(
                    SourceStalled(
                        f"{self.name}: no data from FIFO {self.path} for {self.timeout:.1f} s"
                    )
                )
            if now - self.last_frame_mono > self.timeout:
                return self._fail(
                    SourceStalled(
                        f"{self.name}: data from FIFO {self.path} but no decodable frame "
                        f"for {self.timeout:.1f} s"
                    )
                )
            if not poller.poll(_POLL_INTERVAL * 1000):
                continue  # no writer yet, or a silent one
            try:
                data = os.read(fd, limit)
            except BlockingIOError:
                continue
            except OSError as exc:
                return self._fail(SourceError(f"{self.name}: reading FIFO failed: {exc}"))
            if data:
                self._last_data_mono = time.monotonic()
                self.counters.waiting_for = None
            return data  # b"": the writer closed its end
        return b""

    def _fail(self, exc: SourceError) -> bytes:
        self.failure = exc
        return b""

    def watch(self, timeout: float) -> None:
        """End the input after ``timeout`` s without data or a frame, from now on."""
        self.timeout = timeout
        self.last_frame_mono = time.monotonic()

    def resume(self) -> None:
        """Nothing to resume: a FIFO's stream does not change under a demuxer."""

    def interrupt(self) -> None:
        """Make a blocked :meth:`read` end within one poll interval. Thread-safe."""
        self._interrupted.set()

    def close(self) -> None:
        """Close the descriptor; idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
