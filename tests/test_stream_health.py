"""Stream health from decoded frames: data without a frame, and streams that change.

The program tables are tested as pure logic (hand-built and ffmpeg-muxed sections); the
reader against real ffmpeg senders on 127.0.0.1 that are replaced on the same port by
one with other PIDs or another codec, and against a socket sending only null packets.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import free_udp_port, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from syncstream import (
    Frame,
    SenderConfig,
    SourceChanged,
    SourceError,
    StreamConfig,
    StreamState,
    VideoStream,
)
from syncstream.config import Codec
from syncstream.senders import LocalSender, sender_argv
from syncstream.sources import SourceCounters, SourceFrame
from syncstream.sources.mpegts import ProgramWatch, crc32_mpeg2

pytestmark = pytest.mark.timeout(60)

NULL_PACKET = bytes([0x47, 0x1F, 0xFF, 0x10]) + b"\xff" * 184


# -- the program tables, as pure logic ---------------------------------------------------


def _table(pid: int, table_id: int, extension: int, body: bytes, version: int = 0) -> bytes:
    """One TS packet carrying one PSI section (with its CRC), padded with 0xff."""
    length = 5 + len(body) + 4
    section = bytes([table_id, 0xB0 | length >> 8, length & 0xFF, extension >> 8,
                     extension & 0xFF, 0xC1 | version << 1, 0, 0]) + body  # fmt: skip
    section += crc32_mpeg2(section).to_bytes(4, "big")
    header = bytes([0x47, 0x40 | pid >> 8, pid & 0xFF, 0x10, 0x00])  # start, payload, pointer 0
    return (header + section).ljust(188, b"\xff")


def _pat(*programs: tuple[int, int]) -> bytes:
    body = b"".join(n.to_bytes(2, "big") + (0xE000 | pid).to_bytes(2, "big") for n, pid in programs)
    return _table(0, 0x00, 1, body)


def _pmt(pmt_pid: int, *streams: tuple[int, int], version: int = 0) -> bytes:
    """A PMT of program 1 listing ``(stream_type, pid)`` streams, PCR on the first."""
    body = (0xE000 | streams[0][1]).to_bytes(2, "big") + b"\xf0\x00"
    for kind, pid in streams:
        body += bytes([kind]) + (0xE000 | pid).to_bytes(2, "big") + b"\xf0\x00"
    return _table(pmt_pid, 0x02, 1, body, version)


H264, MPEG2, AAC = 0x1B, 0x02, 0x0F
START = _pat((1, 0x1000)) + _pmt(0x1000, (H264, 0x100))


def test_crc_is_crc32_mpeg2() -> None:
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7  # the catalogue's check value


def test_the_first_tables_set_the_layout_and_repeats_change_nothing() -> None:
    watch = ProgramWatch()
    assert watch.feed(START) is None
    assert watch.feed(START * 5) is None
    assert watch.feed(NULL_PACKET * 7) is None


@pytest.mark.parametrize(
    ("tables", "words"),
    [
        (_pat((1, 0x1100)), ["PAT", "PMT PID 0x1000 -> program 1 on PMT PID 0x1100"]),
        (_pmt(0x1000, (H264, 0x200)), ["PMT PID 0x1000", "PID 0x0100 H.264 -> PID 0x0200 H.264"]),
        (_pmt(0x1000, (MPEG2, 0x100)), ["PID 0x0100 H.264 -> PID 0x0100 MPEG-2"]),
        (_pmt(0x1000, (AAC, 0x101)), ["H.264 -> no video"]),
    ],
)
def test_other_pids_or_codec_are_a_change(tables: bytes, words: list[str]) -> None:
    watch = ProgramWatch()
    watch.feed(START)
    change = watch.feed(tables)
    assert change is not None
    for word in words:
        assert word in change
    assert watch.feed(tables) is None  # the new layout is the reference now


def test_a_new_version_an_audio_stream_or_a_bad_crc_is_no_change() -> None:
    watch = ProgramWatch()
    watch.feed(START)
    assert watch.feed(_pmt(0x1000, (H264, 0x100), version=3)) is None
    assert watch.feed(_pmt(0x1000, (H264, 0x100), (AAC, 0x101), version=4)) is None
    damaged = bytearray(_pmt(0x1000, (MPEG2, 0x100)))
    damaged[20] ^= 0x01
    assert watch.feed(bytes(damaged)) is None
    assert watch.feed(_pmt(0x2000, (MPEG2, 0x100))) is None  # not a PMT PID of the PAT


def test_the_tables_of_ffmpeg_muxed_streams_are_read(tmp_path: Path) -> None:
    """Real ffmpeg output: its PAT and PMT, and the change between two senders."""

    def mux(name: str, codec: str, *options: str) -> bytes:
        path = tmp_path / f"{name}.ts"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
             "-t", "0.5", "-c:v", codec, *options, "-f", "mpegts", str(path)],
            check=True, timeout=30,
        )  # fmt: skip
        return path.read_bytes()

    first = mux("first", "libx264")
    seconds = {
        "PMT PID 0x1100": mux("pmt", "libx264", "-mpegts_pmt_start_pid", "0x1100"),
        "PID 0x0200 H.264": mux("pid", "libx264", "-streamid", "0:0x200"),
        "PID 0x0100 MPEG-2": mux("codec", "mpeg2video"),
    }
    assert ProgramWatch().feed(first + first) is None
    for expected, second in seconds.items():
        watch = ProgramWatch()
        assert watch.feed(first) is None
        change = watch.feed(second)
        assert change is not None and expected in change


_TABLE_PIDS = st.sampled_from([0x0000, 0x1000, 0x0100, 0x1FFF])
_RAW_PACKETS = st.builds(
    lambda pid, body: bytes([0x47, 0x40 | pid >> 8, pid & 0xFF]) + body,
    _TABLE_PIDS,
    st.binary(min_size=185, max_size=185),
)
_SIGNED_TABLES = st.builds(  # hostile contents behind a right CRC: the parsers run
    lambda pid, table_id, body: _table(pid, table_id, 1, body),
    _TABLE_PIDS,
    st.sampled_from([0x00, 0x02]),
    st.binary(max_size=170),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_RAW_PACKETS, _SIGNED_TABLES), max_size=8))
def test_any_bytes_in_table_packets_are_survived(packets: list[bytes]) -> None:
    """Hostile packets on the table PIDs: a change is described, or nothing happens."""
    watch = ProgramWatch()
    watch.feed(START)
    change = watch.feed(b"".join(packets))
    assert change is None or change.startswith(("PAT: ", "PMT PID 0x"))


# -- the stream's handling of SourceChanged, against a scripted source -------------------


class ChangingSource:
    """Gives pictures; the reads numbered in ``changes`` raise SourceChanged instead."""

    def __init__(self, changes: set[int]) -> None:
        self.is_live = True
        self.counters = SourceCounters()
        self.changes = changes
        self.calls = 0
        self.closed = False
        self.interrupted = threading.Event()

    def open(self) -> None:
        pass

    def read(self) -> SourceFrame:
        self.calls += 1
        if self.calls in self.changes:
            raise SourceChanged(f"change at call {self.calls}")
        if self.interrupted.wait(0.005):
            raise SourceError("interrupted")
        image = np.zeros((2, 2, 3), np.uint8)
        return SourceFrame(width=2, height=2, convert=lambda: image)

    def interrupt(self) -> None:
        self.interrupted.set()

    def close(self) -> None:
        self.closed = True


def _factory(made: list[ChangingSource], changes: set[int]) -> Callable[..., ChangingSource]:
    def make(config: StreamConfig) -> ChangingSource:
        made.append(ChangingSource(changes if not made else set()))
        return made[-1]

    return make


def test_a_change_is_a_reconnect_on_the_same_source() -> None:
    made: list[ChangingSource] = []
    with VideoStream("fake://a", source_factory=_factory(made, {5})) as stream:
        wait_until(
            lambda: stream.stats.reconnects == 1 and stream.stats.decoded > 10,
            15.0,
            "reopened once and decoding",
        )
        assert stream.state is StreamState.LIVE
        stats = stream.stats
    assert len(made) == 1  # read on after the change: not closed and made again
    assert stats.last_error == "change at call 5"


def test_a_second_change_before_any_frame_reopens_the_source() -> None:
    made: list[ChangingSource] = []
    with VideoStream(
        "fake://a", source_factory=_factory(made, {5, 6}), reconnect_delay=0.05
    ) as stream:
        wait_until(lambda: len(made) == 2 and stream.stats.decoded > 10, 15.0, "a second source")
        stats = stream.stats
    assert made[0].closed
    assert stats.reconnects == 2  # the first change, then the reopen
    assert stats.last_error == "change at call 6"


# -- real senders on loopback ------------------------------------------------------------


@pytest.fixture
def senders() -> Iterator[Callable[..., LocalSender]]:
    """``start(port, size, codec, *mux_options)``: a simulated camera; stopped at the end."""
    started: list[LocalSender] = []

    def start(port: int, size: tuple[int, int], codec: Codec, *mux: str) -> LocalSender:
        config = SenderConfig(
            destination=f"udp://127.0.0.1:{port}", input="testsrc", size=size, codec=codec
        )
        argv = sender_argv(config)
        at = argv.index("mpegts") - 1  # "-f mpegts url": the muxer's options go before it
        sender = LocalSender([*argv[:at], *mux, *argv[at:]], name=f"cam{port}-{codec}")
        started.append(sender.start())
        return sender

    yield start
    for sender in started:
        sender.close()


def _read_size(stream: VideoStream, size: tuple[int, int], timeout: float = 15.0) -> Frame:
    """The first frame of ``size`` (the sender it comes from), reading for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        frame = stream.read(timeout=remaining)
        if (frame.width, frame.height) == size:
            return frame
    raise AssertionError(f"no {size[0]}x{size[1]} frame within {timeout} s")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("-mpegts_pmt_start_pid", "0x1100"), "PAT: program 1 on PMT PID 0x1000 -> "),
        (("-streamid", "0:0x200"), "PID 0x0100 H.264 -> PID 0x0200 H.264"),
        (("-mpegts_pmt_start_pid", "0x1200", "-mpegts_start_pid", "0x300"), "PAT"),
    ],
    ids=["pmt-pid", "video-pid", "both"],
)
def test_a_sender_restarted_with_other_pids_is_decoded_again(
    senders: Callable[..., LocalSender], options: tuple[str, ...], expected: str
) -> None:
    port = free_udp_port()
    first = senders(port, (320, 240), "libx264")
    with VideoStream(f"udp://127.0.0.1:{port}", name="cam") as stream:
        _read_size(stream, (320, 240))
        first.close()
        senders(port, (160, 120), "libx264", *options)
        frames = [_read_size(stream, (160, 120)) for _ in range(5)]
        stats = stream.stats
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    assert stats.state is StreamState.LIVE
    assert stats.reconnects == 1  # the demuxer was reopened once, on the socket it had
    assert stats.last_error is not None
    assert "changed" in stats.last_error and expected in stats.last_error


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("libx264", "mpeg2video", "H.264 -> PID 0x0100 MPEG-2"),
        ("mpeg2video", "libx264", "MPEG-2 -> PID 0x0100 H.264"),
    ],
    ids=["h264-to-mpeg2", "mpeg2-to-h264"],
)
def test_a_sender_restarted_with_another_codec_is_decoded_again(
    senders: Callable[..., LocalSender], before: Codec, after: Codec, expected: str
) -> None:
    port = free_udp_port()
    first = senders(port, (320, 240), before)
    with VideoStream(f"udp://127.0.0.1:{port}", name="cam") as stream:
        _read_size(stream, (320, 240))
        first.close()
        senders(port, (160, 120), after)
        frames = [_read_size(stream, (160, 120)) for _ in range(5)]
        stats = stream.stats
    assert all(f.image.shape == (120, 160, 3) for f in frames)
    assert stats.reconnects == 1
    assert stats.last_error is not None and expected in stats.last_error


def test_null_packets_alone_make_the_stream_stale_and_it_reopens(
    senders: Callable[..., LocalSender],
) -> None:
    port = free_udp_port()
    first = senders(port, (320, 240), "libx264")
    stop = threading.Event()

    def send_null_packets() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.wait(0.002):
                sock.sendto(NULL_PACKET * 7, ("127.0.0.1", port))

    spray = threading.Thread(target=send_null_packets, name="null-packets")
    with VideoStream(
        f"udp://127.0.0.1:{port}",
        stall_timeout=1.0,
        open_timeout=1.0,
        reconnect_delay=0.3,
        reconnect_max_delay=0.3,
    ) as stream:
        _read_size(stream, (320, 240))
        first.close()
        spray.start()
        try:
            wait_until(lambda: stream.state is StreamState.STALE, 15.0, "STALE")
            assert stream.stats.last_error is not None
            assert "no decodable frame" in stream.stats.last_error
            # a reopened reader fed only null packets gives up too, and again
            wait_until(lambda: stream.stats.reconnects >= 2, 15.0, "reopened twice")
            wait_until(lambda: stream.state is StreamState.STALE, 15.0, "STALE")
            decoded = stream.stats.decoded
        finally:
            stop.set()
            spray.join()
        senders(port, (160, 120), "libx264")
        _read_size(stream, (160, 120))
        stats = stream.stats
    assert stats.decoded > decoded
    assert stats.state is StreamState.LIVE
    assert "no decodable frame" in (stats.last_error or "")
