"""The ffmpeg command that streams a camera as low-delay MPEG-TS over UDP.

The sender writes its wall clock into every frame's PTS, which is how a receiver learns
when a frame was captured rather than when it arrived:

- ``setpts=RTCTIME*9/100`` stamps each frame with the wall clock in 90 kHz ticks
  (RTCTIME is in microseconds) right after capture, ``settb=1/90000`` first so the
  stamp is not rounded to the frame rate;
- ``-enc_time_base 1:90000``, ``-copyts`` and ``-mpegts_copyts 1`` keep the stamp
  untouched through the encoder and the muxer (no shift to zero);
- ``-fps_mode passthrough`` stops ffmpeg from dropping or duplicating frames to fit a
  nominal rate, which would rewrite timestamps;
- ``-muxdelay 0`` and ``-omit_video_pes_length 0`` let the receiver's demuxer hand over
  each frame as soon as its last packet arrives: with the PES length omitted (ffmpeg's
  default) a frame is only known to be complete when the next one starts, which costs a
  whole frame interval (measured on loopback: 70 ms -> 37 ms median).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from ..config import Codec, SenderConfig
from ..errors import ConfigError

__all__ = [
    "clock_text_filter",
    "free_udp_port",
    "input_args",
    "mpegts_udp_output_args",
    "receiver_address",
    "sender_argv",
    "simulated_camera_argv",
    "testsrc_input_args",
]


def testsrc_input_args(
    size: tuple[int, int] = (640, 480), fps: float = 30.0, pattern: str = "testsrc"
) -> list[str]:
    """Input arguments for one of ffmpeg's lavfi test patterns paced at real time."""
    width, height = size
    return ["-re", "-f", "lavfi", "-i", f"{pattern}=size={width}x{height}:rate={fps}"]


def mpegts_udp_output_args(
    url: str,
    *,
    codec: Codec = "libx264",
    gop: int = 30,
    bitrate: str | None = None,
    extra_filters: Sequence[str] = (),
    pkt_size: int = 1316,
    pes_length: bool = True,
    stamp_wallclock: bool = True,
    overlay_filters: Sequence[str] = (),
) -> list[str]:
    """Output arguments: stamp the wall clock into the PTS, encode, mux MPEG-TS to ``url``.

    ``url`` is ``udp://host:port``; ``pkt_size`` (7 TS packets of 188 bytes) is appended.
    ``pes_length=False`` keeps ffmpeg's default of omitting the video PES length, which
    makes receivers wait for the next frame before handing over the current one.
    ``stamp_wallclock=False`` keeps the input's own timestamps, for inputs that already
    carry the wall clock (V4L2 with ``-ts abs``). ``extra_filters`` run before the stamp,
    ``overlay_filters`` after it (they may read the wall clock as ``t``).
    """
    filters = [*extra_filters, "settb=1/90000"]
    if stamp_wallclock:
        filters.append("setpts=RTCTIME*9/100")
    filters += overlay_filters
    args = ["-vf", ",".join(filters)]
    if codec != "mpeg2video":
        # MPEG-2 only accepts standard frame rates as its time base: its stamps are
        # rounded to the frame interval.
        args += ["-enc_time_base", "1:90000"]
    args += ["-c:v", codec]
    if codec == "libx264":
        args += ["-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"]
    elif codec == "mjpeg":
        args += ["-pix_fmt", "yuvj420p"]
    else:
        args += ["-pix_fmt", "yuv420p", "-bf", "0"]
    args += ["-g", str(gop)]
    if bitrate is not None:
        args += ["-b:v", bitrate]
    args += [
        "-copyts",
        "-mpegts_copyts", "1",
        "-fps_mode", "passthrough",
        "-muxdelay", "0",
        "-omit_video_pes_length", "0" if pes_length else "1",
        "-flush_packets", "1",
        "-f", "mpegts",
        f"{url}?pkt_size={pkt_size}",
    ]  # fmt: skip
    return args


def simulated_camera_argv(
    url: str,
    *,
    size: tuple[int, int] = (640, 480),
    fps: float = 30.0,
    pattern: str = "testsrc",
) -> list[str]:
    """The whole ffmpeg command of a simulated camera: a test pattern sent to ``url``."""
    return sender_argv(SenderConfig(destination=url, input=pattern, size=size, fps=fps))


def clock_text_filter(height: int) -> str:
    """A drawtext filter that burns the stamped wall clock (UTC, ms) into the top right.

    The top right, because a wall labels each tile with the camera's name at the top left.
    """
    # Reads the frame's PTS, which holds the wall clock once setpts=RTCTIME ran; the
    # backslashes are filtergraph escaping (argv, no shell involved).
    text = r"%{pts\:gmtime\:0\:%H\\\:%M\\\:%S}.%{eif\:mod(t*1000\,1000)\:d\:3}"
    size = max(12, height // 16)
    return (
        f"drawtext=text='{text}':x=w-tw-{size // 2}:y={size // 2}:fontsize={size}"
        ":fontcolor=white:box=1:boxcolor=black@0.6"
    )


def input_args(config: SenderConfig) -> list[str]:
    """ffmpeg's input arguments for a test pattern, a V4L2 device or a file."""
    width, height = config.size
    if config.input_kind == "pattern":
        return testsrc_input_args(config.size, config.fps, config.input)
    if config.input_kind == "device":
        # -ts abs: the kernel's capture time as a wall clock (monotonic stamps of UVC
        # drivers are converted), so the PTS says when the sensor took the frame.
        args = ["-f", "v4l2", "-ts", "abs"]
        if config.input_format is not None:
            args += ["-input_format", config.input_format]
        return [*args, "-framerate", f"{config.fps:g}", "-video_size", f"{width}x{height}",
                "-i", config.input]  # fmt: skip
    loop = ["-stream_loop", "-1"] if config.loop else []
    return ["-re", *loop, "-i", config.input]


def sender_argv(config: SenderConfig) -> list[str]:
    """The whole ffmpeg command (an argv list, never a shell string) for ``config``.

    Raises ``ConfigError`` when ``config.destination`` is not set.
    """
    if config.destination is None:
        raise ConfigError("SenderConfig.destination is not set: where should ffmpeg send to?")
    width, height = config.size
    extra = [f"scale={width}:{height}"] if config.input_kind == "file" else []
    overlay = [clock_text_filter(height)] if config.clock_text else []
    return [
        config.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
        *input_args(config),
        *mpegts_udp_output_args(
            config.destination,
            codec=config.codec,
            gop=config.effective_gop,
            bitrate=config.bitrate,
            extra_filters=extra,
            overlay_filters=overlay,
            pkt_size=config.pkt_size,
            stamp_wallclock=config.input_kind != "device",
        ),
    ]  # fmt: skip


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` that nobody listens on right now, for a local sender."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def receiver_address(host: str, port: int = 9) -> str:
    """Our address on the route to ``host``: where that host's sender should send to.

    A UDP socket connected to the host is bound by the kernel to the local address of the
    outgoing route; no packet is sent. (``gethostbyname(gethostname())`` gives 127.0.1.1
    on Debian, which no other host can reach.)
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve sender host {host!r}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.connect(address)
        except OSError as exc:
            raise ConfigError(f"no route to sender host {host!r}: {exc}") from exc
        return str(sock.getsockname()[0])
