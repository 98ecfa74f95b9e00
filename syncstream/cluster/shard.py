"""The shard: runs on one node of a Ray cluster (as an actor) and reads its cameras.

A :class:`Shard` owns a :class:`~syncstream.StreamGroup` of the cameras placed on its node:
their senders and decoding stay there. Every decoded frame becomes a
:class:`~syncstream.cluster.frames.FrameRecord` in a bounded buffer, which the driver
drains with :meth:`Shard.poll`. This module imports no Ray: the driver wraps the class
with ``ray.remote``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from typing import Any

from ..config import Camera, GroupConfig
from ..frames import Frame
from ..group import StreamGroup
from ..logs import Throttle
from .frames import FrameRecord, PictureMode, shrink

__all__ = ["PollResult", "Shard"]

logger = logging.getLogger(__name__)

#: (epoch, newest rseq, records, records dropped unpolled so far, camera -> stream state)
PollResult = tuple[str, int, list[FrameRecord], int, dict[str, str]]


class Shard:
    """Reads ``cameras`` (``Camera.model_dump()`` dicts) and keeps their frames' records.

    ``options`` are a :class:`~syncstream.GroupConfig` dump. At most ``buffer``
    records wait for the driver; beyond that the oldest are dropped and counted. Each life
    of the shard (a restart after its process died) has its own ``epoch``; its records are
    numbered from 0 again.
    """

    def __init__(
        self,
        name: str,
        cameras: list[dict[str, Any]],
        options: dict[str, Any],
        pictures: PictureMode = "none",
        buffer: int = 1024,
    ) -> None:
        self.name = name
        self.epoch = uuid.uuid4().hex
        self._pictures = pictures
        self._cond = threading.Condition()
        self._records: deque[FrameRecord] = deque(maxlen=buffer)
        self._next = 0
        self._dropped = 0
        self._throttle = Throttle(logger)
        models = [Camera.model_validate(camera) for camera in cameras]
        self._group = StreamGroup(models, GroupConfig.model_validate(options))
        self._group.start()
        for stream in self._group.streams.values():
            stream.add_listener(self._on_frame)
        logger.info("shard %s: %d cameras started (pid %d)", name, len(models), os.getpid())

    def _on_frame(self, frame: Frame) -> None:
        picture = None
        if self._pictures != "none":
            try:
                image = frame.image
            except Exception:  # noqa: BLE001 - a picture that failed to convert: none sent
                self._throttle.warning(
                    "convert", "shard %s: %s: no picture", self.name, frame.source
                )
            else:
                picture = shrink(image) if self._pictures == "sub" else image
        with self._cond:
            if len(self._records) == self._records.maxlen:
                self._dropped += 1
            self._records.append(
                FrameRecord(
                    self._next,
                    frame.source,
                    frame.seq,
                    frame.capture_time,
                    frame.arrival_time,
                    frame.width,
                    frame.height,
                    picture,
                )
            )
            self._next += 1
            self._cond.notify_all()

    def poll(self, epoch: str, after: int, wait: float, limit: int = 512) -> PollResult:
        """The records numbered after ``after`` (all of them when ``epoch`` is not this
        life's), at most ``limit``, waiting up to ``wait`` s for the first."""
        if epoch != self.epoch:
            after = -1
        deadline = time.monotonic() + wait
        with self._cond:
            while self._next - 1 <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            records = [r for r in self._records if r.rseq > after][:limit]
            dropped = self._dropped
        states = {name: s.state.value for name, s in self._group.streams.items()}
        newest = records[-1].rseq if records else after
        return self.epoch, newest, records, dropped, states

    def pid(self) -> int:
        """The shard's process id (to kill it in tests)."""
        return os.getpid()

    def close(self) -> None:
        """Stop the shard's cameras."""
        self._group.close()
        with self._cond:
            self._cond.notify_all()
