"""Capture-time recovery: map stream timestamps carried by a sender to our wall clock.

Two parts: the sender's clock is read back from the stream (PTS unwrap, below), and the
offset between its host's clock and ours is measured over SSH (:func:`estimate_clock_offset`).

syncstream senders write their wall clock into the MPEG-TS PTS (90 kHz, 33 bits), so a
PTS is the capture time modulo ``2**33 / 90000`` seconds (about 26.5 hours). The receiver
restores the missing high part by choosing the period that puts the capture time nearest
to the frame's arrival time, which is correct while the true latency plus clock offset is
under half a period (13 hours).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ConfigError

__all__ = [
    "MPEGTS_PTS_PERIOD",
    "ClockOffset",
    "ClockSample",
    "LowerEnvelope",
    "estimate_clock_offset",
    "plausible_capture_time",
    "unwrap_pts_time",
]

#: Seconds after which a 33-bit, 90 kHz MPEG-TS timestamp wraps to zero.
MPEGTS_PTS_PERIOD = 2**33 / 90_000


def unwrap_pts_time(pts_time: float, reference_time: float, period: float) -> float:
    """Return ``pts_time`` shifted by whole periods to land nearest ``reference_time``.

    ``pts_time`` may already be partly unwrapped (FFmpeg corrects one wrap itself); it is
    folded into ``[0, period)`` first, so the answer only depends on it modulo ``period``.
    """
    if period <= 0 or not math.isfinite(period):
        raise ConfigError(f"period must be a positive finite number, got {period!r}")
    base = math.fmod(pts_time, period)
    if base < 0:
        base += period
    turns = round((reference_time - base) / period)
    return base + turns * period


def plausible_capture_time(
    sender_time: float,
    arrival_time: float,
    clock_offset: float,
    tolerance: float,
) -> float | None:
    """Map a sender-clock time onto our clock, or ``None`` when it cannot be a capture time.

    ``clock_offset`` is our clock minus the sender's (measured per host). A result more than
    ``tolerance`` seconds away from the arrival means the stream's timestamps are not a wall
    clock (an ordinary stream starts its PTS near zero) and is rejected.
    """
    capture_time = sender_time + clock_offset
    age = arrival_time - capture_time
    if -tolerance <= age <= tolerance:
        return capture_time
    return None


class LowerEnvelope:
    """The lowest value of the samples of the last ``window`` seconds (and ``max_samples``).

    Fed with arrival minus capture time, it is the path delay of the fastest recent frame
    plus the error of the sender's clock: queueing only ever adds to a delay, so the
    minimum is its steadiest part. Memory is bounded by ``max_samples``; each sample costs
    O(1) amortized (a deque of increasing values, the classic sliding-window minimum).
    """

    def __init__(self, window: float, max_samples: int) -> None:
        if window <= 0 or max_samples < 1:
            raise ConfigError(
                f"window must be > 0 and max_samples >= 1, got {window}, {max_samples}"
            )
        self.window = window
        self.max_samples = max_samples
        self._count = 0
        self._kept: deque[tuple[int, float, float]] = deque()  # (index, time, value)

    def add(self, time_mono: float, value: float) -> float:
        """Take ``value`` observed at ``time_mono`` (non-decreasing); return the minimum."""
        kept = self._kept
        while kept and kept[-1][2] >= value:
            kept.pop()  # never the minimum again: this one is lower and stays longer
        kept.append((self._count, time_mono, value))
        self._count += 1
        oldest = self._count - self.max_samples
        while kept[0][0] < oldest or kept[0][1] < time_mono - self.window:
            kept.popleft()  # the newest sample is always kept
        return kept[0][2]

    @property
    def value(self) -> float | None:
        """The current minimum; None before the first sample."""
        return self._kept[0][2] if self._kept else None


@dataclass(frozen=True)
class ClockSample:
    """One round trip to a remote clock: when we asked, how long it took, what it said."""

    #: Our wall clock when the request left (s since the epoch).
    sent_time: float
    #: Round-trip time of the request, measured on our monotonic clock (s).
    rtt: float
    #: The remote wall clock read while the request was being answered.
    remote_time: float


@dataclass(frozen=True)
class ClockOffset:
    """Our clock minus a host's clock, as :class:`~syncstream.StreamConfig.clock_offset` wants.

    ``uncertainty`` bounds the error: the remote clock was read somewhere within the round
    trip, so the offset is off by at most half the round-trip time.
    """

    offset: float
    uncertainty: float
    rtt: float
    samples: int


def estimate_clock_offset(samples: Sequence[ClockSample]) -> ClockOffset:
    """Offset from the round trip with the smallest RTT (the least queueing, the tightest bound).

    Assumes the two halves of the trip take equally long (the NTP assumption): the remote
    clock was read at our ``sent_time + rtt / 2``.
    """
    if not samples:
        raise ValueError("no clock samples")
    best = min(samples, key=lambda sample: sample.rtt)
    if best.rtt < 0 or not math.isfinite(best.remote_time):
        raise ValueError(f"invalid clock sample: {best!r}")
    offset = best.sent_time + best.rtt / 2 - best.remote_time
    return ClockOffset(offset=offset, uncertainty=best.rtt / 2, rtt=best.rtt, samples=len(samples))
