"""Cross-role matching (:mod:`syncstream.role_match`), proved on random frame sequences."""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from syncstream.role_match import DEFAULT_TOLERANCE, frame_at, half_interval

T0 = 1_700_000_000.0  # epoch seconds, as capture times are


@dataclass(frozen=True)
class Shot:
    """A frame as matching reads it."""

    capture_time: float | None
    source: str = "door"
    arrival_time: float = T0
    arrival_mono: float = 0.0


offsets = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False)
shots = st.lists(
    st.one_of(st.none(), offsets).map(lambda o: Shot(None if o is None else T0 + o)),
    max_size=30,
)
tolerances = st.one_of(st.none(), st.floats(min_value=0.0, max_value=0.5))


@given(st.one_of(st.none(), offsets), shots, tolerances)
def test_the_match_is_the_nearest_frame_within_the_tolerance_or_none(
    target: float | None, candidates: list[Shot], tolerance: float | None
) -> None:
    when = None if target is None else T0 + target
    found = frame_at(when, candidates, tolerance=tolerance)
    timed = [c for c in candidates if c.capture_time is not None]
    if when is None or not timed:
        assert found is None
        return
    limit = tolerance
    if limit is None:
        limit = half_interval(candidates) or DEFAULT_TOLERANCE
    gaps = [abs(c.capture_time - when) for c in timed if c.capture_time is not None]
    if min(gaps) > limit:
        assert found is None  # never the newest frame in its place
    else:
        assert found is not None and found in timed
        assert found.capture_time is not None
        assert abs(found.capture_time - when) == min(gaps)


@given(shots, st.randoms(use_true_random=False))
def test_a_frame_of_the_very_same_instant_is_found_in_any_order(
    candidates: list[Shot], rng: random.Random
) -> None:
    same = Shot(T0 + 0.123456)
    order = [*candidates, same]
    rng.shuffle(order)
    found = frame_at(same.capture_time, order, tolerance=0.0)
    assert found is not None and found.capture_time == same.capture_time


@given(
    st.floats(min_value=1.0, max_value=60.0),
    st.integers(min_value=3, max_value=20),
    st.floats(min_value=-0.4, max_value=0.4),
)
def test_the_default_tolerance_is_half_a_frame_of_the_other_stream(
    fps: float, count: int, phase: float
) -> None:
    interval = 1.0 / fps
    main = [Shot(T0 + i * interval) for i in range(count)]
    half = half_interval(main)
    assert half is not None and abs(half - interval / 2) < 1e-6
    # a sub frame a fraction of a frame off matches the main frame nearest it...
    index = count // 2
    found = frame_at(T0 + (index + phase) * interval, main)
    assert found is main[index]
    # ...and one whose main frame was lost (or is not there yet) matches nothing
    lost = [shot for i, shot in enumerate(main) if i != index]
    assert frame_at(T0 + index * interval, lost, tolerance=half) is None
    assert frame_at(T0 + count * interval, main) is None


def test_without_capture_times_nothing_matches() -> None:
    assert frame_at(None, [Shot(T0)]) is None
    assert frame_at(T0, [Shot(None), Shot(None)]) is None
    assert half_interval([Shot(T0), Shot(None)]) is None
    assert frame_at(T0 + 0.002, [Shot(T0)]) is not None  # one frame: DEFAULT_TOLERANCE
    assert frame_at(T0 + DEFAULT_TOLERANCE * 2, [Shot(T0)]) is None
