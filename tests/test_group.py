"""StreamGroup end to end: real ffmpeg senders on 127.0.0.1, a real sshd, a real relay."""

from __future__ import annotations

import itertools
import logging
import statistics
import threading
import time

import numpy as np
import pytest
from numpy.typing import NDArray

from syncstream import (
    Camera,
    Frame,
    FrameSet,
    GroupStartError,
    PreflightFailed,
    ProcessorError,
    ReadTimeout,
    SenderConfig,
    StreamClosed,
    StreamGroup,
    StreamState,
    SyncStreamError,
)
from syncstream.config import ConvertPolicy, SyncPolicy
from syncstream.probe import StampSender, decode_stamp
from syncstream.processors.base import Processor, ProcessorWorker
from syncstream.senders import free_udp_port
from syncstream.stats import MIN_RATE_SPAN
from syncstream.testing.plugin import TsRecorder, TsReplayFactory
from syncstream.testing.relay import ImpairmentRelay
from syncstream.testing.sshd import SshdServer
from tests.conftest import SenderFactory, ssh_host, wait_until
from tests.conftest import alive as _alive

SMALL = SenderConfig(size=(320, 240), fps=30.0)


def _camera(name: str, **fields: object) -> Camera:
    return Camera.model_validate({"name": name, "sender": SMALL, "port": free_udp_port(), **fields})


pytestmark = pytest.mark.usefixtures("no_group_threads_left")


def test_two_local_cameras_give_complete_sets_by_capture_time() -> None:
    cams = [_camera("door"), _camera("hall")]
    with StreamGroup(cams, sync="nearest", max_skew=0.02) as group:
        pids = [s.pid for s in group.senders.values()]
        sets = [group.read(timeout=10.0) for _ in range(30)]
        stats = group.stats
    assert all(isinstance(fs, FrameSet) and fs.complete for fs in sets)
    assert all(list(fs) == ["door", "hall"] for fs in sets)
    assert all(fs.clock == "sender" and fs.capture_time is not None for fs in sets)
    assert all(0 <= fs.skew <= 0.02 for fs in sets)
    assert [fs.seq for fs in sets] == sorted({fs.seq for fs in sets})
    first = sets[0]
    assert first["door"].image.shape == (240, 320, 3)
    assert set(first.images) == {"door", "hall"}
    # each frame used once: consecutive sets hold newer frames of every camera
    for earlier, later in itertools.pairwise(sets):
        assert all(later[n].seq > earlier[n].seq for n in ("door", "hall"))
    assert stats.sets >= 30 and stats.clock == "sender"
    assert stats.skew_p95 is not None and stats.skew_p95 <= 0.02
    assert stats.latency_p50 is not None and stats.latency_p50 > 0
    for name in ("door", "hall"):
        cam = stats.cameras[name]
        assert cam.used >= 30 and cam.sender_running is True and cam.clock_offset == 0.0
        assert cam.stream.capture_clock == "sender"
    wait_until(
        lambda: not any(pid is not None and _alive(pid) for pid in pids), 5.0, "senders gone"
    )


def test_a_running_camera_and_a_started_one_mix(udp_sender: SenderFactory) -> None:
    port = free_udp_port()
    udp_sender(port)
    cams: list[Camera | str] = [Camera(name="ext", url=f"udp://127.0.0.1:{port}"), _camera("own")]
    with StreamGroup(cams) as group:
        fs = group.read(timeout=10.0)
        assert set(fs) == {"ext", "own"}
        assert group.stats.cameras["ext"].sender_running is None


def test_failed_cameras_are_all_named_and_the_rest_is_stopped(tmp_path: object) -> None:
    good = _camera("good")
    no_ffmpeg = _camera("no-ffmpeg", sender=SMALL.model_copy(update={"ffmpeg": "ffmpeg-absent"}))
    no_file = _camera("no-file", sender=SMALL.model_copy(update={"input": "/nonexistent.ts"}))
    group = StreamGroup([good, no_ffmpeg, no_file])
    with pytest.raises(GroupStartError) as caught:
        group.start()
    failures = caught.value.failures
    assert set(failures) == {"no-ffmpeg", "no-file"}
    assert all(isinstance(exc, PreflightFailed) for exc in failures.values())
    assert "no-ffmpeg" in str(caught.value) and "no-file" in str(caught.value)
    assert group.senders == {}  # the good one was stopped again
    with pytest.raises(StreamClosed):
        group.read(timeout=0.1)
    with pytest.raises(StreamClosed):
        group.start()


def test_bad_camera_lists_are_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="unique"):
        StreamGroup([_camera("a"), _camera("a")])
    with pytest.raises(ValueError, match="needs a url or a sender"):
        Camera(name="x")
    with pytest.raises(ValueError, match="needs a port"):
        Camera(name="x", sender=SMALL)
    with pytest.raises(ValueError, match="max_skew"):
        StreamGroup([_camera("a")], max_skew=-1.0)
    with pytest.raises(SyncStreamError, match="not started"):
        StreamGroup([_camera("a")]).read(timeout=0.1)


def test_a_camera_that_goes_silent_leaves_partial_sets() -> None:
    with StreamGroup([_camera("a"), _camera("b")], max_wait=0.3) as group:
        group.read(timeout=10.0)
        group.senders["b"].close()
        deadline = time.monotonic() + 10.0
        partial: list[FrameSet] = []
        while len(partial) < 10 and time.monotonic() < deadline:
            fs = group.read(timeout=5.0)
            if fs.missing:
                partial.append(fs)
        assert len(partial) == 10
        assert all(fs.missing == ("b",) and list(fs) == ["a"] for fs in partial)
        with pytest.raises(KeyError, match="missing"):
            partial[0]["b"]
        assert group.stats.partial >= 10


def test_wait_policy_gives_no_partial_sets() -> None:
    with StreamGroup([_camera("a"), _camera("b")], max_wait=0.3, on_missing="wait") as group:
        group.read(timeout=10.0)
        group.senders["b"].close()
        # b's last frames still make sets; then no partial set comes, only the timeout
        with pytest.raises(ReadTimeout):
            while True:
                assert group.read(timeout=1.0).complete


def _printed_rate(line: str) -> float:
    """The rate a status line prints third: a camera's fps, the group's sets/s."""
    return float(line.split()[2])


def test_a_silent_udp_camera_says_no_data_and_start_up_rates_stay_sane() -> None:
    port = free_udp_port()  # nobody sends to it
    cams = [_camera("live"), Camera(name="quiet", url=f"udp://127.0.0.1:{port}")]
    # frames of "live" wait for "quiet" for first_frame_wait, then go out in a burst
    with StreamGroup(cams, max_wait=0.3, first_frame_wait=2.0) as group:
        snapshots = 0

        def settled() -> bool:
            # every snapshot from the start: a rate never exceeds its events per the
            # shortest span a rate is taken over (a burst of sets is no huge rate)
            nonlocal snapshots
            stats = group.stats
            live, quiet, group_line = stats.lines()
            assert _printed_rate(group_line) <= stats.sets / MIN_RATE_SPAN + 0.05, stats
            decoded = stats.cameras["live"].stream.decoded
            assert _printed_rate(live) <= decoded / MIN_RATE_SPAN + 0.05, stats
            assert _printed_rate(quiet) == 0.0
            snapshots += 1
            return stats.sets >= 30 and f"no data on udp port {port}" in quiet

        wait_until(settled, 30.0, "30 sets and the quiet camera's 'no data'")
        stats = group.stats
        quiet = stats.lines()[1]
        quiet_stats = stats.cameras["quiet"].stream
        assert quiet_stats.state in (StreamState.CONNECTING, StreamState.STALE)
        assert quiet_stats.waiting_for == f"no data on udp port {port}"
        assert quiet.split()[:2] == ["quiet", quiet_stats.state.value]
        assert stats.cameras["live"].stream.waiting_for is None
        assert stats.partial >= 30 and snapshots > 1


def test_a_read_that_times_out_names_what_a_silent_camera_waits_for() -> None:
    port = free_udp_port()  # nobody sends to it
    with StreamGroup([Camera(name="quiet", url=f"udp://127.0.0.1:{port}")]) as group:
        quiet = group.streams["quiet"]
        wait_until(lambda: quiet.stats.waiting_for is not None, 10.0, "its socket open")
        with pytest.raises(ReadTimeout, match=rf"quiet: \w+ \(no data on udp port {port}\)"):
            group.read(timeout=0.2)


def test_a_slow_processor_slows_neither_the_group_nor_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen_fast: list[int] = []

    def slow(fs: FrameSet) -> None:
        time.sleep(0.4)

    def fast(fs: FrameSet) -> None:
        seen_fast.append(fs.seq)

    def broken(fs: FrameSet) -> None:
        raise RuntimeError("bad set")

    with StreamGroup([_camera("a"), _camera("b")]) as group:
        slow_worker = group.add_processor(slow)
        fast_worker = group.add_processor(fast)
        broken_worker = group.add_processor(broken, name="broken")
        with caplog.at_level(logging.ERROR):
            read = [group.read(timeout=10.0) for _ in range(40)]
        slow_stats, fast_stats = slow_worker.stats, fast_worker.stats
        broken_stats = broken_worker.stats
    assert len(read) == 40
    assert slow_stats.processed >= 1 and slow_stats.skipped > 0
    assert fast_stats.processed > 4 * slow_stats.processed
    assert seen_fast == sorted(set(seen_fast))
    assert broken_stats.errors == broken_stats.processed > 0
    assert broken_stats.last_error is not None and "bad set" in broken_stats.last_error
    assert any("processor broken" in r.getMessage() for r in caplog.records)


def test_on_error_stop_makes_a_processor_error_fatal() -> None:
    def broken(fs: FrameSet) -> None:
        raise ValueError("cannot handle this")

    with StreamGroup([_camera("a")]) as group:
        group.add_processor(broken, name="checker", on_error="stop")
        with pytest.raises(ProcessorError, match="checker") as caught:
            for _ in group:
                pass
        assert isinstance(caught.value.__cause__, ValueError)
        assert caught.value.processor == "checker"
        with pytest.raises(ProcessorError):
            group.wait(timeout=1.0)


def test_processor_close_is_called_with_the_group() -> None:
    class Sink:
        def __init__(self) -> None:
            self.count = 0
            self.closed = False

        def __call__(self, fs: FrameSet) -> None:
            self.count += 1

        def close(self) -> None:
            self.closed = True

    sink = Sink()
    with StreamGroup([_camera("a")]) as group:
        group.add_processor(sink)
        group.add_processor(sink)  # the same twice gets a distinct name
        while sink.count < 5:
            group.read(timeout=10.0)
        assert set(group.stats.processors) == {"Sink", "Sink#2"}
    assert sink.closed


def test_a_processor_cannot_draw_on_the_picture_another_processor_sees() -> None:
    refused: list[str] = []
    seen: list[tuple[bool, float]] = []
    lock = threading.Lock()

    def vandal(fs: FrameSet) -> None:
        try:
            fs["a"].image[:] = 0
        except ValueError as exc:  # numpy: "assignment destination is read-only"
            with lock:
                refused.append(str(exc))
        copy = fs["a"].image.copy()  # what a processor that draws works on
        copy[:] = 0

    def watcher(fs: FrameSet) -> None:
        image = fs["a"].image
        with lock:
            seen.append((image.flags.writeable, float(image.mean())))

    with StreamGroup([_camera("a")]) as group:
        vandal_worker = group.add_processor(vandal)
        group.add_processor(watcher)
        wait_until(lambda: len(seen) >= 10 and len(refused) >= 10, 10.0, "10 sets each")
        assert vandal_worker.stats.errors == 0
    assert all("read-only" in message for message in refused)
    # the test pattern is never black: the vandal's zeros never reached the watcher
    assert all(not writeable and mean > 10 for writeable, mean in seen)


def test_remote_camera_over_ssh_has_its_clock_offset_measured(sshd: SshdServer) -> None:
    host = ssh_host(sshd)
    cams = [_camera("local"), _camera("remote", host=host, receiver_host="127.0.0.1")]
    with StreamGroup(cams, clock_rounds=5) as group:
        fs = group.read(timeout=15.0)
        assert set(fs) == {"local", "remote"}
        remote = group.stats.cameras["remote"]
        assert remote.sender_running is True
        assert abs(remote.clock_offset) < 0.05  # same machine, same clock
        measured = group.clock_offsets
        assert set(measured) == {"remote"}  # the local camera needs no measurement
        assert measured["remote"].offset == remote.clock_offset
        assert measured["remote"].samples == 5
        assert 0 < measured["remote"].uncertainty <= measured["remote"].rtt


def test_a_given_clock_offset_is_used_and_the_host_not_measured(
    sshd: SshdServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncstream.ssh")
    host = ssh_host(sshd)
    cams = [_camera("remote", host=host, receiver_host="127.0.0.1", clock_offset=0.25)]
    with StreamGroup(cams) as group:
        frame = group.read(timeout=15.0)["remote"]
        assert group.clock_offsets == {}
        assert group.stats.cameras["remote"].clock_offset == 0.25
        assert frame.capture_time is not None
        assert frame.capture_time - frame.arrival_time > 0.15  # shifted by the given 0.25 s
    assert "connected" in caplog.text
    assert "clock offset" not in caplog.text  # no round trips to the host


def test_an_unreachable_ssh_host_is_named_with_the_camera(sshd: SshdServer) -> None:
    wrong_port = ssh_host(sshd, port=free_udp_port(), connect_timeout=2.0)
    cams = [_camera("ok"), _camera("lost", host=wrong_port, receiver_host="127.0.0.1")]
    with pytest.raises(GroupStartError) as caught:
        StreamGroup(cams).start()
    assert set(caught.value.failures) == {"lost"}


def _pixel_skews(group: StreamGroup, count: int) -> list[float]:
    skews = []
    while len(skews) < count:
        fs = group.read(timeout=10.0)
        if fs.complete:
            stamps = [decode_stamp(frame.image) for frame in fs.frames.values()]
            skews.append(max(stamps) - min(stamps))
    return skews


@pytest.mark.parametrize("policy", ["latest", "nearest"])
def test_over_a_slow_path_nearest_pairs_pictures_taken_together(policy: SyncPolicy) -> None:
    # b's pictures travel 100 ms +/- 10 ms longer; their pixel stamps say when they were sent.
    port_a, port_b = free_udp_port(), free_udp_port()
    cams = [
        Camera(name="a", url=f"udp://127.0.0.1:{port_a}"),
        Camera(name="b", url=f"udp://127.0.0.1:{port_b}"),
    ]
    with (
        ImpairmentRelay(f"udp://127.0.0.1:{port_b}", delay=0.1, jitter=0.01, seed=7) as relay,
        StreamGroup(cams, sync=policy, max_skew=0.02) as group,
        StampSender(f"udp://127.0.0.1:{port_a}", size=(320, 240)),
        StampSender(relay.url, size=(320, 240)),
    ):
        group.read(timeout=15.0)
        skews = _pixel_skews(group, 40)
        assert relay.stats.forwarded > 0
    median = statistics.median(skews)
    if policy == "latest":
        assert median > 0.05  # pictures sent ~100 ms apart are paired
    else:
        assert median < 0.02  # pairs sent within max_skew of each other


def test_replayed_recordings_are_aligned_like_live_cameras(
    ts_recorder: TsRecorder, ts_replay: TsReplayFactory
) -> None:
    door = ts_replay(ts_recorder(seconds=2.0, name="door"))
    hall = ts_replay(ts_recorder(seconds=2.0, pattern="smptebars", name="hall"))
    cams = [Camera(name="door", url=door.url), Camera(name="hall", url=hall.url)]
    with StreamGroup(cams, max_skew=0.02) as group:
        sets = [group.read(timeout=15.0) for _ in range(20)]
    assert all(fs.complete and fs.clock == "sender" and fs.skew <= 0.02 for fs in sets)


def test_exact_pairs_equal_timestamps_of_synchronised_recordings(
    ts_recorder: TsRecorder, ts_replay: TsReplayFactory
) -> None:
    # One recording replayed twice with its own stamps: two cameras shot in lockstep.
    recording = ts_recorder(seconds=2.0)
    first, second = ts_replay(recording, restamp=False), ts_replay(recording, restamp=False)
    cams = [
        Camera(name="left", url=first.url, capture_clock="sender"),
        Camera(name="right", url=second.url, capture_clock="sender"),
    ]
    with StreamGroup(cams, sync="exact") as group:
        sets = [group.read(timeout=15.0) for _ in range(20)]
    assert all(fs.complete and fs.skew == pytest.approx(0.0, abs=1e-4) for fs in sets)
    assert all(fs["left"].pts_time == fs["right"].pts_time for fs in sets)


def test_a_receiver_address_that_is_not_a_host_is_refused() -> None:
    for bad in ("10.0.0.1:1?x= y", "cam 1", "[::1]", "a/b"):
        with pytest.raises(ValueError, match="receiver_host"):
            _camera("a", receiver_host=bad)
    assert _camera("a", receiver_host="fe80::1").receiver_host == "fe80::1"


def test_frames_pushed_out_of_a_starved_alignment_inbox_are_counted() -> None:
    group = StreamGroup([Camera(name="a", url="udp://127.0.0.1:9")])  # not started: no thread
    now, mono, image = time.time(), time.monotonic(), np.zeros((2, 2, 3), np.uint8)
    for seq in range(4096 + 10):  # the inbox holds 4096 frames
        group._on_frame(
            Frame(source="a", seq=seq, width=2, height=2, arrival_time=now, arrival_mono=mono,
                  image=image)
        )  # fmt: skip
    assert group.stats.overflow == 10


class _PacketsOnly:
    """A processor that never reads pictures, like the recorder."""

    uses_pictures = False

    def __call__(self, frameset: FrameSet) -> None:
        pass


@pytest.mark.parametrize(
    ("convert", "processors", "in_reader"),
    [
        ("auto", [], False),  # nobody takes pictures: left to whoever reads .image
        ("auto", [_PacketsOnly()], False),
        ("auto", [_PacketsOnly(), lambda fs: None], True),
        ("reader", [], True),
        ("lazy", [lambda fs: None], False),
    ],
)
def test_frames_are_converted_in_the_reader_thread_when_processors_take_pictures(
    convert: ConvertPolicy, processors: list[Processor], in_reader: bool
) -> None:
    group = StreamGroup([Camera(name="a", url="udp://127.0.0.1:9")], convert=convert)
    for processor in processors:
        group.add_processor(processor)  # not started: no thread
    converted_in: list[str] = []
    image = np.zeros((2, 2, 3), np.uint8)

    def convert_picture() -> NDArray[np.uint8]:
        converted_in.append(threading.current_thread().name)
        return image

    frame = Frame(source="a", seq=0, width=2, height=2, arrival_time=time.time(),
                  arrival_mono=time.monotonic(), convert=convert_picture)  # fmt: skip
    reader = threading.Thread(target=group._on_frame, args=(frame,), name="camera-reader")
    reader.start()
    reader.join()
    assert converted_in == (["camera-reader"] if in_reader else [])
    assert frame.image is image  # converted once, whoever did it
    assert len(converted_in) == 1
    group.close()


def test_a_frame_that_fails_to_convert_in_the_reader_raises_where_it_is_read() -> None:
    group = StreamGroup([Camera(name="a", url="udp://127.0.0.1:9")], convert="reader")

    def broken() -> NDArray[np.uint8]:
        raise ValueError("bad picture")

    frame = Frame(source="a", seq=0, width=2, height=2, arrival_time=time.time(),
                  arrival_mono=time.monotonic(), convert=broken)  # fmt: skip
    group._on_frame(frame)  # survived in the reader
    assert list(group._inbox) == [frame]  # and the frame still goes to alignment
    with pytest.raises(ValueError, match="bad picture"):
        frame.image  # noqa: B018


def _set(seq: int) -> FrameSet:
    now, mono = time.time(), time.monotonic()
    return FrameSet(seq=seq, frames={}, missing=("a",), skew=0.0, time=now, clock="sender",
                    emitted_time=now, emitted_mono=mono)  # fmt: skip


def test_closing_a_worker_lets_the_waiting_set_through_before_close() -> None:
    seen: list[int] = []
    busy = threading.Event()

    class Slow:
        closed_after: list[int] | None = None

        def __call__(self, frameset: FrameSet) -> None:
            busy.set()
            time.sleep(0.2)
            seen.append(frameset.seq)

        def close(self) -> None:
            self.closed_after = list(seen)

    processor = Slow()
    worker = ProcessorWorker(processor).start()
    worker.submit(_set(1))
    assert busy.wait(5.0)
    worker.submit(_set(2))  # waits in the slot while set 1 is processed
    worker.close()
    assert seen == [1, 2] and processor.closed_after == [1, 2]
    assert worker.stats.processed == 2 and worker.stats.skipped == 0
    worker.submit(_set(3))  # after close: ignored
    assert worker.stats.processed == 2


def test_a_hung_worker_is_closed_when_its_call_returns_and_never_called_again() -> None:
    """close() waits for a running call up to its timeout, then leaves the processor's
    close() to the worker thread: never while the processor is still in a call."""
    release, entered, closed = threading.Event(), threading.Event(), threading.Event()
    calls: list[tuple[int, bool]] = []
    in_call = threading.Lock()  # held by the worker while the processor runs

    class Hung:
        closed_during_call: bool | None = None

        def __call__(self, frameset: FrameSet) -> None:
            with in_call:
                calls.append((frameset.seq, closed.is_set()))
                entered.set()
                release.wait(10.0)

        def close(self) -> None:
            self.closed_during_call = in_call.locked()
            closed.set()

    processor = Hung()
    worker = ProcessorWorker(processor).start()
    worker.submit(_set(1))
    assert entered.wait(5.0)
    worker.submit(_set(2))
    worker.close(timeout=0.3)  # returns after its timeout, the call still running
    assert not closed.is_set() and worker.stats.skipped == 1  # set 2 dropped, counted
    assert worker.stats.running
    release.set()
    assert closed.wait(5.0)  # closed by the worker once the call returned
    assert processor.closed_during_call is False
    wait_until(lambda: not worker.stats.running, 5.0, "the worker thread ends")
    assert calls == [(1, False)]


def test_frames_iterate_for_a_duration_and_a_closed_group_refuses_at_once() -> None:
    with StreamGroup([_camera("door")]) as group:
        group.read(timeout=10.0)  # live
        started = time.monotonic()
        sets = list(group.frames(timeout=5.0, duration=0.5))
        elapsed = time.monotonic() - started
        with pytest.raises(ValueError, match="sub"):
            group.frames(role="sub")
        stats = group.stats
        wait_until(
            lambda: (s := group.stats).sets > s.delivered + s.skipped, 5.0, "a set waits unread"
        )
    assert sets and elapsed >= 0.5
    assert [fs.seq for fs in sets] == sorted({fs.seq for fs in sets})
    assert stats.delivered == len(sets) + 1
    with pytest.raises(StreamClosed):
        group.read(timeout=0)  # the set left unread is not handed out after close
    assert list(group.frames(timeout=1.0)) == [] and list(group) == []


def test_frames_raise_read_timeout_when_no_set_comes_in_time() -> None:
    silent = Camera(name="quiet", url=f"udp://127.0.0.1:{free_udp_port()}")
    with StreamGroup([silent], first_frame_wait=0.0, on_missing="wait") as group:
        with pytest.raises(ReadTimeout, match="quiet"):
            next(group.frames(timeout=0.3, duration=5.0))
        assert list(group.frames(timeout=5.0, duration=0.3)) == []
