"""Throttle: repeated log messages rate-limited, with a count of those held back."""

from __future__ import annotations

import logging
import threading

import pytest

from syncstream.logs import Throttle

LOGGER = logging.getLogger("syncstream.tests.throttle")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER.name]


def test_the_first_message_of_a_kind_passes(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    throttle = Throttle(LOGGER, 10.0, clock_mono=clock)
    with caplog.at_level(logging.WARNING, LOGGER.name):
        assert throttle.warning("part", "%s: part refused: %s", "door", "too big")
    assert logged(caplog) == ["door: part refused: too big"]
    assert caplog.records[0].levelno == logging.WARNING
    assert throttle.held("part") == 0


def test_repeats_within_the_interval_are_held_and_counted(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    throttle = Throttle(LOGGER, 10.0, clock_mono=clock)
    with caplog.at_level(logging.WARNING, LOGGER.name):
        throttle.warning("part", "refused %d", 0)
        for count in range(1, 50):
            clock.now += 0.1  # 4.9 s in all: within the interval
            assert not throttle.warning("part", "refused %d", count)
        assert throttle.held("part") == 49
    assert logged(caplog) == ["refused 0"]


def test_the_next_message_says_how_many_were_held(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    throttle = Throttle(LOGGER, 10.0, clock_mono=clock)
    with caplog.at_level(logging.WARNING, LOGGER.name):
        throttle.warning("part", "refused %d", 0)
        for count in range(1, 8):
            clock.now += 1.0
            throttle.warning("part", "refused %d", count)
        clock.now += 3.0  # 10 s after the first: the interval has passed
        assert throttle.warning("part", "refused %d", 8)
        assert throttle.held("part") == 0
        clock.now += 10.0  # nothing held since: a plain message again
        assert throttle.warning("part", "refused %d", 9)
    assert logged(caplog) == [
        "refused 0",
        "refused 8 (and 7 more like it in the last 10 s)",
        "refused 9",
    ]


def test_kinds_are_independent(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    throttle = Throttle(LOGGER, 10.0, clock_mono=clock)
    with caplog.at_level(logging.WARNING, LOGGER.name):
        assert throttle.warning(("door", "part"), "door: refused")
        assert throttle.warning(("hall", "part"), "hall: refused")
        assert throttle.warning(("door", "stall"), "door: stalled")
        assert not throttle.warning(("door", "part"), "door: refused")
        assert throttle.held(("hall", "part")) == 0
        assert throttle.held(("door", "part")) == 1
    assert logged(caplog) == ["door: refused", "hall: refused", "door: stalled"]


def test_other_levels_and_a_bad_interval(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    throttle = Throttle(LOGGER, 10.0, clock_mono=clock)
    with caplog.at_level(logging.INFO, LOGGER.name):
        assert throttle.log(logging.INFO, "k", "reopening")
        assert not throttle.log(logging.INFO, "k", "reopening")
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    for interval in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="interval"):
            Throttle(LOGGER, interval)


def test_concurrent_calls_log_once_and_count_every_other(caplog: pytest.LogCaptureFixture) -> None:
    throttle = Throttle(LOGGER, 3600.0)  # the real clock: nothing passes twice in an hour
    threads, calls = 8, 2000
    start = threading.Barrier(threads)

    def hammer() -> None:
        start.wait()
        for _ in range(calls):
            throttle.warning("flood", "flooded")

    workers = [threading.Thread(target=hammer, name=f"throttle-{i}") for i in range(threads)]
    with caplog.at_level(logging.WARNING, LOGGER.name):
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
    assert not any(worker.is_alive() for worker in workers)
    assert logged(caplog) == ["flooded"]
    assert throttle.held("flood") == threads * calls - 1  # no count lost to a race


def test_memory_of_kinds_is_bounded(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    throttle = Throttle(LOGGER, 10.0, clock_mono=clock)
    with caplog.at_level(logging.WARNING, LOGGER.name):
        for number in range(10_000):  # a kind per peer address, say: a hostile flood
            throttle.warning(("peer", number), "refused %d", number)
        assert len(throttle._kinds) <= 256
        # the newest kinds are remembered, the oldest forgotten (so logged again at once)
        assert not throttle.warning(("peer", 9999), "refused again")
        assert throttle.warning(("peer", 0), "refused again")
    assert len(logged(caplog)) == 10_001
