"""Alignment: which frames of several cameras belong together. Pure: no threads, no I/O.

An :class:`Aligner` is fed every decoded frame (:meth:`Aligner.add`) and asked for the
frame sets that are ready (:meth:`Aligner.poll`), with the current monotonic time passed
in, so the same inputs always give the same sets and the logic is tested with synthetic
timestamps.

Frames are compared by their *key*: the capture time (the sender's wall clock mapped to
ours) for a frame that carries one. A frame without one (an MJPEG camera, an RTSP camera
before its first sender report) counts as captured its camera's *arrival delay* before it
arrived: the delay given for the camera, else the typical delay of the cameras whose frames
carry capture times (the median of their lowest arrival minus capture time), else 0 when
no camera's do (the group then aligns by arrival time). So every camera is on one clock.
:attr:`Aligner.clock` and :attr:`Match.clock` say which clocks are in play, and each
frame's own ``capture_time`` says which it went by.

Policies:

``latest``
    The newest frame of each camera, once every camera has a frame not used before:
    what a loop that reads the newest frame of each camera gives. Frames captured at
    different instants are paired whenever the network paths differ in delay.
``nearest``
    One frame per camera minimising the spread of capture times, each frame used at most
    once, sets in time order (the idea of ROS message_filters' ApproximateTime). The
    *pivot* is the latest of the cameras' oldest waiting frames: no earlier set can
    include every camera. Each other camera contributes its frame nearest to the pivot,
    as soon as that is certain, i.e. once it has seen a frame at or after the pivot, or
    once that frame cannot arrive within ``max_wait`` (its path delay is known).
    When no set of every camera fits within ``max_skew`` around the pivot (capture phases
    spread wider than ``max_skew``, a camera whose clock is off, cameras at different
    rates), the set of the *earliest* waiting frame is emitted instead: that frame and,
    of every other camera, its first frame within ``max_skew`` after it; the cameras
    without one are ``missing``. So the group never goes silent while cameras deliver.
``exact``
    Equal keys (within ``exact_tolerance``), by the same rules as ``nearest``: recordings
    of hardware-synchronised cameras.

A camera that delivers nothing for ``max_wait`` seconds is *silent*. With
``on_missing="partial"`` sets are emitted without it (named in ``missing``), and a set
that waited ``max_wait`` for a camera is emitted without that camera; with ``"wait"``
only complete sets are emitted. A camera that has not delivered its first frame holds
sets back ``first_frame_grace`` (a keyframe interval) after the others delivered theirs
at most, and ``first_frame_wait`` after start at most.

Sets come in the order of their earliest frame. Every frame given to :meth:`Aligner.add`
ends in exactly one set or is dropped, and :class:`CameraCounts` says why.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Literal, Protocol, TypeVar

from .config import MissingPolicy, SyncPolicy
from .errors import ConfigError

__all__ = [
    "Aligner",
    "CameraCounts",
    "Match",
    "SyncClock",
    "Timed",
]

#: ``"sender"``: every frame went by its capture time; ``"arrival"``: none did (arrival
#: times); ``"mixed"``: some did, the others went by arrival minus an arrival delay.
SyncClock = Literal["sender", "arrival", "mixed"]


class Timed(Protocol):
    """What alignment reads of a frame (a :class:`~syncstream.Frame` has it all)."""

    @property
    def source(self) -> str: ...

    @property
    def capture_time(self) -> float | None: ...

    @property
    def arrival_time(self) -> float: ...

    @property
    def arrival_mono(self) -> float: ...


F = TypeVar("F", bound=Timed)


@dataclass(frozen=True)
class Match(Generic[F]):
    """Frames that belong together: one per camera, except the cameras in ``missing``."""

    #: Camera name to frame, in the order the cameras were given.
    frames: Mapping[str, F]
    #: Cameras without a frame in this set (silent, or waited for ``max_wait`` in vain).
    missing: tuple[str, ...]
    #: Latest key minus earliest key of the frames, in seconds.
    skew: float
    #: The mean key of the frames (seconds since the epoch on :attr:`clock`).
    time: float
    #: ``"sender"``: keys are capture times; ``"arrival"``: arrival times (minus the
    #: cameras' arrival delays in a group where other cameras have capture times);
    #: ``"mixed"``: some of each.
    clock: SyncClock
    #: Each camera's key minus :attr:`time` (seconds): positive for a frame taken later.
    offsets: Mapping[str, float] = field(default_factory=dict)


@dataclass
class CameraCounts:
    """What happened to one camera's frames inside the aligner.

    Every frame added is either ``used`` once, dropped for one of the reasons below, or
    still waiting (:meth:`Aligner.waiting`).
    """

    #: Frames that went into a set.
    used: int = 0
    #: Dropped: a newer frame of the same camera went into the set instead (a camera
    #: faster than the others, or frames lost by another camera).
    overtaken: int = 0
    #: Dropped: no set of every camera within the tolerance could hold it
    #: (``on_missing="wait"`` only: with ``"partial"`` such a frame goes into a partial set).
    unmatched: int = 0
    #: Dropped: older than a set already emitted: it came more than ``max_wait`` after the
    #: frames taken at the same time, or the camera's clock runs behind the others'.
    late: int = 0
    #: Dropped: pushed out of the camera's ``history`` of waiting frames while no set
    #: reached it (the camera's clock runs ahead of the others', or they stalled).
    expired: int = 0
    #: Dropped: the camera's clock disagrees with most cameras' by more than ``max_wait``
    #: (its arrival minus capture time, the lowest over its recent frames): its frames
    #: cannot be in a set with theirs and are not waited for.
    clock: int = 0
    #: Dropped: waiting when the camera's keys went backwards (a restarted or looping
    #: source, see :attr:`resets`), or when its frames started or stopped carrying a
    #: capture time (an RTSP camera's first sender report).
    discarded: int = 0
    #: Dropped: the camera's waiting frames held more bytes than its budget
    #: (``max_history_bytes``), the oldest first.
    memory: int = 0
    #: Times the camera's keys went backwards and its waiting frames were discarded.
    resets: int = 0

    @property
    def dropped(self) -> int:
        """Frames that went into no set, whatever the reason."""
        return sum(self.reasons().values())

    def reasons(self) -> dict[str, int]:
        """The drop counts by reason, for stats and logs."""
        return {
            "overtaken": self.overtaken,
            "unmatched": self.unmatched,
            "late": self.late,
            "expired": self.expired,
            "clock": self.clock,
            "discarded": self.discarded,
            "memory": self.memory,
        }


DropReason = Literal["overtaken", "unmatched", "late", "expired", "clock", "discarded", "memory"]
_DELAYS = 32  # frames over which a camera's path delay (its lowest) is estimated
# A camera keeps its frames for max_wait (plus a margin, so that a set waiting for a late
# camera still has them when its wait runs out) even beyond ``history``, up to this many
# times ``history``: at 30 fps, 8 frames last 0.27 s, less than the 0.5 s a set may wait.
_HISTORY_STRETCH = 8
# A camera's arrival delay follows the estimate once they differ by more than this (s).
_SHIFT_STEP = 0.002


def _clock_of(stamped: Sequence[bool]) -> SyncClock:
    if all(stamped):
        return "sender"
    return "mixed" if any(stamped) else "arrival"


_WAIT_MARGIN = 0.1


class _Queue(deque[F]):
    """A camera's waiting frames and the bytes they hold (0 without a size function)."""

    def __init__(self, size: Callable[[F], int] | None) -> None:
        super().__init__()
        self._size = size
        self.nbytes = 0

    def append(self, frame: F, /) -> None:
        super().append(frame)
        if self._size is not None:
            self.nbytes += self._size(frame)

    def popleft(self) -> F:
        frame = super().popleft()
        if self._size is not None:
            self.nbytes -= self._size(frame)
        return frame

    def remove(self, frame: F, /) -> None:
        super().remove(frame)
        if self._size is not None:
            self.nbytes -= self._size(frame)

    def clear(self) -> None:
        super().clear()
        self.nbytes = 0


class _Camera(Generic[F]):
    __slots__ = (
        "_delay",
        "_interval",
        "counts",
        "delays",
        "first_mono",
        "idle",
        "intervals",
        "max_bytes",
        "newest",
        "off_clock",
        "queue",
        "shift",
        "stamped",
    )

    def __init__(self, size: Callable[[F], int] | None, max_bytes: int | None) -> None:
        self.queue: _Queue[F] = _Queue(size)
        self.max_bytes = max_bytes  # the most bytes its waiting frames may hold
        self.newest: F | None = None
        self.first_mono: float | None = None  # when its first frame arrived
        self.counts = CameraCounts()
        self.intervals: deque[float] = deque(maxlen=16)
        self.delays: deque[float] = deque(maxlen=_DELAYS)  # arrival_time minus key
        self.off_clock = False  # its clock disagrees with most cameras' (see CameraCounts)
        self.idle = False  # its source receives nothing at all (see Aligner.set_idle)
        self.stamped: bool | None = None  # whether its newest frame has a capture time
        self.shift = 0.0  # its arrival delay: an unstamped frame's key is arrival minus it
        self._delay: float | None = None  # min(delays), kept as they change
        self._interval: float | None = None  # min(intervals)

    @property
    def delay(self) -> float | None:
        """Its path delay plus clock error: the lowest arrival minus key of recent frames."""
        return self._delay

    @property
    def min_interval(self) -> float | None:
        """The shortest recent gap between two frames: no frame comes sooner after one."""
        return self._interval

    def learn(self, interval: float | None, delay: float) -> None:
        """Take a new frame's gap to the one before (if it came later) and its delay."""
        if interval is not None:
            self.intervals.append(interval)
            self._interval = min(self.intervals)
        self.delays.append(delay)
        self._delay = min(self.delays)

    def forget(self) -> None:
        """Forget the intervals and delays learnt (its keys changed their meaning)."""
        self.intervals.clear()
        self.forget_delays()
        self._interval = None

    def forget_delays(self) -> None:
        """Forget the delays learnt (its keys moved against its arrival times)."""
        self.delays.clear()
        self._delay = None

    def drop(self, frame: F, reason: DropReason) -> None:
        self.queue.remove(frame)
        self.count_drop(reason)

    def count_drop(self, reason: DropReason, count: int = 1) -> None:
        setattr(self.counts, reason, getattr(self.counts, reason) + count)


class _Wait:
    """What a policy step returns when it must wait for a frame or for a deadline."""


_WAIT = _Wait()
Chosen = dict[str, F]


class Aligner(Generic[F]):
    """Groups the frames of named cameras into sets by capture time; see the module doc.

    ``history`` bounds each camera's waiting frames: beyond it, the oldest is dropped
    once it has waited ``max_wait`` (a set may wait that long for a late camera), and in
    any case beyond eight times ``history``.
    ``start_mono`` is when the cameras were started (``time.monotonic()``): a camera that
    has not delivered a frame ``first_frame_wait`` after it, or ``first_frame_grace``
    after every other camera delivered its first (each at least ``max_wait``), is
    silent; senders and decoders take a moment (a keyframe) to deliver their first frame.
    ``arrival_delays`` gives, by camera, how long before its arrival a frame without a
    capture time counts as captured (see the module doc; by default the estimate).
    ``frame_bytes`` tells the bytes a frame holds (``Frame.nbytes``) and ``max_bytes``
    (one value, or one per camera) bounds what a camera's waiting frames hold: beyond it
    the oldest are dropped (``CameraCounts.memory``), though never the newest.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        policy: SyncPolicy = "nearest",
        max_skew: float | None = 0.05,
        max_wait: float = 0.5,
        on_missing: MissingPolicy = "partial",
        history: int = 8,
        exact_tolerance: float = 1e-4,
        start_mono: float = 0.0,
        first_frame_wait: float = 0.0,
        first_frame_grace: float = 0.0,
        arrival_delays: Mapping[str, float] | None = None,
        frame_bytes: Callable[[F], int] | None = None,
        max_bytes: int | Mapping[str, int] | None = None,
    ) -> None:
        if not names:
            raise ConfigError("an Aligner needs at least one camera")
        if len(set(names)) != len(names):
            raise ConfigError(f"camera names must be unique, got {list(names)}")
        if max_skew is not None and max_skew <= 0:
            raise ConfigError(f"max_skew must be > 0 or None, got {max_skew}")
        if max_wait <= 0 or history < 1 or exact_tolerance < 0:
            raise ConfigError("max_wait must be > 0, history >= 1 and exact_tolerance >= 0")
        arrival_delays = dict(arrival_delays or {})
        if not set(arrival_delays) <= set(names):
            raise ConfigError(
                f"arrival_delays of unknown cameras: {set(arrival_delays) - set(names)}"
            )
        if not all(math.isfinite(d) and d >= 0 for d in arrival_delays.values()):
            raise ConfigError(f"arrival_delays must be finite and >= 0, got {arrival_delays}")
        self.names = tuple(names)
        self.policy: SyncPolicy = policy
        self.max_wait = max_wait
        self.on_missing: MissingPolicy = on_missing
        self.history = history
        self.start_mono = start_mono
        self.first_frame_wait = max(first_frame_wait, max_wait)
        self.first_frame_grace = max(first_frame_grace, max_wait)
        if policy == "exact":
            self._tolerance = exact_tolerance
        elif policy == "nearest" and max_skew is not None:
            self._tolerance = max_skew
        else:
            self._tolerance = math.inf
        if max_bytes is not None and frame_bytes is None:
            raise ConfigError("max_bytes needs frame_bytes, the size of a frame")
        budgets = max_bytes if isinstance(max_bytes, Mapping) else dict.fromkeys(names, max_bytes)
        self._cameras: dict[str, _Camera[F]] = {
            name: _Camera(frame_bytes, budgets.get(name)) for name in self.names
        }
        self._deadline: float | None = None
        self._arrival_delays = arrival_delays
        for name, delay in arrival_delays.items():  # a given delay holds from the start
            self._cameras[name].shift = delay
        self._floor = -math.inf  # the earliest key of the last set: no set may come before
        self._judged: tuple[tuple[str, float | None], ...] = ()  # see _judge_clocks

    # -- input ------------------------------------------------------------------------

    def add(self, frame: F) -> None:
        """Take a camera's newly decoded frame (frames of one camera arrive in order)."""
        camera = self._cameras.get(frame.source)
        if camera is None:
            raise KeyError(f"frame of unknown camera {frame.source!r}")
        clock = self.clock
        stamped = frame.capture_time is not None
        newest = camera.newest
        if camera.stamped is not None and camera.stamped != stamped:
            # its keys change their meaning (an RTSP camera's first sender report): its
            # waiting frames could not be in order with the new ones
            camera.count_drop("discarded", len(camera.queue))
            camera.queue.clear()
            camera.forget()
            newest = None
        camera.stamped = stamped
        if self.clock != clock:  # the other cameras' arrival delays move: sets may go back
            self._floor = -math.inf
        if not stamped:  # its waiting frames move with it; any now before the last set
            shift = self._arrival_delay(frame.source)  # is dropped as late
            if abs(shift - camera.shift) > _SHIFT_STEP:
                camera.shift = shift
                camera.forget_delays()
        camera.newest = frame
        if camera.first_mono is None:
            camera.first_mono = frame.arrival_mono
        key = self._key(frame)
        interval = None
        if newest is not None:
            step = key - self._key(newest)
            if step > 0:
                interval = step
            elif step < -self._slack:
                camera.count_drop("discarded", len(camera.queue))
                camera.counts.resets += 1
                camera.queue.clear()
                camera.forget()
        camera.learn(interval, frame.arrival_time - key)
        if camera.off_clock:
            camera.count_drop("clock")
            return
        if self._ordered and key < self._floor:
            camera.count_drop("late")
            return
        camera.queue.append(frame)
        queue = camera.queue
        while len(queue) > self.history and (
            len(queue) > self.history * _HISTORY_STRETCH
            or frame.arrival_mono - queue[0].arrival_mono > self.max_wait + _WAIT_MARGIN
        ):
            queue.popleft()
            camera.count_drop("expired")
        budget = camera.max_bytes
        while budget is not None and len(queue) > 1 and queue.nbytes > budget:
            queue.popleft()
            camera.count_drop("memory")

    # -- output -----------------------------------------------------------------------

    def poll(self, now_mono: float) -> list[Match[F]]:
        """The sets complete at ``now_mono`` (``time.monotonic()``), oldest first."""
        self._deadline = None
        matches: list[Match[F]] = []
        while True:
            match = self._step(now_mono)
            if match is None:
                return matches
            matches.append(match)

    def next_deadline(self, now_mono: float) -> float | None:
        """The first moment after ``now_mono`` when a poll may emit without a new frame:
        a set's wait running out, or a camera becoming silent."""
        candidates = [self._silent_at(camera) for camera in self._cameras.values()]
        if self._deadline is not None:
            candidates.append(self._deadline)
        future = [t for t in candidates if t > now_mono]
        return min(future) if future else None

    @property
    def clock(self) -> SyncClock:
        """``"sender"`` while every camera's newest frame has a capture time (or none has
        delivered), ``"arrival"`` while none has, else ``"mixed"``."""
        return _clock_of([c.stamped for c in self._cameras.values() if c.stamped is not None])

    def key(self, frame: Timed) -> float:
        """The time alignment compares ``frame`` by (epoch seconds): its capture time, or
        its arrival time minus its camera's :meth:`arrival_delay`. A waiting frame without
        a capture time moves with its camera's arrival delay when the estimate moves (by
        more than 2 ms, as the frames of the other cameras arrive)."""
        capture = frame.capture_time
        if capture is not None:
            return capture
        return frame.arrival_time - self._cameras[frame.source].shift

    def arrival_delay(self, name: str) -> float | None:
        """How long before its arrival the camera's frame counts as captured (seconds),
        while its frames carry no capture time: as given, else the median lowest delay of
        the cameras with capture times whose clocks agree (0 while there is none). None
        while its frames carry one, and before its first frame."""
        camera = self._cameras[name]
        return camera.shift if camera.stamped is False else None

    def counts(self, name: str) -> CameraCounts:
        """A copy of one camera's counters."""
        return replace(self._cameras[name].counts)

    def waiting(self, name: str) -> int:
        """Frames of one camera waiting for a set."""
        return len(self._cameras[name].queue)

    def waiting_bytes(self, name: str) -> int:
        """The bytes one camera's waiting frames hold (by ``frame_bytes``; 0 without)."""
        return self._cameras[name].queue.nbytes

    def delay(self, name: str) -> float | None:
        """One camera's lowest arrival time minus key over its recent frames (seconds):
        its path delay plus its clock's error; None before its first frame."""
        return self._cameras[name].delay

    def set_idle(self, name: str, idle: bool) -> None:
        """Say whether a camera's source receives nothing at all (no datagram, no
        connection): before its first frame, such a camera holds sets ``max_wait`` at
        most once the others deliver, not ``first_frame_grace``."""
        self._cameras[name].idle = idle

    def off_clock(self, name: str) -> bool:
        """Whether the camera's :meth:`delay` is further than ``max_wait`` from most
        cameras': its frames are dropped (``CameraCounts.clock``) until it agrees again."""
        return self._cameras[name].off_clock

    # -- the policies -----------------------------------------------------------------

    @property
    def _slack(self) -> float:
        return 0.0 if math.isinf(self._tolerance) else self._tolerance

    @property
    def _ordered(self) -> bool:
        """Whether sets come in time order (``latest`` pairs the newest frames instead)."""
        return self.policy != "latest"

    _key = key

    def _arrival_delay(self, name: str) -> float:
        """The camera's arrival delay now: as given, or estimated (see :meth:`arrival_delay`)."""
        given = self._arrival_delays.get(name)
        if given is not None:
            return given
        delays = sorted(
            delay
            for camera in self._cameras.values()
            if camera.stamped and not camera.off_clock and (delay := camera.delay) is not None
        )
        if not delays:
            return 0.0
        middle = len(delays) // 2
        return delays[middle] if len(delays) % 2 else (delays[middle - 1] + delays[middle]) / 2

    def _present(self, now_mono: float) -> list[str]:
        """The cameras a set may hold: those not silent, and silent ones with frames still
        waiting (``latest``: not silent only), whose clock agrees with most cameras'."""
        live = [name for name, cam in self._cameras.items() if now_mono < self._silent_at(cam)]
        if not self._ordered:
            return live
        self._judge_clocks(live)
        return [
            name
            for name, camera in self._cameras.items()
            if (name in live or camera.queue) and not camera.off_clock
        ]

    def _judge_clocks(self, live: list[str]) -> None:
        """Mark the cameras whose delay (arrival minus key) is further than ``max_wait``
        from that of a camera in the window of ``max_wait`` holding the most live cameras'
        delays (on a tie, the window starting nearest to zero delay: a right clock and a
        short path). Their frames can never be in a set with the others' in time: their
        waiting frames are dropped."""
        for name in live:  # a camera without capture times is not judged: its delay is
            if not self._cameras[name].stamped:  # an estimate
                self._cameras[name].off_clock = False
        state = tuple(
            (name, self._cameras[name].delay) for name in live if self._cameras[name].stamped
        )
        if state == self._judged:  # nothing changed since the last judgement
            return
        self._judged = state
        delays = sorted((delay, name) for name, delay in state if delay is not None)
        if len(delays) < 2:
            for name in live:
                self._cameras[name].off_clock = False
            return
        judged = [name for name, _ in state]
        best: tuple[int, float] | None = None  # (-count, |start|)
        low = high = delays[0][0]
        end = 0
        for start, (first, _) in enumerate(delays):
            end = max(end, start)
            while end + 1 < len(delays) and delays[end + 1][0] <= first + self.max_wait:
                end += 1
            rank = (start - end - 1, abs(first))
            if best is None or rank < best:
                best, low, high = rank, first, delays[end][0]
        for name in judged:  # a silent camera keeps its mark until it delivers again
            camera = self._cameras[name]
            delay = camera.delay  # off: further than max_wait from a camera of the window
            off = delay is not None and not high - self.max_wait <= delay <= low + self.max_wait
            if off and not camera.off_clock:
                camera.count_drop("clock", len(camera.queue))
                camera.queue.clear()
            camera.off_clock = off

    def _silent_at(self, camera: _Camera[F]) -> float:
        if camera.newest is not None:  # max_wait beyond its own frame interval
            interval = camera.min_interval or 0.0
            return camera.newest.arrival_mono + interval + self.max_wait
        silent_at = self.start_mono + self.first_frame_wait
        firsts = [other.first_mono for other in self._cameras.values() if other is not camera]
        if firsts and None not in firsts:  # every other camera is up: wait as for a late one
            latest_first = max(t for t in firsts if t is not None)
            grace = self.max_wait if camera.idle else self.first_frame_grace
            silent_at = min(silent_at, max(self.start_mono, latest_first) + grace)
        return silent_at

    def _step(self, now_mono: float) -> Match[F] | None:
        if self._ordered:
            self._drop_late()
        present = self._present(now_mono)
        if not present or (self.on_missing == "wait" and len(present) < len(self.names)):
            return None
        if self.policy == "latest":
            return self._step_latest(present, now_mono)
        while True:
            heads = {n: self._cameras[n].queue[0] for n in present if self._cameras[n].queue}
            if not heads:
                return None
            chosen = self._around_pivot(present, heads, now_mono)
            if isinstance(chosen, _Wait):
                return None
            if chosen is not None:
                earlier = self._before(chosen, present, heads, now_mono)
                return self._emit(earlier if earlier is not None else chosen)
            if self.on_missing == "wait":  # no complete set can hold the pivot
                pivot_name = max(heads, key=lambda n: self._key(heads[n]))
                self._cameras[pivot_name].drop(heads[pivot_name], "unmatched")
                continue
            chosen = self._from_earliest(present, heads, now_mono)
            if isinstance(chosen, _Wait):
                return None
            if chosen is not None:
                return self._emit(chosen)

    def _around_pivot(
        self, present: list[str], heads: dict[str, F], now_mono: float
    ) -> Chosen[F] | _Wait | None:
        """The set of every present camera around the pivot; None when none fits.

        A camera that has not seen a frame at or after the pivot is waited for until its
        nearest frame is certain, or ``max_wait`` after the pivot arrived; then the set is
        emitted without it (with ``on_missing="partial"``).
        """
        pivot_name = max(heads, key=lambda n: self._key(heads[n]))
        pivot = heads[pivot_name]
        target = self._key(pivot)
        due = pivot.arrival_mono + self.max_wait
        chosen: dict[str, F] = {pivot_name: pivot}
        pending: dict[str, F | None] = {}
        for name in present:
            if name == pivot_name:
                continue
            camera = self._cameras[name]
            best = min(camera.queue, key=lambda f: abs(self._key(f) - target), default=None)
            if camera.newest is None or self._key(camera.newest) < target:
                if best is not None and self._certainly_nearest(camera, best, target):
                    chosen[name] = best
                elif camera.newest is None or (
                    now_mono < self._silent_at(camera)
                    and self._soonest(camera) - target <= self._tolerance
                    and self._may_arrive(camera, target, due)
                ):
                    pending[name] = best  # a frame nearer to the pivot may still come
                elif best is None or abs(self._key(best) - target) > self._tolerance:
                    return None  # its next frame is too far from the pivot, or too late
                else:
                    chosen[name] = best
            elif best is None or abs(self._key(best) - target) > self._tolerance:
                return None
            else:
                chosen[name] = best
        if pending:
            due = self._due(pivot, pending)
            if now_mono < due:
                keys = [self._key(f) for f in chosen.values()]
                soonest = [
                    max(self._soonest(c), target)
                    for n in pending
                    if (c := self._cameras[n]).newest is not None
                ]
                if max(keys + soonest) - min(keys) > self._tolerance and not self._may_fit(
                    present, pivot_name, target, due, now_mono
                ):
                    return None  # no frame still to come can make a set of all
                self._deadline = due
                return _WAIT
            if self.on_missing == "wait":
                return None
            for name, best in pending.items():
                if best is not None and abs(self._key(best) - target) <= self._tolerance:
                    chosen[name] = best
        self._narrow(chosen, pivot_name, target)
        keys = [self._key(f) for f in chosen.values()]
        if max(keys) - min(keys) > self._tolerance:
            return None
        return chosen

    def _before(
        self, chosen: Chosen[F], present: list[str], heads: dict[str, F], now_mono: float
    ) -> Chosen[F] | None:
        """A set of two cameras or more among the frames older than ``chosen`` (which
        would otherwise be overtaken), to be emitted first: the earliest waiting frame
        and each other camera's first older frame within the tolerance after it. None if
        there is none."""
        if self.on_missing == "wait":
            return None
        first_name = min(heads, key=lambda n: self._key(heads[n]))
        first = heads[first_name]
        if first is chosen.get(first_name):
            return None
        low = self._key(first)
        earlier: dict[str, F] = {first_name: first}
        for name in present:
            if name == first_name:
                continue
            for frame in self._cameras[name].queue:
                if frame is chosen.get(name) or self._key(frame) - low > self._tolerance:
                    break
                earlier[name] = frame
                break
        return earlier if len(earlier) > 1 else None

    def _may_fit(
        self, present: list[str], pivot_name: str, target: float, due: float, now_mono: float
    ) -> bool:
        """Whether a set of every present camera holding the pivot can still fit within
        the tolerance, with the frames waiting and those still to come (a live camera's
        next frame has a key from its soonest on, if it can arrive by ``due``)."""
        tolerance = self._tolerance
        if math.isinf(tolerance):
            return True
        # The set's latest key, as an offset from the pivot's, is some h in [0, tolerance];
        # each camera allows the h for which one of its frames, waiting or to come, lies
        # in [h - tolerance, h]. Intersect what every camera allows.
        allowed = [(0.0, tolerance)]
        for name in present:
            if name == pivot_name:
                continue
            camera = self._cameras[name]
            spans = []
            if camera.newest is None:
                spans.append((0.0, tolerance))
            elif now_mono < self._silent_at(camera) and self._may_arrive(camera, target, due):
                future = self._soonest(camera) - target
                if future <= tolerance:
                    spans.append((max(future, 0.0), tolerance))
            for frame in camera.queue:
                offset = self._key(frame) - target
                if -tolerance <= offset <= tolerance:
                    spans.append((max(offset, 0.0), min(offset + tolerance, tolerance)))
            allowed = [
                (max(a, c), min(b, d))
                for a, b in allowed
                for c, d in spans
                if max(a, c) <= min(b, d)
            ]
            if not allowed:
                return False
        return True

    def _from_earliest(
        self, present: list[str], heads: dict[str, F], now_mono: float
    ) -> Chosen[F] | _Wait | None:
        """The set of the earliest waiting frame: it and each other camera's first frame
        within the tolerance after it, once no camera can bring an earlier frame or one
        within the tolerance any more (or ``max_wait`` after it arrived).

        None when the earliest frame was dropped as overtaken instead: a later set will
        hold every camera of this one and a slower camera missing from it (10 fps beside
        30 fps: sets of the slow camera's frames with the fast camera's nearest, and no
        set of the fast camera alone in between).
        """
        first_name = min(heads, key=lambda n: self._key(heads[n]))
        first = heads[first_name]
        low = self._key(first)  # keys are compared as differences: epoch floats round
        chosen: dict[str, F] = {first_name: first}
        pending: list[str] = []
        for name in present:
            if name == first_name:
                continue
            camera = self._cameras[name]
            if camera.queue:  # every waiting frame is at or after the earliest
                head = camera.queue[0]
                if self._key(head) - low <= self._tolerance:
                    chosen[name] = head
                continue
            newest = camera.newest
            if newest is None:
                pending.append(name)
                continue
            # its next frame: before the earliest (then its set comes first), inside the
            # window (then it joins), or after the window (then it cannot join)
            soonest = self._soonest(camera)
            due = first.arrival_mono + self.max_wait
            if (
                now_mono < self._silent_at(camera)
                and soonest - low <= self._tolerance
                and self._may_arrive(camera, soonest, due)
            ):
                pending.append(name)
        if pending:
            due = self._due(first, pending)
            if now_mono < due:
                self._deadline = due
                return _WAIT
        if self._overtaken(chosen, now_mono):
            self._cameras[first_name].drop(first, "overtaken")
            return None
        return chosen

    def _overtaken(self, chosen: Chosen[F], now_mono: float) -> bool:
        """Whether a later set will hold every camera of ``chosen`` and one more: a live
        camera missing from it, slower than each of them, whose next frame each of them
        will have a later frame within the tolerance of (frames regular, their shortest
        interval apart). Only a frame alone is passed over so: a set of several cameras is
        kept, whatever comes later (its frames are not those the later set needs)."""
        if len(chosen) > 1:
            return False
        steps = {}
        for name, frame in chosen.items():
            step = self._cameras[name].min_interval
            if step is None:
                return False
            steps[name] = (self._key(frame), step)
        for other, camera in self._cameras.items():
            interval = camera.min_interval
            if (
                other in chosen
                or camera.off_clock
                or interval is None
                or camera.newest is None
                or not now_mono < self._silent_at(camera)
            ):
                continue
            soonest = self._soonest(camera)
            if all(
                step < 0.9 * interval  # faster
                and (count := round((soonest - key) / step)) >= 1
                and abs(key + count * step - soonest) <= self._tolerance
                for key, step in steps.values()
            ):
                return True
        return False

    def _soonest(self, camera: _Camera[F]) -> float:
        """The earliest key the camera's next frame can have (frames do not come closer
        together than the shortest interval seen)."""
        assert camera.newest is not None
        interval = camera.min_interval
        return self._key(camera.newest) + (interval if interval is not None else 0.0)

    def _may_arrive(self, camera: _Camera[F], key: float, by_mono: float) -> bool:
        """Whether the camera's frame of time ``key`` can arrive by ``by_mono``, judged by
        the lowest delay (arrival minus key) of its recent frames."""
        delay, newest = camera.delay, camera.newest
        if delay is None or newest is None:
            return True
        mono_minus_time = newest.arrival_mono - newest.arrival_time
        return key + delay + mono_minus_time <= by_mono

    def _narrow(self, chosen: dict[str, F], pivot_name: str, target: float) -> None:
        """Re-choose, among each camera's frames just before and just after the pivot, the
        combination of least skew, preferring the earlier frames when skews differ by less
        than a sixth of a frame interval.

        Choosing each camera's nearest frame on its own can straddle the pivot (one camera
        a frame early, another a frame late) when the cameras' phases are spread over the
        frame interval; the set is then wider than needed and the skipped early frames
        leave the next set short, so whole sets are lost (a fifth of them with four
        cameras spread evenly). The earlier frames win near-ties for the same reason.
        """
        options: list[tuple[float, str, F, F]] = []  # (pivot - before, camera, before, after)
        intervals = []
        for name in chosen:
            if name == pivot_name:
                continue
            camera = self._cameras[name]
            before = after = None
            for frame in camera.queue:  # in key order: keys going backwards reset a camera
                if self._key(frame) <= target:
                    before = frame
                else:
                    after = frame
                    break
            if before is not None and after is not None:
                options.append((target - self._key(before), name, before, after))
            if camera.min_interval is not None:
                intervals.append(camera.min_interval)
        if not options:
            return
        options.sort(key=lambda o: o[0], reverse=True)
        flexible = {o[1] for o in options}
        fixed = [self._key(f) for n, f in chosen.items() if n not in flexible]
        margin = (min(intervals) if intervals else 1 / 30) / 6
        # k cameras (those furthest before the pivot) take their frame after it: the
        # set's bounds come from the fixed keys, a prefix of "after" and a suffix of "before"
        afters = [self._key(o[3]) for o in options]
        befores = [self._key(o[2]) for o in options]
        low_before = [*reversed([*itertools.accumulate(reversed(befores), min)]), math.inf]
        high_before = [*reversed([*itertools.accumulate(reversed(befores), max)]), -math.inf]
        low, high = min(fixed), max(fixed)
        best_k, best_span = 0, math.inf
        for k in range(len(options) + 1):
            if k:
                low, high = min(low, afters[k - 1]), max(high, afters[k - 1])
            span = max(high, high_before[k]) - min(low, low_before[k])
            # a narrower set wins by more than the margin, or by fitting the tolerance
            if span < best_span - margin or span <= self._tolerance < best_span:
                best_k, best_span = k, span
        for i, (_, name, before, after) in enumerate(options):
            chosen[name] = after if i < best_k else before

    def _step_latest(self, present: list[str], now_mono: float) -> Match[F] | None:
        ready = {n: self._cameras[n].queue[-1] for n in present if self._cameras[n].queue}
        if not ready:
            return None
        if len(ready) < len(present):
            oldest = min(ready.values(), key=lambda f: f.arrival_mono)
            due = self._due(oldest, [n for n in present if n not in ready])
            if now_mono < due:
                self._deadline = due
                return None
            if self.on_missing == "wait":
                return None
        return self._emit(ready)

    def _due(self, frame: F, waiting_for: Iterable[str]) -> float:
        """When a set waiting for cameras is emitted without them: ``max_wait`` after its
        frame arrived, and not before a camera not yet seen counts as silent."""
        due = frame.arrival_mono + self.max_wait
        for name in waiting_for:
            camera = self._cameras[name]
            if camera.newest is None:
                due = max(due, self._silent_at(camera))
        return due

    def _certainly_nearest(self, camera: _Camera[F], best: F, target: float) -> bool:
        """Whether ``best``, the camera's newest frame, before ``target``, is nearer to it
        than any frame still to come: the next comes ``min_interval`` after it at the
        earliest. Saves waiting a frame interval for a frame that cannot be chosen."""
        interval = camera.min_interval
        if best is not camera.newest or interval is None:
            return False
        key = self._key(best)
        return target - key <= self._tolerance and target - key <= key + interval - target

    def _drop_late(self) -> None:
        """Drop waiting frames older than the last set: no set can hold them any more."""
        for camera in self._cameras.values():
            queue = camera.queue
            while queue and self._key(queue[0]) < self._floor:
                queue.popleft()
                camera.count_drop("late")

    def _emit(self, chosen: dict[str, F]) -> Match[F]:
        """Take the chosen frames (and the older ones, now useless) out of their queues."""
        for name, frame in chosen.items():
            camera = self._cameras[name]
            while camera.queue:
                head = camera.queue.popleft()
                if head is frame:
                    break
                camera.count_drop("overtaken")
            camera.counts.used += 1
        frames = {name: chosen[name] for name in self.names if name in chosen}
        keys = {name: self._key(f) for name, f in frames.items()}
        self._floor = max(self._floor, min(keys.values()))
        mean = sum(keys.values()) / len(keys)
        return Match(
            frames=frames,
            missing=tuple(name for name in self.names if name not in chosen),
            skew=max(keys.values()) - min(keys.values()),
            time=mean,
            clock=_clock_of([f.capture_time is not None for f in frames.values()]),
            offsets={name: key - mean for name, key in keys.items()},
        )
