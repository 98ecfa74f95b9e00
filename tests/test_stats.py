"""Rates and status lines: per_second against simple oracles, and the lines of a snapshot."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from syncstream.stats import MIN_RATE_SPAN, CameraStats, GroupStats, per_second
from syncstream.stream import StreamState, StreamStats

WINDOW = 2.0

starts = st.floats(min_value=0.0, max_value=1e6)
# seconds since the start at which the rate is asked
elapsed = st.floats(min_value=0.0, max_value=30.0)
# where events fall between the start and now, as fractions of that time
fractions = st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=200)


def _events(start: float, now: float, where: list[float]) -> list[float]:
    return sorted(start + f * (now - start) for f in where)


def _rate(events: list[float], now: float, start: float) -> float:
    return per_second(events, now, window=WINDOW, start_mono=start)


@given(starts, elapsed, fractions)
def test_the_rate_is_the_count_over_the_time_covered(
    start: float, since: float, where: list[float]
) -> None:
    now = start + since
    events = _events(start, now, where)
    if since >= WINDOW:  # a whole window: its events per window
        expected = sum(1 for t in events if now - t <= WINDOW) / WINDOW
    elif since >= MIN_RATE_SPAN:  # started less than a window ago: every event, per elapsed
        expected = len(events) / (now - start)
    else:  # just started: every event, per the shortest span
        expected = len(events) / MIN_RATE_SPAN
    assert math.isclose(_rate(events, now, start), expected, rel_tol=1e-9, abs_tol=1e-9)


@given(starts, elapsed, fractions)
def test_the_rate_is_bounded_by_count_over_elapsed_time(
    start: float, since: float, where: list[float]
) -> None:
    now = start + since
    events = _events(start, now, where)
    rate = _rate(events, now, start)
    assert rate >= 0.0
    assert rate <= len(events) / min(WINDOW, max(since, MIN_RATE_SPAN)) + 1e-9
    assert rate <= len(events) / MIN_RATE_SPAN + 1e-9  # whatever the time: never huge


@given(
    starts,
    st.integers(min_value=1, max_value=500),
    st.floats(min_value=0.0, max_value=1e-3),
    st.floats(min_value=0.0, max_value=30.0),
)
@example(start=100.0, size=2, burst=24.1e-6, after=0.0)  # the 41473.8 sets/s of a start
def test_a_burst_at_the_start_reads_as_at_most_its_size_per_second(
    start: float, size: int, burst: float, after: float
) -> None:
    events = [start + burst * i / size for i in range(size)]
    now = events[-1] + after
    assert _rate(events, now, start) <= size / MIN_RATE_SPAN + 1e-9


@given(
    starts,
    st.floats(min_value=1 / 240, max_value=1.0),
    st.floats(min_value=0.0, max_value=30.0),
)
def test_a_steady_rate_is_read_back_and_never_overshot(
    start: float, period: float, since: float
) -> None:
    now = start + since
    events = [start + i * period for i in range(math.floor(since / period) + 1)]
    rate = _rate(events, now, start)
    # ramping up from the start: at most one event per span above the true rate
    assert rate <= 1 / period + 1 / min(WINDOW, max(since, MIN_RATE_SPAN)) + 1e-9
    if since >= WINDOW:  # once a window has passed: the true rate, within one event
        assert abs(rate - 1 / period) <= 1 / WINDOW + 1e-9


@given(starts, elapsed, fractions, st.floats(min_value=0.0, max_value=1.0))
def test_one_more_event_never_lowers_the_rate(
    start: float, since: float, where: list[float], extra: float
) -> None:
    now = start + since
    events = _events(start, now, where)
    more = _events(start, now, [*where, extra])
    assert _rate(more, now, start) >= _rate(events, now, start)
    assert _rate(list(reversed(events)), now, start) == _rate(events, now, start)


@given(starts, st.integers(min_value=1, max_value=100), st.floats(min_value=0.0, max_value=1e3))
def test_events_older_than_the_window_do_not_count(start: float, count: int, pause: float) -> None:
    events = [start + i * 0.01 for i in range(count)]
    now = events[-1] + WINDOW + 1e-6 + pause
    assert _rate(events, now, start) == 0.0


def test_no_events_and_a_zero_window_give_zero() -> None:
    assert per_second([], 10.0, window=WINDOW, start_mono=0.0) == 0.0
    assert per_second([10.0], 10.0, window=0.0, start_mono=0.0) == 0.0


# -- status lines -----------------------------------------------------------------------------


def _stream(name: str, state: StreamState, fps: float, waiting_for: str | None) -> StreamStats:
    return StreamStats(
        name=name,
        state=state,
        decoded=0,
        delivered=0,
        skipped=0,
        decode_errors=0,
        rejected=0,
        reconnects=0,
        fps=fps,
        latency_p50=None,
        latency_p95=None,
        capture_clock="arrival",
        last_error=None,
        waiting_for=waiting_for,
    )


def _camera(stream: StreamStats) -> CameraStats:
    return CameraStats(
        name=stream.name,
        stream=stream,
        used=0,
        dropped=0,
        waiting=0,
        clock_offset=0.0,
        sender_running=None,
        sender_restarts=0,
    )


def test_a_camera_waiting_for_data_says_so_on_its_line() -> None:
    live = _stream("door", StreamState.LIVE, 30.0, None)
    quiet = _stream("hall", StreamState.CONNECTING, 0.0, "no data on udp port 9001")
    stats = GroupStats(
        sets=12,
        partial=12,
        delivered=0,
        skipped=0,
        sets_per_second=12.0,
        skew_p50=None,
        skew_p95=None,
        latency_p50=None,
        latency_p95=None,
        clock="sender",
        cameras={"door": _camera(live), "hall": _camera(quiet)},
        processors={},
    )
    door, hall, group = stats.lines()
    assert door.split()[:3] == ["door", "live", "30.0"] and "no data" not in door
    assert hall.split()[:3] == ["hall", "connecting", "0.0"]
    assert hall.endswith("  no data on udp port 9001")
    assert group.split()[:4] == ["group", "sender", "12.0", "sets/s"]
