"""Webcam options (size, fps, input_format): checked when built, handed to the opener.

This machine has no webcam (and no v4l2loopback), so what reaches the device is checked
where the backends build their open: the V4L2 demuxer options PyAV opens the device with,
and the properties OpenCV sets on it; a missing device fails like any source.
"""

from __future__ import annotations

import os
from typing import Any

import cv2
import pytest

from syncstream import (
    Camera,
    CameraStream,
    ConfigError,
    SenderConfig,
    StreamConfig,
    StreamFailed,
    StreamGroup,
    UnsupportedSource,
    VideoStream,
)
from syncstream.senders import free_udp_port
from syncstream.sources import create_source
from syncstream.sources.opencv import OpenCVSource
from syncstream.sources.pyav import PyAVSource


def test_a_webcam_index_with_options_reaches_pyav_as_v4l2_options() -> None:
    stream = VideoStream(0, size=(1280, 720), fps=30, input_format="mjpeg")
    source = create_source(stream.config)
    assert isinstance(source, PyAVSource) and source.location == "/dev/video0"
    assert source.device_options == {
        "ts": "abs",  # the kernel's capture time as a wall clock, as the ffmpeg sender reads
        "video_size": "1280x720",
        "framerate": "30",
        "input_format": "mjpeg",
    }
    plain = create_source(StreamConfig(url="/dev/v4l/by-id/usb-cam-video-index0"))
    assert isinstance(plain, PyAVSource) and plain.device_options == {"ts": "abs"}
    udp = create_source(StreamConfig(url="udp://127.0.0.1:9000"))
    assert isinstance(udp, PyAVSource) and udp.device_options == {}


def test_a_webcam_index_with_options_reaches_opencv_as_properties() -> None:
    config = StreamConfig(
        url="2", backend="opencv", size=(640, 360), fps=15, input_format="yuyv422"
    )
    source = create_source(config)
    assert isinstance(source, OpenCVSource) and source.location == 2
    assert source.device_properties == [
        (cv2.CAP_PROP_FOURCC, float(cv2.VideoWriter.fourcc(*"YUYV"))),
        (cv2.CAP_PROP_FRAME_WIDTH, 640.0),
        (cv2.CAP_PROP_FRAME_HEIGHT, 360.0),
        (cv2.CAP_PROP_FPS, 15.0),
    ]
    with pytest.raises(UnsupportedSource, match="p010le"):  # FFmpeg knows it, V4L2 codes not
        create_source(StreamConfig(url="0", backend="opencv", input_format="p010le"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": (0, 720)}, "size"),
        ({"size": (1280, 9000)}, "size"),
        ({"fps": 0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"input_format": "bogus"}, "input_format.*neither a pixel format nor a decoder"),
        ({"input_format": "MJPG"}, "input_format"),
    ],
)
def test_bad_webcam_options_fail_when_built(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VideoStream(0, **options)


def test_webcam_options_are_refused_for_sources_that_are_no_webcam() -> None:
    with pytest.raises(ConfigError, match="size: for webcams only"):
        VideoStream("udp://127.0.0.1:9000", size=(640, 480))
    with pytest.raises(ConfigError, match=r"fps: for webcams only.*'rtsp://cam/x'"):
        Camera(name="door", url="rtsp://user:secret@cam/x", fps=30)  # no password shown
    with pytest.raises(ConfigError, match="input_format: for webcams only"):
        Camera(
            name="door", sender=SenderConfig(input="/dev/video0"), port=9000, input_format="mjpeg"
        )
    with pytest.raises(ConfigError, match="no further streams"):
        Camera(
            name="desk", url="0", size=(640, 480),
            streams={"sub": CameraStream(url="udp://127.0.0.1:9001")},
        )  # fmt: skip


def test_a_group_camera_hands_its_webcam_options_to_its_stream() -> None:
    camera = Camera(name="desk", url="/dev/video0", size=(1280, 720), fps=30)
    with StreamGroup(
        [camera, Camera(name="other", url=f"udp://127.0.0.1:{free_udp_port()}")]
    ) as group:
        config = group.streams["desk"].config
    assert (config.size, config.fps, config.input_format) == ((1280, 720), 30.0, None)


@pytest.mark.skipif(os.path.exists("/dev/video97"), reason="/dev/video97 exists here")
def test_a_missing_webcam_fails_with_its_device_named() -> None:
    options: dict[str, Any] = {"size": (1280, 720), "fps": 30, "input_format": "mjpeg"}
    with VideoStream(97, max_reconnects=0, **options) as stream:
        with pytest.raises(StreamFailed, match="/dev/video97"):
            stream.read(timeout=10.0)
