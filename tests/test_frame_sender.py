"""FrameSender: a program's pictures sent by PyAV, read back by a real StreamGroup and
VideoStream on 127.0.0.1; the ``syncstream send`` command as a subprocess."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from numpy.typing import NDArray

from syncstream import (
    Camera,
    ConfigError,
    Frame,
    FrameSet,
    ReadTimeout,
    StreamClosed,
    StreamGroup,
    SyncStreamError,
    VideoStream,
)
from syncstream.probe import decode_stamp, encode_stamp
from syncstream.senders import FrameSender, FrameSenderConfig, free_udp_port
from syncstream.senders.frame_sender import FrameSenderOptions
from tests.conftest import wait_until

BGR = (30, 120, 200)  # a flat colour away from the limits of video range


def _picture(stamp_time: float, size: tuple[int, int] = (320, 240)) -> NDArray[np.uint8]:
    """A flat BGR picture with ``stamp_time`` painted into its top band (grey blocks)."""
    width, height = size
    picture = np.empty((height, width, 3), np.uint8)
    picture[:] = BGR
    luma = np.zeros((height, width), np.uint8)
    encode_stamp(luma, stamp_time)
    band = int(np.ceil(3 * width / 40))
    picture[:band] = luma[:band, :, None]
    return picture


def _sender_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("syncstream-frame-sender")]


def test_a_group_gets_the_capture_time_the_program_gave() -> None:
    port = free_udp_port()
    camera = Camera(name="py", url=f"udp://127.0.0.1:{port}")
    sets: list[FrameSet] = []
    with (
        StreamGroup([camera]) as group,
        FrameSender(f"udp://127.0.0.1:{port}", fps=30, gop=5) as sender,
    ):
        for _ in range(600):  # each read waits up to a frame interval: the pace
            capture_time = time.time() - 0.5  # taken half a second before it is sent
            sender.send(_picture(capture_time), capture_time=capture_time)
            try:
                sets.append(group.read(timeout=1 / 30))
            except ReadTimeout:
                continue
            if len(sets) >= 20:
                break
        stats = sender.stats
    assert len(sets) >= 20, f"only {len(sets)} sets"
    for fs in sets:
        frame = fs["py"]
        assert frame.capture_time is not None and fs.clock == "sender"
        # the PTS carries 1/90000 s; the stamp in the pixels is the time the program gave
        assert frame.capture_time == pytest.approx(decode_stamp(frame.image), abs=2e-5)
        assert frame.latency is not None and frame.latency >= 0.5
        below = frame.image[frame.height // 4 :].reshape(-1, 3).mean(axis=0)
        assert np.allclose(below, BGR, atol=6), below
    assert stats.sent >= 20 and stats.error is None and stats.send_errors == 0
    assert stats.datagrams > 0 and stats.bytes_sent >= 188 * stats.datagrams


def test_a_stream_reads_a_sender_whose_pictures_change_size() -> None:
    port = free_udp_port()
    frames: list[Frame] = []
    with (
        VideoStream(f"udp://127.0.0.1:{port}") as stream,
        FrameSender(f"udp://127.0.0.1:{port}", size=(320, 240), gop=5) as sender,
    ):
        for index in range(600):
            now = time.time()
            size = (320, 240) if index % 2 else (641, 359)  # scaled to the sender's size
            sender.send(_picture(now, size), capture_time=now)
            try:
                frames.append(stream.read(timeout=1 / 30))
            except ReadTimeout:
                continue
            if len(frames) >= 10:
                break
    assert len(frames) >= 10
    assert all((f.width, f.height) == (320, 240) for f in frames)
    assert all(f.capture_time is not None for f in frames)


def test_send_never_waits_for_a_busy_encoder() -> None:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)  # costly to encode
    port = free_udp_port()  # nobody reads it: UDP never holds the sender back either
    with FrameSender(f"udp://127.0.0.1:{port}", fps=30) as sender:
        numbers = [sender.send(noise) for _ in range(40)]
        during = sender.stats
    after = sender.stats
    assert numbers == list(range(40))
    assert during.submitted == 40
    # the encoder took what it could; the rest was replaced while it was busy, not queued
    assert after.dropped > 0
    assert after.sent + after.dropped == 40
    assert after.sent >= 1 and after.error is None and after.send_errors == 0


def test_capture_times_that_go_back_are_refused_and_counted() -> None:
    port = free_udp_port()
    now = time.time()
    with FrameSender(f"udp://127.0.0.1:{port}") as sender:
        sender.send(_picture(now), capture_time=now)
        wait_until(lambda: sender.stats.sent == 1, 10.0, "the first picture sent")
        sender.send(_picture(now - 1.0), capture_time=now - 1.0)
        wait_until(lambda: sender.stats.out_of_order == 1, 10.0, "the older one refused")
        sender.send(_picture(now + 0.1), capture_time=now + 0.1)
        wait_until(lambda: sender.stats.sent == 2, 10.0, "a newer one sent")


def test_life_cycle_and_errors_are_ours() -> None:
    destination = f"udp://127.0.0.1:{free_udp_port()}"
    sender = FrameSender(destination, name="desk")
    with pytest.raises(SyncStreamError, match="not started"):
        sender.send(_picture(time.time()))
    assert not _sender_threads()  # the constructor starts nothing
    with sender:
        assert sender.start() is sender  # idempotent
        assert _sender_threads() == ["syncstream-frame-sender:desk"]
        with pytest.raises(ConfigError, match="HxWx3 uint8"):
            sender.send(np.zeros((240, 320), np.uint8))
        with pytest.raises(ConfigError, match="HxWx3 uint8"):
            sender.send(np.zeros((240, 320, 3), np.float32))
        with pytest.raises(ConfigError, match="capture_time"):
            sender.send(_picture(time.time()), capture_time=float("nan"))
        assert sender.send(_picture(time.time())) == 0
    sender.close()  # idempotent
    assert not _sender_threads()
    with pytest.raises(StreamClosed):
        sender.send(_picture(time.time()))
    with pytest.raises(StreamClosed):
        sender.start()
    assert sender.stats.sent == 1  # the picture waiting at close() was sent


@pytest.mark.parametrize(
    ("destination", "options", "field"),
    [
        ("udp://127.0.0.1", {}, "destination"),
        ("tcp://127.0.0.1:9000", {}, "destination"),
        ("udp://127.0.0.1:9000", {"size": (321, 240)}, "size"),
        ("udp://127.0.0.1:9000", {"fps": 0}, "fps"),
        ("udp://127.0.0.1:9000", {"pkt_size": 1000}, "pkt_size"),
        ("udp://127.0.0.1:9000", {"bitrate": "fast"}, "bitrate"),
        ("udp://127.0.0.1:9000", {"gop": 0}, "gop"),
    ],
)
def test_bad_options_fail_when_built_naming_the_field(
    destination: str, options: FrameSenderOptions, field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        FrameSender(destination, **options)


def test_options_mirror_the_config_and_a_config_is_taken_whole() -> None:
    fields = set(FrameSenderConfig.model_fields) - {"destination"}
    assert set(FrameSenderOptions.__annotations__) == fields
    config = FrameSenderConfig(destination="udp://127.0.0.1:9000", bitrate="1.5M", fps=25)
    sender = FrameSender(config, gop=10)
    assert sender.config.bit_rate == 1_500_000 and sender.config.effective_gop == 10
    assert sender.name == "udp://127.0.0.1:9000"
    assert FrameSenderConfig(destination="udp://h:1", fps=25).effective_gop == 25


def test_an_unknown_host_is_a_config_error_at_start() -> None:
    sender = FrameSender("udp://no-such-host.invalid:9000")
    with pytest.raises(ConfigError, match="cannot resolve"):
        sender.start()
    sender.close()
    assert not _sender_threads()


def test_the_send_command_is_a_camera_carrying_its_send_time() -> None:
    port = free_udp_port()
    url = f"udp://127.0.0.1:{port}"
    command = [sys.executable, "-m", "syncstream", "send", url, "--seconds", "3",
               "--size", "320x240", "--fps", "20"]  # fmt: skip
    frames: list[Frame] = []
    with VideoStream(url) as stream:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while len(frames) < 10:
                frames.append(stream.read(timeout=10.0))
        finally:
            out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "sent" in out and "pictures" in out
    for frame in frames:
        assert (frame.width, frame.height) == (320, 240)
        assert frame.capture_time is not None
        # the pattern paints the send time it gives as the capture time
        assert frame.capture_time == pytest.approx(decode_stamp(frame.image), abs=2e-5)


def test_the_send_command_refuses_a_bad_destination() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "syncstream", "send", "udp://127.0.0.1", "--seconds", "1"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2
    assert "destination" in result.stderr
