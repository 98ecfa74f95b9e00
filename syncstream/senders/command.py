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
    "decimate_filter",
    "encoder_args",
    "free_udp_port",
    "input_args",
    "mpegts_udp_mux_args",
    "mpegts_udp_output_args",
    "receiver_address",
    "sender_argv",
    "simulated_camera_argv",
    "stamp_filters",
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
    fps: float = 30.0,
) -> list[str]:
    """Output arguments: stamp the wall clock into the PTS, encode, mux MPEG-TS to ``url``.

    ``url`` is ``udp://host:port``; ``pkt_size`` (7 TS packets of 188 bytes) is appended.
    ``pes_length=False`` keeps ffmpeg's default of omitting the video PES length, which
    makes receivers wait for the next frame before handing over the current one.
    ``stamp_wallclock=False`` keeps the input's own timestamps, for inputs that already
    carry the wall clock (V4L2 with ``-ts abs``). ``extra_filters`` run before the stamp,
    ``overlay_filters`` after it (they may read the wall clock as ``t``). ``fps`` is the
    input's frame rate: MPEG-2 stamps are on its grid.
    """
    filters = [*extra_filters, *stamp_filters(stamp_wallclock), *slot_filters(codec, fps),
               *overlay_filters]  # fmt: skip
    return [
        "-vf", ",".join(filters),
        *encoder_args(codec, gop, bitrate, fps),
        "-copyts",
        *mpegts_udp_mux_args(url, pkt_size=pkt_size, pes_length=pes_length),
    ]  # fmt: skip


def stamp_filters(stamp_wallclock: bool = True) -> list[str]:
    """Filters that give each frame the wall clock as its PTS, in 90 kHz ticks."""
    return ["settb=1/90000", "setpts=RTCTIME*9/100"] if stamp_wallclock else ["settb=1/90000"]


def slot_filters(codec: Codec, fps: float) -> list[str]:
    """For MPEG-2: pass one frame per 1/``fps`` slot of the wall clock.

    MPEG-2 only takes a standard frame rate as its time base, so its stamps are rounded
    to the frame interval, and the encoder refuses a frame whose rounded stamp equals the
    previous one (two frames captured close together, a burst at start). The frame that
    would be refused is left out instead; the stamps of the others stay on the wall clock
    (no drift when a camera runs slightly faster than ``fps``).
    """
    if codec != "mpeg2video":
        return []
    slot = f"{fps:g}/90000"
    return [
        f"select='isnan(prev_selected_pts)+gt(round(pts*{slot}),round(prev_selected_pts*{slot}))'"
    ]


def encoder_args(
    codec: Codec, gop: int, bitrate: str | None = None, fps: float = 30.0
) -> list[str]:
    """One output's encoder: low delay, the 90 kHz stamps kept, a keyframe every ``gop``.

    ``fps``: the input's frame rate, MPEG-2's time base (its stamps are rounded to it).
    """
    args: list[str] = []
    if codec == "mpeg2video":
        args += ["-r", f"{fps:g}"]  # with -fps_mode passthrough: the time base only
    else:
        args += ["-enc_time_base", "1:90000"]
    args += ["-c:v", codec]
    if codec == "libx264":
        args += ["-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"]
    else:
        # no B-frames, and low_delay: else the MPEG-2 encoder holds two frames back
        args += ["-pix_fmt", "yuv420p", "-bf", "0", "-flags", "+low_delay"]
    args += ["-g", str(gop)]
    if bitrate is not None:
        args += ["-b:v", bitrate]
    return args


def mpegts_udp_mux_args(url: str, *, pkt_size: int = 1316, pes_length: bool = True) -> list[str]:
    """One output's MPEG-TS muxer, stamps untouched, each frame flushed, sent to ``url``."""
    return [
        "-mpegts_copyts", "1",
        "-fps_mode", "passthrough",
        "-muxdelay", "0",
        "-omit_video_pes_length", "0" if pes_length else "1",
        "-flush_packets", "1",
        "-f", "mpegts",
        f"{url}?pkt_size={pkt_size}",
    ]  # fmt: skip


def decimate_filter(fps: float) -> str:
    """A filter passing the first frame of each 1/``fps`` slot of the wall clock, untouched.

    Unlike ffmpeg's ``fps`` filter it does not retime frames: each frame it passes keeps
    its PTS (the capture time), so it is the same instant as in the full-rate stream. And
    the slots are the wall clock's, not the stream's: every camera of a group passes the
    frame it captured just after the same instants (10 fps: just after each tenth of a
    second), so the reduced streams of several cameras stay within one input frame interval
    of each other instead of spreading over the longer reduced interval.
    """
    return f"select='isnan(prev_selected_t)+gt(floor(t*{fps:g}),floor(prev_selected_t*{fps:g}))'"


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

    With ``config.outputs`` the input is read once: its frames are stamped, then split
    into the main stream and one branch per output, each scaled, thinned to its rate,
    encoded and sent on its own, so a frame has the same PTS in every stream.
    Raises ``ConfigError`` when ``config.destination`` is not set.
    """
    if config.destination is None:
        raise ConfigError("SenderConfig.destination is not set: where should ffmpeg send to?")
    width, height = config.size
    extra = [f"scale={width}:{height}"] if config.input_kind == "file" else []
    overlay = [clock_text_filter(height)] if config.clock_text else []
    head = [config.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", *input_args(config)]
    stamp = config.input_kind != "device"
    if not config.outputs:
        return [
            *head,
            *mpegts_udp_output_args(
                config.destination,
                codec=config.codec,
                gop=config.effective_gop,
                bitrate=config.bitrate,
                extra_filters=extra,
                overlay_filters=overlay,
                pkt_size=config.pkt_size,
                stamp_wallclock=stamp,
                fps=config.fps,
            ),
        ]
    branches = len(config.outputs) + 1
    labels = "".join(f"[s{i}]" for i in range(branches))
    graph = [f"[0:v]{','.join([*extra, *stamp_filters(stamp)])},split={branches}{labels}"]
    main_chain = [*slot_filters(config.codec, config.fps), *overlay]
    graph.append(f"[s0]{','.join(main_chain or ['null'])}[v0]")
    outputs = [
        "-map", "[v0]",
        *encoder_args(config.codec, config.effective_gop, config.bitrate, config.fps),
        *mpegts_udp_mux_args(config.destination, pkt_size=config.pkt_size),
    ]  # fmt: skip
    for index, output in enumerate(config.outputs.values(), start=1):
        size = output.size or config.size
        fps = output.fps or config.fps
        codec = output.codec or config.codec
        chain = slot_filters(codec, config.fps)
        if fps < config.fps:  # first: frames left out are not scaled
            chain.append(decimate_filter(fps))
        if size != config.size:
            chain.append(f"scale={size[0]}:{size[1]}")
        if config.clock_text:
            chain.append(clock_text_filter(size[1]))
        graph.append(f"[s{index}]{','.join(chain or ['null'])}[v{index}]")
        gop = output.gop if output.gop is not None else max(1, round(fps))
        outputs += [
            "-map", f"[v{index}]",
            *encoder_args(codec, gop, output.bitrate, config.fps),
            *mpegts_udp_mux_args(output.destination, pkt_size=config.pkt_size),
        ]  # fmt: skip
    return [*head, "-filter_complex", ";".join(graph), "-copyts", *outputs]


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
