"""Frame ends marked on the wire (``parse_frames=False``) against real MPEG-TS producers.

Each producer streams over UDP to 127.0.0.1 with video PES packets of length 0: ffmpeg
(x264, x265, mpeg2video, with and without ``-flush_packets 1``, several programmes, audio
beside video) and GStreamer's ``mpegtsmux`` (through /usr/bin/python3 and python3-gi).
Every frame must arrive whole: images of the right shape, PTS strictly increasing, no
decode errors, and the ends found on the wire far outnumber those left to the next start.
Under loss and reordering (the impairment relay) the stream keeps going.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Iterator, Sequence

import pytest
from conftest import free_udp_port, wait_until

from syncstream import Frame, StreamStats, VideoStream
from syncstream.probe import StampSender, decode_stamp
from syncstream.senders import LocalSender
from syncstream.testing.relay import ImpairmentRelay

pytestmark = pytest.mark.timeout(60)

SIZE = (320, 240)
FRAMES = 20
GST_PYTHON = "/usr/bin/python3"

_GST_SCRIPT = """
import sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
pipeline = Gst.parse_launch(sys.argv[1])
pipeline.set_state(Gst.State.PLAYING)
message = pipeline.get_bus().timed_pop_filtered(
    Gst.CLOCK_TIME_NONE, Gst.MessageType.ERROR | Gst.MessageType.EOS
)
if message is not None and message.type == Gst.MessageType.ERROR:
    print(message.parse_error()[0].message, file=sys.stderr)
pipeline.set_state(Gst.State.NULL)
"""


def _ffmpeg(port: int, *codec: str, inputs: Sequence[str] = (), flush: bool = False) -> list[str]:
    width, height = SIZE
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate=25", *inputs,
        *codec, *(["-flush_packets", "1"] if flush else []),
        "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316",
    ]  # fmt: skip


def _gst_available(*elements: str) -> bool:
    if not shutil.which(GST_PYTHON):
        return False
    check = (
        "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; "
        "Gst.init(None); import sys; "
        "sys.exit(0 if all(Gst.ElementFactory.find(e) for e in sys.argv[1:]) else 1)"
    )
    done = subprocess.run([GST_PYTHON, "-c", check, *elements], capture_output=True, timeout=30)
    return done.returncode == 0


def _gst(port: int, source: str, encoder: str) -> list[str]:
    pipeline = f"{source} ! {encoder} ! mpegtsmux ! udpsink host=127.0.0.1 port={port}"
    return [GST_PYTHON, "-c", _GST_SCRIPT, pipeline]


def _receive(
    argv: Sequence[str] | None, port: int, count: int = FRAMES, **options: object
) -> tuple[list[Frame], StreamStats]:
    """Read ``count`` frames from the producer ``argv`` (None: already sending)."""
    frames: list[Frame] = []
    with VideoStream(f"udp://127.0.0.1:{port}", name=f"cam{port}", **options) as stream:  # type: ignore[arg-type]
        stream.add_listener(frames.append)
        sender = LocalSender(list(argv), name=f"producer{port}").start() if argv else None
        try:
            wait_until(lambda: len(frames) >= count, 30.0, f"{count} frames")
            stats = stream.stats
        finally:
            if sender is not None:
                sender.close()
    return frames[:count], stats


def _assert_whole(frames: list[Frame], size: tuple[int, int] = SIZE) -> None:
    width, height = size
    pts = [frame.pts_time for frame in frames]
    known = [p for p in pts if p is not None]
    assert len(known) == len(pts), f"every frame carries its PTS: {pts}"
    assert all(a < b for a, b in itertools.pairwise(known)), f"PTS not increasing: {pts}"
    assert all(frame.image.shape == (height, width, 3) for frame in frames)
    assert all(frame.capture_time is not None or frame.arrival_time > 0 for frame in frames)


def _assert_marked(stats: StreamStats) -> None:
    assert stats.decode_errors == 0
    assert stats.frame_ends_found > 0
    assert stats.frame_ends_found >= 4 * stats.frame_ends_waited, stats


X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25")
X265 = ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
        "log-level=error:bframes=0:rc-lookahead=0:keyint=25")  # fmt: skip


@pytest.fixture(scope="module")
def ffmpeg_encoders() -> str:
    if shutil.which("ffmpeg") is None:
        pytest.fail("the ffmpeg CLI is required (the test command installs it)")
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30
    ).stdout


@pytest.mark.parametrize("flush", [False, True], ids=["buffered", "flush_packets"])
@pytest.mark.parametrize("codec", ["libx264", "libx265", "mpeg2video"])
def test_ffmpeg_frames_arrive_whole_and_their_ends_are_found(
    ffmpeg_encoders: str, codec: str, flush: bool
) -> None:
    if codec not in ffmpeg_encoders:
        pytest.skip(f"ffmpeg has no {codec}")
    args = {"libx264": X264, "libx265": X265, "mpeg2video": ()}[codec]  # mpeg2: the default
    port = free_udp_port()
    frames, stats = _receive(_ffmpeg(port, *args, flush=flush), port)
    _assert_whole(frames)
    _assert_marked(stats)


def test_marking_changes_nothing_but_the_wait_against_parse_frames() -> None:
    """The same producer with the end found by FFmpeg's parser: same frames, none marked."""
    port = free_udp_port()
    frames, stats = _receive(_ffmpeg(port, *X264), port, parse_frames=True)
    _assert_whole(frames)
    assert stats.decode_errors == 0
    assert stats.frame_ends_found == 0


def test_audio_beside_video_keeps_frames_whole() -> None:
    port = free_udp_port()
    audio = ("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000")
    argv = _ffmpeg(port, *X264, "-c:a", "mp2", inputs=audio)
    frames, stats = _receive(argv, port)
    _assert_whole(frames)
    _assert_marked(stats)


def test_several_programmes_read_the_first_and_mark_its_ends() -> None:
    port = free_udp_port()
    second = ("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25")
    programmes = ("-program", "title=a:st=0", "-program", "title=b:st=1")
    argv = _ffmpeg(port, "-map", "0:v", "-map", "1:v", *X264, *programmes, inputs=second)
    frames, stats = _receive(argv, port)
    _assert_whole(frames)  # the first programme's 320x240, never the second's 160x120
    _assert_marked(stats)


@pytest.mark.parametrize(
    ("source", "encoder", "size"),
    [
        ("videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1",
         "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25", SIZE),
        (
            "videotestsrc is-live=true pattern=snow ! video/x-raw,width=1280,height=720,"
            "framerate=10/1",
            "x264enc tune=zerolatency speed-preset=ultrafast bitrate=6000 vbv-buf-capacity=100 "
            "key-int-max=10",
            (1280, 720),
        ),
    ],
    ids=["small", "over_64k"],
)  # fmt: skip
def test_gstreamer_mpegtsmux_frames_arrive_whole(
    source: str, encoder: str, size: tuple[int, int]
) -> None:
    _require_gst()
    port = free_udp_port()
    frames, stats = _receive(_gst(port, source, encoder), port, count=10)
    _assert_whole(frames, size)
    assert stats.decode_errors == 0
    if size != SIZE:  # mpegtsmux writes PES length 0 only for frames over 64 KiB
        assert stats.frame_ends_found > 0
        assert stats.frame_ends_found >= 2 * stats.frame_ends_waited, stats


def _require_gst() -> None:
    if not _gst_available("videotestsrc", "x264enc", "mpegtsmux", "udpsink"):
        pytest.fail(
            "GStreamer with videotestsrc, x264enc, mpegtsmux and udpsink is required "
            "(the test command installs it)"
        )


def test_frames_over_200k_warn_and_arrive_whole_with_parse_frames(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FFmpeg's demuxer splits a PES of unknown length over 200 KiB: the reader says to
    turn the parser on, and with it such frames arrive whole."""
    _require_gst()
    source = (
        "videotestsrc is-live=true pattern=snow ! video/x-raw,width=1280,height=720,framerate=10/1"
    )
    encoder = "x264enc tune=zerolatency speed-preset=ultrafast bitrate=40000 key-int-max=10"
    port = free_udp_port()
    with caplog.at_level("WARNING", logger="syncstream.sources.frame_ends"):
        _receive(_gst(port, source, encoder), port, count=4)
    assert "set parse_frames=True" in caplog.text
    port = free_udp_port()
    frames, stats = _receive(_gst(port, source, encoder), port, count=6, parse_frames=True)
    _assert_whole(frames, (1280, 720))
    assert stats.decode_errors == 0


def test_every_stamped_frame_decodes_whole() -> None:
    """A partial frame would spoil the stamp band: every received stamp must read."""
    port = free_udp_port()
    with StampSender(f"udp://127.0.0.1:{port}", size=SIZE, fps=25.0, pes_length=False):
        frames, stats = _receive(None, port, count=30)
    stamps = [decode_stamp(frame.image) for frame in frames]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    _assert_whole(frames)
    _assert_marked(stats)


@pytest.fixture
def relayed() -> Iterator[tuple[int, list[ImpairmentRelay]]]:
    port = free_udp_port()
    relays: list[ImpairmentRelay] = []
    yield port, relays
    for relay in relays:
        relay.close()


@pytest.mark.parametrize(
    "impairment",
    [{"loss": 0.01, "seed": 3}, {"jitter": 0.004, "keep_order": False, "seed": 5}],
    ids=["loss", "reorder"],
)
def test_loss_and_reordering_leave_ends_to_the_next_start(
    relayed: tuple[int, list[ImpairmentRelay]], impairment: dict[str, object]
) -> None:
    port, relays = relayed
    relay = ImpairmentRelay(("127.0.0.1", port), **impairment).start()  # type: ignore[arg-type]
    relays.append(relay)
    with StampSender(relay.url, size=SIZE, fps=25.0, pes_length=False):
        frames, stats = _receive(None, port, count=40)
    _assert_whole(frames)
    assert stats.frame_ends_waited > 0  # a damaged or disordered PES is never marked
    assert stats.frame_ends_found > 0
