"""Bounds on what a source may cost: the picture size cap, the bytes of kept frames, and a
close() that returns whatever the source does (a FIFO without writer, a blackholed
connect, servers that accept and never answer).

Real peers only: ffmpeg encoding 8192x8192 MPEG-2 to a UDP port, ffmpeg writing into a
FIFO, listening sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from conftest import DATA, free_udp_port, holds_for, wait_until

from syncstream import (
    PictureTooLarge,
    StreamFailed,
    StreamState,
    UnsupportedSource,
    VideoStream,
)
from syncstream.config import Backend

#: Peak memory of a reader refusing 8192x8192 pictures, measured in a child process (its
#: VmHWM against its VmRSS once the stream listens): the child prints one JSON line.
_CHILD = r"""
import json, sys, threading
from syncstream import StreamFailed, VideoStream
from syncstream.senders import LocalSender


def status(key):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(key + ":"))


port = int(sys.argv[1])
stream = VideoStream(f"udp://127.0.0.1:{port}", name="big", max_reconnects=0,
                     open_timeout=60, stall_timeout=60).start()
pause = threading.Event()
while stream.stats.waiting_for is None:  # until the socket is bound: nothing is lost
    pause.wait(0.02)
base = status("VmRSS")
sender = LocalSender([
    "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
    "-i", "color=c=gray:size=8192x8192:rate=5", "-frames:v", "3", "-c:v", "mpeg2video",
    "-strict", "-1", "-g", "1", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316",
], name="big-sender").start()
try:
    stream.read(timeout=60)
    error = None
except StreamFailed as exc:
    error = exc.__cause__
finally:
    sender.close()
    stream.close()
print(json.dumps({
    "base_kib": base, "peak_kib": status("VmHWM"), "error": type(error).__name__,
    "message": str(error), "rejected": stream.stats.rejected,
}))
"""


@pytest.mark.timeout(120)
def test_an_8k_mpeg2_stream_over_udp_is_refused_before_decoding() -> None:
    """ffmpeg sends 8192x8192 MPEG-2 (over the 8K UHD default): the stream fails with
    PictureTooLarge naming size and cap, and the reader's memory grows by far less than
    one decoded picture (8192 x 8192 x 1.5 bytes = 96 MiB of YUV, twice that as BGR)."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("the ffmpeg CLI is required (the test command installs it)")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(free_udp_port())],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] == "PictureTooLarge", result
    assert "8192x8192" in result["message"] and str(7680 * 4320) in result["message"]
    assert result["rejected"] == 1
    grown_mib = (result["peak_kib"] - result["base_kib"]) / 1024
    assert grown_mib < 32, result  # a third of one decoded picture


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
@pytest.mark.parametrize("name", ["testsrc_wallclock.ts", "testsrc_mpeg2.ts", "testsrc.mp4"])
def test_a_file_over_max_pixels_is_refused_from_its_codec_parameters(
    backend: Backend, name: str
) -> None:
    with VideoStream(
        str(DATA / name),
        backend=backend,
        max_pixels=320 * 239,
        max_reconnects=0,
    ) as stream:
        with pytest.raises(StreamFailed) as info:
            stream.read(timeout=10)
        stats = stream.stats
    error = info.value.__cause__
    assert isinstance(error, PictureTooLarge)
    assert "320x240" in str(error) and "max_pixels (76480 pixels)" in str(error)
    assert stats.decoded == 0 and stats.rejected == 1
    with VideoStream(str(DATA / name), backend=backend, max_pixels=320 * 240) as stream:
        assert stream.read(timeout=10).width == 320  # at the cap: read


@pytest.fixture(scope="module")
def growing_ts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, pathlib.Path]]:
    """For each codec, a TS whose pictures grow from 320x240 to 640x480 half-way: the
    probe sees the small size, the decoder meets the large one."""
    directory = tmp_path_factory.mktemp("growing")
    files = {}
    for codec in ("mpeg2video", "libx264"):
        parts = []
        for size in ("320x240", "640x480"):
            part = directory / f"{codec}-{size}.ts"
            subprocess.run(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                 "-i", f"testsrc=size={size}:rate=10", "-frames:v", "10", "-c:v", codec,
                 "-g", "5", "-f", "mpegts", str(part)],
                check=True, timeout=60,
            )  # fmt: skip
            parts.append(part.read_bytes())
        files[codec] = directory / f"{codec}.ts"
        files[codec].write_bytes(b"".join(parts))
    yield files


@pytest.mark.parametrize("codec", ["mpeg2video", "libx264"])
def test_pictures_growing_over_max_pixels_are_refused_by_the_decoder(
    growing_ts: dict[str, pathlib.Path], codec: str
) -> None:
    """A size learnt only while decoding: the decoder's own cap refuses it before it
    allocates the picture; the error names the size all the same."""
    path = str(growing_ts[codec])
    with VideoStream(path, realtime=False, max_pixels=640 * 479, max_reconnects=0) as stream:
        frames = []
        with pytest.raises(StreamFailed) as info:
            while True:
                frames.append(stream.read(timeout=10))
        stats = stream.stats
    assert frames and {f.width for f in frames} == {320}
    error = info.value.__cause__
    assert isinstance(error, PictureTooLarge), repr(error)
    assert "640x480" in str(error) and str(640 * 479) in str(error)
    assert stats.rejected == 1


def test_the_history_keeps_at_most_max_history_bytes() -> None:
    """320x240 pictures count 230400 bytes: a 1 MiB budget keeps 4 of the 8 asked."""
    path = str(DATA / "testsrc_wallclock.ts")
    with VideoStream(path, realtime=False, history=8, max_history_bytes=1 << 20) as stream:
        frames = list(stream)
        recent = stream.recent()
    assert frames[0].nbytes == 320 * 240 * 3
    assert recent == frames[-4:]
    with VideoStream(path, realtime=False, history=8) as stream:  # 256 MiB: by count
        list(stream)
        assert len(stream.recent()) == 8


# -- close() whatever the source does ---------------------------------------------------


def _reader_threads(stream: VideoStream) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == f"syncstream-reader:{stream.name}"]


def _close_leaves_no_thread(stream: VideoStream) -> None:
    """Start ``stream``, let it block for half a second, close it: its reader is gone."""
    stream.start()
    holds_for(lambda: stream.state is StreamState.CONNECTING, 0.5, f"{stream.name}: not connecting")
    assert _reader_threads(stream)
    stream.close()  # joins the reader for 2 s at most
    assert not _reader_threads(stream), f"{stream.name}: reader left behind"


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port on 127.0.0.1 whose connects hang: its listen queue is full and nobody
    accepts, so the kernel drops further SYNs as a blackholed route does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(0.3)
    with pytest.raises(TimeoutError):  # the fixture works: a connect hangs
        probe.connect(("127.0.0.1", port))
    probe.close()
    yield port
    for sock in [*fillers, listener]:
        sock.close()


@pytest.fixture
def mute_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, name="mute-server", daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(5)
    for sock in accepted:
        sock.close()


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("tcp://127.0.0.1:{port}", "auto"),
        ("http://127.0.0.1:{port}/video", "auto"),
        ("rtsp://127.0.0.1:{port}/stream", "pyav"),
        ("rtsp://127.0.0.1:{port}/stream", "opencv"),
    ],
)
def test_close_is_prompt_while_connecting_to_a_blackhole(
    blackhole: int, url: str, backend: Backend
) -> None:
    stream = VideoStream(url.format(port=blackhole), backend=backend, open_timeout=30)
    _close_leaves_no_thread(stream)


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("tcp://127.0.0.1:{port}", "auto"),  # framed JPEG: no length ever comes
        ("http://127.0.0.1:{port}/video", "auto"),  # MJPEG: no response headers
        ("rtsp://127.0.0.1:{port}/stream", "pyav"),  # RTSP: no answer to OPTIONS
        ("rtsp://127.0.0.1:{port}/stream", "opencv"),
    ],
)
def test_close_is_prompt_with_a_server_that_never_answers(
    mute_server: int, url: str, backend: Backend
) -> None:
    stream = VideoStream(
        url.format(port=mute_server), backend=backend, open_timeout=30, stall_timeout=30
    )
    _close_leaves_no_thread(stream)


# -- paths: FIFOs are read live, devices other than cameras refused ----------------------


def test_close_is_prompt_on_a_fifo_without_writer(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "camera.ts"
    os.mkfifo(fifo)
    stream = VideoStream(str(fifo), name="fifo", open_timeout=30)
    _close_leaves_no_thread(stream)
    assert stream.stats.waiting_for is None  # closed: it waits for nothing


def test_a_fifo_is_read_live_and_reopened_for_its_next_writer(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "camera.ts"
    os.mkfifo(fifo)
    writer = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-re", "-stream_loop", "3",
        "-i", str(DATA / "testsrc_wallclock.ts"), "-c", "copy", "-f", "mpegts", str(fifo),
    ]  # fmt: skip
    with VideoStream(str(fifo), name="fifo", reconnect_delay=0.1) as stream:
        wait_until(
            lambda: stream.stats.waiting_for == f"no data from FIFO {fifo}", 10, "FIFO opened"
        )
        first = subprocess.Popen(writer)
        try:
            frames = [stream.read(timeout=15) for _ in range(5)]
        finally:
            first.kill()
            first.wait()
        wait_until(lambda: stream.stats.reconnects >= 1, 15, "reopened after the writer left")
        second = subprocess.Popen(writer)
        try:
            later = stream.read(timeout=15)
        finally:
            second.kill()
            second.wait()
    assert {f.width for f in frames} == {320}
    assert later.seq > frames[-1].seq
    assert stream.state is StreamState.CLOSED and not _reader_threads(stream)


@pytest.mark.parametrize("path", ["/dev/null", "/dev/zero"])
@pytest.mark.parametrize("backend", ["auto", "opencv"])
def test_a_device_that_is_no_camera_is_refused(path: str, backend: Backend) -> None:
    with pytest.raises(UnsupportedSource, match="is a character device"):
        VideoStream(path, backend=backend).start()
