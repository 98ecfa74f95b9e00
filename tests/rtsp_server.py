"""Tiny RTSP server serving an H.264 test pattern, for syncstream's tests.

This is a standalone script, *not* part of the test suite's import path. It is
built on GStreamer's RTSP server library (``libgstrtspserver``) through
PyGObject, so it must be run by an interpreter that can ``import gi`` -- on
Debian that is the system ``/usr/bin/python3`` with the ``python3-gi`` package,
not a pyenv/venv interpreter.  ``tests/rtsp_fixture.py`` takes care of picking
the interpreter and of starting/stopping this script; see
``tests/RTSP_NOTES.md`` for the Debian packages it needs.

What it serves::

    rtsp://<host>:<port><path>
        videotestsrc (live) -> x264enc (baseline, zerolatency) -> rtph264pay

Options change it: ``--codec h265`` encodes with x265enc -> rtph265pay; ``--stamp``
replaces videotestsrc with pictures carrying their capture time (the wall clock, painted
as a syncstream stamp, see ``syncstream/probe.py``) and makes the RTCP sender reports map
RTP timestamps to that same capture time (``rtcp-sync-send-time=false``), as a camera's
do; ``--audio`` adds a G.711 A-law stream (audiotestsrc -> alawenc -> rtppcmapay);
``--sub 320x240`` adds a second profile of the same camera on ``--sub-path`` (``/sub``), as
an IP camera's sub stream: the same pictures at that size, and with ``--stamp`` the very
same capture instants as the main mount (one clock pushes every client's pictures).

Each client gets its own pipeline by default (``--shared`` to share one), so
every new connection starts with SPS/PPS and a key frame.  Both RTP/UDP and
RTP/TCP (interleaved) transports are offered.

Protocol with the parent process:

* when the server socket is listening, one line is printed on stdout::

      READY rtsp://127.0.0.1:54321/test

  (with ``--port 0`` the kernel picks a free port; the line has the real one);
* SIGTERM or SIGINT stop the server cleanly (exit status 0);
* with ``--exit-on-stdin-eof`` the server also stops when its stdin reaches
  end-of-file, i.e. when the parent that holds the pipe dies -- so a crashed
  test run cannot leave an orphaned server behind;
* failures are reported on stderr with a non-zero exit status (2: bad
  arguments or cannot bind, 3: GStreamer/PyGObject or a required element is
  missing).

``--check`` only verifies that everything needed is installed, prints ``OK``
and exits 0 (or explains what is missing on stderr and exits 3).

Example::

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /test
    ffprobe -rtsp_transport tcp rtsp://127.0.0.1:8554/test
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

#: GStreamer elements the served pipeline is built from (and the plugin
#: package that provides each, on Debian).
REQUIRED_ELEMENTS: dict[str, str] = {
    "videotestsrc": "gstreamer1.0-plugins-base",
    "capsfilter": "libgstreamer1.0-0 (coreelements)",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "rtph264pay": "gstreamer1.0-plugins-good",
}

#: Further elements for some options: (option, value) -> {element: package}.
OPTIONAL_ELEMENTS: dict[tuple[str, object], dict[str, str]] = {
    ("codec", "h265"): {
        "x265enc": "gstreamer1.0-plugins-bad",
        "rtph265pay": "gstreamer1.0-plugins-good",
    },
    ("stamp", True): {"appsrc": "gstreamer1.0-plugins-base"},
    ("audio", True): {
        "audiotestsrc": "gstreamer1.0-plugins-base",
        "alawenc": "gstreamer1.0-plugins-good",
        "rtppcmapay": "gstreamer1.0-plugins-good",
    },
}

#: The stamp painted with ``--stamp``: the layout of syncstream.probe.encode_stamp (a guard
#: row and 64 bits: microseconds since the epoch and a CRC-12), in pure Python because this
#: interpreter has no numpy. The tests read it back with syncstream.probe.decode_stamp.
STAMP_COLUMNS, STAMP_ROWS, STAMP_BLOCK_DIVISOR = 32, 3, 40
STAMP_GUARD = 0xE2B4_1D69
STAMP_TIME_BITS, STAMP_CHECK_BITS = 52, 12
STAMP_CRC12_POLY, STAMP_CHECK_XOR = 0x80F, 0xA5C
STAMP_BLACK, STAMP_WHITE = 16, 235

#: UDP port range for RTP/RTCP when a client asks for UDP transport.
UDP_PORT_MIN, UDP_PORT_MAX = 20000, 59999

PATTERNS = (
    "smpte",
    "ball",
    "snow",
    "black",
    "white",
    "red",
    "green",
    "blue",
    "checkers-8",
    "circular",
    "gradient",
    "pinwheel",
    "spokes",
    "bar",
)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve an H.264 test pattern over RTSP (GStreamer)."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="IP address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8554,
        help="TCP port for RTSP; 0 = pick a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--path", default="/test", help="mount point, e.g. /test (default: %(default)s)"
    )
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument(
        "--fps", type=int, default=25, help="frames per second (integer, default: %(default)s)"
    )
    parser.add_argument(
        "--bitrate", type=int, default=1000, help="H.264 bitrate in kbit/s (default: %(default)s)"
    )
    parser.add_argument(
        "--gop", type=int, default=0, help="max frames between key frames; 0 = one second (default)"
    )
    parser.add_argument(
        "--pattern",
        default="ball",
        choices=PATTERNS,
        help="videotestsrc pattern (default: %(default)s; "
        "'ball' moves, so consecutive frames differ)",
    )
    parser.add_argument(
        "--codec", default="h264", choices=("h264", "h265"), help="video codec (default: h264)"
    )
    parser.add_argument(
        "--stamp",
        action="store_true",
        help="paint each picture's capture time (a syncstream stamp) and send RTCP sender "
        "reports on the capture time",
    )
    parser.add_argument("--audio", action="store_true", help="add a G.711 A-law audio stream")
    parser.add_argument(
        "--sub",
        metavar="WxH",
        help="also serve the camera's sub profile at this size on --sub-path; with --stamp "
        "its pictures have the main mount's capture instants",
    )
    parser.add_argument(
        "--sub-path", default="/sub", help="mount point of the sub profile (default: /sub)"
    )
    parser.add_argument(
        "--transports",
        default="both",
        choices=("both", "udp", "tcp"),
        help="RTP transports offered to clients (default: both)",
    )
    parser.add_argument(
        "--shared", action="store_true", help="share one pipeline between all clients"
    )
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="stop when stdin is closed (parent died)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only check that the dependencies are installed"
    )
    args = parser.parse_args(argv)

    if not 0 <= args.port <= 65535:
        parser.error("--port must be in 0..65535")
    if not args.path.startswith("/") or len(args.path) < 2:
        parser.error("--path must start with '/' and not be just '/'")
    for name in ("width", "height", "fps", "bitrate"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.gop < 0:
        parser.error("--gop must be >= 0")
    if args.width % 2 or args.height % 2:
        parser.error("--width and --height must be even (I420 video)")
    args.sub_size = None
    if args.sub is not None:
        try:
            sub_width, sub_height = (int(part) for part in args.sub.lower().split("x"))
        except ValueError:
            parser.error("--sub must be WIDTHxHEIGHT, e.g. 320x240")
        if sub_width <= 0 or sub_height <= 0 or sub_width % 2 or sub_height % 2:
            parser.error("--sub: width and height must be positive and even (I420 video)")
        if not args.sub_path.startswith("/") or args.sub_path in ("/", args.path):
            parser.error("--sub-path must start with '/' and differ from --path")
        args.sub_size = (sub_width, sub_height)
    return args


def _import_gst(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Import GLib, Gst and GstRtspServer; exit with status 3 if unavailable."""
    try:
        import gi  # type: ignore[import-not-found, unused-ignore]

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import (  # type: ignore[import-not-found, unused-ignore]
            GLib,
            Gst,
            GstRtspServer,
        )
    except (ImportError, ValueError) as exc:
        print(
            f"rtsp_server: cannot load GStreamer RTSP server bindings: {exc}\n"
            "  (needs python3-gi, gir1.2-gst-rtsp-server-1.0; run with "
            "Debian's /usr/bin/python3)",
            file=sys.stderr,
        )
        sys.exit(3)
    Gst.init(None)
    needed = dict(REQUIRED_ELEMENTS)
    for (option, value), elements in OPTIONAL_ELEMENTS.items():
        if getattr(args, option) == value:
            needed.update(elements)
    missing = [
        f"{element} ({package})"
        for element, package in needed.items()
        if Gst.ElementFactory.find(element) is None
    ]
    if missing:
        print("rtsp_server: missing GStreamer elements: " + ", ".join(missing), file=sys.stderr)
        sys.exit(3)
    return GLib, Gst, GstRtspServer


def _launch_line(args: argparse.Namespace, size: tuple[int, int]) -> str:
    gop = args.gop or args.fps
    width, height = size
    caps = f"video/x-raw,format=I420,width={width},height={height},framerate={args.fps}/1"
    if args.stamp:
        source = (
            "appsrc name=stampsrc is-live=true do-timestamp=true format=time"
            f" stream-type=seekable caps={caps}"
        )
    else:
        source = f"videotestsrc is-live=true pattern={args.pattern} ! {caps}"
    if args.codec == "h265":
        encode = (
            f"x265enc tune=zerolatency speed-preset=ultrafast bitrate={args.bitrate}"
            f" key-int-max={gop} ! rtph265pay name=pay0 pt=96 config-interval=-1"
        )
    else:
        encode = (
            f"x264enc tune=zerolatency speed-preset=ultrafast threads=1"
            f" bitrate={args.bitrate} key-int-max={gop}"
            " ! video/x-h264,profile=baseline"
            " ! rtph264pay name=pay0 pt=96 config-interval=-1"
        )
    audio = ""
    if args.audio:
        audio = (
            " audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=8000,channels=1"
            " ! alawenc ! rtppcmapay name=pay1 pt=8"
        )
    return f"( {source} ! {encode}{audio} )"


def _stamp_band(width: int, micros: int) -> bytes:
    """The luma rows of a stamp of ``micros`` (syncstream.probe.encode_stamp's layout)."""
    crc = 0
    for shift in range(STAMP_TIME_BITS - 1, -1, -1):
        feedback = ((micros >> shift) & 1) ^ ((crc >> (STAMP_CHECK_BITS - 1)) & 1)
        crc = (crc << 1) & 0xFFF
        if feedback:
            crc ^= STAMP_CRC12_POLY
    word = (STAMP_GUARD << 64) | (micros << STAMP_CHECK_BITS) | (crc ^ STAMP_CHECK_XOR)
    bits = STAMP_COLUMNS * STAMP_ROWS
    xs = [round(i * width / STAMP_COLUMNS) for i in range(STAMP_COLUMNS + 1)]
    block_height = width / STAMP_BLOCK_DIVISOR
    ys = [round(i * block_height) for i in range(STAMP_ROWS + 1)]
    band = bytearray()
    for row in range(STAMP_ROWS):
        line = bytearray()
        for column in range(STAMP_COLUMNS):
            bit = (word >> (bits - 1 - row * STAMP_COLUMNS - column)) & 1
            line += bytes([STAMP_WHITE if bit else STAMP_BLACK]) * (xs[column + 1] - xs[column])
        line += bytes([STAMP_BLACK]) * (width - xs[-1])
        band += line * (ys[row + 1] - ys[row])
    return bytes(band)


class StampedPictures:
    """The I420 pictures of one client's media, each stamped with its capture time.

    A picture is captured when it is pushed: ``do-timestamp`` gives it the pipeline's time
    of the push as PTS, and the capture time painted into it is the wall clock that the
    :class:`CameraClock` read just before. A ramp scrolls below the stamp so that the
    encoder has motion to code.
    """

    def __init__(self, gst: Any, appsrc: Any, size: tuple[int, int]) -> None:
        self._gst, self._appsrc = gst, appsrc
        self._width, self._height = size
        ramp = bytes((16 + 200 * x // self._width) for x in range(self._width))
        self._ramp = ramp * 2
        self._chroma = bytes([128]) * (self._width * self._height // 2)
        self._gone = False

    def stop(self) -> None:
        """The media was unprepared (its client left): no more pictures."""
        self._gone = True

    def state(self) -> str:
        """``"gone"`` once the media is unprepared, ``"playing"``, or ``"waiting"``.

        Not the appsrc's NULL state: a media is still NULL before it is prepared."""
        if self._gone:
            return "gone"
        state = self._appsrc.get_state(0)[1]
        return "playing" if state == self._gst.State.PLAYING else "waiting"

    def picture(self, micros: int, count: int) -> Any:
        """The buffer of picture number ``count``, captured at ``micros`` (epoch µs)."""
        width, height = self._width, self._height
        band = _stamp_band(width, micros)
        shift = (count * 4) % width
        line = self._ramp[shift : shift + width]
        luma = band + line * (height - len(band) // width)
        return self._gst.Buffer.new_wrapped(luma + self._chroma)

    def push(self, buffer: Any) -> bool:
        """Hand ``buffer`` to the encoder; False when the media no longer takes pictures."""
        return bool(self._appsrc.emit("push-buffer", buffer) == self._gst.FlowReturn.OK)


class CameraClock:
    """The camera's shutter: every frame interval it reads the wall clock once and gives
    every client's media, main and sub profile alike, a picture of that capture instant.

    The pictures are painted first and pushed together, so that the PTS each pipeline
    takes at the push lies as close as possible to the painted capture time.
    """

    def __init__(self, glib: Any, fps: int) -> None:
        self._feeds: list[StampedPictures] = []
        self._count = 0
        self._source = glib.timeout_add(max(1, round(1000 / fps)), self._tick)

    def add(self, feed: StampedPictures) -> None:
        """Give ``feed`` a picture at every capture instant from now on, until it is gone."""
        self._feeds.append(feed)

    def _tick(self) -> bool:
        states = [(feed, feed.state()) for feed in self._feeds]
        self._feeds = [feed for feed, state in states if state != "gone"]
        playing = [feed for feed, state in states if state == "playing"]
        if not playing:
            return True
        self._count += 1
        micros = round(time.time() * 1_000_000)
        pictures = [(feed, feed.picture(micros, self._count)) for feed in playing]
        refused = {id(feed) for feed, buffer in pictures if not feed.push(buffer)}
        self._feeds = [feed for feed in self._feeds if id(feed) not in refused]
        return True


def _configure_media(gst: Any, clock: CameraClock, size: tuple[int, int], media: Any) -> None:
    """Per client media: feed its appsrc from ``clock``, send RTCP sender reports on the
    capture time."""
    element = media.get_element()
    appsrc = element.get_by_name("stampsrc")
    # With a second stream the media is seekable and PLAY seeks it to its start: a live
    # source ignores that (answering it keeps PLAY from failing).
    appsrc.connect("seek-data", lambda _appsrc, _offset: True)
    pipeline = element.get_parent()

    def added(_bin: Any, child: Any) -> None:
        if child.get_factory() is not None and child.get_factory().get_name() == "rtpbin":
            # RFC 3550: the report's NTP time is the sampling instant of its RTP timestamp.
            child.set_property("rtcp-sync-send-time", False)

    pipeline.connect("element-added", added)
    feed = StampedPictures(gst, appsrc, size)
    media.connect("unprepared", lambda _media: feed.stop())
    clock.add(feed)


def _media_factory(
    rtsp: Any,
    gst: Any,
    args: argparse.Namespace,
    size: tuple[int, int],
    clock: CameraClock | None,
    pool: Any,
) -> Any:
    """The media factory of one profile (mount) of the camera, at ``size``."""
    factory = rtsp.RTSPMediaFactory()
    factory.set_launch(_launch_line(args, size))
    factory.set_shared(args.shared)
    if args.transports != "both":
        from gi.repository import GstRtsp  # type: ignore[import-not-found, unused-ignore]

        lower = GstRtsp.RTSPLowerTrans
        factory.set_protocols(lower.TCP if args.transports == "tcp" else lower.UDP)
    if clock is not None:
        factory.connect(
            "media-configure", lambda _factory, media: _configure_media(gst, clock, size, media)
        )
    factory.set_address_pool(pool)
    return factory


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    GLib, Gst, GstRtspServer = _import_gst(args)
    if args.check:
        print("OK", flush=True)
        return 0

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))

    # One camera, one clock: every client of every profile gets the same capture instants.
    clock = CameraClock(GLib, args.fps) if args.stamp else None
    # RTP/RTCP-over-UDP sockets: take them from a loopback-only pool, otherwise
    # GStreamer binds them to the wildcard addresses (0.0.0.0 and ::).
    pool = GstRtspServer.RTSPAddressPool()
    pool.add_range(args.host, args.host, UDP_PORT_MIN, UDP_PORT_MAX, 0)
    profiles = [(args.path, (args.width, args.height))]
    if args.sub_size is not None:
        profiles.append((args.sub_path, args.sub_size))
    for path, size in profiles:
        server.get_mount_points().add_factory(
            path, _media_factory(GstRtspServer, Gst, args, size, clock, pool)
        )

    loop = GLib.MainLoop()
    try:
        # Binds the listening socket now, so errors come back as GLib.Error.
        source = server.create_source(None)
    except GLib.Error as exc:  # e.g. "Address already in use"
        print(f"rtsp_server: cannot listen: {exc.message}", file=sys.stderr)
        return 2
    source.attach(None)

    def stop(*_: object) -> bool:
        loop.quit()
        return False  # GLib.SOURCE_REMOVE

    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, stop, None)
    if args.exit_on_stdin_eof:
        # Fires on readability (EOF) or hang-up of the pipe; the parent never
        # writes to it, so any event means it has gone away.
        GLib.io_add_watch(
            GLib.IOChannel.unix_new(sys.stdin.fileno()),
            GLib.PRIORITY_DEFAULT,
            GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR,
            stop,
        )

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"READY rtsp://{host}:{server.get_bound_port()}{args.path}", flush=True)
    try:
        loop.run()
    finally:
        # Drop connected clients (and so their pipelines) before exiting.
        server.client_filter(lambda _server, _client, *_: GstRtspServer.RTSPFilterResult.REMOVE)
        source.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
