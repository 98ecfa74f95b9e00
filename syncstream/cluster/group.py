"""ClusterGroup: cameras sharded over the nodes of a Ray cluster, merged by capture time.

Each shard (:class:`~syncstream.cluster.shard.Shard`, a Ray actor pinned to a node by a
custom resource) reads its cameras with a local :class:`~syncstream.StreamGroup`, which
runs the shard's processors (``shard_processors``) on the node. In the driver, one
poller thread per shard pulls the shard's frame records
(``ray.get(shard.poll.remote(...), timeout=...)``), and the
:class:`~syncstream.cluster.merger.Merger` aligns them into
:class:`~syncstream.FrameSet` objects of :class:`RemoteFrame`, for :meth:`read` and the
driver's processors. A shard that is down (its node died, its actor restarts) leaves its
cameras ``missing``; the rest flow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Unpack

from ..config import Camera, GroupConfig
from ..errors import (
    ConfigError,
    StreamClosed,
    StreamEnded,
    StreamFailed,
    SyncStreamError,
)
from ..frames import FrameSet
from ..group import GroupOptions
from ..processors.base import ErrorPolicy, Processor, ProcessorWorker, SupportsAttach
from ..processors.group_view import FrameHistory
from ..sources.base import EncodedPacket
from .connect import check_reachable, connect
from .frames import FrameRecord, PictureMode
from .merger import Merger
from .poller import Poller
from .shard import ProcessorFactory, Shard
from .stats import ClusterCameraStats, ClusterStats

__all__ = ["ClusterGroup"]

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT = 5.0
_PICTURE_BUFFER = 32  # records a shard keeps unpolled when they carry pictures
_KEYFRAME_GUESS = 2.0  # s between keyframes of a camera whose sender is not ours


# the name syncstream.cluster.nodes checks an address with
_check_reachable = check_reachable


class ClusterGroup:
    """Cameras read on the nodes of a Ray cluster, aligned into frame sets in the driver.

    ``placement`` maps a camera's name to the custom resource of the node that reads it
    (cameras not named go to one shard anywhere); each distinct resource is one shard, a
    Ray actor with ``resources={name: 0.001}``. ``address`` is the cluster's (``"auto"``,
    ``"host:port"``; None: the Ray this process is connected to, else a local one);
    a Ray already connected in this process is used as it is. ``options`` are those of
    :class:`~syncstream.StreamGroup` and align the merged sets.

    ``pictures``: ``"none"`` sends timestamps only (frames' :attr:`~RemoteFrame.image`
    raises), ``"sub"`` a picture shrunk to 160 pixels wide, ``"full"`` the whole picture.
    ``max_restarts`` is given to the shard actors (-1: restart forever); a restarted
    shard opens its cameras again. ``poll_timeout`` bounds every call to a shard.

    ``shard_processors`` maps a name to a factory (picklable: Ray sends it) called in each
    shard's process, in each of its lives, with the shard's name (its placement resource,
    "" for the unplaced shard); the processor it returns runs in the shard's group on
    the sets of that node's cameras: a :class:`~syncstream.processors.Recorder` records
    them on the node's disk. Their figures are in ``stats.processors`` as
    ``"name@shard"``. Processors on the merged sets run in the driver
    (:meth:`add_processor`).
    """

    def __init__(
        self,
        cameras: Sequence[Camera],
        *,
        address: str | None = None,
        placement: Mapping[str, str] | None = None,
        pictures: PictureMode = "none",
        max_restarts: int = -1,
        poll_timeout: float = 2.0,
        retry_interval: float = 0.5,
        connect_timeout: float = 3.0,
        config: GroupConfig | None = None,
        shard_processors: Mapping[str, ProcessorFactory] | None = None,
        **options: Unpack[GroupOptions],
    ) -> None:
        self.cameras = list(cameras)
        if not self.cameras:
            raise ConfigError("cameras: a ClusterGroup needs at least one camera")
        names = [camera.name for camera in self.cameras]
        if len(set(names)) != len(names):
            raise ConfigError(f"cameras: camera names must be unique, got {names}")
        self.placement = dict(placement or {})
        unknown = set(self.placement) - set(names)
        if unknown:
            raise ConfigError(f"placement: no camera named {sorted(unknown)}")
        if pictures not in ("none", "sub", "full"):
            raise ConfigError(f"pictures: 'none', 'sub' or 'full', got {pictures!r}")
        if poll_timeout <= 0 or retry_interval <= 0 or connect_timeout <= 0:
            raise ConfigError("poll_timeout, retry_interval and connect_timeout must be > 0")
        self.shard_processors = dict(shard_processors or {})
        for name, factory in self.shard_processors.items():
            if not name or not callable(factory):
                raise ConfigError(
                    f"shard_processors: a name to a factory of a processor, got {name!r}: "
                    f"{factory!r}"
                )
        base = config.model_dump() if config is not None else {}
        self.config = GroupConfig.model_validate({**base, **options})
        self.names = tuple(names)
        self.address = address
        self.pictures: PictureMode = pictures
        self.max_restarts = max_restarts
        self.poll_timeout = poll_timeout
        self.retry_interval = retry_interval
        self.connect_timeout = connect_timeout
        self.ray: Any = None
        self._owns_ray = False
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self._merger = Merger(self.cameras, self.config, self.cond, self._finished)
        self._pollers: list[Poller] = []
        self._started = False
        self._closed = False

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> ClusterGroup:
        """Connect to the cluster, start a shard per placement resource, the merger and
        the processors; idempotent. Raises :class:`ClusterError` when the cluster cannot
        be reached, :class:`ConfigError` when ``shard_processors`` cannot be sent."""
        with self.cond:
            if self._closed:
                raise StreamClosed("cluster group is closed and cannot restart")
            if self._started:
                return self
            self._started = True
        try:
            self._connect()
            self._start_shards()
        except BaseException:
            self.close()
            raise
        with self.cond:
            self._merger.start(self._first_frame_grace())
            workers = list(self._merger.workers)
        for worker in workers:
            worker.start()
        for poller in self._pollers:
            poller.thread.start()
        logger.info(
            "cluster group of %d cameras on %d shards started", len(self.names), len(self._pollers)
        )
        return self

    def _first_frame_grace(self) -> float:
        """How long a camera not yet seen may hold sets once the others deliver: as in
        :class:`~syncstream.StreamGroup`, two of the longest keyframe intervals plus
        ``max_wait``; a shard opening its cameras takes that long at most."""
        intervals = [
            c.sender.effective_gop / c.sender.fps if c.sender is not None else _KEYFRAME_GUESS
            for c in self.cameras
        ]
        return 2 * max(intervals) + self.config.max_wait

    def _connect(self) -> None:
        """Connect to the cluster, or use the Ray this process is connected to."""
        self.ray, self._owns_ray = connect(self.address, self.connect_timeout)

    def _start_shards(self) -> None:
        ray = self.ray
        shards: dict[str, list[Camera]] = {}
        for camera in self.cameras:
            shards.setdefault(self.placement.get(camera.name, ""), []).append(camera)
        remote = ray.remote(Shard)
        buffer = 1024 if self.pictures == "none" else _PICTURE_BUFFER
        for resource, cameras in shards.items():
            options: dict[str, Any] = {
                "num_cpus": 0,
                "max_restarts": self.max_restarts,
                "max_concurrency": 4,
            }
            if resource:
                options["resources"] = {resource: 0.001}
            try:
                actor = remote.options(**options).remote(
                    resource,
                    [camera.model_dump() for camera in cameras],
                    self.config.model_dump(),  # the shard's group: the same settings
                    self.pictures,
                    buffer,
                    self.shard_processors,
                )
            except TypeError as exc:  # Ray could not pickle an argument: a factory
                raise ConfigError(
                    f"shard_processors: Ray cannot send them to shard {resource!r}: {exc}"
                ) from exc
            self._pollers.append(Poller(self, resource, actor, [c.name for c in cameras]))

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop the pollers, the driver's processors, the merger and the shards (their
        processors and cameras); idempotent."""
        with self.cond:
            if self._closed:
                return
            self._closed = True
            self._merger.sets.close()  # read() raises at once, even with a set unread
            self.stopping.set()
            self.cond.notify_all()
            workers = list(self._merger.workers)
        for poller in self._pollers:
            if poller.thread.is_alive():
                poller.thread.join(timeout)
        for worker in workers:
            worker.close(timeout)
        merger = self._merger.thread
        if merger is not None:
            merger.join(timeout)
        self._close_shards(timeout)
        if self._owns_ray:
            self.ray.shutdown()
        logger.info("cluster group of %d cameras closed", len(self.names))

    def _close_shards(self, timeout: float) -> None:
        """Close every shard at once (``timeout`` for all), then end their actors."""
        if not self._pollers:
            return
        ray = self.ray
        calls = {poller.name: poller.actor.close.remote() for poller in self._pollers}
        ray.wait(list(calls.values()), num_returns=len(calls), timeout=timeout)
        for poller in self._pollers:
            try:
                ray.get(calls[poller.name], timeout=0)
            except Exception as exc:  # noqa: BLE001 - a shard that is down has nothing to close
                logger.warning("shard %s: close failed: %s", poller.name, exc)
            try:
                ray.kill(poller.actor, no_restart=True)
            except Exception as exc:  # noqa: BLE001
                logger.warning("shard %s: kill failed: %s", poller.name, exc)

    def __enter__(self) -> ClusterGroup:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- processors -------------------------------------------------------------------

    def add_processor(
        self, processor: Processor, *, name: str | None = None, on_error: ErrorPolicy = "log"
    ) -> ProcessorWorker:
        """Run ``processor(frameset)`` in the driver on its own worker for every merged set
        it can take, as :meth:`StreamGroup.add_processor` does (a slot of one: a busy
        processor skips sets, never slows the group; ``on_error="stop"`` makes an
        exception fatal; ``attach(group)`` is called first; ``close()`` with the group).
        Returns the worker. Processors on a node's own sets: ``shard_processors``.
        """
        with self.cond:
            if self._closed:
                raise StreamClosed("cluster group is closed")
        if self.pictures == "none" and getattr(processor, "uses_pictures", True):
            logger.warning(
                "processor %s may read pictures, but the cluster group's frames carry none "
                '(pictures="none"): Frame.image raises; use pictures="sub" or "full"',
                name or processor,
            )
        if isinstance(processor, SupportsAttach):
            processor.attach(self)
        worker = ProcessorWorker(processor, name=name, on_error=on_error, on_fatal=self._fatal)
        with self.cond:
            if self._closed:
                raise StreamClosed("cluster group is closed")
            taken = {w.name for w in self._merger.workers}
            base, count = worker.name, 1
            while worker.name in taken:
                count += 1
                worker.name = f"{base}#{count}"
            self._merger.workers.append(worker)
            running = self._merger.thread is not None
        if running:
            worker.start()
        return worker

    def _fatal(self, error: SyncStreamError) -> None:
        logger.error("%s; the cluster group stops", error)
        with self.cond:
            if self._merger.error is None:
                self._merger.error = error
            self.cond.notify_all()

    def add_packet_listener(self, listener: Callable[[str, EncodedPacket], None]) -> None:
        """Refused: encoded packets stay on the node that reads the camera. Record with a
        :class:`~syncstream.processors.Recorder` in ``shard_processors``."""
        raise ConfigError(
            "a ClusterGroup has no encoded packets in the driver: they stay on the nodes; "
            "run packet processors (a Recorder) on the nodes with shard_processors"
        )

    @property
    def streams(self) -> Mapping[str, FrameHistory]:
        """Each camera's recent frames (:class:`RemoteFrame`) as they reached the driver."""
        return dict(self._merger.streams)

    # -- frames in, sets out ----------------------------------------------------------

    def deliver(self, shard: str, records: list[FrameRecord]) -> None:
        """Hand a shard's records to the merger (a poller thread calls it)."""
        self._merger.deliver(shard, records)

    def _finished(self) -> bool:
        """Whether no camera will deliver again (the caller holds the lock)."""
        return bool(self._pollers) and all(poller.finished() for poller in self._pollers)

    def read(self, timeout: float | None = None) -> FrameSet:
        """Return the newest merged set not returned before, waiting up to ``timeout`` s.

        Raises ``ReadTimeout`` when none comes in time, ``StreamEnded`` once every camera
        ended (files), ``StreamFailed`` when every camera stopped and one failed (or its
        shard did), ``ProcessorError`` after a fatal driver processor error,
        ``StreamClosed`` after close().
        """
        return self._merger.sets.take(timeout, check=self._raise_if_done, detail=self._states)

    def __iter__(self) -> Iterator[FrameSet]:
        """Yield merged sets until the group ends (files) or is closed."""
        while True:
            try:
                yield self.read()
            except (StreamEnded, StreamClosed):
                return

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the group ends or is closed (True) or ``timeout`` passes (False).

        For programs where processors do all the work; raises as :meth:`read` does.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                try:
                    self._raise_if_done()
                except (StreamEnded, StreamClosed):
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.cond.wait(remaining)

    def _raise_if_done(self) -> None:
        merger = self._merger
        if merger.error is not None:
            raise merger.error
        if self._closed:
            raise StreamClosed("cluster group is closed")
        if not self._started:
            raise SyncStreamError("cluster group not started; call start() or use `with`")
        if merger.ended:
            failed = [name for poller in self._pollers for name in poller.failed_cameras()]
            if failed:
                raise StreamFailed(f"every camera stopped; failed: {', '.join(failed)}")
            raise StreamEnded("every camera of the cluster group ended")

    def _states(self) -> str:
        """Each camera's state, for a ReadTimeout's message."""
        with self.cond:
            found = []
            for poller in self._pollers:
                for name in poller.cameras:
                    stream = poller.camera(name).stream
                    waiting = "" if stream.waiting_for is None else f" ({stream.waiting_for})"
                    found.append(f"{name}: {stream.state.value}{waiting}")
        return ", ".join(found) or "no shards"

    # -- stats ------------------------------------------------------------------------

    @property
    def stats(self) -> ClusterStats:
        """A snapshot of the merged sets, the cameras, the processors and the shards."""
        with self.cond:
            merger = self._merger
            cameras: dict[str, ClusterCameraStats] = {}
            processors = {}
            for poller in self._pollers:
                processors.update(poller.processors())
                for name in poller.cameras:
                    cameras[name] = merger.camera_stats(name, poller.name, poller.camera(name))
            pollers = self._pollers
            return merger.stats(
                cameras={name: cameras[name] for name in self.names if name in cameras},
                processors=processors,
                shards={poller.name: poller.stats() for poller in pollers},
                overflow=sum(poller.overflow for poller in pollers),
                shard_failures=sum(poller.failures for poller in pollers),
                bytes_received=sum(poller.nbytes for poller in pollers),
                polls=sum(poller.polls for poller in pollers),
            )

    @property
    def shards(self) -> dict[str, Any]:
        """The shard actors by placement resource ("" for the unplaced shard)."""
        return {poller.name: poller.actor for poller in self._pollers}

    def __repr__(self) -> str:
        return f"ClusterGroup({list(self.names)}, shards={sorted(set(self.placement.values()))})"
