"""Rates and percentiles of counters: the small statistics streams and groups both use."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["MIN_RATE_SPAN", "per_second", "percentile"]

#: Shortest span (s) a rate is taken over. Just after a start, a burst of events reads as
#: that many events per this span, not per the microseconds between them.
MIN_RATE_SPAN = 1.0


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """The value at ``fraction`` (0..1) of ``sorted_values``, nearest rank; None if empty."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def per_second(
    events_mono: Iterable[float],
    now_mono: float,
    *,
    window: float,
    start_mono: float,
    min_span: float = MIN_RATE_SPAN,
) -> float:
    """Events per second over the last ``window`` seconds of ``time.monotonic()`` stamps.

    The events of the span are counted and divided by the span: ``window``, or the time
    since ``start_mono`` (when the counting began) if that is shorter, but never less than
    ``min_span``. A burst just after the start so reads as a handful of events per
    second, never as events per the microseconds between them.
    """
    span = min(window, max(now_mono - start_mono, min_span))
    if span <= 0:
        return 0.0
    count = sum(1 for t in events_mono if 0 <= now_mono - t <= span)
    return count / span
