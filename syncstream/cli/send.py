"""``syncstream send URL``: a camera from Python: a test pattern, a webcam or a file sent
to ``udp://host:port`` by a :class:`~syncstream.senders.FrameSender`.

The test pattern is made here, with numpy: a scrolling texture, colour bars and the send
time painted into the top band as the latency probe's stamp (:mod:`syncstream.probe`), so
``syncstream probe`` at the receiver measures glass-to-glass latency from it.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..config import is_device_url
from ..errors import ConfigError, ReadTimeout, StreamEnded, SyncStreamError
from ..frames import BGRImage
from ..probe import encode_stamp
from ..senders.frame_sender import FrameSender, FrameSenderStats
from ..stream import VideoStream
from .console import StopSignals

__all__ = ["pattern_picture", "run_send"]

#: BGR colour bars under the stamp band: white, yellow, cyan, green, magenta, red, blue.
_BARS = np.array(
    [[235, 235, 235], [16, 235, 235], [235, 235, 16], [16, 235, 16], [235, 16, 235],
     [16, 16, 235], [235, 16, 16]],
    dtype=np.uint8,
)  # fmt: skip
_READ_TIMEOUT = 0.5  # a read gives up this often to look at the signals and the clock
_SIZE = (640, 480)  # the test pattern's size and rate, unless told
_FPS = 30.0


def pattern_picture(size: tuple[int, int], index: int, stamp_time: float) -> BGRImage:
    """The test pattern's picture number ``index`` (``size`` is width, height): colour
    bars that scroll one step per picture, a moving square, and ``stamp_time`` painted
    into the top band (:func:`~syncstream.probe.encode_stamp`)."""
    width, height = size
    columns = (np.arange(width) + index * max(1, width // 160)) * len(_BARS) // width
    picture = np.repeat(_BARS[columns % len(_BARS)][None, :, :], height, axis=0)
    side = max(2, min(width, height) // 6)
    x = (index * 4) % max(1, width - side)
    y = height // 2 - side // 2
    picture[y : y + side, x : x + side] = 128
    luma = picture[:, :, 0]  # the stamp is grey: painted into one channel, copied to all
    encode_stamp(luma, stamp_time)
    band = int(np.ceil(3 * width / 40))
    picture[:band, :, 1] = picture[:band, :, 0]
    picture[:band, :, 2] = picture[:band, :, 0]
    return picture


def run_send(
    destination: str,
    *,
    source: str | None,
    seconds: float | None,
    size: tuple[int, int] | None,
    fps: float | None,
    input_format: str | None = None,
    bitrate: str | None = None,
) -> int:
    """Send the test pattern (``source`` None) or ``source`` (a webcam index, a device
    path or a video file, read by a :class:`~syncstream.VideoStream`) to ``destination``
    for ``seconds`` (None: until a stop signal). ``size`` and ``fps`` are the pattern's
    (default 640x480 at 30), what a webcam is asked for, and a file's pictures are scaled
    to ``size``. Exit status: 0 once pictures were sent, 1 when none were or the source
    failed, 2 for a bad option."""
    try:
        sender = FrameSender(destination, fps=fps or _FPS, size=size, bitrate=bitrate)
        stream = None if source is None else _stream(source, size, fps, input_format)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    what = "test pattern" if source is None else source
    shown = "until stopped" if seconds is None else f"for {seconds:g} s"
    print(f"sending {what} to {destination} {shown} (Ctrl-C stops)", flush=True)
    started = time.monotonic()
    try:
        with StopSignals() as stop, sender:
            if stream is None:
                _send_pattern(sender, stop, seconds, size or _SIZE, fps or _FPS)
            else:
                with stream:
                    _send_stream(sender, stream, stop, seconds)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SyncStreamError as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        _summary(sender.stats, time.monotonic() - started)
        return 1
    stats = sender.stats
    _summary(stats, time.monotonic() - started)
    return 0 if stats.sent else 1


def _stream(
    source: str, size: tuple[int, int] | None, fps: float | None, input_format: str | None
) -> VideoStream:
    """The reader of a webcam (asked for ``size``, ``fps`` and ``input_format``) or of a
    file (looped, paced, each picture sent as captured when it is read)."""
    if is_device_url(source):
        return VideoStream(source, size=size, fps=fps, input_format=input_format)
    if input_format is not None:
        raise ConfigError("--input-format is for webcams only")
    return VideoStream(source, loop=True, capture_clock="none")


def _send_pattern(
    sender: FrameSender,
    stop: StopSignals,
    seconds: float | None,
    size: tuple[int, int],
    fps: float,
) -> None:
    """The test pattern, ``fps`` pictures a second, each stamped with its send time."""
    period = 1.0 / fps
    start = next_mono = time.monotonic()
    index = 0
    while seconds is None or time.monotonic() - start < seconds:
        now = time.time()
        sender.send(pattern_picture(size, index, now), capture_time=now)
        index += 1
        next_mono += period
        delay = next_mono - time.monotonic()
        if delay < -period:  # fell behind (a stalled machine): skip ahead, no burst
            next_mono = time.monotonic()
        elif stop.wait(max(0.0, delay)):
            return


def _send_stream(
    sender: FrameSender, stream: VideoStream, stop: StopSignals, seconds: float | None
) -> None:
    """Every frame of ``stream``, with its capture time (its arrival time without one)."""
    start = time.monotonic()
    while not stop.event.is_set() and (seconds is None or time.monotonic() - start < seconds):
        try:
            frame = stream.read(timeout=_READ_TIMEOUT)
        except ReadTimeout:
            continue
        except StreamEnded:
            return
        capture_time = frame.capture_time if frame.capture_time is not None else frame.arrival_time
        sender.send(frame, capture_time=capture_time)


def _summary(stats: FrameSenderStats, elapsed: float) -> None:
    print(
        f"sent {stats.sent} pictures in {elapsed:.1f} s ({stats.datagrams} datagrams, "
        f"{stats.bytes_sent / 1e6:.1f} MB); dropped {stats.dropped} while encoding, "
        f"{stats.send_errors} datagrams refused",
        flush=True,
    )
