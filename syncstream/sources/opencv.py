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

from ..config import DEVICE_PREFIXES, StreamConfig
from ..errors import SourceError, SourceStalled, StreamEnded, UnsupportedSource
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

__all__ = ["CAPTURE_OPTIONS", "FOURCC", "OpenCVSource", "device_properties"]

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


#: FFmpeg's names of the formats webcams send, as the V4L2 four-character codes OpenCV
#: asks a device for (``input_format``).
FOURCC = {
    "mjpeg": "MJPG", "yuyv422": "YUYV", "uyvy422": "UYVY", "h264": "H264", "nv12": "NV12",
    "yuv420p": "YU12", "gray": "GREY", "rgb24": "RGB3", "bgr24": "BGR3",
}  # fmt: skip


def device_properties(config: StreamConfig) -> list[tuple[int, float]]:
    """The ``VideoCapture.set`` calls that ask a webcam for ``config``'s format, size and
    rate, in the order V4L2 wants them (the format first: it decides the sizes offered).
    Raises :class:`UnsupportedSource` for an ``input_format`` without a V4L2 code."""
    properties: list[tuple[int, float]] = []
    if config.input_format is not None:
        code = FOURCC.get(config.input_format)
        if code is None:
            raise UnsupportedSource(
                f"{config.display_name}: input_format {config.input_format!r} has no V4L2 "
                f"code for the 'opencv' backend; it takes {', '.join(sorted(FOURCC))}"
            )
        properties.append((cv2.CAP_PROP_FOURCC, float(cv2.VideoWriter.fourcc(*code))))
    if config.size is not None:
        properties += [
            (cv2.CAP_PROP_FRAME_WIDTH, float(config.size[0])),
            (cv2.CAP_PROP_FRAME_HEIGHT, float(config.size[1])),
        ]
    if config.fps is not None:
        properties.append((cv2.CAP_PROP_FPS, config.fps))
    return properties


class OpenCVSource:
    """Reads one source through ``cv2.VideoCapture``; see the Source Protocol."""

    def __init__(self, config: StreamConfig, location: str | int) -> None:
        self.config = config
        self.name = config.display_name
        self.location = location
        self.shown = redact_url(location) if isinstance(location, str) else str(location)
        self.counters = SourceCounters()
        text = str(location)
        self._device = isinstance(location, int) or text.startswith(DEVICE_PREFIXES)
        self.is_live = self._device or "://" in text
        #: What a webcam is asked for once open (see :func:`device_properties`).
        self.device_properties = device_properties(config) if self._device else []
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
            if self._device:
                capture = cv2.VideoCapture(self.location, cv2.CAP_V4L2)
                for prop, value in self.device_properties:
                    capture.set(prop, value)
            else:
                capture = cv2.VideoCapture(self.location, cv2.CAP_FFMPEG, params)
        except cv2.error as exc:
            raise SourceError(f"{self.name}: OpenCV cannot open {self.shown!r}: {exc}") from exc
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"{self.name}: OpenCV cannot open {self.shown!r}")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.config.size is not None and (width, height) != self.config.size and self._device:
            logger.info(
                "%s: asked for %dx%d, the device gives %dx%d", self.name, *self.config.size,
                width, height,
            )  # fmt: skip
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
