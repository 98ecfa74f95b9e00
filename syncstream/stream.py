"""VideoStream: one reader thread per source, the newest-frame slot, reconnects and stats."""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TypedDict, Unpack

from .clock import LowerEnvelope, plausible_capture_time, unwrap_pts_time
from .config import Backend, CaptureClock, ClockFix, RtspTransport, StreamConfig
from .errors import (
    NoFrameYet,
    SourceChanged,
    SourceError,
    SourceStalled,
    StreamClosed,
    StreamEnded,
    StreamFailed,
    SyncStreamError,
)
from .frames import Frame
from .logs import Throttle
from .rates import per_second, percentile
from .slot import LatestSlot
from .sources import Source, SourceFrame, create_source
from .sources.base import EncodedPacket, PacketListener, PacketSource
from .urls import redact_url

__all__ = ["StreamOptions", "StreamState", "StreamStats", "VideoStream"]

logger = logging.getLogger(__name__)
_throttle = Throttle(logger)  # a source failing at each reopen: a line per 10 s

_JOIN_TIMEOUT = 2.0
_WINDOW = 300  # samples kept for latency percentiles
_FPS_WINDOW = 2.0  # seconds of arrivals used for the frame rate
_CLOCK_WINDOW = 10.0  # seconds of frames over which the clock error is the lowest delay
_CLOCK_SAMPLES = 1024  # ... and at most this many frames


class StreamState(enum.Enum):
    """Where a stream is in its life."""

    NEW = "new"  #: constructed, not started
    CONNECTING = "connecting"  #: opening the source (first time or after a failure)
    LIVE = "live"  #: frames are arriving
    STALE = "stale"  #: no frame for ``stall_timeout`` or a source error; reopening
    ENDED = "ended"  #: a file was read to its end
    FAILED = "failed"  #: gave up after ``max_reconnects``; read() raises StreamFailed
    CLOSED = "closed"  #: close() was called


class StreamOptions(TypedDict, total=False):
    """Keyword options of :class:`VideoStream`: the fields of :class:`StreamConfig`."""

    name: str | None
    role: str
    backend: Backend
    realtime: bool
    loop: bool
    stall_timeout: float
    open_timeout: float
    reconnect_delay: float
    reconnect_max_delay: float
    max_reconnects: int | None
    capture_clock: CaptureClock
    clock_offset: float
    clock_tolerance: float
    clock_warning: float
    clock_fix: ClockFix
    history: int
    decoder_threads: int
    max_frame_bytes: int
    max_pixels: int
    max_history_bytes: int
    udp_buffer_bytes: int
    allowed_senders: tuple[str, ...]
    parse_frames: bool
    rtsp_transport: RtspTransport
    size: tuple[int, int] | None
    fps: float | None
    input_format: str | None


@dataclass(frozen=True)
class StreamStats:
    """A snapshot of a stream's counters. Latencies are capture-to-arrival, in seconds."""

    name: str
    state: StreamState
    #: Frames the decoder produced.
    decoded: int
    #: Frames returned by read().
    delivered: int
    #: Frames replaced by a newer one before anybody read them.
    skipped: int
    decode_errors: int
    #: Input refused before decoding (non-TS datagrams, oversized or malformed frames).
    rejected: int
    #: Times the source was reopened after a stall or an error.
    reconnects: int
    #: Decoded frames per second over the last two seconds (since start(), if less, but
    #: over at least one second: see :func:`~syncstream.stats.per_second`).
    fps: float
    latency_p50: float | None
    latency_p95: float | None
    #: "sender" when the last frame carried a capture time, "corrected" when that was
    #: corrected by the clock error (``clock_fix="correct"``), else "arrival".
    capture_clock: str
    last_error: str | None
    #: Exceptions raised by frame and packet listeners (logged; the stream went on).
    listener_errors: int = 0
    #: While CONNECTING or STALE: what the source waits for when nothing at all has
    #: arrived since it was opened, e.g. ``"no data on udp port 9001"`` (udp:// only);
    #: None otherwise.
    waiting_for: str | None = None
    #: The lowest arrival minus sender time (mapped with ``clock_offset``) over the last
    #: 10 s of a live source's frames, measured before ``capture_clock="auto"`` judges
    #: them: the path delay plus the error of the sender's clock (seconds). None while no
    #: frame carried a sender time.
    clock_error: float | None = None
    #: udp://: MPEG-TS packets dropped before the demuxer because their PID is not one of
    #: the programme's (PAT, its PMTs, their streams and PCR).
    foreign_packets: int = 0
    #: udp://: datagrams dropped for their sender: from an address outside
    #: ``allowed_senders``, or a second sender of the programme's PIDs while the first sends.
    foreign_datagrams: int = 0
    #: udp://: video frames of unknown length (PES length 0, as most senders write them)
    #: whose end was seen on the wire and handed to the decoder at once.
    frame_ends_found: int = 0
    #: udp://: video frames of unknown length whose end was not certain (a last packet
    #: exactly full, a packet lost or late, the first frames): they waited for the next
    #: frame to start (see :mod:`~syncstream.sources.frame_ends`).
    frame_ends_waited: int = 0


#: Counters of a source (:class:`~syncstream.sources.base.SourceCounters`) that a stream
#: sums over the sources it opened.
_SUMMED = (
    "decode_errors",
    "rejected",
    "foreign_packets",
    "foreign_datagrams",
    "frame_ends_found",
    "frame_ends_waited",
)


class VideoStream:
    """Reads one source in its own thread and keeps its newest frames.

    ``read()`` returns the newest frame not returned before, waiting for one; frames that
    arrive faster than they are read are skipped (counted, and visible as gaps in
    ``seq``), so a slow consumer never builds up delay. A file read with
    ``realtime=False`` is the exception: every frame is delivered, the reader waits.

    >>> with VideoStream("udp://127.0.0.1:8553") as stream:   # doctest: +SKIP
    ...     frame = stream.read(timeout=2.0)
    """

    def __init__(
        self,
        source: str | int | StreamConfig,
        *,
        source_factory: Callable[[StreamConfig], Source] | None = None,
        **options: Unpack[StreamOptions],
    ) -> None:
        """Describe the stream; nothing is opened before :meth:`start`.

        ``source`` is a URL, path, webcam index or a whole :class:`StreamConfig`; ``options``
        are its fields. ``source_factory`` plugs in a custom backend (anything implementing
        :class:`~syncstream.sources.Source`) in place of the one chosen from the URL.
        """
        if isinstance(source, StreamConfig):
            self.config = StreamConfig.model_validate({**source.model_dump(), **options})
        else:
            self.config = StreamConfig(url=str(source), **options)
        self.name = self.config.display_name
        #: The name its frames carry as ``Frame.source``: the camera's, for every role.
        self.source = self.config.name if self.config.name is not None else self.name
        self._source_factory = source_factory or create_source
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: Source | None = None
        self._state = StreamState.NEW
        # the newest frame: its seq, delivered and skipped counts; read() takes from it.
        # No drain: once closed, read() raises at once rather than return a frame left over.
        self._frames: LatestSlot[Frame] = LatestSlot(
            self.name, noun="frame", cond=self._cond, drain=False
        )
        self._history: deque[Frame] = deque()  # at most `history` frames, max_history_bytes
        self._history_bytes = 0
        self._reconnects = 0
        # the summed counters (_SUMMED) of the sources already closed
        self._closed_counts = dict.fromkeys(_SUMMED, 0)
        self._waiting_for_closed: str | None = None  # of the last source closed
        self._started_mono: float | None = None
        self._latencies: deque[float] = deque(maxlen=_WINDOW)
        self._arrivals: deque[float] = deque(maxlen=512)
        self._capture_clock = "arrival"
        # written by the reader thread only; stats read the float
        self._clock_envelope = LowerEnvelope(_CLOCK_WINDOW, _CLOCK_SAMPLES)
        self._clock_error: float | None = None
        self._clock_off = False  # |clock_error| went beyond clock_warning (and warned)
        self._last_error: BaseException | None = None
        self._had_frames_since_open = False
        self._listeners: list[Callable[[Frame], None]] = []
        self._consumed = False
        # replaced, never mutated: the reader thread iterates it without the lock
        self._packet_listeners: tuple[PacketListener, ...] = ()
        self._listener_errors = 0

    def add_listener(self, listener: Callable[[Frame], None], *, consume: bool = False) -> None:
        """Call ``listener(frame)`` in the reader thread for every new frame.

        For owners such as :class:`~syncstream.StreamGroup` that must see every frame, not
        only the newest: the listener must return quickly (hand the frame over, never
        process it there). An exception it raises is logged; the stream carries on.
        ``consume=True`` makes the listener the stream's reader: frames count as
        delivered, not skipped, and :meth:`read` no longer returns them.
        """
        with self._cond:
            self._listeners.append(listener)
            self._consumed = self._consumed or consume

    def add_packet_listener(self, listener: PacketListener) -> None:
        """Call ``listener(packet)`` in the reader thread for every encoded video packet.

        Each :class:`~syncstream.sources.base.EncodedPacket` comes before the frame
        decoded from it, so a recorder can store the stream as it was sent. Only sources
        that demux encoded packets (the PyAV backend: udp://, rtsp://, files) call it;
        MJPEG over HTTP, framed JPEG over TCP and OpenCV never do. Like a frame listener it
        must return quickly; an exception it raises is logged and counted
        (``stats.listener_errors``), and the stream carries on.
        """
        with self._cond:
            self._packet_listeners = (*self._packet_listeners, listener)
            source = self._source
            if isinstance(source, PacketSource):
                source.on_packet = self._emit_packet

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> VideoStream:
        """Start the reader thread; idempotent. A closed stream cannot restart."""
        with self._cond:
            if self._state is StreamState.CLOSED:
                raise StreamClosed(f"{self.name}: stream is closed and cannot restart")
            if self._thread is not None:
                return self
            if self._source_factory is create_source:
                create_source(self.config)  # an unsupported URL fails here, not in the thread
            self._state = StreamState.CONNECTING
            self._started_mono = time.monotonic()
            self._thread = threading.Thread(
                target=self._run, name=f"syncstream-reader:{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop the reader and join it (within ``timeout`` s); idempotent."""
        with self._cond:
            if self._state is StreamState.CLOSED:
                return
            self._state = StreamState.CLOSED
            self._stop.set()
            source = self._source
            self._frames.close()  # wakes readers, and the reader thread in wait_taken()
        if source is not None:
            source.interrupt()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s: reader did not stop within %.1f s", self.name, timeout)

    def __enter__(self) -> VideoStream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- consumer side ----------------------------------------------------------------

    def read(self, timeout: float | None = None) -> Frame:
        """Return the newest frame not returned before, waiting up to ``timeout`` seconds.

        Raises ``ReadTimeout`` when none arrives in time, ``StreamEnded`` after the last
        frame of a file, ``StreamFailed`` when the stream gave up, ``StreamClosed`` after
        :meth:`close` (at once, even when a frame was left unread). Never returns None and
        never the same frame twice.
        """
        return self._frames.take(
            timeout, check=self._raise_if_done, detail=lambda: f"state {self._state.value}"
        )

    def latest(self) -> Frame:
        """Return the newest frame without waiting (it may have been returned before: see seq).

        Raises ``NoFrameYet`` before the first frame.
        """
        with self._cond:
            frame = self._frames.latest()
            if frame is None:
                self._raise_if_done()
                raise NoFrameYet(f"{self.name}: no frame decoded yet")
            return frame

    def recent(self) -> list[Frame]:
        """The last ``history`` frames, oldest first (for alignment across streams); fewer
        when they would hold more than ``max_history_bytes``."""
        with self._cond:
            return list(self._history)

    def frames(
        self, timeout: float | None = None, duration: float | None = None
    ) -> Iterator[Frame]:
        """Yield frames as :meth:`read` returns them, until ``duration`` seconds have passed
        (None: no end), the stream ends (files) or it is closed.

        Raises ``ReadTimeout`` when no frame comes within ``timeout`` seconds (None: waits),
        and what :meth:`read` raises besides ``StreamEnded`` and ``StreamClosed``.

        >>> for frame in stream.frames(timeout=2.0, duration=10.0):  # doctest: +SKIP
        ...     print(frame.seq, frame.latency)
        """
        return self._frames.items(
            timeout,
            duration,
            check=self._raise_if_done,
            detail=lambda: f"state {self._state.value}",
        )

    def __iter__(self) -> Iterator[Frame]:
        """Yield frames until the stream ends (files) or is closed: :meth:`frames`."""
        return self.frames()

    def _raise_if_done(self) -> None:
        state = self._state
        if state is StreamState.CLOSED:
            raise StreamClosed(f"{self.name}: stream is closed")
        if state is StreamState.NEW:
            raise SyncStreamError(
                f"{self.name}: stream not started; call start() or use it in a with block"
            )
        if state is StreamState.ENDED:
            raise StreamEnded(f"{self.name}: end of stream")
        if state is StreamState.FAILED:
            raise StreamFailed(f"{self.name}: stream failed: {self._last_error}") from (
                self._last_error
            )

    @property
    def state(self) -> StreamState:
        """The current :class:`StreamState`."""
        return self._state

    @property
    def stats(self) -> StreamStats:
        """A consistent snapshot of the counters."""
        with self._cond:
            source = self._source
            counts = dict(self._closed_counts)
            waiting_for = self._waiting_for_closed  # between reopen attempts
            if source is not None:
                for key in _SUMMED:
                    counts[key] += getattr(source.counters, key)
                waiting_for = source.counters.waiting_for
            if self._state not in (StreamState.CONNECTING, StreamState.STALE):
                waiting_for = None
            latencies = sorted(self._latencies)
            now = time.monotonic()
            started = self._started_mono if self._started_mono is not None else now
            fps = per_second(self._arrivals, now, window=_FPS_WINDOW, start_mono=started)
            return StreamStats(
                name=self.name,
                state=self._state,
                decoded=self._frames.seq + 1,
                delivered=self._frames.taken,
                skipped=self._frames.skipped,
                decode_errors=counts["decode_errors"],
                rejected=counts["rejected"],
                reconnects=self._reconnects,
                fps=fps,
                latency_p50=percentile(latencies, 0.5),
                latency_p95=percentile(latencies, 0.95),
                capture_clock=self._capture_clock,
                last_error=None if self._last_error is None else str(self._last_error),
                listener_errors=self._listener_errors,
                waiting_for=waiting_for,
                clock_error=self._clock_error,
                foreign_packets=counts["foreign_packets"],
                foreign_datagrams=counts["foreign_datagrams"],
                frame_ends_found=counts["frame_ends_found"],
                frame_ends_waited=counts["frame_ends_waited"],
            )

    # -- reader thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._read_loop()
        except BaseException as exc:  # a bug must reach the owner, not vanish with the thread
            logger.exception("%s: reader crashed", self.name)
            with self._cond:
                self._last_error = exc
                if self._state is not StreamState.CLOSED:
                    self._state = StreamState.FAILED
                self._cond.notify_all()

    def _read_loop(self) -> None:
        delay = self.config.reconnect_delay
        failures = 0
        while not self._stop.is_set():
            source = self._source_factory(self.config)
            with self._cond:
                if self._stop.is_set():
                    return
                self._source = source
                # what the last source waited for holds until this one is open and says
                source.counters.waiting_for = self._waiting_for_closed
                if self._packet_listeners and isinstance(source, PacketSource):
                    source.on_packet = self._emit_packet
            self._had_frames_since_open = False
            try:
                source.open()
                self._pump(source)
                return  # _pump returns only once close() was called
            except StreamEnded:
                if self._ended():
                    return
                failures, delay = 0, self.config.reconnect_delay
                continue  # looping file: reopen at once
            except SourceError as exc:
                if self._stop.is_set():
                    return
                failures += 1
                self._note_failure(exc)
                if self._had_frames_since_open:
                    failures, delay = 1, self.config.reconnect_delay
            finally:
                self._retire(source)
            limit = self.config.max_reconnects
            if limit is not None and failures > limit:
                with self._cond:
                    if self._state is not StreamState.CLOSED:
                        self._state = StreamState.FAILED
                    self._cond.notify_all()
                logger.error("%s: giving up after %d failed attempts", self.name, failures)
                return
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.config.reconnect_max_delay)
            with self._cond:
                self._reconnects += 1
                if self._state is not StreamState.CLOSED:
                    self._state = StreamState.CONNECTING
            logger.info("%s: reopening (attempt %d)", self.name, failures + 1)

    def _pump(self, source: Source) -> None:
        """Read and publish frames until close(); the source's errors propagate.

        A ``SourceChanged`` (the source reopens its demuxer on its next read) is counted
        as a reconnect; a second one before any frame propagates, so that a stream that
        keeps changing is reopened with the doubling wait.
        """
        first_pts: float | None = None
        start_mono = 0.0
        changed = False
        while not self._stop.is_set():
            try:
                source_frame = source.read()
            except SourceChanged as exc:
                if changed:
                    raise
                changed = True
                self._note_failure(exc)
                with self._cond:
                    self._reconnects += 1
                continue
            changed = False
            if not source.is_live and self.config.realtime and source_frame.pts_time is not None:
                if first_pts is None:
                    first_pts, start_mono = source_frame.pts_time, time.monotonic()
                due = start_mono + (source_frame.pts_time - first_pts)
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
            live = source.is_live
            self._publish(source_frame, live=live, lossless=not live and not self.config.realtime)

    def _ended(self) -> bool:
        """Handle the end of a file: True when the stream is done, False to loop."""
        if self.config.loop and not self._stop.is_set():
            return False
        with self._cond:
            if self._state is not StreamState.CLOSED:
                self._state = StreamState.ENDED
            self._cond.notify_all()
        logger.info("%s: end of stream", self.name)
        return True

    def _note_failure(self, exc: SourceError) -> None:
        with self._cond:
            self._last_error = exc
            if self._state is not StreamState.CLOSED:
                self._state = StreamState.STALE
            self._cond.notify_all()
        if isinstance(exc, SourceStalled):
            logger.info("%s", exc)  # source errors start with the stream's name
        else:
            _throttle.warning((self.name, "failure"), "%s", exc)

    def _retire(self, source: Source) -> None:
        source.close()
        with self._cond:
            for key in _SUMMED:
                self._closed_counts[key] += getattr(source.counters, key)
            self._waiting_for_closed = source.counters.waiting_for
            self._source = None

    def _publish(self, source_frame: SourceFrame, *, live: bool, lossless: bool) -> None:
        arrival_time = time.time()
        arrival_mono = time.monotonic()
        capture_time, corrected = self._capture_time(
            source_frame, arrival_time, arrival_mono, live=live
        )
        with self._cond:
            if lossless:
                self._frames.wait_taken()  # read() and close() end it
            frame = Frame(
                source=self.source,
                role=self.config.role,
                seq=self._frames.next_seq,
                width=source_frame.width,
                height=source_frame.height,
                arrival_time=arrival_time,
                arrival_mono=arrival_mono,
                capture_time=capture_time,
                pts_time=source_frame.pts_time,
                convert=source_frame.convert,
            )
            # a consuming listener takes every frame: delivered, never skipped
            self._frames.put(frame, taken=self._consumed)
            self._keep(frame)
            self._arrivals.append(arrival_mono)
            if capture_time is not None:
                self._latencies.append(arrival_time - capture_time)
                self._capture_clock = "corrected" if corrected else "sender"
            else:
                self._capture_clock = "arrival"
            if self._state in (StreamState.CONNECTING, StreamState.STALE):
                self._state = StreamState.LIVE
            self._had_frames_since_open = True
            listeners = list(self._listeners)
            self._cond.notify_all()
        for listener in listeners:
            try:
                listener(frame)
            except Exception:
                self._listener_errors += 1  # only the reader thread writes it
                logger.exception("%s: frame listener %r failed", self.name, listener)

    def _keep(self, frame: Frame) -> None:
        """Add ``frame`` to the history (the caller holds the lock): the newest ``history``
        frames, the oldest going first while they hold more than ``max_history_bytes``
        (the newest is always kept)."""
        history = self._history
        history.append(frame)
        self._history_bytes += frame.nbytes
        while len(history) > 1 and (
            len(history) > self.config.history
            or self._history_bytes > self.config.max_history_bytes
        ):
            self._history_bytes -= history.popleft().nbytes

    def _emit_packet(self, packet: EncodedPacket) -> None:
        """The source's ``on_packet``: hand ``packet`` to every packet listener."""
        for listener in self._packet_listeners:
            try:
                listener(packet)
            except Exception:
                self._listener_errors += 1
                logger.exception("%s: packet listener %r failed", self.name, listener)

    def _capture_time(
        self, source_frame: SourceFrame, arrival_time: float, arrival_mono: float, *, live: bool
    ) -> tuple[float | None, bool]:
        """The frame's capture time on our clock (None: it goes by arrival), and whether
        it was corrected by the clock error. A live source's frames are measured first
        (:meth:`_judge_clock`), so that ``clock_fix`` applies while its clock is off."""
        config = self.config
        if config.capture_clock == "none":
            return None, False
        sender_time = self._sender_time(source_frame, arrival_time)
        if sender_time is None:
            return None, False
        capture_time = sender_time + config.clock_offset
        corrected = False
        error = self._judge_clock(arrival_mono, arrival_time - capture_time) if live else None
        if error is not None:
            if config.clock_fix == "arrival":
                return None, False
            if config.clock_fix == "correct":
                capture_time += error  # the fastest recent frame: captured when it arrived
                corrected = True
        if config.capture_clock == "sender":
            return capture_time, corrected
        plausible = plausible_capture_time(capture_time, arrival_time, 0.0, config.clock_tolerance)
        return plausible, corrected and plausible is not None

    def _sender_time(self, source_frame: SourceFrame, arrival_time: float) -> float | None:
        """The frame's time on its sender's clock: its sender stamp, or its PTS (unwrapped
        near the arrival) where the PTS may be a wall clock."""
        config = self.config
        sender_time = source_frame.sender_time
        if (
            sender_time is None
            and source_frame.wall_clock_pts
            and source_frame.pts_time is not None
        ):
            sender_time = source_frame.pts_time
            if source_frame.pts_period is not None:
                sender_time = unwrap_pts_time(
                    sender_time, arrival_time - config.clock_offset, source_frame.pts_period
                )
        return sender_time

    def _judge_clock(self, arrival_mono: float, delay: float) -> float | None:
        """Take a frame's arrival minus capture time into the clock error; return that
        error while the clock is off (beyond ``clock_warning``, until back under half of
        it), else None. Each change is logged, naming the stream."""
        error = self._clock_envelope.add(arrival_mono, delay)
        self._clock_error = error
        limit = self.config.clock_warning
        off = abs(error) > (limit / 2 if self._clock_off else limit)
        if off and not self._clock_off:
            logger.warning(
                "%s: arrival minus capture time is %+.2f s at best over the last %g s, "
                "beyond clock_warning (%g s): its clock is about %.2f s %s; %s",
                self.name,
                error,
                _CLOCK_WINDOW,
                limit,
                abs(error),
                "ahead of ours" if error < 0 else "behind ours (or its frames take that long)",
                self._clock_fix_effect(error),
            )
        elif self._clock_off and not off:
            logger.info(
                "%s: its clock agrees with ours again (clock error %+.3f s)", self.name, error
            )
        self._clock_off = off
        return error if off else None

    def _clock_fix_effect(self, error: float) -> str:
        """What happens to the frames of a stream whose clock is off by ``error``."""
        config = self.config
        if config.clock_fix == "correct":
            return "its capture times are corrected by that much (clock_fix='correct')"
        if config.clock_fix == "arrival":
            return "its frames go by arrival time (clock_fix='arrival')"
        hint = "set its clock (NTP) or clock_offset, or choose clock_fix 'correct' or 'arrival'"
        if config.capture_clock == "auto" and abs(error) > config.clock_tolerance:
            return f"its capture times are refused (beyond clock_tolerance): {hint}"
        return f"its capture times are used as they are: {hint}"

    def __repr__(self) -> str:
        url = redact_url(self.config.url)
        return f"VideoStream({url!r}, name={self.name!r}, state={self._state.value})"
