"""ImageOutput: the newest picture a processor made, for viewers, writers and the web view.

A processor that draws something (the wall, the speaker view) publishes each picture to its
:class:`ImageOutput`. Readers never block the processor: they take the newest picture, or
wait for one newer than the last they saw; pictures nobody took in time are replaced.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import ReadTimeout, StreamClosed
from ..frames import BGRImage

__all__ = ["HasOutput", "ImageOutput", "OutputImage"]


@dataclass(frozen=True, slots=True)
class OutputImage:
    """One published picture: its number in the output (from 0) and the frame set's."""

    seq: int
    image: BGRImage
    #: The frame set the picture was made from (-1 when not made from one).
    frameset_seq: int
    #: ``time.monotonic()`` when it was published.
    published_mono: float


class ImageOutput:
    """A thread-safe slot holding the newest picture of one processor.

    The size of the pictures is the processor's business; a wall keeps it fixed for the
    session so that writers and viewers never see it change.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._latest: OutputImage | None = None
        self._closed = False

    def publish(self, image: BGRImage, *, frameset_seq: int = -1) -> OutputImage:
        """Make ``image`` the newest picture and wake readers. The caller must not modify
        ``image`` afterwards (readers share it without copying)."""
        with self._cond:
            seq = 0 if self._latest is None else self._latest.seq + 1
            item = OutputImage(seq, image, frameset_seq, time.monotonic())
            self._latest = item
            self._cond.notify_all()
        return item

    def latest(self) -> OutputImage | None:
        """The newest picture, or None before the first."""
        with self._cond:
            return self._latest

    def wait_newer(self, seq: int, timeout: float | None = None) -> OutputImage:
        """Return the newest picture whose ``seq`` is greater than ``seq`` (-1: any).

        Raises ``ReadTimeout`` when none comes within ``timeout`` seconds and
        ``StreamClosed`` once the output is closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    raise StreamClosed(f"output {self.name}: closed")
                latest = self._latest
                if latest is not None and latest.seq > seq:
                    return latest
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ReadTimeout(f"output {self.name}: no new picture in {timeout} s")
                self._cond.wait(remaining)

    def close(self) -> None:
        """Wake every waiting reader with ``StreamClosed``; idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def __repr__(self) -> str:
        latest = self._latest
        return f"ImageOutput({self.name!r}, seq={-1 if latest is None else latest.seq})"


@runtime_checkable
class HasOutput(Protocol):
    """A processor that publishes pictures (the wall, the speaker view)."""

    @property
    def output(self) -> ImageOutput: ...
