"""VideoStream against real sources: ffmpeg senders on loopback and recorded files."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import tracemalloc

import pytest
from conftest import DATA, SenderFactory, free_tcp_port, free_udp_port, wait_until

from syncstream import (
    SourceError,
    StreamEnded,
    StreamFailed,
    StreamState,
    UnsupportedSource,
    VideoStream,
)
from syncstream.config import Backend


def test_udp_frames_carry_the_sender_capture_time(udp_sender: SenderFactory) -> None:
    port = free_udp_port()
    udp_sender(port)
    with VideoStream(f"udp://127.0.0.1:{port}", name="cam") as stream:
        frames = [stream.read(timeout=10) for _ in range(30)]
        stats = stream.stats
    assert all(f.image.shape == (240, 320, 3) for f in frames)
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    for frame in frames:
        assert frame.capture_time is not None
        # sender and receiver share this machine's clock: capture precedes arrival
        assert 0.0 <= frame.arrival_time - frame.capture_time < 1.0
    captures = [f.capture_time for f in frames]
    assert captures == sorted(captures)
    assert stats.capture_clock == "sender"
    assert stats.latency_p50 is not None and stats.latency_p50 > 0
    assert stats.fps > 0
    assert stats.state is StreamState.LIVE


def test_udp_garbage_datagrams_are_rejected_and_counted(udp_sender: SenderFactory) -> None:
    port = free_udp_port()
    udp_sender(port)
    stop = threading.Event()

    def spray() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            payloads = [b"\x00" * 100, os.urandom(1316), b"G" + os.urandom(187), b""]
            while not stop.is_set():
                for payload in payloads:
                    sock.sendto(payload, ("127.0.0.1", port))
                time.sleep(0.002)

    with VideoStream(f"udp://127.0.0.1:{port}") as stream:
        stream.read(timeout=10)
        sprayer = threading.Thread(target=spray)
        sprayer.start()
        try:
            frames = [stream.read(timeout=5) for _ in range(30)]
        finally:
            stop.set()
            sprayer.join()
        stats = stream.stats
    assert len(frames) == 30
    assert stats.rejected > 0
    assert stats.state is not StreamState.FAILED


def test_short_sender_gap_is_survived_long_gap_reconnects(udp_sender: SenderFactory) -> None:
    port = free_udp_port()
    sender = udp_sender(port)
    with VideoStream(f"udp://127.0.0.1:{port}", stall_timeout=1.0, reconnect_delay=0.1) as stream:
        stream.read(timeout=10)
        sender.close()
        wait_until(lambda: stream.state is not StreamState.LIVE, 5.0, "not live")
        assert stream.stats.reconnects >= 1 or stream.state is StreamState.STALE
        udp_sender(port)
        resumed = stream.read(timeout=10)
        wait_until(lambda: stream.state is StreamState.LIVE, 5.0, "live again")
        after = stream.stats
    assert resumed.capture_time is not None
    assert after.reconnects >= 1
    assert after.last_error is not None and "no MPEG-TS datagram" in after.last_error


def test_close_while_waiting_for_a_silent_udp_port_is_prompt() -> None:
    stream = VideoStream(f"udp://127.0.0.1:{free_udp_port()}", open_timeout=30).start()
    wait_until(lambda: stream.stats.waiting_for is not None, 5.0, "the reader waits for data")
    stream.close()  # without waiting for open_timeout: the reader thread is gone
    assert not any(t.name.startswith("syncstream-reader:udp") for t in threading.enumerate())


def test_a_silent_udp_port_says_no_data_until_a_sender_comes(udp_sender: SenderFactory) -> None:
    port = free_udp_port()
    address = ("127.0.0.1", port)
    url = f"udp://127.0.0.1:{port}"
    seen: list[tuple[StreamState, str | None]] = []
    with (
        VideoStream(url, open_timeout=2.0, reconnect_delay=0.1) as stream,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        # through a reopen (after open_timeout), CONNECTING and STALE alike
        wait_until(
            lambda: seen.append(_waiting(stream)) or stream.stats.reconnects >= 1, 10, "a reopen"
        )
        bound = next(i for i, (_, waiting) in enumerate(seen) if waiting is not None)  # socket
        assert {state for state, _ in seen[bound:]} <= {StreamState.CONNECTING, StreamState.STALE}
        assert {waiting for _, waiting in seen[bound:]} == {f"no data on udp port {port}"}
        assert stream.stats.fps == 0.0 and stream.stats.decoded == 0
        # datagrams that are not MPEG-TS: still no data, and it says why
        wait_until(
            lambda: sock.sendto(b"not mpeg-ts", address) and "refused" in str(_waiting(stream)[1]),
            10,
            "the datagrams refused",
        )
        assert str(_waiting(stream)[1]).startswith(f"no MPEG-TS data on udp port {port}: ")
        udp_sender(port)
        stream.read(timeout=20)
        wait_until(lambda: _waiting(stream) == (StreamState.LIVE, None), 5, "live")


def _waiting(stream: VideoStream) -> tuple[StreamState, str | None]:
    stats = stream.stats
    return stats.state, stats.waiting_for


def test_ts_file_realtime_false_delivers_every_frame() -> None:
    with VideoStream(str(DATA / "testsrc_wallclock.ts"), realtime=False) as stream:
        frames = list(stream)
        with pytest.raises(StreamEnded):
            stream.read(timeout=1)
    assert len(frames) == 30
    assert [f.seq for f in frames] == list(range(30))
    assert frames[0].image.shape == (240, 320, 3)
    pts = [f.pts_time for f in frames]
    assert all(p is not None for p in pts)
    # the recording carries the sender's wall clock: one frame every 1/15 s
    steps = [b - a for a, b in itertools.pairwise(pts)]  # type: ignore[operator]
    assert all(abs(step - 1 / 15) < 0.01 for step in steps)


def test_mp4_file_is_replayed_at_its_own_pace() -> None:
    begin = time.monotonic()
    with VideoStream(str(DATA / "testsrc.mp4")) as stream:
        frames = list(stream)
    elapsed = time.monotonic() - begin
    assert len(frames) >= 20
    first, last = frames[0], frames[-1]
    assert first.pts_time is not None and last.pts_time is not None
    # paced by the file's timestamps: it cannot finish before its own duration
    assert elapsed >= (last.pts_time - first.pts_time) * 0.95
    assert all(f.capture_time is None for f in frames)  # timestamps from zero: no wall clock


def test_mpeg2_ts_file_decodes() -> None:
    with VideoStream(str(DATA / "testsrc_mpeg2.ts"), realtime=False) as stream:
        frames = list(stream)
    assert len(frames) == 15
    assert frames[-1].image.shape == (240, 320, 3)


def test_opencv_backend_reads_udp_and_files(udp_sender: SenderFactory) -> None:
    port = free_udp_port()
    udp_sender(port)
    with VideoStream(f"udp://127.0.0.1:{port}", backend="opencv") as stream:
        frames = [stream.read(timeout=10) for _ in range(10)]
    assert frames[-1].image.shape == (240, 320, 3)
    assert all(f.capture_time is None for f in frames)  # OpenCV hides the PTS
    with VideoStream(str(DATA / "testsrc.mp4"), backend="opencv", realtime=False) as stream:
        assert len(list(stream)) >= 20


def test_opencv_backend_sets_its_options_once_and_keeps_every_frame_of_a_file(
    udp_sender: SenderFactory,
) -> None:
    """OpenCV reads its demuxer options from the environment: set at import, never by a
    reader thread (a live and a file capture open at once), and none that loses frames."""
    from syncstream.sources.opencv import CAPTURE_OPTIONS

    before = dict(os.environ)
    assert CAPTURE_OPTIONS and "OPENCV_FFMPEG_CAPTURE_OPTIONS" in before  # set at import
    port = free_udp_port()
    udp_sender(port)
    with VideoStream(f"udp://127.0.0.1:{port}", backend="opencv") as live:
        with VideoStream(str(DATA / "testsrc.mp4"), backend="opencv", realtime=False) as file:
            assert live.read(timeout=10).image.shape == (240, 320, 3)
            assert dict(os.environ) == before
            assert len(list(file)) == 30  # the whole file: fflags=nobuffer would drop half
    assert dict(os.environ) == before


def test_opencv_backend_close_while_blocked_ends_the_reader(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"udp://127.0.0.1:{free_udp_port()}"
    stream = VideoStream(url, backend="opencv").start()
    assert stream.stats.state is StreamState.CONNECTING  # nothing sends: the open blocks
    stream.close()  # the capture's interrupt callback ends the open
    assert not any(t.name.startswith("syncstream-reader:udp") for t in threading.enumerate())
    assert "reader did not stop" not in caplog.text


def test_unknown_scheme_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedSource) as info:
        VideoStream("gopher://camera/1").start()
    assert "udp://" in str(info.value) and "rtsp://" in str(info.value)
    with pytest.raises(UnsupportedSource, match="neither an existing file"):
        VideoStream("/no/such/recording.ts").start()
    with pytest.raises(UnsupportedSource, match="not supported"):
        VideoStream("udp://127.0.0.1:5000?bogus=1").start()


def test_missing_webcam_fails_with_the_device_in_the_error() -> None:
    with VideoStream("/dev/video97", max_reconnects=0, reconnect_delay=0.01) as stream:
        with pytest.raises(StreamFailed) as info:
            stream.read(timeout=10)
    assert "/dev/video97" in str(info.value)
    assert isinstance(info.value.__cause__, SourceError)
    with VideoStream(97, max_reconnects=0, reconnect_delay=0.01) as stream:
        with pytest.raises(StreamFailed, match="/dev/video97"):
            stream.read(timeout=10)


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_credentials_stay_out_of_errors_logs_and_stats(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    closed = free_tcp_port()  # nothing listens on it
    url = f"rtsp://admin:hunter2@127.0.0.1:{closed}/stream1"
    caplog.set_level(logging.DEBUG)
    with VideoStream(url, backend=backend, max_reconnects=0, open_timeout=3) as stream:
        with pytest.raises(StreamFailed) as info:
            stream.read(timeout=15)
        shown = [str(info.value), str(info.value.__cause__), repr(stream), str(stream.stats)]
    shown.append(caplog.text)
    assert f"127.0.0.1:{closed}" in str(info.value.__cause__)
    assert not [text for text in shown if "hunter2" in text or "admin" in text]


def test_memory_stays_bounded_under_a_flood_of_garbage() -> None:
    port = free_udp_port()
    with VideoStream(f"udp://127.0.0.1:{port}", stall_timeout=30) as stream:
        wait_until(lambda: stream.stats.waiting_for is not None, 5.0, "the port bound")
        tracemalloc.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            junk = os.urandom(1400)
            for _ in range(20000):
                sock.sendto(junk, ("127.0.0.1", port))
        wait_until(lambda: stream.stats.rejected > 1000, 5.0, "1000 rejections")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 4 * 1024 * 1024
        assert stream.state in (StreamState.CONNECTING, StreamState.STALE)


def test_a_udp_port_in_use_is_refused_not_shared() -> None:
    port = free_udp_port()
    with VideoStream(f"udp://127.0.0.1:{port}", stall_timeout=30) as first:
        wait_until(lambda: first.stats.waiting_for is not None, 5.0, "the port bound")
        second = VideoStream(f"udp://127.0.0.1:{port}", max_reconnects=0, open_timeout=2)
        with second, pytest.raises(StreamFailed) as info:
            second.read(timeout=10)
        assert "Address already in use" in str(info.value.__cause__)
        assert first.stats.state.value != "failed"
