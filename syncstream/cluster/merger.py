"""The driver's merger: the shards' frame records in, frame sets out.

The pollers hand records to :meth:`Merger.deliver`; the merger's thread feeds them, as
:class:`~syncstream.cluster.RemoteFrame` objects, to the pure
:class:`~syncstream.sync.Aligner` and publishes each set to the newest-set slot that
:meth:`ClusterGroup.read` takes from and to the slot of each driver processor, as
:class:`~syncstream.StreamGroup` does; it keeps the figures of the sets (skew, latency,
rate) and each camera's recent frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..config import Camera, GroupConfig
from ..frames import Frame, FrameSet
from ..processors.base import ProcessorWorker
from ..slot import LatestSlot
from ..stats import CameraStats, ProcessorStats, per_second, percentile
from ..sync import Aligner, Match
from .frames import FrameRecord, RemoteFrame
from .shard import CameraReport
from .stats import ClusterCameraStats, ClusterStats, ShardStats

__all__ = ["Merger", "RecentFrames"]

logger = logging.getLogger(__name__)

_INBOX = 4096  # records waiting for the merger, at most
_WINDOW = 300  # sets kept for the skew and latency percentiles
_RATE_WINDOW = 2.0  # seconds of sets used for sets_per_second
_CHECK_INTERVAL = 0.25  # s between looks at whether every shard's cameras finished


class RecentFrames:
    """A camera's newest frames as they reached the driver (``group.streams[name]``)."""

    def __init__(self, size: int, cond: threading.Condition) -> None:
        self._frames: deque[RemoteFrame] = deque(maxlen=size)
        self._cond = cond

    def append(self, frame: RemoteFrame) -> None:
        """Keep ``frame`` (the caller holds the lock)."""
        self._frames.append(frame)

    def recent(self) -> list[Frame]:
        """The last frames (the camera's ``history`` of them), oldest first."""
        with self._cond:
            return list(self._frames)


class Merger:
    """Aligns the records of every shard into frame sets, in its own thread.

    ``cond`` is the group's lock, which guards all of it. ``finished()`` (called under
    it) says when no camera will deliver again: the merger then emits what is waiting and
    ends.
    """

    def __init__(
        self,
        cameras: Sequence[Camera],
        config: GroupConfig,
        cond: threading.Condition,
        finished: Callable[[], bool],
    ) -> None:
        self.names = tuple(camera.name for camera in cameras)
        self.cond = cond
        self._config = config
        self._history = max(camera.history for camera in cameras)
        self._finished = finished
        # the newest set; once closed, read() raises at once (no drain of a set left over)
        # and the merger's thread ends
        self.sets: LatestSlot[FrameSet] = LatestSlot(
            "cluster group", noun="frame set", cond=cond, drain=False
        )
        self.workers: list[ProcessorWorker] = []
        self.streams = {camera.name: RecentFrames(camera.history, cond) for camera in cameras}
        self.aligner: Aligner[RemoteFrame] | None = None
        self.thread: threading.Thread | None = None
        self.ended = False
        self.error: BaseException | None = None
        self.overflow = 0
        self._inbox: deque[RemoteFrame] = deque()
        self._received = dict.fromkeys(self.names, 0)
        self._missing = dict.fromkeys(self.names, 0)
        self._partial = 0
        self._skews: deque[float] = deque(maxlen=_WINDOW)
        self._latencies: deque[float] = deque(maxlen=_WINDOW)
        self._offsets: dict[str, deque[float]] = {n: deque(maxlen=_WINDOW) for n in self.names}
        self._emits: deque[float] = deque(maxlen=512)
        self._start_mono = time.monotonic()

    def start(self, first_frame_grace: float) -> None:
        """Start aligning (the caller holds the lock)."""
        config = self._config
        self._start_mono = time.monotonic()
        self.aligner = Aligner(
            self.names,
            policy=config.sync,
            max_skew=config.max_skew,
            max_wait=config.max_wait,
            on_missing=config.on_missing,
            history=self._history,
            exact_tolerance=config.exact_tolerance,
            start_mono=self._start_mono,
            first_frame_wait=config.first_frame_wait,
            first_frame_grace=first_frame_grace,
        )
        self.thread = threading.Thread(target=self._run, name="syncstream-cluster", daemon=True)
        self.thread.start()

    def deliver(self, shard: str, records: list[FrameRecord]) -> None:
        """Take a shard's records (a poller thread calls it)."""
        if not records:
            return
        now = time.monotonic()
        with self.cond:
            for record in records:
                if record.camera not in self._received:
                    continue
                if len(self._inbox) >= _INBOX:
                    self.overflow += 1
                    continue
                frame = RemoteFrame(record, shard=shard, arrival_mono=now)
                self._received[record.camera] += 1
                self._inbox.append(frame)
                self.streams[record.camera].append(frame)
            self.cond.notify_all()

    # -- the merger's thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._merge_loop()
        except BaseException as exc:  # a bug must reach the owner, not vanish with the thread
            logger.exception("cluster merger crashed")
            with self.cond:
                self.error = exc
                self.cond.notify_all()

    def _merge_loop(self) -> None:
        aligner = self.aligner
        assert aligner is not None
        next_check = time.monotonic() + _CHECK_INTERVAL
        while True:
            with self.cond:
                while not self._inbox and not self.sets.closed:
                    now = time.monotonic()
                    wake = min(next_check, aligner.next_deadline(now) or next_check)
                    if wake <= now:
                        break
                    self.cond.wait(wake - now)
                if self.sets.closed:
                    return
                frames = list(self._inbox)
                self._inbox.clear()
                for frame in frames:
                    aligner.add(frame)
                now = time.monotonic()
                for match in aligner.poll(now):
                    self._publish(match)
                if now >= next_check:
                    next_check = now + _CHECK_INTERVAL
                    if self._finished():
                        for match in aligner.poll(now + 2 * aligner.max_wait):  # flush
                            self._publish(match)
                        self.ended = True
                        self.cond.notify_all()
                        logger.info("every camera of the cluster group stopped")
                        return

    def _publish(self, match: Match[RemoteFrame]) -> None:
        """Make ``match`` the newest set (the caller holds the lock); feed the processors."""
        frameset = FrameSet(
            seq=self.sets.next_seq,
            frames=match.frames,
            missing=match.missing,
            skew=match.skew,
            time=match.time,
            clock=match.clock,
            emitted_time=time.time(),
            emitted_mono=time.monotonic(),
        )
        self.sets.put(frameset)  # wakes read()
        if match.missing:
            self._partial += 1
        for name in match.missing:
            self._missing[name] += 1
        self._skews.append(match.skew)
        self._latencies.append(frameset.latency)
        for name, offset in match.offsets.items():
            self._offsets[name].append(offset)
        self._emits.append(frameset.emitted_mono)
        for worker in self.workers:
            worker.submit(frameset)

    # -- figures (the caller holds the lock) ------------------------------------------

    def camera_stats(self, name: str, shard: str, report: CameraReport) -> ClusterCameraStats:
        """Camera ``name``'s figures: its shard's ``report`` and the driver's alignment."""
        aligner = self.aligner
        counts = aligner.counts(name) if aligner is not None else None
        return ClusterCameraStats(
            name=name,
            stream=report.stream,
            used=counts.used if counts else 0,
            dropped=counts.dropped if counts else 0,
            waiting=aligner.waiting(name) if aligner is not None else 0,
            clock_offset=report.clock_offset,
            sender_running=report.sender_running,
            sender_restarts=report.sender_restarts,
            offset_p50=percentile(sorted(self._offsets[name]), 0.5),
            drop_reasons=counts.reasons() if counts else {},
            off_clock=aligner.off_clock(name) if aligner is not None else False,
            delay=aligner.delay(name) if aligner is not None else None,
            arrival_delay=aligner.arrival_delay(name) if aligner is not None else None,
            shard=shard,
            received=self._received[name],
            missing=self._missing[name],
        )

    def stats(
        self,
        *,
        cameras: dict[str, CameraStats],
        processors: dict[str, ProcessorStats],
        shards: dict[str, ShardStats],
        overflow: int,
        shard_failures: int,
        bytes_received: int,
        polls: int,
    ) -> ClusterStats:
        """The sets' figures, with the driver's processors before ``processors`` (the
        shards'), and the figures of the cameras and shards given."""
        aligner = self.aligner
        skews, latencies = sorted(self._skews), sorted(self._latencies)
        now = time.monotonic()
        return ClusterStats(
            sets=self.sets.seq + 1,
            partial=self._partial,
            delivered=self.sets.taken,
            skipped=self.sets.skipped,
            sets_per_second=per_second(
                self._emits, now, window=_RATE_WINDOW, start_mono=self._start_mono
            ),
            skew_p50=percentile(skews, 0.5),
            skew_p95=percentile(skews, 0.95),
            latency_p50=percentile(latencies, 0.5),
            latency_p95=percentile(latencies, 0.95),
            clock=aligner.clock if aligner is not None else "sender",
            cameras=cameras,
            processors={**{w.name: w.stats for w in self.workers}, **processors},
            overflow=self.overflow + overflow,
            shards=shards,
            shard_failures=shard_failures,
            bytes_received=bytes_received,
            polls=polls,
        )
