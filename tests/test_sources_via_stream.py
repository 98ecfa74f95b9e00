"""Every network source kind read end to end through VideoStream, against real peers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import wait_until
from peers import FramedJpegServer, MjpegServer, encode_jpeg, synthetic_image
from rtsp_fixture import rtsp_server, rtsp_server_available

from syncstream import StreamState, VideoStream


def _frames(count: int = 10) -> list[bytes]:
    return [encode_jpeg(synthetic_image(i)) for i in range(count)]


def test_rtsp_stream_through_videostream() -> None:
    reason = rtsp_server_available()
    if reason is not None:
        pytest.fail(f"RTSP test server unavailable ({reason}); scripts/setup.sh --test installs it")
    with rtsp_server(width=320, height=240, fps=25) as url:
        with VideoStream(url, name="rtsp-cam") as stream:
            frames = [stream.read(timeout=15) for _ in range(20)]
            stats = stream.stats
    assert all(f.image.shape == (240, 320, 3) for f in frames)
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    # RTP timestamps are not a wall clock: frames are aligned by arrival until the first
    # RTCP sender report, and carry the camera's clock from then on (test_rtsp_capture_time)
    clocks = [f.clock for f in frames]
    assert clocks == sorted(clocks)  # "arrival" before "sender", never back
    assert stats.state is StreamState.LIVE


def test_rtsp_server_gone_then_back_reconnects() -> None:
    if rtsp_server_available() is not None:
        pytest.fail("RTSP test server unavailable; scripts/setup.sh --test installs it")
    with rtsp_server(width=160, height=120) as url:
        stream = VideoStream(url, reconnect_delay=0.1, stall_timeout=2.0).start()
        stream.read(timeout=15)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        wait_until(lambda: stream.state is not StreamState.LIVE, 10, "the stream notices")
        with rtsp_server(port, width=160, height=120):
            restarted = time.time()
            frame = stream.read(timeout=20)
            while frame.arrival_time < restarted:
                frame = stream.read(timeout=20)
            assert frame.image.shape == (120, 160, 3)
        assert stream.stats.reconnects >= 1
    finally:
        stream.close()
    assert not any(t.name.startswith("syncstream-reader:rtsp") for t in threading.enumerate())


def test_mjpeg_over_http_through_videostream() -> None:
    sent = [synthetic_image(i) for i in range(8)]
    stamps = [time.time() - 0.05 + i * 0.001 for i in range(8)]
    server = MjpegServer([encode_jpeg(image) for image in sent], fps=50, timestamps=stamps)
    with server, VideoStream(server.url, name="ipcam") as stream:
        frames = [stream.read(timeout=5) for _ in range(10)]
    assert frames[0].image.shape == sent[0].shape
    # JPEG is lossy: compare to the nearest of the sent pictures
    errors = [min(np.abs(f.image.astype(int) - s.astype(int)).mean() for s in sent) for f in frames]
    assert max(errors) < 8
    assert all(f.capture_time is not None for f in frames)  # from X-Timestamp


def test_mjpeg_credentials_stay_out_of_names_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    server = MjpegServer(_frames(), auth=("viewer", "s3cret"))
    with server:
        url = server.url.replace("http://", "http://viewer:s3cret@")
        with caplog.at_level("DEBUG"), VideoStream(url) as stream:
            frame = stream.read(timeout=5)
    assert "s3cret" not in stream.name
    assert "s3cret" not in frame.source
    assert "s3cret" not in caplog.text


def test_framed_tcp_through_videostream_and_hostile_length() -> None:
    with FramedJpegServer(_frames(), fps=50) as server, VideoStream(server.url) as stream:
        frames = [stream.read(timeout=5) for _ in range(10)]
    assert all(f.image.shape == (120, 160, 3) for f in frames)

    with FramedJpegServer(_frames(), fps=50, hostile=True) as server:
        stream = VideoStream(server.url, reconnect_delay=0.05)
        with stream:
            stream.read(timeout=5)  # the good frame before the hostile length
            wait_until(lambda: stream.stats.last_error is not None, 5, "the length refused")
            stats = stream.stats
    assert stats.rejected >= 1
    assert stats.last_error is not None and "1099511627776" in stats.last_error
    assert not any(t.name.startswith("syncstream-reader:tcp") for t in threading.enumerate())
