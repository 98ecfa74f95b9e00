"""VideoStream logic against fake sources: no network, no ffmpeg."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from syncstream import (
    NoFrameYet,
    ReadTimeout,
    SourceError,
    SourceStalled,
    StreamClosed,
    StreamConfig,
    StreamEnded,
    StreamFailed,
    StreamState,
    SyncStreamError,
    VideoStream,
)
from syncstream.clock import MPEGTS_PTS_PERIOD
from syncstream.sources import SourceCounters, SourceFrame
from tests.conftest import holds_for, wait_until


def _picture(value: int = 0) -> SourceFrame:
    image = np.full((4, 6, 3), value % 256, np.uint8)
    return SourceFrame(width=6, height=4, convert=lambda: image, pts_time=None)


class FakeSource:
    """A scripted source: ``steps`` yields what each read() returns or raises."""

    def __init__(
        self,
        read: Callable[[FakeSource], SourceFrame],
        *,
        is_live: bool = True,
        open_error: BaseException | None = None,
    ) -> None:
        self._read = read
        self.is_live = is_live
        self.counters = SourceCounters()
        self.open_error = open_error
        self.interrupted = threading.Event()
        self.closed = False
        self.opened = False

    def open(self) -> None:
        if self.open_error is not None:
            raise self.open_error
        self.opened = True

    def read(self) -> SourceFrame:
        return self._read(self)

    def interrupt(self) -> None:
        self.interrupted.set()

    def close(self) -> None:
        self.closed = True


def factory_of(*sources: FakeSource) -> Callable[[StreamConfig], FakeSource]:
    """Hand out the given sources in turn (the last one again once they run out)."""
    queue = list(sources)
    made: list[FakeSource] = []

    def make(config: StreamConfig) -> FakeSource:
        source = queue.pop(0) if len(queue) > 1 else queue[0]
        made.append(source)
        return source

    return make


def counting_reader(limit: int | None = None, period: float = 0.0) -> Callable[..., SourceFrame]:
    count = 0

    def read(source: FakeSource) -> SourceFrame:
        nonlocal count
        if limit is not None and count >= limit:
            raise StreamEnded("end")
        if period and source.interrupted.wait(period):
            raise SourceError("interrupted")
        count += 1
        return _picture(count)

    return read


def blocking_reader(source: FakeSource) -> SourceFrame:
    source.interrupted.wait()
    raise SourceError("interrupted")


def test_seq_increases_and_no_frame_is_returned_twice() -> None:
    fake = FakeSource(counting_reader(period=0.002))
    with VideoStream("fake://a", source_factory=factory_of(fake)) as stream:
        seqs = [stream.read(timeout=2).seq for _ in range(50)]
        stats = stream.stats
    assert all(b > a for a, b in itertools.pairwise(seqs))
    assert stats.delivered == 50
    assert stats.decoded >= 50
    assert stats.skipped + stats.delivered <= stats.decoded
    gaps = sum(b - a - 1 for a, b in itertools.pairwise(seqs))
    assert gaps <= stats.skipped


def test_read_times_out_when_no_frame_arrives() -> None:
    fake = FakeSource(blocking_reader)
    with VideoStream("fake://a", source_factory=factory_of(fake)) as stream:
        with pytest.raises(ReadTimeout) as info:
            stream.read(timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert "fake://a" in str(info.value)
        with pytest.raises(NoFrameYet):
            stream.latest()


def test_close_while_source_blocks_returns_and_joins() -> None:
    fake = FakeSource(blocking_reader)
    stream = VideoStream("fake://a", source_factory=factory_of(fake)).start()
    wait_until(lambda: fake.opened, 5.0, "the source opened")
    stream.close()  # the read never returns by itself: close() interrupts it
    assert fake.interrupted.is_set()
    assert fake.closed
    assert stream.state is StreamState.CLOSED
    assert not any(t.name == "syncstream-reader:fake://a" for t in threading.enumerate())


def test_closed_stream_refuses_reads_and_restart() -> None:
    fake = FakeSource(counting_reader(period=0.01))
    stream = VideoStream("fake://a", source_factory=factory_of(fake)).start()
    stream.read(timeout=2)
    stream.close()
    stream.close()  # idempotent
    with pytest.raises(StreamClosed):
        stream.read(timeout=0.1)
    with pytest.raises(StreamClosed):
        stream.start()


def test_read_before_start_is_a_clear_error() -> None:
    stream = VideoStream("fake://a", source_factory=factory_of(FakeSource(blocking_reader)))
    with pytest.raises(SyncStreamError, match="not started"):
        stream.read(timeout=0.1)


def test_reconnects_after_open_failure_and_stall() -> None:
    failing = FakeSource(blocking_reader, open_error=SourceError("connection refused"))
    stalled_after_two = FakeSource(_reads_then_raises(2, SourceStalled("no data")))
    healthy = FakeSource(counting_reader(period=0.005))
    stream = VideoStream(
        "fake://a",
        source_factory=factory_of(failing, stalled_after_two, healthy),
        reconnect_delay=0.01,
    )
    with stream:
        frames = [stream.read(timeout=2) for _ in range(10)]
        stats = stream.stats
    assert stats.reconnects >= 2
    assert stream.state is StreamState.CLOSED
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    assert failing.closed and stalled_after_two.closed


def _reads_then_raises(count: int, error: BaseException) -> Callable[[FakeSource], SourceFrame]:
    done = 0

    def read(source: FakeSource) -> SourceFrame:
        nonlocal done
        if done >= count:
            raise error
        done += 1
        return _picture(done)

    return read


def test_state_goes_stale_then_live_again() -> None:
    gate = threading.Event()
    resumed = threading.Event()

    def second_read(source: FakeSource) -> SourceFrame:
        gate.wait(5)
        resumed.set()
        return _picture(1)

    first = FakeSource(_reads_then_raises(1, SourceStalled("quiet")))
    second = FakeSource(second_read)
    with VideoStream(
        "fake://a", source_factory=factory_of(first, second), reconnect_delay=0.01
    ) as stream:
        stream.read(timeout=2)
        deadline = time.monotonic() + 2
        seen = set()
        while time.monotonic() < deadline and StreamState.CONNECTING not in seen:
            seen.add(stream.state)
            time.sleep(0.001)
        assert seen & {StreamState.STALE, StreamState.CONNECTING}
        assert stream.stats.last_error == "quiet"
        gate.set()
        stream.read(timeout=2)
        assert stream.state is StreamState.LIVE


def test_gives_up_after_max_reconnects_with_the_cause() -> None:
    fake = FakeSource(blocking_reader, open_error=SourceError("no route to camera"))
    with (
        VideoStream(
            "fake://a", source_factory=factory_of(fake), reconnect_delay=0.01, max_reconnects=2
        ) as stream,
        pytest.raises(StreamFailed) as info,
    ):
        stream.read(timeout=5)
    assert "no route to camera" in str(info.value)
    assert isinstance(info.value.__cause__, SourceError)
    assert stream.stats.reconnects == 2


def test_a_bug_in_a_source_reaches_the_reader() -> None:
    def broken(source: FakeSource) -> SourceFrame:
        raise RuntimeError("backend bug")

    with VideoStream("fake://a", source_factory=factory_of(FakeSource(broken))) as stream:
        with pytest.raises(StreamFailed) as info:
            stream.read(timeout=5)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_file_without_realtime_delivers_every_frame_then_ends() -> None:
    fake = FakeSource(counting_reader(limit=40), is_live=False)
    with VideoStream("fake.ts", source_factory=factory_of(fake), realtime=False) as stream:
        time.sleep(0.05)  # the reader is much faster than us: it must wait, not skip
        frames = list(stream)
        stats = stream.stats
        with pytest.raises(StreamEnded):
            stream.read(timeout=1)
    assert [f.seq for f in frames] == list(range(40))
    assert [int(f.image[0, 0, 0]) for f in frames] == list(range(1, 41))
    assert stats.skipped == 0
    assert stream.state is StreamState.CLOSED


def test_file_realtime_paces_by_timestamps() -> None:
    step = 0.05
    count = 0

    def read(source: FakeSource) -> SourceFrame:
        nonlocal count
        if count >= 6:
            raise StreamEnded("end")
        count += 1
        image = np.zeros((2, 2, 3), np.uint8)
        return SourceFrame(width=2, height=2, convert=lambda: image, pts_time=10.0 + count * step)

    fake = FakeSource(read, is_live=False)
    with VideoStream("fake.ts", source_factory=factory_of(fake)) as stream:
        frames = list(stream)
    arrivals = [f.arrival_mono for f in frames]
    # paced: consecutive arrivals follow the timestamps, never ahead of them
    assert len(frames) >= 2
    assert arrivals[-1] - arrivals[0] >= step * (frames[-1].seq - frames[0].seq) * 0.9


def test_looping_file_starts_again() -> None:
    sources = [FakeSource(counting_reader(limit=3), is_live=False) for _ in range(3)]
    with VideoStream(
        "fake.ts", source_factory=factory_of(*sources), realtime=False, loop=True
    ) as stream:
        seqs = [stream.read(timeout=2).seq for _ in range(7)]
    assert seqs == list(range(7))
    assert sources[0].closed and sources[1].closed


def test_image_is_converted_once_and_only_when_read() -> None:
    calls = 0

    def read(source: FakeSource) -> SourceFrame:
        def convert() -> np.ndarray:
            nonlocal calls
            calls += 1
            return np.zeros((2, 2, 3), np.uint8)

        if source.interrupted.wait(0.002):
            raise SourceError("interrupted")
        return SourceFrame(width=2, height=2, convert=convert)

    with VideoStream("fake://a", source_factory=factory_of(FakeSource(read))) as stream:
        frame = stream.read(timeout=2)
        holds_for(lambda: calls == 0, 0.05, "converted before .image was asked for")
        first = frame.image
        assert frame.image is first
        assert calls == 1


@pytest.mark.parametrize(
    ("clock", "offset", "expected"),
    [("auto", 0.0, "capture"), ("none", 0.0, None), ("sender", 5.0, "shifted")],
)
def test_capture_time_from_wrapped_mpegts_pts(
    clock: str, offset: float, expected: str | None
) -> None:
    captured = time.time() - 0.040
    wrapped = captured % MPEGTS_PTS_PERIOD

    def read(source: FakeSource) -> SourceFrame:
        if source.interrupted.wait(0.002):
            raise SourceError("interrupted")
        image = np.zeros((2, 2, 3), np.uint8)
        return SourceFrame(
            width=2, height=2, convert=lambda: image, pts_time=wrapped,
            pts_period=MPEGTS_PTS_PERIOD,
        )  # fmt: skip

    with VideoStream(
        "fake://a", source_factory=factory_of(FakeSource(read)),
        capture_clock=clock, clock_offset=offset,  # type: ignore[arg-type]
    ) as stream:  # fmt: skip
        frame = stream.read(timeout=2)
        stats = stream.stats
    if expected is None:
        assert frame.capture_time is None
        assert stats.capture_clock == "arrival"
    else:
        assert frame.capture_time is not None
        want = captured + (offset if expected == "shifted" else 0.0)
        assert frame.capture_time == pytest.approx(want, abs=1e-3)
        assert stats.capture_clock == "sender"


def test_auto_clock_rejects_timestamps_that_are_not_a_wall_clock() -> None:
    def read(source: FakeSource) -> SourceFrame:
        if source.interrupted.wait(0.002):
            raise SourceError("interrupted")
        image = np.zeros((2, 2, 3), np.uint8)
        return SourceFrame(
            width=2, height=2, convert=lambda: image, pts_time=1.4, pts_period=MPEGTS_PTS_PERIOD
        )

    with VideoStream("fake://a", source_factory=factory_of(FakeSource(read))) as stream:
        frame = stream.read(timeout=2)
        assert frame.capture_time is None
        assert stream.stats.latency_p50 is None


def test_options_are_validated_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="stall_timeout"):
        VideoStream("udp://127.0.0.1:9", stall_timeout=-1)
    with pytest.raises(ValueError, match="stall_timeut"):
        VideoStream("udp://127.0.0.1:9", stall_timeut=1)  # type: ignore[call-arg]


def test_read_after_close_raises_at_once_even_with_a_frame_unread() -> None:
    fake = FakeSource(counting_reader(period=0.002))
    stream = VideoStream("fake://a", source_factory=factory_of(fake)).start()
    wait_until(lambda: stream.stats.decoded >= 2, 5.0, "frames decoded")  # one is unread
    stream.close()
    with pytest.raises(StreamClosed):
        stream.read(timeout=0)
    assert list(stream) == [] and list(stream.frames(timeout=1.0)) == []


def test_frames_end_after_the_duration_and_time_out_without_frames() -> None:
    fake = FakeSource(counting_reader(period=0.005))
    with VideoStream("fake://a", source_factory=factory_of(fake)) as stream:
        started = time.monotonic()
        frames = list(stream.frames(timeout=2.0, duration=0.3))
        elapsed = time.monotonic() - started
    assert frames and elapsed >= 0.3
    assert all(b.seq > a.seq for a, b in itertools.pairwise(frames))
    with VideoStream("fake://a", source_factory=factory_of(FakeSource(blocking_reader))) as idle:
        with pytest.raises(ReadTimeout, match=r"no new frame within 0\.1 s"):
            next(idle.frames(timeout=0.1, duration=5.0))
        assert list(idle.frames(timeout=5.0, duration=0.1)) == []  # the duration ends it


def test_frames_of_a_file_end_with_its_last_frame() -> None:
    fake = FakeSource(counting_reader(limit=5), is_live=False)
    with VideoStream("fake.ts", source_factory=factory_of(fake), realtime=False) as stream:
        assert [f.seq for f in stream.frames(timeout=2.0)] == list(range(5))


def test_a_frame_is_an_array_for_numpy_and_opencv_through_asarray() -> None:
    fake = FakeSource(counting_reader(period=0.002))
    with VideoStream("fake://a", source_factory=factory_of(fake)) as stream:
        frame = stream.read(timeout=2)
    shared = np.asarray(frame)
    assert shared is frame.image and not shared.flags.writeable  # no copy, read-only
    own = np.array(frame)
    assert own.flags.writeable and own is not frame.image and np.array_equal(own, shared)
    own[:] = 0  # a copy to draw on
    assert np.asarray(frame, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="uint8"):
        np.asarray(frame, dtype=np.float32, copy=False)
    assert float(np.mean(frame)) == float(frame.image.mean())
    assert cv2.resize(np.asarray(frame), (3, 2)).shape == (2, 3, 3)
    with pytest.raises(cv2.error):  # OpenCV takes real arrays only
        cv2.resize(frame, (3, 2))  # type: ignore[call-overload]
