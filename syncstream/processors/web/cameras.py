"""The web view's one-camera pictures: a feed per camera of its group.

The view is given every frame set it can take (as a processor); :meth:`CameraFeeds.offer`
keeps each camera's newest frame and, for a camera somebody watches, publishes its
picture to that camera's feed, which encodes it like any output's. A camera nobody watches
costs nothing: its frames are not even converted to BGR (``Frame.image`` is lazy), so
the view still needs no pictures from its group (``uses_pictures = False``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from ...frames import BGRImage, Frame, FrameSet
from ...logs import Throttle
from ..output import ImageOutput
from .feed import JpegFeed, WebOutputStats

__all__ = ["CAMERA_PREFIX", "CameraFeeds"]

logger = logging.getLogger(__name__)

#: A camera's feed is named ``camera/NAME`` (in the stats and its encoder thread's name).
CAMERA_PREFIX = "camera/"


class CameraFeeds:
    """A :class:`JpegFeed` per camera, fed from the sets the view is given."""

    def __init__(self, quality: int) -> None:
        self._quality = quality
        self._lock = threading.Lock()
        self._feeds: dict[str, JpegFeed] = {}
        self._newest: dict[str, Frame] = {}
        self._published: dict[str, int] = {}  # camera -> the frame seq published last
        self._throttle = Throttle(logger)

    def add(self, names: Sequence[str]) -> None:
        """Make a feed for each camera of ``names`` that has none yet."""
        with self._lock:
            for name in names:
                if name not in self._feeds:
                    output = ImageOutput(CAMERA_PREFIX + name)
                    self._feeds[name] = JpegFeed(output.name, output, self._quality)

    @property
    def names(self) -> list[str]:
        """The cameras, in the group's order."""
        with self._lock:
            return list(self._feeds)

    def get(self, name: str) -> JpegFeed | None:
        """Camera ``name``'s feed; None for a camera the view does not know."""
        with self._lock:
            return self._feeds.get(name)

    def offer(self, frameset: FrameSet) -> None:
        """Keep each camera's newest frame; publish the watched cameras' new pictures."""
        with self._lock:
            self._newest.update(frameset.frames)
            watched = [
                (name, feed, frame)
                for name, feed in self._feeds.items()
                if feed.watched
                and (frame := self._newest.get(name)) is not None
                and frame.seq != self._published.get(name)
            ]
        for name, feed, frame in watched:
            image = self._picture(name, feed, frame)
            if image is not None:
                with self._lock:
                    self._published[name] = frame.seq
                feed.output.publish(image, frameset_seq=frameset.seq)

    def snapshot(self, name: str) -> bytes | None:
        """Camera ``name``'s newest picture as JPEG; None before its first frame."""
        with self._lock:
            feed, frame = self._feeds.get(name), self._newest.get(name)
        if feed is None or frame is None:
            return None
        image = self._picture(name, feed, frame)
        return None if image is None else feed.encode(image)

    def _picture(self, name: str, feed: JpegFeed, frame: Frame) -> BGRImage | None:
        try:
            return frame.image
        except Exception as exc:  # noqa: BLE001 - logged and counted: the view goes on
            feed.count_error()
            self._throttle.warning(
                ("picture", name), "web view: camera %s: no picture: %s", name, exc
            )
            return None

    def start(self) -> None:
        """Start the encoder threads (each waits until somebody watches)."""
        for feed in self._all():
            feed.start()

    def close(self) -> None:
        """End the encoders and the cameras' streams."""
        for feed in self._all():
            feed.output.close()
            feed.close()

    def join(self, timeout: float) -> None:
        """Wait for the encoder threads after :meth:`close`."""
        for feed in self._all():
            feed.join(timeout)

    def stats(self) -> dict[str, WebOutputStats]:
        """Each camera feed's counters, by camera name."""
        with self._lock:
            feeds = dict(self._feeds)
        return {name: feed.stats() for name, feed in feeds.items()}

    def _all(self) -> list[JpegFeed]:
        with self._lock:
            return list(self._feeds.values())
