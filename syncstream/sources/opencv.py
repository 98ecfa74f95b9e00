"""OpenCV backend: ``cv2.VideoCapture`` with its FFmpeg (or V4L2) reader.

For programs that already depend on OpenCV's capture behaviour. OpenCV hides the stream's
timestamps (``CAP_PROP_POS_MSEC`` counts from the start of the stream), so frames from
this backend have no capture time and are aligned by arrival. Decoding uses one thread
(frame threads add delay).

OpenCV takes FFmpeg's demuxer options only from the ``OPENCV_FFMPEG_CAPTURE_OPTIONS``
environment variable, read at every open. Changing the environment while other threads
run C code that reads it is unsafe, so it is set once, when this module is first imported,
and never again: to short probing (:data:`CAPTURE_OPTIONS`), unless the program set the
variable itself. ``fflags=nobuffer`` is left out: the value is process-wide, and in a file
it loses frames.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import cv2

from ..config import StreamConfig
from ..errors import SourceError, SourceStalled, StreamEnded
from ..frames import BGRImage
from ..urls import redact_url
from .base import (
    LOW_DELAY_OPTIONS,
    OPEN_TIMEOUT_CAP,
    READ_TIMEOUT_CAP,
    SourceCounters,
    SourceFrame,
    check_picture_size,
)

__all__ = ["CAPTURE_OPTIONS", "OpenCVSource"]

logger = logging.getLogger(__name__)

_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
#: The demuxer options every OpenCV capture of the process opens with, as OpenCV takes them
#: ("key;value|key;value"): the low-delay options that are harmless in a file too.
CAPTURE_OPTIONS = "|".join(
    f"{key};{value}" for key, value in LOW_DELAY_OPTIONS.items() if key != "fflags"
)
# Once per process, at the first import (the import lock makes it once); never from a reader.
if os.environ.setdefault(_OPTIONS_ENV, CAPTURE_OPTIONS) != CAPTURE_OPTIONS:
    logger.info("OpenCV captures use the program's %s", _OPTIONS_ENV)


class OpenCVSource:
    """Reads one source through ``cv2.VideoCapture``; see the Source Protocol."""

    def __init__(self, config: StreamConfig, location: str | int) -> None:
        self.config = config
        self.name = config.display_name
        self.location = location
        self.shown = redact_url(location) if isinstance(location, str) else str(location)
        self.counters = SourceCounters()
        text = str(location)
        self.is_live = isinstance(location, int) or text.startswith("/dev/video") or "://" in text
        self._capture: Any = None
        self._interrupted = False

    def open(self) -> None:
        """Open the capture; raise SourceError when OpenCV cannot."""
        open_ms = int(min(self.config.open_timeout, OPEN_TIMEOUT_CAP) * 1000)
        read_ms = int(min(self.config.stall_timeout, READ_TIMEOUT_CAP) * 1000)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms,
            cv2.CAP_PROP_N_THREADS, 1,
        ]  # fmt: skip
        try:
            if isinstance(self.location, int):
                capture = cv2.VideoCapture(self.location, cv2.CAP_V4L2)
            else:
                capture = cv2.VideoCapture(self.location, cv2.CAP_FFMPEG, params)
        except cv2.error as exc:
            raise SourceError(f"{self.name}: OpenCV cannot open {self.shown!r}: {exc}") from exc
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"{self.name}: OpenCV cannot open {self.shown!r}")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        try:
            check_picture_size(self.name, width, height, self.config.max_pixels, self.counters)
        except SourceError:
            capture.release()
            raise
        self._capture = capture
        logger.info("%s: opened %s with OpenCV", self.name, self.shown)

    def read(self) -> SourceFrame:
        """Return the next picture, already BGR (OpenCV converts as it decodes)."""
        capture = self._capture
        if capture is None:
            raise SourceError(f"{self.name}: source is not open")
        if self._interrupted:
            raise SourceError(f"{self.name}: interrupted")
        try:
            ok, image = capture.read()
        except cv2.error as exc:
            raise SourceError(f"{self.name}: OpenCV read failed: {exc}") from exc
        if not ok or image is None:
            if not self.is_live:
                raise StreamEnded(f"{self.name}: end of {self.location!r}")
            raise SourceStalled(f"{self.name}: OpenCV read returned no frame")
        pts_time = None
        if not self.is_live:
            pts_time = float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
        frame: BGRImage = image
        height, width = frame.shape[:2]
        check_picture_size(self.name, width, height, self.config.max_pixels, self.counters)
        return SourceFrame(width=width, height=height, convert=lambda: frame, pts_time=pts_time)

    def interrupt(self) -> None:
        """A blocked read ends at OpenCV's read timeout (at most 1 s)."""
        self._interrupted = True

    def close(self) -> None:
        """Release the capture; idempotent."""
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()
