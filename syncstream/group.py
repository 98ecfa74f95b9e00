"""StreamGroup: several cameras read at once and handed over as synchronized frame sets.

The group owns everything it starts: the cameras' senders (:class:`SenderFleet`), one
:class:`VideoStream` per camera, the alignment thread and one worker per processor.
Reader threads hand every decoded frame to the alignment thread, which feeds the pure
:class:`~syncstream.sync.Aligner` and publishes each complete :class:`FrameSet` to the
newest-set slot that :meth:`StreamGroup.read` takes from, and to every processor's slot.
Nothing downstream can block a reader: a slow consumer only skips sets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from types import TracebackType
from typing import TypedDict, Unpack

from .clock import ClockOffset
from .config import (
    Camera,
    ConvertPolicy,
    GroupConfig,
    MissingPolicy,
    ReaderSettings,
    StreamConfig,
    SyncPolicy,
)
from .errors import (
    GroupStartError,
    ProcessorError,
    ReadTimeout,
    StreamClosed,
    StreamEnded,
    StreamFailed,
    SyncStreamError,
)
from .frames import Frame, FrameSet
from .processors.base import ErrorPolicy, Processor, ProcessorWorker, SupportsAttach
from .senders.base import Sender
from .senders.fleet import SenderFleet
from .sources.base import EncodedPacket
from .stats import CameraStats, GroupStats, per_second, percentile
from .stream import StreamState, VideoStream
from .sync import Aligner, Match

__all__ = ["GroupOptions", "StreamGroup"]

logger = logging.getLogger(__name__)

_WINDOW = 300  # sets kept for the skew and latency percentiles
_RATE_WINDOW = 2.0  # seconds of sets used for sets_per_second
_CHECK_INTERVAL = 0.25  # the alignment thread looks at the streams' states this often
_INBOX = 4096  # frames waiting for the alignment thread, at most
_JOIN_TIMEOUT = 2.0
_DONE = (StreamState.ENDED, StreamState.FAILED, StreamState.CLOSED)


class GroupOptions(TypedDict, total=False):
    """Keyword options of :class:`StreamGroup`: the fields of :class:`GroupConfig`."""

    sync: SyncPolicy
    max_skew: float | None
    max_wait: float
    on_missing: MissingPolicy
    exact_tolerance: float
    first_frame_wait: float
    clock_rounds: int
    convert: ConvertPolicy


def _as_camera(camera: Camera | str, index: int) -> Camera:
    return camera if isinstance(camera, Camera) else Camera(name=f"cam{index}", url=camera)


class StreamGroup:
    """Reads several cameras and hands over frame sets aligned by capture time.

    >>> cams = [Camera(name="door", url="udp://127.0.0.1:9001"),   # doctest: +SKIP
    ...         Camera(name="hall", sender=SenderConfig(), port=9002)]
    >>> with StreamGroup(cams, sync="nearest", max_skew=0.02) as group:  # doctest: +SKIP
    ...     fs = group.read(timeout=2.0)
    ...     print(fs["door"].image.shape, fs.skew, fs.latency, fs.missing)
    """

    def __init__(
        self,
        cameras: Sequence[Camera | str],
        config: GroupConfig | None = None,
        **options: Unpack[GroupOptions],
    ) -> None:
        """Describe the group; nothing is started before :meth:`start`.

        ``cameras`` are :class:`Camera` models (or plain URLs, named cam0, cam1, ...);
        ``options`` override fields of ``config``. Raises ``ValueError`` for an empty
        list, duplicate names or a bad option.
        """
        self.cameras = [_as_camera(camera, i) for i, camera in enumerate(cameras)]
        if not self.cameras:
            raise ValueError("a StreamGroup needs at least one camera")
        names = [camera.name for camera in self.cameras]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"camera names must be unique; repeated: {duplicates}")
        base = config.model_dump() if config is not None else {}
        self.config = GroupConfig.model_validate({**base, **options})
        self.names = tuple(names)
        self.streams: dict[str, VideoStream] = {}
        self._fleet = SenderFleet(self.cameras, clock_rounds=self.config.clock_rounds)
        self._offsets: dict[str, float] = {}
        self._cond = threading.Condition()
        self._inbox: deque[Frame] = deque(maxlen=_INBOX)
        self._aligner: Aligner[Frame] | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[ProcessorWorker] = []
        self._started = False
        self._closed = False
        self._ended = False
        self._error: BaseException | None = None
        self._latest: FrameSet | None = None
        self._seq = -1
        self._last_read_seq = -1
        self._partial = 0
        self._delivered = 0
        self._skipped = 0
        self._overflow = 0
        self._skews: deque[float] = deque(maxlen=_WINDOW)
        self._latencies: deque[float] = deque(maxlen=_WINDOW)
        self._camera_offsets: dict[str, deque[float]] = {
            camera.name: deque(maxlen=_WINDOW) for camera in self.cameras
        }
        self._emits: deque[float] = deque(maxlen=512)
        self._packet_listeners: list[Callable[[str, EncodedPacket], None]] = []
        self._convert_in_reader = self.config.convert == "reader"

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> StreamGroup:
        """Start senders, streams, alignment and processors; idempotent.

        Raises :class:`GroupStartError` naming every camera that failed to start, after
        stopping whatever did start. A closed group cannot restart.
        """
        with self._cond:
            if self._closed:
                raise StreamClosed("stream group is closed and cannot restart")
            if self._started:
                return self
            self._started = True
        try:
            self._start_cameras()
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
        )
        self._thread = threading.Thread(target=self._run, name="syncstream-group", daemon=True)
        self._thread.start()
        with self._cond:
            workers = list(self._workers)
        for worker in workers:
            worker.start()
        logger.info(
            "group of %d cameras started (%s, max_skew %s)",
            len(self.names),
            config.sync,
            config.max_skew,
        )
        return self

    def _start_cameras(self) -> None:
        self._fleet.connect()
        failures: dict[str, BaseException] = {}
        for camera in self.cameras:
            offset = camera.clock_offset
            if offset is None:
                measured = self._fleet.offsets.get(camera.name)
                offset = measured.offset if measured is not None else 0.0
            self._offsets[camera.name] = offset
            settings = camera.model_dump(include=set(ReaderSettings.model_fields))
            try:
                config = StreamConfig(
                    url=camera.listen_url, name=camera.name, clock_offset=offset, **settings
                )
                stream = VideoStream(config)
                stream.add_listener(self._on_frame, consume=True)
                with self._cond:  # each packet listener lands on each stream exactly once
                    for packet_listener in self._packet_listeners:
                        stream.add_packet_listener(partial(packet_listener, camera.name))
                    self.streams[camera.name] = stream
                stream.start()
            except (SyncStreamError, ValueError) as exc:
                failures[camera.name] = exc
        if failures:
            raise GroupStartError(failures)
        self._fleet.start()  # receivers listen first: the first keyframe is not lost

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop processors, alignment, senders and streams; idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            workers = list(self._workers)
        for worker in workers:
            worker.close(timeout)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._fleet.stop()
        for stream in self.streams.values():
            stream.close(timeout)
        logger.info("group of %d cameras closed", len(self.names))

    def __enter__(self) -> StreamGroup:
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
        """Run ``processor(frameset)`` on its own worker for every new set it can take.

        The worker has a slot of one: while the processor is busy, newer sets replace the
        waiting one (counted as skipped), so it never slows the group or the others.
        ``on_error="stop"`` makes an exception fatal: :meth:`read` and :meth:`wait` raise
        :class:`ProcessorError`. A processor with a ``close()`` method is closed with the
        group. A processor with an ``attach(group)`` method
        (:class:`~syncstream.processors.SupportsAttach`) is attached first. Returns the
        worker (its ``stats``).
        """
        with self._cond:
            if self._closed:
                raise StreamClosed("stream group is closed")
        if isinstance(processor, SupportsAttach):
            processor.attach(self)
        worker = ProcessorWorker(processor, name=name, on_error=on_error, on_fatal=self._fatal)
        with self._cond:
            if self._closed:
                raise StreamClosed("stream group is closed")
            taken = {w.name for w in self._workers}
            base, count = worker.name, 1
            while worker.name in taken:
                count += 1
                worker.name = f"{base}#{count}"
            self._workers.append(worker)
            if self.config.convert == "auto" and getattr(processor, "uses_pictures", True):
                self._convert_in_reader = True
            running = self._thread is not None
        if running:
            worker.start()
        return worker

    def add_packet_listener(self, listener: Callable[[str, EncodedPacket], None]) -> None:
        """Call ``listener(camera_name, packet)`` for every encoded packet of every camera.

        See :meth:`VideoStream.add_packet_listener`: called in the camera's reader thread,
        it must return quickly; cameras whose source has no encoded packets never call it.
        Works before and after :meth:`start`.
        """
        with self._cond:
            self._packet_listeners.append(listener)
            for name, stream in self.streams.items():
                stream.add_packet_listener(partial(listener, name))

    def _fatal(self, error: ProcessorError) -> None:
        logger.error("%s; the group stops", error)
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    # -- consumer side ----------------------------------------------------------------

    def read(self, timeout: float | None = None) -> FrameSet:
        """Return the newest frame set not returned before, waiting up to ``timeout`` s.

        Raises ``ReadTimeout`` when none is complete in time, ``StreamEnded`` once every
        camera ended (files), ``StreamFailed`` when every camera stopped and one failed,
        ``ProcessorError`` after a fatal processor error, ``StreamClosed`` after close().
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                latest = self._latest
                if latest is not None and latest.seq > self._last_read_seq:
                    self._last_read_seq = latest.seq
                    self._delivered += 1
                    return latest
                self._raise_if_done()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ReadTimeout(f"no frame set within {timeout} s ({self._waiting_for()})")
                self._cond.wait(remaining)

    def __iter__(self) -> Iterator[FrameSet]:
        """Yield frame sets until the group ends (files) or is closed."""
        while True:
            try:
                yield self.read()
            except (StreamEnded, StreamClosed):
                return

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the group ends or is closed (True) or ``timeout`` passes (False).

        For programs where processors do all the work. Raises the fatal error of a
        processor or of the alignment thread, and ``StreamFailed`` like :meth:`read`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                try:
                    self._raise_if_done()
                except (StreamEnded, StreamClosed):
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def _raise_if_done(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise StreamClosed("stream group is closed")
        if not self._started:
            raise SyncStreamError("stream group not started; call start() or use `with`")
        if self._ended:
            failed = [n for n, s in self.streams.items() if s.state is StreamState.FAILED]
            if failed:
                raise StreamFailed(f"every camera stopped; failed: {', '.join(failed)}")
            raise StreamEnded("every camera of the group ended")

    def _waiting_for(self) -> str:
        states = ", ".join(f"{n}: {s.state.value}" for n, s in self.streams.items())
        return states or "no streams"

    # -- alignment thread -------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        """Called in the camera's reader thread with each decoded frame."""
        with self._cond:
            if len(self._inbox) == _INBOX:
                self._overflow += 1  # the oldest waiting frame is pushed out
            self._inbox.append(frame)
            self._cond.notify_all()
        if self._convert_in_reader:
            # Converting here, while the set gathers, spreads a set's conversions over the
            # cameras' threads (the conversion releases the GIL) instead of leaving them all
            # to the first processor that reads the set.
            try:
                frame.image  # noqa: B018
            except Exception:  # left to the reader of .image, which raises it there
                logger.debug("%s: frame %d not converted", frame.source, frame.seq, exc_info=True)

    def _run(self) -> None:
        try:
            self._align_loop()
        except BaseException as exc:  # a bug must reach the owner, not vanish with the thread
            logger.exception("group alignment crashed")
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _align_loop(self) -> None:
        aligner = self._aligner
        assert aligner is not None
        next_check = time.monotonic() + _CHECK_INTERVAL
        while True:
            with self._cond:
                while not self._inbox and not self._closed and self._error is None:
                    now = time.monotonic()
                    wake = min(next_check, aligner.next_deadline(now) or next_check)
                    if wake <= now:
                        break
                    self._cond.wait(wake - now)
                if self._closed or self._error is not None:
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
                    if all(stream.state in _DONE for stream in self.streams.values()):
                        for match in aligner.poll(now + 2 * aligner.max_wait):  # flush
                            self._publish(match)
                        self._ended = True
                        self._cond.notify_all()
                        logger.info("every camera of the group stopped")
                        return

    def _publish(self, match: Match[Frame]) -> None:
        """Make ``match`` the newest set (the caller holds the lock) and feed processors."""
        self._seq += 1
        frameset = FrameSet(
            seq=self._seq,
            frames=match.frames,
            missing=match.missing,
            skew=match.skew,
            time=match.time,
            clock=match.clock,
            emitted_time=time.time(),
            emitted_mono=time.monotonic(),
        )
        previous = self._latest
        if previous is not None and previous.seq > self._last_read_seq:
            self._skipped += 1
        self._latest = frameset
        if match.missing:
            self._partial += 1
        self._skews.append(match.skew)
        self._latencies.append(frameset.latency)
        for name, offset in match.offsets.items():
            self._camera_offsets[name].append(offset)
        self._emits.append(frameset.emitted_mono)
        self._cond.notify_all()
        for worker in self._workers:
            worker.submit(frameset)

    # -- stats ------------------------------------------------------------------------

    @property
    def stats(self) -> GroupStats:
        """A snapshot of the group's, its cameras' and its processors' counters."""
        senders = self._fleet.senders
        with self._cond:
            aligner = self._aligner
            cameras = {}
            for name, stream in self.streams.items():
                counts = aligner.counts(name) if aligner is not None else None
                sender = senders.get(name)
                offsets = sorted(self._camera_offsets[name])
                cameras[name] = CameraStats(
                    name=name,
                    stream=stream.stats,
                    used=counts.used if counts else 0,
                    dropped=counts.dropped if counts else 0,
                    waiting=aligner.waiting(name) if aligner is not None else 0,
                    clock_offset=self._offsets.get(name, 0.0),
                    sender_running=None if sender is None else sender.is_running,
                    sender_restarts=0 if sender is None else sender.restarts,
                    offset_p50=percentile(offsets, 0.5),
                )
            skews, latencies = sorted(self._skews), sorted(self._latencies)
            rate = per_second(self._emits, time.monotonic(), _RATE_WINDOW)
            return GroupStats(
                sets=self._seq + 1,
                partial=self._partial,
                delivered=self._delivered,
                skipped=self._skipped,
                sets_per_second=rate,
                skew_p50=percentile(skews, 0.5),
                skew_p95=percentile(skews, 0.95),
                latency_p50=percentile(latencies, 0.5),
                latency_p95=percentile(latencies, 0.95),
                clock=aligner.clock if aligner is not None else "sender",
                cameras=cameras,
                processors={w.name: w.stats for w in self._workers},
                overflow=self._overflow,
            )

    @property
    def clock_offsets(self) -> dict[str, ClockOffset]:
        """The measured offset of each remote camera's host: value, uncertainty, round trip.

        Cameras without an SSH host are not listed (their offset is their ``clock_offset``
        field, or 0); see also ``stats.cameras[name].clock_offset``.
        """
        return dict(self._fleet.offsets)

    @property
    def senders(self) -> dict[str, Sender]:
        """The running senders by camera name (LocalSender or RemoteSender)."""
        return dict(self._fleet.senders)

    def __repr__(self) -> str:
        return f"StreamGroup({list(self.names)}, sync={self.config.sync!r})"
