"""Frame: one decoded picture with its timestamps on named clocks; FrameSet: one per camera."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError
from .sync import SyncClock

__all__ = ["BGRImage", "Frame", "FrameSet"]

#: An image as OpenCV uses it: height x width x 3, uint8, BGR order.
BGRImage = NDArray[np.uint8]


def _read_only(image: BGRImage) -> BGRImage:
    """``image``, made read-only: from now on it is shared."""
    image.flags.writeable = False
    return image


class Frame:
    """A decoded frame of one source.

    The picture is converted to BGR on first access of :attr:`image` and then cached:
    converting costs more CPU than decoding (about 1 ms against 0.4 ms for 640x480), so
    frames that are overwritten before anybody reads them are never converted. Every
    processor of a group gets the same array, so it is read-only: one that draws on it
    takes a copy first (``frame.image.copy()``). numpy takes a frame for its picture:
    ``np.asarray(frame)`` is :attr:`image` (OpenCV wants that array, not the frame).

    Timestamps name their clock: ``capture_time`` is the sender's wall clock when the frame
    was captured, mapped to our clock (``None`` when the stream does not carry it);
    ``arrival_time`` is our wall clock when the frame was decoded; ``arrival_mono`` the
    same instant on ``time.monotonic()``; ``pts_time`` the raw stream timestamp in seconds.
    ``role`` says which of the camera's streams it came from (``"main"``, ``"sub"``, ...).
    """

    __slots__ = (
        "_convert",
        "_image",
        "_lock",
        "arrival_mono",
        "arrival_time",
        "capture_time",
        "height",
        "pts_time",
        "role",
        "seq",
        "source",
        "width",
    )

    def __init__(
        self,
        *,
        source: str,
        seq: int,
        width: int,
        height: int,
        arrival_time: float,
        arrival_mono: float,
        capture_time: float | None = None,
        pts_time: float | None = None,
        image: BGRImage | None = None,
        convert: Callable[[], BGRImage] | None = None,
        role: str = "main",
    ) -> None:
        if image is None and convert is None:
            raise ValueError("a Frame needs an image or a convert function")
        self.source = source
        self.seq = seq
        self.width = width
        self.height = height
        self.arrival_time = arrival_time
        self.arrival_mono = arrival_mono
        self.capture_time = capture_time
        self.pts_time = pts_time
        self.role = role
        self._image = None if image is None else _read_only(image)
        self._convert = convert
        self._lock = threading.Lock()

    @property
    def image(self) -> BGRImage:
        """The picture as an ``HxWx3`` ``uint8`` BGR array (converted once, on first access).

        Read-only, shared with every other reader of the frame: draw on a copy
        (``frame.image.copy()``).
        """
        image = self._image
        if image is not None:
            return image
        with self._lock:
            if self._image is None:
                assert self._convert is not None
                self._image = _read_only(self._convert())
                self._convert = None  # release the decoder's buffer
            return self._image

    def __array__(
        self, dtype: np.dtype[Any] | None = None, copy: bool | None = None
    ) -> NDArray[Any]:
        """The picture for ``np.asarray(frame)``: :attr:`image` itself (read-only, not
        copied), or a writable copy with ``copy=True`` (``np.array(frame)``). A ``dtype``
        other than ``uint8`` converts, which ``copy=False`` refuses (``ConfigError``, a
        ``ValueError``, as numpy 2 asks). OpenCV takes only real arrays:
        ``cv2.resize(np.asarray(frame), ...)`` or ``frame.image``."""
        image = self.image
        if dtype is not None and np.dtype(dtype) != image.dtype:
            if copy is False:
                raise ConfigError(f"{self.source}: frame {self.seq} is uint8, not {dtype}")
            return image.astype(dtype)
        return image.copy() if copy else image

    @property
    def nbytes(self) -> int:
        """Bytes of the picture as BGR (width x height x 3): what the frame holds once
        converted, and more than before (the decoder's YUV 4:2:0 is half of it). The
        stream's history and alignment count the frames they keep by it."""
        return self.width * self.height * 3

    @property
    def latency(self) -> float | None:
        """Seconds from capture to arrival, when the capture time is known."""
        if self.capture_time is None:
            return None
        return self.arrival_time - self.capture_time

    @property
    def clock(self) -> Literal["sender", "arrival"]:
        """``"sender"`` when the frame carries a capture time, else ``"arrival"``."""
        return "sender" if self.capture_time is not None else "arrival"

    def __repr__(self) -> str:
        role = "" if self.role == "main" else f", role={self.role!r}"
        return (
            f"Frame(source={self.source!r}{role}, seq={self.seq}, {self.width}x{self.height}, "
            f"capture_time={self.capture_time!r}, arrival_time={self.arrival_time:.6f})"
        )


@dataclass(frozen=True, eq=False)
class FrameSet:
    """One frame per camera, captured at (nearly) the same instant.

    ``fs["door"]`` is camera door's :class:`Frame` (``KeyError`` naming the camera when it
    is in :attr:`missing`); iterating gives the names of the cameras present.
    """

    #: Number of the set in its group, from 0; a gap means sets nobody read were replaced.
    seq: int
    #: Camera name to frame, in the group's camera order; missing cameras are absent.
    frames: Mapping[str, Frame]
    #: Cameras without a frame in this set: silent, or waited for in vain.
    missing: tuple[str, ...]
    #: Seconds between the earliest and the latest frame of the set, on :attr:`clock`.
    skew: float
    #: The set's instant: the mean of its frames' times on :attr:`clock` (epoch seconds).
    time: float
    #: ``"sender"``: every frame went by its capture time; ``"arrival"``: none did, they
    #: went by arrival time (their streams carry no capture time); ``"mixed"``: some did,
    #: the others by arrival minus their camera's arrival delay (:attr:`clocks` says which).
    clock: SyncClock
    #: Our wall clock when the set was complete.
    emitted_time: float
    #: The same instant on ``time.monotonic()``.
    emitted_mono: float
    #: Which of the cameras' streams the frames are from: ``"main"`` or a further role such
    #: as ``"sub"`` (a camera without that stream gives its main frames).
    role: str = "main"

    @property
    def clocks(self) -> dict[str, Literal["sender", "arrival"]]:
        """Camera name to the clock its frame went by: ``"sender"`` (its capture time) or
        ``"arrival"`` (its arrival time, minus its camera's arrival delay when other
        cameras of the group have capture times)."""
        return {name: frame.clock for name, frame in self.frames.items()}

    @property
    def capture_time(self) -> float | None:
        """The set's capture instant (the mean of its frames' times), or None when no frame
        has a capture time. In a ``"mixed"`` set it counts the frames without one as
        captured their camera's arrival delay before they arrived."""
        return None if self.clock == "arrival" else self.time

    @property
    def latency(self) -> float:
        """Seconds from the earliest capture (or arrival, without capture times) to the set."""
        oldest = min(
            f.capture_time if f.capture_time is not None else f.arrival_time
            for f in self.frames.values()
        )
        return self.emitted_time - oldest

    @property
    def complete(self) -> bool:
        """True when every camera of the group has a frame in the set."""
        return not self.missing

    @property
    def images(self) -> dict[str, BGRImage]:
        """Camera name to BGR image, for the cameras present."""
        return {name: frame.image for name, frame in self.frames.items()}

    def __getitem__(self, name: str) -> Frame:
        try:
            return self.frames[name]
        except KeyError:
            if name in self.missing:
                raise KeyError(f"camera {name!r} is missing from frame set {self.seq}") from None
            raise KeyError(f"no camera named {name!r} in frame set {self.seq}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.frames

    def __iter__(self) -> Iterator[str]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        missing = f", missing={list(self.missing)}" if self.missing else ""
        role = "" if self.role == "main" else f", role={self.role!r}"
        return (
            f"FrameSet(seq={self.seq}{role}, cameras={list(self.frames)}{missing}, "
            f"skew={self.skew * 1000:.1f} ms, clock={self.clock})"
        )
