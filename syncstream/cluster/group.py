"""ClusterGroup: cameras sharded over the nodes of a Ray cluster, merged by capture time.

Each shard (:class:`~syncstream.cluster.shard.Shard`, a Ray actor pinned to a node by a
custom resource) reads its cameras with a local :class:`~syncstream.StreamGroup`. In the
driver, one poller thread per shard pulls the shard's frame records
(``ray.get(shard.poll.remote(...), timeout=...)``) into a bounded inbox, and the merger
thread feeds them to the pure :class:`~syncstream.sync.Aligner`, which emits
:class:`~syncstream.FrameSet` objects of :class:`RemoteFrame`. A shard that is down
(its node died, its actor restarts) leaves its cameras ``missing``; the rest flow.
"""

from __future__ import annotations

import importlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType, TracebackType
from typing import Any, Unpack

from ..config import Camera, GroupConfig
from ..errors import ClusterError, ConfigError, MissingDependency, StreamClosed, SyncStreamError
from ..frames import FrameSet
from ..group import GroupOptions
from ..slot import LatestSlot
from ..sync import Aligner
from .frames import FrameRecord, PictureMode, RemoteFrame
from .poller import Poller
from .shard import Shard
from .stats import ClusterCameraStats, ClusterStats

__all__ = ["ClusterGroup"]

logger = logging.getLogger(__name__)

_INBOX = 4096  # records waiting for the merger, at most
_JOIN_TIMEOUT = 5.0
_PICTURE_BUFFER = 32  # records a shard keeps unpolled when they carry pictures
_KEYFRAME_GUESS = 2.0  # s between keyframes of a camera whose sender is not ours


def _ray() -> ModuleType:
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise MissingDependency(
            "ClusterGroup needs Ray: pip install 'syncstream[cluster]'"
        ) from exc


def _check_reachable(address: str, timeout: float) -> None:
    """Raise ClusterError unless something accepts TCP connections at ``host:port``."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"cluster address {address!r} is not host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(f"Ray cluster at {address} is unreachable: {exc}") from exc


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
        self._sets: LatestSlot[FrameSet] = LatestSlot(
            "cluster group", noun="frame set", cond=self.cond
        )
        self._inbox: deque[RemoteFrame] = deque()
        self._overflow = 0
        self._received = dict.fromkeys(names, 0)
        self._missing = dict.fromkeys(names, 0)
        self._partial = 0
        self._aligner: Aligner[RemoteFrame] | None = None
        self._pollers: list[Poller] = []
        self._merger: threading.Thread | None = None
        self._started = False
        self._closed = False
        self._error: BaseException | None = None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> ClusterGroup:
        """Connect to the cluster, start a shard per placement resource and the merger;
        idempotent. Raises :class:`ClusterError` when the cluster cannot be reached."""
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
        config = self.config
        self._aligner = Aligner(
            self.names,
            policy=config.sync,
            max_skew=config.max_skew,
            max_wait=config.max_wait,
            on_missing=config.on_missing,
            history=max(camera.history for camera in self.cameras),
            exact_tolerance=config.exact_tolerance,
            start_mono=time.monotonic(),
            first_frame_wait=config.first_frame_wait,
            first_frame_grace=self._first_frame_grace(),
        )
        self._merger = threading.Thread(target=self._run, name="syncstream-cluster", daemon=True)
        self._merger.start()
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
        """Connect to the cluster (an explicit ``host:port`` is checked first, so a wrong
        address fails within ``connect_timeout``), or use the Ray this process is on."""
        ray = _ray()
        self.ray = ray
        address = self.address
        explicit = address not in (None, "auto", "local")
        if explicit:
            assert address is not None
            _check_reachable(address, self.connect_timeout)
        if ray.is_initialized():
            connected = ray.get_runtime_context().gcs_address
            if explicit and address != connected:
                raise ClusterError(
                    f"this process is connected to the Ray cluster at {connected}, not {address}"
                )
            return
        try:
            ray.init(address=address, logging_level=logging.WARNING)
            self._owns_ray = True  # disconnected again by close()
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError
            raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}") from exc

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
            actor = remote.options(**options).remote(
                resource,
                [camera.model_dump() for camera in cameras],
                self.config.model_dump(),  # the shard's group: the same settings
                self.pictures,
                buffer,
            )
            self._pollers.append(Poller(self, resource, actor, [c.name for c in cameras]))

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop the pollers, the merger and the shards (their cameras); idempotent."""
        with self.cond:
            if self._closed:
                return
            self._closed = True
            self.stopping.set()
            self.cond.notify_all()
        for poller in self._pollers:
            if poller.thread.is_alive():
                poller.thread.join(timeout)
        if self._merger is not None:
            self._merger.join(timeout)
        for poller in self._pollers:
            try:
                self.ray.get(poller.actor.close.remote(), timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - a shard that is down has nothing to close
                logger.warning("shard %s: close failed: %s", poller.name, exc)
            try:
                self.ray.kill(poller.actor, no_restart=True)
            except Exception as exc:  # noqa: BLE001
                logger.warning("shard %s: kill failed: %s", poller.name, exc)
        self._sets.close()
        if self._owns_ray:
            self.ray.shutdown()
        logger.info("cluster group of %d cameras closed", len(self.names))

    def __enter__(self) -> ClusterGroup:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- frames in, sets out ----------------------------------------------------------

    def deliver(self, shard: str, records: list[FrameRecord]) -> None:
        """Hand a shard's records to the merger (a poller thread calls it)."""
        if not records:
            return
        now = time.monotonic()
        with self.cond:
            for record in records:
                if record.camera not in self._received:
                    continue
                if len(self._inbox) >= _INBOX:
                    self._overflow += 1
                    continue
                self._received[record.camera] += 1
                self._inbox.append(RemoteFrame(record, shard=shard, arrival_mono=now))
            self.cond.notify_all()

    def _run(self) -> None:
        try:
            self._merge_loop()
        except BaseException as exc:  # a bug must reach the owner, not vanish with the thread
            logger.exception("cluster merger crashed")
            with self.cond:
                self._error = exc
                self.cond.notify_all()

    def _merge_loop(self) -> None:
        aligner = self._aligner
        assert aligner is not None
        while True:
            with self.cond:
                while not self._inbox and not self._closed:
                    now = time.monotonic()
                    wake = aligner.next_deadline(now) or now + 0.25
                    if wake <= now:
                        break
                    self.cond.wait(wake - now)
                if self._closed:
                    return
                frames = list(self._inbox)
                self._inbox.clear()
                for frame in frames:
                    aligner.add(frame)
                now = time.monotonic()
                for match in aligner.poll(now):
                    frameset = FrameSet(
                        seq=self._sets.next_seq,
                        frames=match.frames,
                        missing=match.missing,
                        skew=match.skew,
                        time=match.time,
                        clock=match.clock,
                        emitted_time=time.time(),
                        emitted_mono=time.monotonic(),
                    )
                    self._sets.put(frameset)
                    if match.missing:
                        self._partial += 1
                    for name in match.missing:
                        self._missing[name] += 1

    def read(self, timeout: float | None = None) -> FrameSet:
        """Return the newest merged set not returned before, waiting up to ``timeout`` s.

        Raises ``ReadTimeout`` when none comes in time, ``StreamClosed`` after close().
        """
        return self._sets.take(timeout, check=self._raise_if_failed)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if not self._started:
            raise SyncStreamError("cluster group not started; call start() or use `with`")

    def __iter__(self) -> Iterator[FrameSet]:
        """Yield merged sets until the group is closed."""
        while True:
            try:
                yield self.read()
            except StreamClosed:
                return

    # -- stats ------------------------------------------------------------------------

    @property
    def stats(self) -> ClusterStats:
        """A snapshot of the sets, the shards and each camera's counts."""
        with self.cond:
            aligner = self._aligner
            cameras = {}
            overflow = self._overflow
            for poller in self._pollers:
                overflow += poller.dropped + poller.dropped_before
                for name in poller.cameras:
                    counts = aligner.counts(name) if aligner is not None else None
                    cameras[name] = ClusterCameraStats(
                        name=name,
                        shard=poller.name,
                        received=self._received[name],
                        used=counts.used if counts else 0,
                        dropped=counts.dropped if counts else 0,
                        missing=self._missing[name],
                        state=poller.states.get(name, "down"),
                    )
            return ClusterStats(
                sets=self._sets.seq + 1,
                partial=self._partial,
                delivered=self._sets.taken,
                skipped=self._sets.skipped,
                overflow=overflow,
                shard_failures=sum(p.failures for p in self._pollers),
                cameras={name: cameras[name] for name in self.names if name in cameras},
            )

    @property
    def shards(self) -> dict[str, Any]:
        """The shard actors by placement resource ("" for the unplaced shard)."""
        return {poller.name: poller.actor for poller in self._pollers}

    def __repr__(self) -> str:
        return f"ClusterGroup({list(self.names)}, shards={sorted(set(self.placement.values()))})"
