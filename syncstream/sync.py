"""Alignment: which frames of several cameras belong together. Pure: no threads, no I/O.

An :class:`Aligner` is fed every decoded frame (:meth:`Aligner.add`) and asked for the
frame sets that are ready (:meth:`Aligner.poll`), with the current monotonic time passed
in, so the same inputs always give the same sets and the logic is tested with synthetic
timestamps.

Frames are compared by their *key*: the capture time (the sender's wall clock mapped to
ours) when every camera's frames carry one, else the arrival time for all cameras, so a
camera without sender stamps never gets compared on a different clock than the others.
:attr:`Aligner.clock` says which.

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
    as soon as that is certain, i.e. once it has seen a frame at or after the pivot.
    A set wider than ``max_skew`` is not emitted: frames that can no longer be within
    ``max_skew`` of every other camera are dropped.
``exact``
    Equal keys (within ``exact_tolerance``): recordings of hardware-synchronised cameras.

A camera that delivers nothing for ``max_wait`` seconds is *silent*. With
``on_missing="partial"`` sets are emitted without it (named in ``missing``), and a set
that waited ``max_wait`` for a camera is emitted without that camera; with ``"wait"``
only complete sets are emitted.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

from .config import MissingPolicy, SyncPolicy

__all__ = [
    "Aligner",
    "CameraCounts",
    "Match",
    "SyncClock",
    "Timed",
]

SyncClock = Literal["sender", "arrival"]


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
    #: ``"sender"``: keys are capture times; ``"arrival"``: arrival times.
    clock: SyncClock
    #: Each camera's key minus :attr:`time` (seconds): positive for a frame taken later.
    offsets: Mapping[str, float] = field(default_factory=dict)


@dataclass
class CameraCounts:
    """What happened to one camera's frames inside the aligner."""

    #: Frames that went into a set.
    used: int = 0
    #: Frames that could not be part of any set (too far from the other cameras, or
    #: overtaken by newer frames) and were dropped.
    dropped: int = 0
    #: Times the camera's keys went backwards (a restarted or looping source) and its
    #: waiting frames were discarded.
    resets: int = 0


class _Camera(Generic[F]):
    __slots__ = ("counts", "intervals", "newest", "queue")

    def __init__(self) -> None:
        self.queue: deque[F] = deque()
        self.newest: F | None = None
        self.counts = CameraCounts()
        self.intervals: deque[float] = deque(maxlen=16)

    @property
    def min_interval(self) -> float | None:
        """The shortest recent gap between two frames: no frame comes sooner after one."""
        return min(self.intervals) if self.intervals else None


class Aligner(Generic[F]):
    """Groups the frames of named cameras into sets by capture time; see the module doc.

    ``history`` bounds each camera's waiting frames (the oldest is dropped beyond it):
    it must cover the largest difference in path delay between cameras, in frames.
    ``start_mono`` is when the cameras were started (``time.monotonic()``): a camera that
    has not delivered a frame ``first_frame_wait`` (at least ``max_wait``) after it is
    silent; senders and decoders take a moment (a keyframe) to deliver their first frame.
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
    ) -> None:
        if not names:
            raise ValueError("an Aligner needs at least one camera")
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {list(names)}")
        if max_skew is not None and max_skew <= 0:
            raise ValueError(f"max_skew must be > 0 or None, got {max_skew}")
        if max_wait <= 0 or history < 1 or exact_tolerance < 0:
            raise ValueError("max_wait must be > 0, history >= 1 and exact_tolerance >= 0")
        self.names = tuple(names)
        self.policy: SyncPolicy = policy
        self.max_wait = max_wait
        self.on_missing: MissingPolicy = on_missing
        self.history = history
        self.start_mono = start_mono
        self.first_frame_wait = max(first_frame_wait, max_wait)
        if policy == "exact":
            self._tolerance = exact_tolerance
        elif policy == "nearest" and max_skew is not None:
            self._tolerance = max_skew
        else:
            self._tolerance = math.inf
        self._cameras: dict[str, _Camera[F]] = {name: _Camera() for name in self.names}
        self._deadline: float | None = None
        self._unstamped: set[str] = set()  # cameras whose newest frame has no capture time

    # -- input ------------------------------------------------------------------------

    def add(self, frame: F) -> None:
        """Take a camera's newly decoded frame (frames of one camera arrive in order)."""
        camera = self._cameras.get(frame.source)
        if camera is None:
            raise KeyError(f"frame of unknown camera {frame.source!r}")
        newest = camera.newest
        camera.newest = frame
        if frame.capture_time is None:
            self._unstamped.add(frame.source)
        else:
            self._unstamped.discard(frame.source)
        if newest is not None:
            step = self._key(frame) - self._key(newest)
            if step > 0:
                camera.intervals.append(step)
            elif step < -self._slack:
                camera.counts.dropped += len(camera.queue)
                camera.counts.resets += 1
                camera.queue.clear()
                camera.intervals.clear()
        camera.queue.append(frame)
        while len(camera.queue) > self.history:
            camera.queue.popleft()
            camera.counts.dropped += 1

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
        """``"sender"`` while every camera's newest frame has a capture time."""
        return "arrival" if self._unstamped else "sender"

    def counts(self, name: str) -> CameraCounts:
        """A copy of one camera's counters."""
        counts = self._cameras[name].counts
        return CameraCounts(counts.used, counts.dropped, counts.resets)

    def waiting(self, name: str) -> int:
        """Frames of one camera waiting for a set."""
        return len(self._cameras[name].queue)

    # -- the policies -----------------------------------------------------------------

    @property
    def _slack(self) -> float:
        return 0.0 if math.isinf(self._tolerance) else self._tolerance

    def _key(self, frame: Timed) -> float:
        capture = frame.capture_time
        if capture is not None and not self._unstamped:
            return capture
        return frame.arrival_time

    def _present(self, now_mono: float) -> list[str]:
        return [name for name, cam in self._cameras.items() if now_mono < self._silent_at(cam)]

    def _silent_at(self, camera: _Camera[F]) -> float:
        if camera.newest is None:
            return self.start_mono + self.first_frame_wait
        return camera.newest.arrival_mono + self.max_wait

    def _step(self, now_mono: float) -> Match[F] | None:
        present = self._present(now_mono)
        if not present or (self.on_missing == "wait" and len(present) < len(self.names)):
            return None
        if self.policy == "latest":
            return self._step_latest(present, now_mono)
        while True:
            self._prune(present)
            heads = {n: self._cameras[n].queue[0] for n in present if self._cameras[n].queue}
            if not heads:
                return None
            pivot_name = max(heads, key=lambda n: self._key(heads[n]))
            pivot = heads[pivot_name]
            target = self._key(pivot)
            chosen: dict[str, F] = {pivot_name: pivot}
            pending: dict[str, F | None] = {}
            impossible = False
            for name in present:
                if name == pivot_name:
                    continue
                camera = self._cameras[name]
                best = min(camera.queue, key=lambda f: abs(self._key(f) - target), default=None)
                assert camera.newest is not None or best is None
                if camera.newest is None or self._key(camera.newest) < target:
                    if best is not None and self._certainly_nearest(camera, best, target):
                        chosen[name] = best
                    else:
                        pending[name] = best  # a frame nearer to the pivot may still come
                elif best is None or abs(self._key(best) - target) > self._tolerance:
                    impossible = True
                    break
                else:
                    chosen[name] = best
            if impossible:
                self._drop(pivot_name, pivot)
                continue
            if pending:
                due = self._due(pivot, pending)
                if now_mono < due:
                    self._deadline = due
                    return None
                if self.on_missing == "wait":
                    self._drop(pivot_name, pivot)
                    continue
                for name, best in pending.items():
                    if best is not None and abs(self._key(best) - target) <= self._tolerance:
                        chosen[name] = best
            self._narrow(chosen, pivot_name, target)
            keys = [self._key(f) for f in chosen.values()]
            if max(keys) - min(keys) > self._tolerance:
                earliest = min(chosen, key=lambda n: self._key(chosen[n]))
                self._drop(earliest, chosen[earliest])
                continue
            return self._emit(chosen)

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
            if span < best_span - margin:
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
        frame arrived, and not before ``first_frame_wait`` for a camera not yet seen."""
        due = frame.arrival_mono + self.max_wait
        if any(self._cameras[name].newest is None for name in waiting_for):
            due = max(due, self.start_mono + self.first_frame_wait)
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

    def _prune(self, present: list[str]) -> None:
        """Drop waiting frames that can no longer be within tolerance of every camera."""
        if math.isinf(self._tolerance):
            return
        changed = True
        while changed:
            changed = False
            floors = {}
            for name in present:
                camera = self._cameras[name]
                frame = camera.queue[0] if camera.queue else camera.newest
                if frame is not None:
                    floors[name] = self._key(frame)
            for name in present:
                queue = self._cameras[name].queue
                if not queue:
                    continue
                others = [floor for other, floor in floors.items() if other != name]
                if others and self._key(queue[0]) < max(others) - self._tolerance:
                    self._drop(name, queue[0])
                    changed = True

    def _drop(self, name: str, frame: F) -> None:
        camera = self._cameras[name]
        camera.queue.remove(frame)
        camera.counts.dropped += 1

    def _emit(self, chosen: dict[str, F]) -> Match[F]:
        """Take the chosen frames (and the older ones, now useless) out of their queues."""
        for name, frame in chosen.items():
            camera = self._cameras[name]
            while camera.queue:
                head = camera.queue.popleft()
                if head is frame:
                    break
                camera.counts.dropped += 1
            camera.counts.used += 1
        frames = {name: chosen[name] for name in self.names if name in chosen}
        keys = {name: self._key(f) for name, f in frames.items()}
        mean = sum(keys.values()) / len(keys)
        return Match(
            frames=frames,
            missing=tuple(name for name in self.names if name not in chosen),
            skew=max(keys.values()) - min(keys.values()),
            time=mean,
            clock=self.clock,
            offsets={name: key - mean for name, key in keys.items()},
        )
