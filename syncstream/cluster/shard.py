"""The shard: runs on one node of a Ray cluster (as an actor) and reads its cameras.

A :class:`Shard` owns a :class:`~syncstream.StreamGroup` of the cameras placed on its node:
their senders, decoding and the shard's own processors (a recorder writing to the node's
disk) stay there. Every decoded frame becomes a
:class:`~syncstream.cluster.frames.FrameRecord` in a bounded buffer, which the driver
drains with :meth:`Shard.poll`; about once a second a poll also carries a
:class:`ShardReport` (the streams' and processors' figures). This module imports no Ray:
the driver wraps the class with ``ray.remote``.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ..config import Camera, GroupConfig
from ..frames import Frame
from ..group import StreamGroup
from ..logs import Throttle
from ..processors.base import Processor
from ..stats import ProcessorStats
from ..stream import StreamStats
from .frames import FrameRecord, PictureMode, shrink

__all__ = ["CameraReport", "PollResult", "ProcessorFactory", "Shard", "ShardReport", "pickled_size"]

logger = logging.getLogger(__name__)

#: Builds a processor in the shard's process, given the shard's name.
ProcessorFactory = Callable[[str], Processor]

REPORT_INTERVAL = 1.0  # s between the reports polls carry


class CameraReport(NamedTuple):
    """What the driver shows of a camera that only its shard sees."""

    stream: StreamStats
    clock_offset: float
    sender_running: bool | None
    sender_restarts: int


class ShardReport(NamedTuple):
    """The shard's figures, sent with a poll about once a second."""

    #: The Ray node the shard runs on (None outside Ray).
    node_id: str | None
    pid: int
    cameras: dict[str, CameraReport]
    #: The shard's processors by the name given in ``shard_processors``.
    processors: dict[str, ProcessorStats]


class PollResult(NamedTuple):
    """What one :meth:`Shard.poll` returns to the driver."""

    #: This life of the shard (a restarted shard numbers its records from 0 again).
    epoch: str
    #: The number of the newest record returned (``after`` when none).
    newest: int
    records: list[FrameRecord]
    #: Records this life of the shard dropped unpolled so far.
    dropped: int
    #: The figures, when a report is due (about once a second), else None.
    report: ShardReport | None
    #: This result pickled (protocol 5, arrays out of band, as Ray sends it), in bytes.
    nbytes: int = 0


def pickled_size(value: object) -> int:
    """Bytes of ``value`` pickled with protocol 5, its arrays' buffers out of band."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return len(data) + sum(buffer.raw().nbytes for buffer in buffers)


def _node_id() -> str | None:
    """The Ray node this process runs on; None outside a Ray worker (no Ray import)."""
    ray: Any = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


def _failed(name: str, error: BaseException) -> ProcessorStats:
    return ProcessorStats(
        name=name,
        processed=0,
        skipped=0,
        errors=1,
        mean_time=None,
        max_time=None,
        last_error=repr(error),
        running=False,
    )


class Shard:
    """Reads ``cameras`` (``Camera.model_dump()`` dicts) and keeps their frames' records.

    ``options`` are a :class:`~syncstream.GroupConfig` dump. At most ``buffer``
    records wait for the driver; beyond that the oldest are dropped and counted. Each life
    of the shard (a restart after its process died) has its own ``epoch``; its records are
    numbered from 0 again. ``processors`` maps a name to a factory called here with the
    shard's ``name``: the processor it returns is added to the shard's group (it sees the
    sets of this shard's cameras). A factory or ``attach`` that raises is logged and
    shown as a stopped processor with one error; the cameras are read all the same.
    """

    def __init__(
        self,
        name: str,
        cameras: list[dict[str, Any]],
        options: dict[str, Any],
        pictures: PictureMode = "none",
        buffer: int = 1024,
        processors: Mapping[str, ProcessorFactory] | None = None,
    ) -> None:
        self.name = name
        self.epoch = uuid.uuid4().hex
        self._pictures = pictures
        self._cond = threading.Condition()
        self._records: deque[FrameRecord] = deque(maxlen=buffer)
        self._next = 0
        self._dropped = 0
        self._reported_mono = -REPORT_INTERVAL
        self._throttle = Throttle(logger)
        self._node_id = _node_id()
        self._failed: dict[str, ProcessorStats] = {}
        # what start raises (a GroupStartError naming each failed camera) reaches the
        # driver through Ray as it is: every SyncStreamError pickles
        self._group = self._start(cameras, options, processors or {})
        for stream in self._group.streams.values():
            stream.add_listener(self._on_frame)
        logger.info("shard %s: %d cameras started (pid %d)", name, len(cameras), os.getpid())

    def _start(
        self,
        cameras: list[dict[str, Any]],
        options: dict[str, Any],
        processors: Mapping[str, ProcessorFactory],
    ) -> StreamGroup:
        models = [Camera.model_validate(camera) for camera in cameras]
        group = StreamGroup(models, GroupConfig.model_validate(options))
        for processor_name, factory in processors.items():
            try:  # before start(): a recorder taps the packets from the first one
                group.add_processor(factory(self.name), name=processor_name)
            except Exception as exc:  # noqa: BLE001 - the cameras are read all the same
                logger.error(
                    "shard %s: processor %s not started: %r", self.name, processor_name, exc
                )
                self._failed[processor_name] = _failed(processor_name, exc)
        return group.start()

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
        life's), at most ``limit``, waiting up to ``wait`` s for the first; with a
        :class:`ShardReport` when one is due (and always on a new ``epoch``)."""
        fresh = epoch != self.epoch
        if fresh:
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
        report = None
        now = time.monotonic()
        if fresh or now - self._reported_mono >= REPORT_INTERVAL:
            self._reported_mono = now
            report = self.report()
        newest = records[-1].rseq if records else after
        result = PollResult(self.epoch, newest, records, dropped, report)
        return result._replace(nbytes=pickled_size(result))

    def report(self) -> ShardReport:
        """The shard's node, process, cameras' and processors' figures now."""
        stats = self._group.stats
        cameras = {
            name: CameraReport(
                camera.stream, camera.clock_offset, camera.sender_running, camera.sender_restarts
            )
            for name, camera in stats.cameras.items()
        }
        processors = {**self._failed, **stats.processors}
        return ShardReport(self._node_id, os.getpid(), cameras, processors)

    def pid(self) -> int:
        """The shard's process id (to kill it in tests)."""
        return os.getpid()

    def close(self) -> None:
        """Stop the shard's processors and cameras."""
        self._group.close()
        with self._cond:
            self._cond.notify_all()
