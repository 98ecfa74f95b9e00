"""StreamGroup: several cameras read at once and handed over as synchronized frame sets.

The group owns everything it starts: the cameras' senders (:class:`SenderFleet`), one
:class:`VideoStream` per camera and stream role, the alignment thread and one worker per
processor. Reader threads hand every decoded frame to the alignment thread, which feeds
the pure :class:`~syncstream.sync.Aligner` of each role (a :class:`_Lane`: ``main``, and
``sub`` or any further role a camera declares) and publishes each complete
:class:`FrameSet` to that role's newest-set slot, which :meth:`StreamGroup.read` takes
from, and to the slots of the role's processors. Nothing downstream can block a reader:
a slow consumer only skips sets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from types import TracebackType
from typing import TypedDict, Unpack

from .clock import ClockOffset
from .config import (
    MAIN_ROLE,
    Camera,
    ConvertPolicy,
    GroupConfig,
    MissingPolicy,
    ReaderSettings,
    StreamConfig,
    SyncPolicy,
)
from .errors import (
    ConfigError,
    ProcessorError,
    StreamClosed,
    StreamEnded,
    StreamFailed,
    SyncStreamError,
)
from .frames import Frame, FrameSet
from .ports import check_ports
from .processors.base import ErrorPolicy, Processor, ProcessorWorker, SupportsAttach
from .senders.base import Sender
from .senders.fleet import SenderFleet, sender_addresses
from .slot import LatestSlot
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
_KEYFRAME_GUESS = 2.0  # s between keyframes of a camera whose sender is not ours
_WAITING = (StreamState.CONNECTING, StreamState.STALE)  # states with stats.waiting_for
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


def _frame_bytes(frame: Frame) -> int:
    """What alignment counts a waiting frame as holding (its picture as BGR)."""
    return frame.nbytes


class _Lane:
    """The frame sets of one stream role: its aligner, newest set, figures and processors.

    Every camera feeds each lane: with its stream of the lane's role, or with its main
    stream when it has none of that role. The group's lock guards all of it.
    """

    def __init__(self, role: str, names: Sequence[str], cond: threading.Condition) -> None:
        self.role = role
        self.aligner: Aligner[Frame] | None = None
        self.sources: dict[str, VideoStream] = {}  # camera name -> the stream feeding it
        self.workers: list[ProcessorWorker] = []
        # the newest set, for read(role=...): its seq, delivered and skipped counts; once
        # the group is closed, read() raises at once (no drain of a set left over)
        where = "stream group" if role == MAIN_ROLE else f"stream group ({role} sets)"
        self.sets: LatestSlot[FrameSet] = LatestSlot(
            where, noun="frame set", cond=cond, drain=False
        )
        self.partial = 0
        self.skews: deque[float] = deque(maxlen=_WINDOW)
        self.latencies: deque[float] = deque(maxlen=_WINDOW)
        self.offsets: dict[str, deque[float]] = {name: deque(maxlen=_WINDOW) for name in names}
        self.emits: deque[float] = deque(maxlen=512)
        self.start_mono: float | None = None  # when alignment began, for sets_per_second
        self.off_clock: set[str] = set()  # cameras warned about as off clock


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
        ``options`` override fields of ``config``. Raises
        :class:`~syncstream.errors.ConfigError` (a ``ValueError``) for an empty list,
        duplicate names, a bad option or a UDP port that two cameras' streams are read on
        or sent to.
        """
        self.cameras = [_as_camera(camera, i) for i, camera in enumerate(cameras)]
        if not self.cameras:
            raise ConfigError("cameras: a StreamGroup needs at least one camera")
        names = [camera.name for camera in self.cameras]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"cameras: camera names must be unique; repeated: {duplicates}")
        check_ports(self.cameras)
        base = config.model_dump() if config is not None else {}
        self.config = GroupConfig.model_validate({**base, **options})
        self.names = tuple(names)
        roles = [MAIN_ROLE]
        for camera in self.cameras:
            roles += [role for role in camera.streams if role not in roles]
        #: ``"main"`` and every further stream role a camera declares, e.g. ``"sub"``.
        self.roles = tuple(roles)
        #: Each camera's main stream, by camera name (see :meth:`streams_of` for others).
        self.streams: dict[str, VideoStream] = {}
        self._cond = threading.Condition()
        self._lanes = {role: _Lane(role, names, self._cond) for role in self.roles}
        self._fleet = SenderFleet(self.cameras, clock_rounds=self.config.clock_rounds)
        self._offsets: dict[str, float] = {}
        self._inbox: deque[Frame] = deque()  # at most _INBOX frames, _inbox_budget bytes
        self._inbox_bytes = 0
        self._inbox_budget = sum(camera.max_history_bytes for camera in self.cameras)
        self._routes: dict[tuple[str, str], list[_Lane]] = {}  # (camera, role) -> lanes fed
        for camera in self.cameras:
            self._routes[camera.name, MAIN_ROLE] = [
                lane for lane in self._lanes.values() if lane.role not in camera.streams
            ]
            for role in camera.streams:
                self._routes[camera.name, role] = [self._lanes[role]]
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False
        self._closing: threading.Thread | None = None  # the thread running close()
        self._close_done = threading.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._overflow = 0
        self._packet_listeners: list[Callable[[str, EncodedPacket], None]] = []
        # (camera, role) whose frames the reader thread converts: see GroupConfig.convert
        self._convert: set[tuple[str, str]] = (
            set(self._routes) if self.config.convert == "reader" else set()
        )

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> StreamGroup:
        """Start senders, streams, alignment and processors; idempotent.

        Raises :class:`GroupStartError` naming every camera that failed to start, after
        stopping whatever did start. A closed group cannot restart. Whatever ends a start
        early (an error, ``KeyboardInterrupt``, :meth:`close` from another thread, which
        makes start raise :class:`StreamClosed`) is raised once the group is closed: no
        sender, local or remote, and no thread of the group is left running.
        """
        with self._cond:
            if self._closed:
                raise StreamClosed("stream group is closed and cannot restart")
            if self._started:
                return self
            self._started = True
        try:
            self._start_cameras()
            self._start_alignment()
        except BaseException:
            self.close()
            raise
        logger.info(
            "group of %d cameras started (%s, max_skew %s)",
            len(self.names),
            self.config.sync,
            self.config.max_skew,
        )
        return self

    def _start_alignment(self) -> None:
        config = self.config
        start_mono = time.monotonic()
        with self._cond:
            self._check_open()
            for lane in self._lanes.values():
                lane.start_mono = start_mono
                lane.aligner = Aligner(
                    self.names,
                    policy=config.sync,
                    max_skew=config.max_skew,
                    max_wait=config.max_wait,
                    on_missing=config.on_missing,
                    history=max(camera.history for camera in self.cameras),
                    exact_tolerance=config.exact_tolerance,
                    start_mono=start_mono,
                    first_frame_wait=config.first_frame_wait,
                    first_frame_grace=self._first_frame_grace(),
                    arrival_delays={
                        c.name: c.arrival_delay for c in self.cameras if c.arrival_delay is not None
                    },
                    frame_bytes=_frame_bytes,
                    max_bytes={c.name: c.max_history_bytes for c in self.cameras},
                )
            thread = threading.Thread(target=self._run, name="syncstream-group", daemon=True)
            thread.start()  # under the lock: a close() now sees it and joins it
            self._thread = thread
        for worker in self._all_workers():
            worker.start()  # StreamClosed once close() ran

    def _first_frame_grace(self) -> float:
        """How long a camera not yet seen may hold sets once every other camera delivers:
        two of the longest keyframe intervals (a decoder's first picture is the first
        keyframe after the stream was probed; a camera the group does not start is taken
        to send one every 2 s), plus ``max_wait``. A camera whose source receives nothing
        at all is waited for ``max_wait`` only (see :meth:`Aligner.set_idle`)."""
        intervals = [
            c.sender.effective_gop / c.sender.fps if c.sender is not None else _KEYFRAME_GUESS
            for c in self.cameras
        ]
        return 2 * max(intervals) + self.config.max_wait

    def _check_open(self) -> None:
        """Raise StreamClosed once close() was called (the caller holds the lock)."""
        if self._closed:
            raise StreamClosed("stream group was closed while starting")

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
                if camera.sender is not None and not camera.allowed_senders:
                    settings["allowed_senders"] = sender_addresses(camera)  # only its host
                for role in camera.roles:  # the camera's streams share its clock offset
                    config = StreamConfig(
                        url=camera.listen_url_for(role),
                        name=camera.name,
                        role=role,
                        clock_offset=offset,
                        **settings,
                    )
                    stream = VideoStream(config)
                    stream.add_listener(self._on_frame, consume=True)
                    with self._cond:  # each packet listener lands on each stream exactly once
                        self._check_open()  # registered before it starts: close() closes it
                        if role == MAIN_ROLE:
                            for packet_listener in self._packet_listeners:
                                stream.add_packet_listener(partial(packet_listener, camera.name))
                            self.streams[camera.name] = stream
                        for lane in self._routes[camera.name, role]:
                            lane.sources[camera.name] = stream
                    stream.start()
            except (SyncStreamError, ValueError) as exc:
                failures[camera.name] = exc
        with self._cond:
            self._check_open()
        # receivers listen first: the first keyframe is not lost. A camera whose reader
        # failed gets no sender; the others' are still tried, and the GroupStartError
        # raised names every failed camera: SSH, sender and reader alike.
        self._fleet.start(failed=failures)

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop processors, alignment, senders and streams; idempotent.

        Safe while :meth:`start` runs in another thread: senders still starting are
        stopped (see :meth:`SenderFleet.close`) and start raises. A call while another
        thread closes the group returns when that close is done.
        """
        with self._cond:
            closing = self._closing
            if closing is None:
                self._closing = threading.current_thread()
            self._closed = True
            for lane in self._lanes.values():
                lane.sets.close()  # read() raises at once, even with a set unread
            self._cond.notify_all()
        if closing is not None:
            if closing is not threading.current_thread():
                self._close_done.wait()
            return
        try:
            self._close(timeout)
        finally:
            self._close_done.set()

    def _close(self, timeout: float) -> None:
        for worker in self._all_workers():
            worker.close(timeout)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._fleet.close()
        for stream in self._all_streams():
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
        self,
        processor: Processor,
        *,
        name: str | None = None,
        on_error: ErrorPolicy = "log",
        role: str | None = None,
    ) -> ProcessorWorker:
        """Run ``processor(frameset)`` on its own worker for every new set it can take.

        The worker has a slot of one: while the processor is busy, newer sets replace the
        waiting one (counted as skipped), so it never slows the group or the others.
        ``on_error="stop"`` makes an exception fatal: :meth:`read` and :meth:`wait` raise
        :class:`ProcessorError`. A processor with a ``close()`` method is closed with the
        group. A processor with an ``attach(group)`` method
        (:class:`~syncstream.processors.SupportsAttach`) is attached first. Returns the
        worker (its ``stats``).

        ``role`` picks the sets it gets: those of the cameras' ``"main"`` streams, or of a
        further role such as ``"sub"`` (cameras without that stream give their main
        frames). None: the processor's own ``role`` attribute (the speaker detector asks
        for ``"sub"``), falling back to ``"main"`` when no camera has that role, else
        ``"main"``. A ``role`` given here that no camera has raises
        :class:`ConfigError` (a ``ValueError``).
        """
        with self._cond:
            if self._closed:
                raise StreamClosed("stream group is closed")
        lane = self._lane_for(processor, role)
        if isinstance(processor, SupportsAttach):
            processor.attach(self)
        worker = ProcessorWorker(processor, name=name, on_error=on_error, on_fatal=self._fatal)
        with self._cond:
            if self._closed:
                raise StreamClosed("stream group is closed")
            taken = {w.name for w in self._all_workers()}
            base, count = worker.name, 1
            while worker.name in taken:
                count += 1
                worker.name = f"{base}#{count}"
            lane.workers.append(worker)
            if self.config.convert == "auto" and getattr(processor, "uses_pictures", True):
                self._convert.update(r for r, lanes in self._routes.items() if lane in lanes)
            running = self._thread is not None
        if running:
            worker.start()
        return worker

    def _lane_for(self, processor: Processor, role: str | None) -> _Lane:
        if role is not None:
            return self._lane(role)
        wanted = getattr(processor, "role", MAIN_ROLE)
        if isinstance(wanted, str) and wanted in self._lanes:
            return self._lanes[wanted]
        if wanted != MAIN_ROLE:
            logger.info("%s: no camera has a %r stream; it gets main sets", processor, wanted)
        return self._lanes[MAIN_ROLE]

    def _lane(self, role: str) -> _Lane:
        try:
            return self._lanes[role]
        except KeyError:
            roles = list(self.roles)
            raise ConfigError(f"role: no camera has a {role!r} stream; roles: {roles}") from None

    def _all_workers(self) -> list[ProcessorWorker]:
        return [worker for lane in self._lanes.values() for worker in lane.workers]

    def add_packet_listener(self, listener: Callable[[str, EncodedPacket], None]) -> None:
        """Call ``listener(camera_name, packet)`` for every encoded packet of every camera's
        main stream.

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

    def read(self, timeout: float | None = None, *, role: str = MAIN_ROLE) -> FrameSet:
        """Return the newest frame set not returned before, waiting up to ``timeout`` s.

        ``role``: sets of the cameras' main streams, or of a further role (``"sub"``);
        each role has its own sets, numbered from 0. ``ValueError`` for an unknown role.

        Raises ``ReadTimeout`` when none is complete in time, ``StreamEnded`` once every
        camera ended (files), ``StreamFailed`` when every camera stopped and one failed,
        ``ProcessorError`` after a fatal processor error, ``StreamClosed`` after close()
        (at once, even when a set was left unread).
        """
        lane = self._lane(role)
        return lane.sets.take(timeout, check=self._raise_if_done, detail=self._waiting_for)

    def frames(
        self, timeout: float | None = None, duration: float | None = None, *, role: str = MAIN_ROLE
    ) -> Iterator[FrameSet]:
        """Yield frame sets as :meth:`read` returns them, until ``duration`` seconds have
        passed (None: no end), every camera ended (files) or the group is closed.

        Raises ``ReadTimeout`` when no set comes within ``timeout`` seconds (None: waits),
        and what :meth:`read` raises besides ``StreamEnded`` and ``StreamClosed``;
        ``ValueError`` at once for an unknown ``role``.

        >>> for fs in group.frames(timeout=2.0, duration=60.0):  # doctest: +SKIP
        ...     print(fs.seq, fs.skew, fs.missing)
        """
        lane = self._lane(role)
        return lane.sets.items(
            timeout, duration, check=self._raise_if_done, detail=self._waiting_for
        )

    def __iter__(self) -> Iterator[FrameSet]:
        """Yield frame sets until the group ends (files) or is closed: :meth:`frames`."""
        return self.frames()

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
        states = []
        for name, stream in self.streams.items():
            stats = stream.stats
            waiting = "" if stats.waiting_for is None else f" ({stats.waiting_for})"
            states.append(f"{name}: {stats.state.value}{waiting}")
        return ", ".join(states) or "no streams"

    # -- alignment thread -------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        """Called in the camera's reader thread with each decoded frame."""
        with self._cond:
            inbox = self._inbox
            inbox.append(frame)
            self._inbox_bytes += frame.nbytes
            while len(inbox) > 1 and (
                len(inbox) > _INBOX or self._inbox_bytes > self._inbox_budget
            ):
                self._overflow += 1  # the oldest waiting frame is pushed out
                self._inbox_bytes -= inbox.popleft().nbytes
            self._cond.notify_all()
        if (frame.source, frame.role) in self._convert:
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
        lanes: list[tuple[_Lane, Aligner[Frame]]] = []
        for lane in self._lanes.values():
            assert lane.aligner is not None
            lanes.append((lane, lane.aligner))
        streams = self._all_streams()
        next_check = time.monotonic() + _CHECK_INTERVAL
        while True:
            with self._cond:
                while not self._inbox and not self._closed and self._error is None:
                    now = time.monotonic()
                    wake = next_check
                    for _, aligner in lanes:
                        wake = min(wake, aligner.next_deadline(now) or wake)
                    if wake <= now:
                        break
                    self._cond.wait(wake - now)
                if self._closed or self._error is not None:
                    return
                frames = list(self._inbox)
                self._inbox.clear()
                self._inbox_bytes = 0
                for frame in frames:
                    for lane in self._routes.get((frame.source, frame.role), ()):
                        assert lane.aligner is not None
                        lane.aligner.add(frame)
                now = time.monotonic()
                for lane, aligner in lanes:
                    for match in aligner.poll(now):
                        self._publish(lane, match)
                if now >= next_check:
                    self._note_clocks(lanes)
                    self._note_idle(lanes)
                    next_check = now + _CHECK_INTERVAL
                    if all(stream.state in _DONE for stream in streams):
                        for lane, aligner in lanes:
                            for match in aligner.poll(now + 2 * aligner.max_wait):  # flush
                                self._publish(lane, match)
                        self._ended = True
                        self._cond.notify_all()
                        logger.info("every camera of the group stopped")
                        return

    def _note_idle(self, lanes: list[tuple[_Lane, Aligner[Frame]]]) -> None:
        """Tell the aligners which cameras receive nothing at all (the caller holds the
        lock): such a camera is not waited for a keyframe interval at start."""
        for lane, aligner in lanes:
            for name, stream in lane.sources.items():
                # only a stream not live may wait for data: no stats snapshot for the rest
                waiting = stream.state in _WAITING and stream.stats.waiting_for is not None
                aligner.set_idle(name, waiting)

    def _note_clocks(self, lanes: list[tuple[_Lane, Aligner[Frame]]]) -> None:
        """Warn, by name, when a camera's clock starts or stops disagreeing with the
        others' (the caller holds the lock)."""
        for lane, aligner in lanes:
            if lane.role != MAIN_ROLE:  # the cameras' other streams share their clock
                continue
            for name in self.names:
                off = aligner.off_clock(name)
                if off == (name in lane.off_clock):
                    continue
                delay = aligner.delay(name)
                if off:
                    lane.off_clock.add(name)
                    others = [
                        d for n in self.names if n != name and (d := aligner.delay(n)) is not None
                    ]
                    logger.warning(
                        "%s: its frames arrive %.2f s after their capture time, the other "
                        "cameras' %.2f s: its clock is off by more than max_wait (%.1f s); "
                        "its frames are dropped until it agrees. Set the camera's clock "
                        "(NTP), its clock_offset, or its clock_fix ('correct' or 'arrival')",
                        name,
                        delay if delay is not None else float("nan"),
                        min(others, default=float("nan")),
                        aligner.max_wait,
                    )
                else:
                    lane.off_clock.discard(name)
                    logger.warning("%s: its clock agrees with the others' again", name)

    def _publish(self, lane: _Lane, match: Match[Frame]) -> None:
        """Make ``match`` the lane's newest set (the caller holds the lock); feed its
        processors."""
        frameset = FrameSet(
            seq=lane.sets.next_seq,
            frames=match.frames,
            missing=match.missing,
            skew=match.skew,
            time=match.time,
            clock=match.clock,
            emitted_time=time.time(),
            emitted_mono=time.monotonic(),
            role=lane.role,
        )
        lane.sets.put(frameset)  # wakes read()
        if match.missing:
            lane.partial += 1
        lane.skews.append(match.skew)
        lane.latencies.append(frameset.latency)
        for name, offset in match.offsets.items():
            lane.offsets[name].append(offset)
        lane.emits.append(frameset.emitted_mono)
        for worker in lane.workers:
            worker.submit(frameset)

    def _all_streams(self) -> list[VideoStream]:
        """Every stream of the group, each once (a main stream may feed several lanes)."""
        with self._cond:
            found = {id(s): s for s in self.streams.values()}
            for lane in self._lanes.values():
                found.update((id(s), s) for s in lane.sources.values())
        return list(found.values())

    def streams_of(self, role: str) -> dict[str, VideoStream]:
        """The stream that feeds each camera's frames into the sets of ``role``: its stream
        of that role, or its main stream when it has none. ``ValueError``: unknown role."""
        lane = self._lane(role)
        with self._cond:
            return dict(lane.sources)

    # -- stats ------------------------------------------------------------------------

    @property
    def stats(self) -> GroupStats:
        """A snapshot of the group's, its cameras' and its processors' counters.

        The sets, skew, latency and cameras are those of the main streams' sets; the
        processors are all of the group's; ``roles`` holds the same figures for the sets
        of every further role (``stats.roles["sub"]``).
        """
        with self._cond:
            others = {role: self._lane_stats(lane) for role, lane in self._lanes.items()}
            main = others.pop(MAIN_ROLE)
            processors = {w.name: w.stats for w in self._all_workers()}
        return replace(main, processors=processors, roles=others)

    def _lane_stats(self, lane: _Lane) -> GroupStats:
        """The figures of ``lane``'s sets (the caller holds the lock)."""
        senders = self._fleet.senders
        aligner = lane.aligner
        cameras = {}
        for name, stream in lane.sources.items():
            counts = aligner.counts(name) if aligner is not None else None
            sender = senders.get(name)
            offsets = sorted(lane.offsets[name])
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
                drop_reasons=counts.reasons() if counts else {},
                off_clock=aligner.off_clock(name) if aligner is not None else False,
                delay=aligner.delay(name) if aligner is not None else None,
                arrival_delay=aligner.arrival_delay(name) if aligner is not None else None,
            )
        skews, latencies = sorted(lane.skews), sorted(lane.latencies)
        now = time.monotonic()
        return GroupStats(
            sets=lane.sets.seq + 1,
            partial=lane.partial,
            delivered=lane.sets.taken,
            skipped=lane.sets.skipped,
            sets_per_second=per_second(
                lane.emits,
                now,
                window=_RATE_WINDOW,
                start_mono=lane.start_mono if lane.start_mono is not None else now,
            ),
            skew_p50=percentile(skews, 0.5),
            skew_p95=percentile(skews, 0.95),
            latency_p50=percentile(latencies, 0.5),
            latency_p95=percentile(latencies, 0.95),
            clock=aligner.clock if aligner is not None else "sender",
            cameras=cameras,
            processors={w.name: w.stats for w in lane.workers},
            overflow=self._overflow,
            role=lane.role,
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
