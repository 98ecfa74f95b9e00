"""Counter snapshots of a group, its cameras and its processors.

(:func:`per_second` and :func:`percentile` live in :mod:`syncstream.rates`, which streams
use too; they are re-exported here.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .rates import MIN_RATE_SPAN, per_second, percentile
from .sync import SyncClock

if TYPE_CHECKING:
    from .stream import StreamStats

__all__ = [
    "MIN_RATE_SPAN",
    "CameraStats",
    "GroupStats",
    "ProcessorStats",
    "per_second",
    "percentile",
]


@dataclass(frozen=True)
class ProcessorStats:
    """A snapshot of one processor's counters."""

    name: str
    #: Sets the callback returned from (including those that raised).
    processed: int
    #: Sets replaced in the slot by a newer one before the callback could take them.
    skipped: int
    #: Calls that raised.
    errors: int
    #: Mean seconds per call; None before the first.
    mean_time: float | None
    #: Longest call, in seconds; None before the first.
    max_time: float | None
    last_error: str | None
    running: bool


@dataclass(frozen=True)
class CameraStats:
    """One camera in a group: its stream's counters and what alignment did with its frames."""

    name: str
    stream: StreamStats
    #: Frames that went into a set.
    used: int
    #: Frames that fitted no set (too far from the other cameras, or overtaken).
    dropped: int
    #: Frames waiting for a set right now.
    waiting: int
    #: Our clock minus the camera's (seconds), applied to its capture times.
    clock_offset: float
    #: Whether its sender runs; None for a camera the group did not start.
    sender_running: bool | None
    sender_restarts: int
    #: Median of its frame's time minus the set's time (seconds) over recent sets: how far
    #: this camera sits from the others, positive when its frames are taken later.
    offset_p50: float | None = None
    #: ``dropped`` by reason: ``overtaken``, ``unmatched``, ``late``, ``expired``,
    #: ``clock``, ``discarded``, ``memory`` (see :class:`~syncstream.sync.CameraCounts`).
    drop_reasons: Mapping[str, int] = field(default_factory=dict)
    #: Its frames arrive further from their capture time than most cameras' by more than
    #: ``max_wait`` (its clock is off): they are dropped, not waited for.
    off_clock: bool = False
    #: Its lowest arrival minus capture time over recent frames (seconds): path delay plus
    #: the error of its clock; None before its first frame.
    delay: float | None = None
    #: While its frames carry no capture time (they go by arrival): how long before its
    #: arrival a frame counts as captured (seconds), given as the camera's
    #: ``arrival_delay`` or estimated from the cameras with capture times (0 without
    #: any). None while its frames carry one.
    arrival_delay: float | None = None


@dataclass(frozen=True)
class GroupStats:
    """A snapshot of a group's counters. Times in seconds."""

    #: Sets emitted by alignment.
    sets: int
    #: Of those, sets with a camera missing.
    partial: int
    #: Sets returned by read().
    delivered: int
    #: Sets replaced by a newer one before read() took them.
    skipped: int
    #: Sets per second over the last two seconds (since the start, if less, but over at
    #: least one second: see :func:`per_second`).
    sets_per_second: float
    skew_p50: float | None
    skew_p95: float | None
    latency_p50: float | None
    latency_p95: float | None
    #: What the cameras' newest frames go by: "sender" (all by capture time), "arrival"
    #: (none carries one) or "mixed" (see :attr:`CameraStats.arrival_delay`).
    clock: SyncClock
    cameras: dict[str, CameraStats]
    processors: dict[str, ProcessorStats]
    #: Frames lost before alignment because the alignment thread fell behind (its inbox
    #: holds 4096 frames, and the cameras' ``max_history_bytes`` summed); 0 unless the
    #: process is starved.
    overflow: int = 0
    #: Which streams' sets these figures are of: "main", or a further role such as "sub".
    role: str = "main"
    #: The same figures for the sets of each further role (empty in those themselves).
    roles: Mapping[str, GroupStats] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """A status line per camera and one for the group, for a terminal or a log.

        Camera: state, fps, latency p50 (capture to decode), skew (its median offset from
        the set's time), drops (frames the reader skipped plus frames no set could use),
        decode errors, sender restarts, its clock error (``clock error +1.3 ms``: the
        lowest arrival minus capture time, see ``StreamStats.clock_error``; ``clock off``
        when alignment leaves it out; ``by arrival - 45.0 ms`` when its frames carry no
        capture time and go by arrival minus its arrival delay), and what it waits for
        while nothing arrives (``no data on udp port 9001``). Group: sets/s, skew and set
        latency p50/p95, and the same for the sets of each further stream role
        (``group:sub``).
        """
        width = max([5, *(len(name) for name in self.cameras), *(len(r) + 6 for r in self.roles)])
        lines = [_camera_line(camera, width) for camera in self.cameras.values()]
        lines.append(_group_line("group", self, width))
        for role, stats in self.roles.items():  # further stream roles: one line each
            lines.append(_group_line(f"group:{role}", stats, width))
        return lines


def _group_line(label: str, stats: GroupStats, width: int) -> str:
    return (
        f"{label:<{width}} {stats.clock:<8} {stats.sets_per_second:5.1f} sets/s  "
        f"skew p50 {_ms(stats.skew_p50)} p95 {_ms(stats.skew_p95)} ms  "
        f"latency p50 {_ms(stats.latency_p50)} p95 {_ms(stats.latency_p95)} ms  "
        f"sets {stats.sets} partial {stats.partial}"
    )


def _ms(seconds: float | None, sign: bool = False) -> str:
    if seconds is None:
        return "    -"
    return f"{seconds * 1000:+5.1f}" if sign else f"{seconds * 1000:5.1f}"


def _signed(seconds: float) -> str:
    """``+1.3 ms`` under a second, ``-2.50 s`` from one on."""
    return f"{seconds * 1000:+.1f} ms" if abs(seconds) < 1 else f"{seconds:+.2f} s"


def _camera_line(camera: CameraStats, width: int) -> str:
    stream = camera.stream
    drops = stream.skipped + camera.dropped
    restarts = "" if camera.sender_running is None else f"  restarts {camera.sender_restarts}"
    why = {"skipped": stream.skipped, **camera.drop_reasons}  # skipped: by the reader
    reasons = ", ".join(f"{reason} {count}" for reason, count in why.items() if count)
    shown = f"{drops} ({reasons})" if reasons else f"{drops}"
    error = "" if stream.clock_error is None else f"  clock error {_signed(stream.clock_error)}"
    clock = "  clock off" if camera.off_clock else ""
    if camera.arrival_delay is not None:
        clock += f"  by arrival - {_ms(camera.arrival_delay).strip()} ms"
    waiting = "" if stream.waiting_for is None else f"  {stream.waiting_for}"
    return (
        f"{camera.name:<{width}} {stream.state.value:<8} {stream.fps:5.1f} fps     "
        f"latency p50 {_ms(stream.latency_p50)} ms  skew {_ms(camera.offset_p50, sign=True)} ms  "
        f"drops {shown}  errors {stream.decode_errors}{restarts}{error}{clock}{waiting}"
    )
