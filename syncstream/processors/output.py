"""ImageOutput: the newest picture a processor made, for viewers, writers and the web view.

A processor that draws something (the wall, the speaker view) publishes each picture to its
:class:`ImageOutput`. Readers never block the processor: they take the newest picture, or
wait for one newer than the last they saw; pictures nobody took in time are replaced.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2

from ..errors import SyncStreamError
from ..frames import BGRImage
from ..slot import LatestSlot

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
        # a reader gets StreamClosed as soon as the output is closed, even with a newer picture
        self._slot: LatestSlot[OutputImage] = LatestSlot(
            f"output {name}", noun="picture", drain=False
        )

    def publish(self, image: BGRImage, *, frameset_seq: int = -1) -> OutputImage:
        """Make ``image`` the newest picture and wake readers. The caller must not modify
        ``image`` afterwards: readers share it without copying, so it is made read-only."""
        image.flags.writeable = False
        with self._slot.cond:
            item = OutputImage(self._slot.next_seq, image, frameset_seq, time.monotonic())
            self._slot.put(item)
        return item

    def latest(self) -> OutputImage | None:
        """The newest picture, or None before the first."""
        return self._slot.latest()

    def write(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """Write the newest picture to ``path`` (PNG, JPEG, ... by its extension) and
        return its (width, height). Raises :class:`SyncStreamError` before the first
        picture, or when the file cannot be written."""
        latest = self.latest()
        if latest is None:
            raise SyncStreamError(f"output {self.name}: no picture yet: no frame set arrived")
        name = os.fspath(path)
        try:
            written = cv2.imwrite(name, latest.image)
        except cv2.error as exc:
            raise SyncStreamError(f"cannot write {name}: {exc}") from exc
        if not written:
            raise SyncStreamError(f"cannot write {name} (directory missing or bad extension)")
        height, width = latest.image.shape[:2]
        return width, height

    def wait_newer(self, seq: int, timeout: float | None = None) -> OutputImage:
        """Return the newest picture whose ``seq`` is greater than ``seq`` (-1: any).

        Raises ``ReadTimeout`` when none comes within ``timeout`` seconds and
        ``StreamClosed`` once the output is closed.
        """
        return self._slot.get(seq, timeout)

    def close(self) -> None:
        """Wake every waiting reader with ``StreamClosed``; idempotent."""
        self._slot.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._slot.closed

    def __repr__(self) -> str:
        return f"ImageOutput({self.name!r}, seq={self._slot.seq})"


@runtime_checkable
class HasOutput(Protocol):
    """A processor that publishes pictures (the wall, the speaker view)."""

    @property
    def output(self) -> ImageOutput: ...
