"""Capture time of rtsp:// cameras from their RTCP sender reports, against a real RTSP server.

The server (tests/rtsp_server.py ``--stamp``) paints each picture's capture time into its
pixels and sends RTCP sender reports that map RTP timestamps to that same clock, as a
camera does; every frame's ``capture_time`` is compared with the stamp read back from it.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rtsp_fixture import rtsp_server, rtsp_server_available

from syncstream import ConfigError, Frame, StreamConfig, StreamEnded, StreamFailed, VideoStream
from syncstream.probe import decode_stamp
from syncstream.sources import SourceCounters, SourceFrame

#: Bound on |capture_time - stamp| for 95 % of the frames, on loopback.
CAPTURE_ERROR_P95 = 0.005
#: GStreamer sends a report every 5 s, randomised by 0.5-1.5: the first one comes within
#: the longest interval (measured 0.7-3 s after PLAY).
REPORT_INTERVAL = 7.5
#: Frames with a capture time to compare, once the first report is in.
REPORTED_FRAMES = 30


def _require_server() -> None:
    reason = rtsp_server_available()
    if reason is not None:
        pytest.fail(f"RTSP test server unavailable ({reason}); scripts/setup.sh --test installs it")


class _Collector:
    """Every frame of a stream, from its reader thread; waits until enough carry a capture time."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._cond = threading.Condition()

    def __call__(self, frame: Frame) -> None:
        with self._cond:
            self.frames.append(frame)
            self._cond.notify_all()

    def wait_reported(self, count: int, timeout: float) -> list[Frame]:
        """All frames so far, once ``count`` carry a capture time (fails after ``timeout``)."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self.frames), 20.0):
                pytest.fail("no frame from the RTSP server within 20 s")
            first = self.frames[0].arrival_mono
            reported = self._cond.wait_for(
                lambda: any(f.capture_time is not None for f in self.frames),
                max(0.0, first + timeout - time.monotonic()),
            )
            assert reported, f"no frame with a capture time within {timeout} s of the first"
            assert self._cond.wait_for(
                lambda: sum(f.capture_time is not None for f in self.frames) >= count, 20.0
            )
            return list(self.frames)


def _read_reported(url: str, **options: object) -> tuple[list[Frame], str]:
    """Frames of ``url`` until REPORTED_FRAMES carry a capture time, and the stats' clock."""
    collector = _Collector()
    stream = VideoStream(url, name="rtsp-cam", **options)  # type: ignore[arg-type]
    stream.add_listener(collector)
    with stream:
        frames = collector.wait_reported(REPORTED_FRAMES, REPORT_INTERVAL)
        clock = stream.stats.capture_clock
    return frames, clock


def _check_capture_times(frames: list[Frame]) -> None:
    """Frames before the first report are on arrival; every one after, on the camera's clock."""
    first = next(i for i, f in enumerate(frames) if f.capture_time is not None)
    assert all(f.capture_time is None and f.clock == "arrival" for f in frames[:first])
    reported = frames[first:]
    assert all(f.clock == "sender" for f in reported)
    errors = np.abs(
        [f.capture_time - decode_stamp(f.image) for f in reported if f.capture_time is not None]
    )
    assert float(np.percentile(errors, 95)) < CAPTURE_ERROR_P95, sorted(errors)[-5:]
    # the first report's frame too: FFmpeg's parser may have held the frame before it and
    # given it the next one's wall clock (one frame interval late, in 4 of 10 sessions)
    assert errors[0] < CAPTURE_ERROR_P95, errors[:3]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_capture_time_from_sender_reports(transport: str) -> None:
    _require_server()
    with rtsp_server(width=320, height=240, fps=25, extra_args=["--stamp"]) as url:
        frames, clock = _read_reported(url, rtsp_transport=transport)
    _check_capture_times(frames)
    assert clock == "sender"


def test_capture_time_h265_with_audio() -> None:
    _require_server()
    args = ["--stamp", "--codec", "h265", "--audio"]
    with rtsp_server(width=320, height=240, fps=25, extra_args=args) as url:
        frames, clock = _read_reported(url, rtsp_transport="udp", capture_clock="sender")
    _check_capture_times(frames)
    assert clock == "sender"


class _ScriptedRtp:
    """A custom backend handing over frames as the PyAV backend does for RTP: five before
    the first sender report, five after it, then the end."""

    is_live = False  # a script, not a clock: every frame goes to the reader, then it ends

    def __init__(self) -> None:
        self.counters = SourceCounters()
        self._count = 0

    def open(self) -> None:
        pass

    def read(self) -> SourceFrame:
        if self._count == 10:
            raise StreamEnded("script played")
        self._count += 1
        image = np.zeros((8, 8, 3), np.uint8)
        reported = self._count > 5
        return SourceFrame(
            width=8,
            height=8,
            convert=lambda: image,
            pts_time=1234.5 + self._count / 25,  # RTP: starts anywhere, never a wall clock
            sender_time=time.time() - 0.05 if reported else None,
            wall_clock_pts=False,
        )

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_rtp_pts_is_never_taken_for_a_capture_time() -> None:
    collector = _Collector()
    stream = VideoStream(
        "rtsp://camera.invalid/stream",
        capture_clock="sender",
        realtime=False,
        source_factory=lambda _config: _ScriptedRtp(),
    )
    stream.add_listener(collector, consume=True)
    with stream:
        frames = collector.wait_reported(5, 10.0)
    assert [f.capture_time is None for f in frames[:5]] == [True] * 5
    assert all(f.capture_time is not None for f in frames[5:])


def test_rtsp_transport_is_the_one_asked_for() -> None:
    """A camera that offers only TCP: read with "tcp", refused with "udp"."""
    _require_server()
    with rtsp_server(width=160, height=120, extra_args=["--transports", "tcp"]) as url:
        with VideoStream(url, rtsp_transport="tcp") as stream:
            assert stream.read(timeout=15).width == 160
        with VideoStream(url, rtsp_transport="udp", max_reconnects=0) as refused:
            with pytest.raises(StreamFailed):
                refused.read(timeout=15)
            assert refused.stats.decoded == 0


def test_rtsp_transport_is_checked() -> None:
    assert StreamConfig(url="rtsp://camera/stream").rtsp_transport == "auto"
    with pytest.raises(ConfigError, match="rtsp_transport"):
        StreamConfig(url="rtsp://camera/stream", rtsp_transport="quic")  # type: ignore[arg-type]
