"""Cross-role matching: the frame of another stream of the same camera taken at the same
instant. Pure: no threads, no I/O.

A camera with a ``sub`` stream sends the same pictures twice, at two sizes. A processor
that searches the small frames (the speaker detector) finds the big frame of the same
instant among the main stream's recent frames with :func:`frame_at`. One sender gives
both frames the very same capture time; an IP camera's two RTSP sessions each map their
own sender reports, so the two differ by a millisecond or so. Frames are therefore
matched within a tolerance, half the main stream's frame interval by default
(:func:`half_interval`): closer than that, no other frame of the stream can be nearer.
A frame without a capture time matches nothing (arrival times of two sessions say
nothing about the instant a picture was taken), and no match is ``None``, never the
newest frame in its place.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from typing import TypeVar

from .sync import Timed

__all__ = ["DEFAULT_TOLERANCE", "frame_at", "half_interval"]

#: Tolerance (s) when the other stream's frame interval is not known yet (fewer than two
#: frames with capture times): a third of a frame at 30 fps, ten times the millisecond
#: two RTSP sessions of one camera differ by.
DEFAULT_TOLERANCE = 0.010

T = TypeVar("T", bound=Timed)


def half_interval(frames: Sequence[Timed]) -> float | None:
    """Half the median step between the successive capture times of ``frames`` (in the
    order given); None with fewer than two steps forward."""
    times = [f.capture_time for f in frames if f.capture_time is not None]
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return statistics.median(steps) / 2 if steps else None


def frame_at(
    capture_time: float | None, candidates: Sequence[T], *, tolerance: float | None = None
) -> T | None:
    """The candidate captured nearest ``capture_time``, if within ``tolerance`` seconds of
    it; else None. Also None when ``capture_time`` is None, and candidates without one are
    never returned.

    ``tolerance`` defaults to :func:`half_interval` of the candidates (or
    :data:`DEFAULT_TOLERANCE`). Of two candidates equally near, the earlier in the
    sequence wins.
    """
    if capture_time is None:
        return None
    if tolerance is None:
        half = half_interval(candidates)
        tolerance = DEFAULT_TOLERANCE if half is None else half
    best: T | None = None
    best_gap = tolerance
    for candidate in candidates:
        taken = candidate.capture_time
        if taken is None:
            continue
        gap = abs(taken - capture_time)
        if gap <= best_gap and (best is None or gap < best_gap):
            best, best_gap = candidate, gap
    return best
