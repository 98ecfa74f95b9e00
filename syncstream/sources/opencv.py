"""OpenCV backend: ``cv2.VideoCapture`` with its FFmpeg (or V4L2) reader.

For programs that already depend on OpenCV's capture behaviour. OpenCV hides the stream's
timestamps (``CAP_PROP_POS_MSEC`` counts from the start of the stream), so frames from
this backend have no capture time and are aligned by arrival. Low-delay demuxer options
are passed through ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` while the capture opens, unless the
program set that variable itself, and decoding uses one thread (frame threads add delay).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import cv2

from ..config import StreamConfig, redact_url
from ..errors import SourceError, SourceStalled, StreamEnded
from ..frames import BGRImage
from .base import (
    LOW_DELAY_OPTIONS,
    OPEN_TIMEOUT_CAP,
    READ_TIMEOUT_CAP,
    SourceCounters,
    SourceFrame,
    check_picture_size,
)

__all__ = ["OpenCVSource"]

logger = logging.getLogger(__name__)

_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# OpenCV takes FFmpeg options as "key;value|key;value"
_LOW_DELAY = "|".join(f"{key};{value}" for key, value in LOW_DELAY_OPTIONS.items())
_env_lock = threading.Lock()  # the variable is process-wide: one open at a time sets it


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
                with _env_lock:
                    preset = os.environ.get(_OPTIONS_ENV)
                    if preset is None and self.is_live:
                        os.environ[_OPTIONS_ENV] = _LOW_DELAY
                    try:
                        capture = cv2.VideoCapture(self.location, cv2.CAP_FFMPEG, params)
                    finally:
                        if preset is None:
                            os.environ.pop(_OPTIONS_ENV, None)
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
