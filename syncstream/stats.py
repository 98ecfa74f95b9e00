"""Counter snapshots of a group (and the small statistics both streams and groups use)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .sync import SyncClock

if TYPE_CHECKING:
    from .processors.base import ProcessorStats
    from .stream import StreamStats

__all__ = ["CameraStats", "GroupStats", "per_second", "percentile"]


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """The value at ``fraction`` (0..1) of ``sorted_values``, nearest rank; None if empty."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def per_second(events_mono: Iterable[float], now_mono: float, window: float) -> float:
    """Events per second over the last ``window`` seconds of ``time.monotonic()`` stamps."""
    recent = [t for t in events_mono if now_mono - t <= window]
    if len(recent) >= 2 and recent[-1] > recent[0]:
        return (len(recent) - 1) / (recent[-1] - recent[0])
    return 0.0


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
    #: Sets per second over the last two seconds.
    sets_per_second: float
    skew_p50: float | None
    skew_p95: float | None
    latency_p50: float | None
    latency_p95: float | None
    #: "sender": aligned by capture time; "arrival": a camera carries no capture time.
    clock: SyncClock
    cameras: dict[str, CameraStats]
    processors: dict[str, ProcessorStats]
