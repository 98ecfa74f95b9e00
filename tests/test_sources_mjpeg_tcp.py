"""MjpegHttpSource and TcpFramedSource against real local peers (see tests/peers.py)."""

from __future__ import annotations

import logging
import pathlib
import shutil
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import closing

import numpy as np
import pytest
from conftest import free_tcp_port, wait_until
from peers import FramedJpegServer, MjpegServer, encode_jpeg, make_self_signed_cert, synthetic_image

from syncstream import VideoStream
from syncstream.config import StreamConfig
from syncstream.errors import (
    FrameDecodeError,
    SourceError,
    SourceStalled,
    SyncStreamError,
    UnsupportedSource,
)
from syncstream.sources.base import SourceFrame
from syncstream.sources.mjpeg_http import MjpegHttpSource
from syncstream.sources.tcp_framed import TcpFramedSource, send_framed_jpeg

pytestmark = pytest.mark.timeout(20)

IMAGES = [synthetic_image(i) for i in range(3)]
JPEGS = [encode_jpeg(image) for image in IMAGES]
NOT_A_JPEG = b"\xff\xd8 this is not really a JPEG \xff\xd9"
CAP = 256 * 1024


def make_config(url: str, **overrides: float | int | str) -> StreamConfig:
    """A config with short timeouts so that failures show quickly."""
    settings: dict[str, float | int | str] = {"open_timeout": 3.0, "stall_timeout": 3.0}
    settings.update(overrides)
    return StreamConfig(url=url, **settings)


def frame_index(frame: SourceFrame) -> int:
    """Which synthetic picture a decoded frame shows, checking that it really is that one."""
    assert (frame.width, frame.height) == (160, 120)
    image = frame.convert()
    assert image.shape == (120, 160, 3) and image.dtype == np.uint8
    diffs = [float(np.abs(image.astype(int) - ref.astype(int)).mean()) for ref in IMAGES]
    best = int(np.argmin(diffs))
    assert diffs[best] < 6, diffs  # JPEG noise only
    assert sorted(diffs)[1] > 15, diffs  # and clearly not one of the others
    return best


def interrupt_soon(source: MjpegHttpSource | TcpFramedSource) -> list[float]:
    """Call ``source.interrupt()`` from another thread in 0.2 s; the list holds when it
    happened once it has."""
    fired: list[float] = []

    def fire() -> None:
        fired.append(time.monotonic())
        source.interrupt()

    threading.Timer(0.2, fire).start()
    return fired


@pytest.fixture
def silent_url() -> Iterator[str]:
    """An http URL whose server accepts TCP connections (backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/stream"


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


# -- MJPEG over HTTP ----------------------------------------------------------------------


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "scan"])
def test_mjpeg_frames_arrive_in_order(content_length: bool) -> None:
    with (
        MjpegServer(JPEGS, content_length=content_length) as server,
        closing(MjpegHttpSource(make_config(server.url))) as source,
    ):
        source.open()
        frames = [source.read() for _ in range(5)]
    assert [frame_index(f) for f in frames] == [0, 1, 2, 0, 1]
    assert all(f.sender_time is None for f in frames)
    assert source.is_live
    assert (source.counters.rejected, source.counters.decode_errors) == (0, 0)


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/x-mixed-replace; boundary=--syncstreamboundary",
        'multipart/x-mixed-replace;boundary="syncstreamboundary"',
    ],
    ids=["dashes-declared", "quoted"],
)
def test_mjpeg_boundary_spellings_of_real_cameras(content_type: str) -> None:
    with (
        MjpegServer(JPEGS, content_type=content_type, content_length=False) as server,
        closing(MjpegHttpSource(make_config(server.url))) as source,
    ):
        source.open()
        assert [frame_index(source.read()) for _ in range(3)] == [0, 1, 2]


def test_mjpeg_x_timestamp_becomes_sender_time() -> None:
    stamps = [1_700_000_000.125 + i for i in range(3)]
    with (
        MjpegServer(JPEGS, timestamps=stamps) as server,
        closing(MjpegHttpSource(make_config(server.url))) as source,
    ):
        source.open()
        frames = [source.read() for _ in range(3)]
    for frame in frames:
        assert frame.sender_time == pytest.approx(stamps[frame_index(frame)], abs=1e-6)


def test_mjpeg_basic_auth_from_url() -> None:
    with MjpegServer(JPEGS, auth=("cam", "s3cr:et")) as server:
        authed = server.url.replace("http://", "http://cam:s3cr%3Aet@")
        with closing(MjpegHttpSource(make_config(authed))) as source:
            assert "s3cr" not in source.name
            source.open()
            assert frame_index(source.read()) == 0
        wrong = server.url.replace("http://", "http://cam:wrong@")
        with (
            closing(MjpegHttpSource(make_config(wrong))) as source,
            pytest.raises(SourceError, match="401"),
        ):
            source.open()


def test_mjpeg_non_multipart_response_is_refused() -> None:
    with (
        MjpegServer(JPEGS, content_type="text/html") as server,
        closing(MjpegHttpSource(make_config(server.url))) as source,
        pytest.raises(SourceError, match=r"HTTP 200 .*text/html"),
    ):
        source.open()


def test_mjpeg_http_404_is_refused() -> None:
    with MjpegServer(JPEGS) as server:
        url = server.url.replace("/stream", "/nothing-here")
        with (
            closing(MjpegHttpSource(make_config(url))) as source,
            pytest.raises(SourceError, match="HTTP 404"),
        ):
            source.open()


def test_mjpeg_endless_body_without_boundary_fails_with_bounded_memory() -> None:
    with MjpegServer(JPEGS, hostile="endless_body") as server:
        source = MjpegHttpSource(make_config(server.url, max_frame_bytes=CAP))
        with closing(source):
            source.open()
            tracemalloc.start()
            try:
                with pytest.raises(SyncStreamError) as caught:
                    source.read()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    assert isinstance(caught.value, FrameDecodeError)
    assert "cannot resynchronise" in str(caught.value)
    assert source.counters.rejected >= 1
    assert source.buffer_high_water <= CAP + 2 * 65536
    assert peak < 8 * CAP  # the server would have sent for ever


def test_mjpeg_huge_content_length_is_skipped_and_resynchronised() -> None:
    with (
        MjpegServer(JPEGS, hostile="huge_length") as server,
        closing(MjpegHttpSource(make_config(server.url, max_frame_bytes=CAP))) as source,
    ):
        source.open()
        first = source.read()
    assert frame_index(first) == 1  # part 0 claimed 2**40 bytes and was dropped
    assert source.counters.rejected == 1
    assert "Content-Length" in (source.counters.last_problem or "")
    assert source.buffer_high_water <= CAP + 2 * 65536


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "scan"])
def test_mjpeg_corrupt_parts_are_counted_and_skipped(content_length: bool) -> None:
    frames = [JPEGS[0], NOT_A_JPEG, JPEGS[1]]
    with (
        MjpegServer(frames, content_length=content_length) as server,
        closing(MjpegHttpSource(make_config(server.url))) as source,
    ):
        source.open()
        got = [frame_index(source.read()) for _ in range(2)]
    assert got == [0, 1]
    assert source.counters.decode_errors == 1
    assert source.counters.rejected == 0


@pytest.mark.parametrize("lying", [False, True], ids=["oversized", "huge-content-length"])
def test_mjpeg_refused_parts_are_all_counted_but_warned_about_once(
    lying: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Every part is refused: over max_frame_bytes (the JPEGs have about 2.7 KB, without
    # Content-Length: read up to the boundary), or claiming a Content-Length of 2**40.
    parts = 150
    caplog.set_level(logging.WARNING, "syncstream")
    hostile = "huge_lengths" if lying else None
    with (
        MjpegServer(
            JPEGS, fps=100, content_length=lying, hostile=hostile, pause_after=parts
        ) as server,
        VideoStream(
            server.url, max_frame_bytes=1024 if not lying else CAP, stall_timeout=30
        ) as stream,
    ):
        wait_until(lambda: stream.stats.rejected >= parts, 15, "every part refused")
        assert stream.stats.rejected == parts  # counted exactly, each once
        assert stream.stats.reconnects == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 2, warnings  # one per 10 s, not one per part
    assert warnings[0].startswith(f"{server.url}: part ")
    assert "max_frame_bytes" in warnings[0] or "over 1024 bytes" in warnings[0]


def test_mjpeg_server_disconnect_raises_source_error() -> None:
    with (
        MjpegServer(JPEGS, close_after=2) as server,
        closing(MjpegHttpSource(make_config(server.url))) as source,
    ):
        source.open()
        assert [frame_index(source.read()) for _ in range(2)] == [0, 1]
        with pytest.raises(SourceError, match="closed by server"):
            source.read()


def test_mjpeg_stall_raises_source_stalled() -> None:
    with (
        MjpegServer(JPEGS, pause_after=1) as server,
        closing(MjpegHttpSource(make_config(server.url, stall_timeout=0.5))) as source,
    ):
        source.open()
        assert frame_index(source.read()) == 0
        with pytest.raises(SourceStalled):
            source.read()


def test_mjpeg_interrupt_unblocks_read() -> None:
    with (
        MjpegServer(JPEGS, pause_after=1) as server,
        closing(MjpegHttpSource(make_config(server.url, stall_timeout=30.0))) as source,
    ):
        source.open()
        source.read()
        fired = interrupt_soon(source)
        with pytest.raises(SourceError, match="interrupted") as caught:
            source.read()
        assert fired  # it ended on the interrupt, not on its 30 s timeout
        assert not isinstance(caught.value, SourceStalled)
        with pytest.raises(SourceError, match="interrupted"):
            source.open()  # an interrupted source stays interrupted


def test_mjpeg_interrupt_unblocks_open(silent_url: str) -> None:
    with closing(MjpegHttpSource(make_config(silent_url, open_timeout=30.0))) as source:
        fired = interrupt_soon(source)
        with pytest.raises(SourceError, match="interrupted"):
            source.open()
        assert fired  # it ended on the interrupt, not on its 30 s timeout


def test_mjpeg_open_timeout_when_server_is_silent(silent_url: str) -> None:
    with (
        closing(MjpegHttpSource(make_config(silent_url, open_timeout=0.5))) as source,
        pytest.raises(SourceError, match=r"no HTTP response within 0\.5 s"),
    ):
        source.open()


def test_mjpeg_connection_refused() -> None:
    with (
        closing(MjpegHttpSource(make_config(f"http://127.0.0.1:{free_tcp_port()}/"))) as source,
        pytest.raises(SourceError, match="cannot connect"),
    ):
        source.open()


def test_mjpeg_https_with_trusted_certificate(
    tls_cert: tuple[pathlib.Path, pathlib.Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cert[0]))  # trust our test CA
    with MjpegServer(JPEGS, tls=tls_cert) as server:
        assert server.url.startswith("https://")
        with closing(MjpegHttpSource(make_config(server.url))) as source:
            source.open()
            assert [frame_index(source.read()) for _ in range(3)] == [0, 1, 2]


def test_mjpeg_https_untrusted_certificate_is_refused(
    tls_cert: tuple[pathlib.Path, pathlib.Path],
) -> None:
    with (
        MjpegServer(JPEGS, tls=tls_cert) as server,
        closing(MjpegHttpSource(make_config(server.url))) as source,
        pytest.raises(SourceError, match="TLS handshake"),
    ):
        source.open()


def test_constructors_do_no_io_and_check_urls() -> None:
    source = MjpegHttpSource(make_config("http://192.0.2.1:8080/video"))  # TEST-NET: no host
    with pytest.raises(SourceError, match="not open"):
        source.read()
    source.close()
    source.close()
    framed = TcpFramedSource(make_config("tcp://192.0.2.1:9000"))
    framed.close()
    framed.close()
    with pytest.raises(UnsupportedSource):
        MjpegHttpSource(make_config("rtsp://camera/stream"))
    with pytest.raises(UnsupportedSource):
        TcpFramedSource(make_config("tcp://camera"))


# -- length-prefixed JPEG over TCP --------------------------------------------------------


def test_tcp_frames_arrive_in_order() -> None:
    with (
        FramedJpegServer(JPEGS) as server,
        closing(TcpFramedSource(make_config(server.url))) as source,
    ):
        source.open()
        frames = [source.read() for _ in range(4)]
    assert [frame_index(f) for f in frames] == [0, 1, 2, 0]
    assert source.is_live
    assert (source.counters.rejected, source.counters.decode_errors) == (0, 0)


def test_tcp_oversized_length_raises_frame_decode_error() -> None:
    with (
        FramedJpegServer(JPEGS, hostile=True) as server,
        closing(TcpFramedSource(make_config(server.url, max_frame_bytes=CAP))) as source,
    ):
        source.open()
        assert frame_index(source.read()) == 0
        with pytest.raises(FrameDecodeError, match=rf"{2**40}.*{CAP}"):
            source.read()
        assert source.counters.rejected == 1
        assert source.buffer_high_water <= CAP
        with pytest.raises(SourceError, match="not open"):
            source.read()  # the connection was dropped: the stream must reopen


def test_tcp_zero_length_raises_frame_decode_error() -> None:
    with (
        FramedJpegServer([b""]) as server,
        closing(TcpFramedSource(make_config(server.url))) as source,
    ):
        source.open()
        with pytest.raises(FrameDecodeError, match="length 0"):
            source.read()
    assert source.counters.rejected == 1


def test_tcp_corrupt_jpeg_is_counted_and_skipped() -> None:
    with (
        FramedJpegServer([JPEGS[0], NOT_A_JPEG, JPEGS[1]]) as server,
        closing(TcpFramedSource(make_config(server.url))) as source,
    ):
        source.open()
        got = [frame_index(source.read()) for _ in range(2)]
    assert got == [0, 1]
    assert source.counters.decode_errors == 1


def test_tcp_server_disconnect_raises_source_error() -> None:
    with (
        FramedJpegServer(JPEGS, close_after=1) as server,
        closing(TcpFramedSource(make_config(server.url))) as source,
    ):
        source.open()
        assert frame_index(source.read()) == 0
        with pytest.raises(SourceError, match="closed by server"):
            source.read()


def test_tcp_stall_raises_source_stalled() -> None:
    with (
        FramedJpegServer(JPEGS, pause_after=1) as server,
        closing(TcpFramedSource(make_config(server.url, stall_timeout=0.5))) as source,
    ):
        source.open()
        source.read()
        with pytest.raises(SourceStalled):
            source.read()


def test_tcp_interrupt_unblocks_read() -> None:
    with (
        FramedJpegServer(JPEGS, pause_after=1) as server,
        closing(TcpFramedSource(make_config(server.url, stall_timeout=30.0))) as source,
    ):
        source.open()
        source.read()
        fired = interrupt_soon(source)
        with pytest.raises(SourceError, match="interrupted"):
            source.read()
        assert fired  # it ended on the interrupt, not on its 30 s timeout


def test_send_framed_jpeg_wire_format() -> None:
    left, right = socket.socketpair()
    with left, right:
        send_framed_jpeg(left, b"jpeg")
        assert right.recv(64) == struct.pack(">Q", 4) + b"jpeg"
