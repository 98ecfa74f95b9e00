"""Tests of the latency probe: the pixel stamp codec (pure) and the stamp sender (end to end).

The stamp is read back exactly after JPEG at quality 50 and 10, after downscaling by 0.5
(area, bilinear or nearest), 0.25 and 0.125 (area; blocks of 2.5 x 2 pixels), and after
JPEG on top of 0.5x; the end-to-end test shows that it survives x264 ultrafast/zerolatency
at 640x480 and that its time agrees with the sender's PTS.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import signal
import subprocess
import time

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from syncstream.clock import MPEGTS_PTS_PERIOD
from syncstream.errors import ConfigError, SourceError, StampNotFound, StreamClosed
from syncstream.probe import StampSender, decode_stamp, encode_stamp
from syncstream.senders import free_udp_port
from tests.conftest import wait_until

STAMP = 1_700_000_000.123456
STAMP_MICROS = 1_700_000_000_123_456

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def textured_plane(width: int = 640, height: int = 480, seed: int = 1) -> NDArray[np.uint8]:
    """A busy picture (gradient plus noise), so compression has something to fight over."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 220, width)[None, :] + np.zeros((height, 1))
    noise = rng.normal(0, 25, (height, width))
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


def stamped(stamp_time: float = STAMP, width: int = 640, height: int = 480) -> NDArray[np.uint8]:
    luma = textured_plane(width, height)
    encode_stamp(luma, stamp_time)
    return luma


def micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def jpeg(image: NDArray[np.uint8], quality: int) -> NDArray[np.uint8]:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    decoded: NDArray[np.uint8] = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return decoded


def invert_block(luma: NDArray[np.uint8], row: int, column: int) -> None:
    """Swap black and white in one block of a 640-wide stamp (blocks are 20 x 16 there)."""
    block = luma[row * 16 : (row + 1) * 16, column * 20 : (column + 1) * 20]
    block[...] = 251 - block


# -- the codec -------------------------------------------------------------------------


def test_round_trip_is_exact_to_the_microsecond() -> None:
    assert micros(decode_stamp(stamped())) == STAMP_MICROS


@pytest.mark.parametrize("seed", range(20))
def test_round_trip_of_random_times(seed: int) -> None:
    rng = np.random.default_rng(seed)
    stamp_time = int(rng.integers(0, 2**52)) / 1_000_000
    assert micros(decode_stamp(stamped(stamp_time))) == micros(stamp_time)


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (1920, 1080), (320, 240), (854, 480)])
def test_round_trip_at_other_sizes(size: tuple[int, int]) -> None:
    assert micros(decode_stamp(stamped(STAMP, *size))) == STAMP_MICROS


def test_decodes_a_bgr_picture() -> None:
    bgr = cv2.cvtColor(stamped(), cv2.COLOR_GRAY2BGR)
    assert micros(decode_stamp(bgr)) == STAMP_MICROS


def test_decodes_full_range_levels() -> None:
    """A receiver that expands video range to full range (16..235 -> 0..255) still reads it."""
    luma = stamped().astype(np.float64)
    full = np.clip((luma - 16) * 255 / 219, 0, 255).astype(np.uint8)
    assert micros(decode_stamp(full)) == STAMP_MICROS


@pytest.mark.parametrize("quality", [50, 10])
def test_survives_jpeg(quality: int) -> None:
    bgr = jpeg(cv2.cvtColor(stamped(), cv2.COLOR_GRAY2BGR), quality)
    assert micros(decode_stamp(bgr)) == STAMP_MICROS


@pytest.mark.parametrize(
    ("scale", "interpolation"),
    [
        (0.5, cv2.INTER_AREA),
        (0.5, cv2.INTER_LINEAR),
        (0.5, cv2.INTER_NEAREST),
        (0.25, cv2.INTER_AREA),
        (0.125, cv2.INTER_AREA),
    ],
)
def test_survives_downscaling(scale: float, interpolation: int) -> None:
    small = cv2.resize(stamped(), None, fx=scale, fy=scale, interpolation=interpolation)
    assert micros(decode_stamp(small)) == STAMP_MICROS


def test_survives_jpeg_after_half_scale() -> None:
    small = cv2.resize(stamped(), (320, 240), interpolation=cv2.INTER_AREA)
    bgr = jpeg(cv2.cvtColor(small, cv2.COLOR_GRAY2BGR), 50)
    assert micros(decode_stamp(bgr)) == STAMP_MICROS


@pytest.mark.parametrize(
    "picture",
    [
        np.zeros((480, 640), np.uint8),
        np.full((480, 640), 128, np.uint8),
        np.full((480, 640, 3), 255, np.uint8),
        np.random.default_rng(7).integers(0, 256, (480, 640), dtype=np.uint8),
        np.random.default_rng(8).integers(0, 256, (480, 640, 3), dtype=np.uint8),
        textured_plane(),
    ],
    ids=["black", "grey", "white", "noise", "noise-bgr", "texture"],
)
def test_pictures_without_a_stamp_are_rejected(picture: NDArray[np.uint8]) -> None:
    with pytest.raises(StampNotFound):
        decode_stamp(picture)


def test_alternating_stripes_are_rejected() -> None:
    """Regular black and white blocks have full contrast but not the guard pattern."""
    stripes = np.zeros((480, 640), np.uint8)
    stripes[:, np.arange(640) // 20 % 2 == 1] = 235
    with pytest.raises(StampNotFound):
        decode_stamp(stripes)


@needs_ffmpeg
@pytest.mark.parametrize("pattern", ["testsrc", "testsrc2", "smptebars", "mandelbrot"])
def test_ffmpeg_test_patterns_are_rejected(pattern: str) -> None:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"{pattern}=size=640x480",
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
        check=True, capture_output=True, timeout=30,
    ).stdout  # fmt: skip
    picture = np.frombuffer(raw, np.uint8).reshape(480, 640, 3)
    with pytest.raises(StampNotFound):
        decode_stamp(picture)


@pytest.mark.parametrize("column", [0, 11, 20, 31])
@pytest.mark.parametrize("row", [1, 2])
def test_a_flipped_data_bit_is_rejected(row: int, column: int) -> None:
    luma = stamped()
    invert_block(luma, row, column)
    with pytest.raises(StampNotFound):
        decode_stamp(luma)


def test_a_flipped_guard_block_is_rejected() -> None:
    luma = stamped()
    invert_block(luma, 0, 5)
    with pytest.raises(StampNotFound):
        decode_stamp(luma)


def test_a_smudged_block_is_rejected() -> None:
    luma = stamped()
    luma[16:32, 100:120] = 128  # neither black nor white
    with pytest.raises(StampNotFound):
        decode_stamp(luma)


def test_too_small_picture_is_rejected() -> None:
    with pytest.raises(StampNotFound):
        decode_stamp(np.zeros((10, 640), np.uint8))


@pytest.mark.parametrize("stamp_time", [-1.0, 2**52 / 1e6, math.nan, math.inf])
def test_encode_refuses_times_out_of_range(stamp_time: float) -> None:
    with pytest.raises(ValueError, match="range"):
        encode_stamp(np.zeros((480, 640), np.uint8), stamp_time)


def test_encode_refuses_a_bgr_or_small_plane() -> None:
    with pytest.raises(ValueError):
        encode_stamp(np.zeros((480, 640, 3), np.uint8), STAMP)
    with pytest.raises(ValueError):
        encode_stamp(np.zeros((20, 640), np.uint8), STAMP)


def test_encode_paints_only_the_top_band() -> None:
    luma = textured_plane()
    before = luma.copy()
    encode_stamp(luma, STAMP)
    assert np.array_equal(luma[48:], before[48:])
    assert set(np.unique(luma[:48]).tolist()) == {16, 235}


# -- the sender -------------------------------------------------------------------------


def test_sender_constructor_validates_and_does_no_io() -> None:
    sender = StampSender("udp://127.0.0.1:1234", size=(320, 240), fps=15, gop=15)
    assert sender.name == "stamp-sender:1234"
    assert sender.frames_sent == 0 and sender.error is None
    assert sender.argv[0] == "ffmpeg" and "320x240" in sender.argv
    sender.close()  # never started: nothing to do
    with pytest.raises(StreamClosed):
        sender.start()
    for bad in [
        {"url": "tcp://127.0.0.1:1234"},
        {"url": "udp://127.0.0.1"},
        {"url": "udp://127.0.0.1:1234?pkt_size=188"},
        {"url": "udp://127.0.0.1:1234", "size": (641, 480)},
        {"url": "udp://127.0.0.1:1234", "size": (640, 40)},
        {"url": "udp://127.0.0.1:1234", "fps": 0},
        {"url": "udp://127.0.0.1:1234", "gop": 0},
    ]:
        with pytest.raises(ConfigError):
            StampSender(**bad)  # type: ignore[arg-type]


def wrapped_difference(a: float, b: float) -> float:
    """``a - b`` folded into ``[-period/2, period/2)`` of the MPEG-TS PTS."""
    return (a - b + MPEGTS_PTS_PERIOD / 2) % MPEGTS_PTS_PERIOD - MPEGTS_PTS_PERIOD / 2


@needs_ffmpeg
@pytest.mark.timeout(60)
def test_stamp_sender_end_to_end() -> None:
    url = f"udp://127.0.0.1:{free_udp_port()}"
    stamps: list[float] = []
    pts_offsets: list[float] = []
    with StampSender(url, size=(640, 480), fps=30.0, gop=10) as sender:
        container = av.open(
            url,
            format="mpegts",
            options={
                "fflags": "nobuffer",
                "flags": "low_delay",
                "probesize": "32768",
                "analyzeduration": "0",
            },
            timeout=(5, 5),
        )
        try:
            for frame in container.decode(video=0):
                stamp_time = decode_stamp(frame.to_ndarray(format="bgr24"))
                now = time.time()
                assert frame.pts is not None and frame.time_base is not None
                pts_time = float(frame.pts * frame.time_base)
                stamps.append(stamp_time)
                pts_offsets.append(wrapped_difference(pts_time, stamp_time))
                assert abs(now - stamp_time) < 2.0  # a sanity bound, not a speed test
                if len(stamps) >= 30:
                    break
        finally:
            container.close()
        assert sender.error is None
        assert sender.frames_sent >= 30
    assert sender.error is None
    assert all(later > earlier for earlier, later in itertools.pairwise(stamps))
    assert max(abs(offset) for offset in pts_offsets) < 0.1


@needs_ffmpeg
@pytest.mark.timeout(60)
def test_stamp_sender_feeds_another_command() -> None:
    """``command`` replaces the built ffmpeg command: here a classic x264 sender with
    ffmpeg's default muxing reads the raw frames, and its stream carries the stamps."""
    with pytest.raises(ConfigError):
        StampSender("udp://127.0.0.1:1234", command=[])
    url = f"udp://127.0.0.1:{free_udp_port()}"
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "320x240", "-r", "30", "-i", "-",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10",
        "-f", "mpegts", f"{url}?pkt_size=1316",
    ]  # fmt: skip
    stamps: list[float] = []
    with StampSender(url, size=(320, 240), fps=30.0, command=command) as sender:
        assert sender.argv == command
        container = av.open(url, format="mpegts", options={"probesize": "32768"}, timeout=(5, 5))
        try:
            for frame in container.decode(video=0):
                stamps.append(decode_stamp(frame.to_ndarray(format="bgr24")))
                if len(stamps) >= 10:
                    break
        finally:
            container.close()
        assert sender.error is None
    assert all(later > earlier for earlier, later in itertools.pairwise(stamps))


@needs_ffmpeg
@pytest.mark.timeout(30)
def test_stamp_sender_reports_ffmpeg_dying() -> None:
    sender = StampSender(f"udp://127.0.0.1:{free_udp_port()}", size=(320, 240), fps=30.0)
    with sender:
        assert sender.pid is not None
        os.kill(sender.pid, signal.SIGKILL)
        wait_until(lambda: sender.error is not None, 10, "the sender reports ffmpeg's end")
        assert isinstance(sender.error, SourceError)
        assert isinstance(sender.error.__cause__, BrokenPipeError)
        assert "stamp-sender" in str(sender.error)
    sent = sender.frames_sent
    sender.close()  # idempotent
    assert sender.frames_sent == sent
    with pytest.raises(StreamClosed):
        sender.start()
