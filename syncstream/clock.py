"""Capture-time recovery: map stream timestamps carried by a sender to our wall clock.

syncstream senders write their wall clock into the MPEG-TS PTS (90 kHz, 33 bits), so a
PTS is the capture time modulo ``2**33 / 90000`` seconds (about 26.5 hours). The receiver
restores the missing high part by choosing the period that puts the capture time nearest
to the frame's arrival time, which is correct while the true latency plus clock offset is
under half a period (13 hours).
"""

from __future__ import annotations

import math

__all__ = ["MPEGTS_PTS_PERIOD", "plausible_capture_time", "unwrap_pts_time"]

#: Seconds after which a 33-bit, 90 kHz MPEG-TS timestamp wraps to zero.
MPEGTS_PTS_PERIOD = 2**33 / 90_000


def unwrap_pts_time(pts_time: float, reference_time: float, period: float) -> float:
    """Return ``pts_time`` shifted by whole periods to land nearest ``reference_time``.

    ``pts_time`` may already be partly unwrapped (FFmpeg corrects one wrap itself); it is
    folded into ``[0, period)`` first, so the answer only depends on it modulo ``period``.
    """
    if period <= 0 or not math.isfinite(period):
        raise ValueError(f"period must be a positive finite number, got {period!r}")
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
