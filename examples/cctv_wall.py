"""A CCTV wall: 2 to 16 cameras started over SSH (or simulated here) in one picture.

    python3 examples/cctv_wall.py pi@cam1.local pi@cam2.local:2222 --input /dev/video0
    python3 examples/cctv_wall.py pi@cam{1..9}.local --key ~/.ssh/cams --serve 0.0.0.0:8080
    python3 examples/cctv_wall.py --local --cameras 9 --serve 127.0.0.1:8080
    python3 examples/cctv_wall.py --local --cameras 3 --seconds 10 --snapshot wall.png

The tutorial syncstream grew from ran ffmpeg on two camera hosts through paramiko, read both
streams and put the newest frames side by side. Here a StreamGroup does that work for up to
16 hosts: it starts ffmpeg on every host in parallel, one SSH connection per host (host keys
must be known, or trusted with --trust-unknown-hosts: see docs/senders.md), measures each
host's clock offset, pairs the frames taken at the same instant, and stops every ffmpeg it
started when the example ends (after --seconds, on Ctrl-C or on SIGTERM). A Wall composes
the cameras into a grid, with a NO SIGNAL tile for a silent camera; --serve shows it in a
browser, --snapshot writes its last picture at the end. The cameras, the wall and the web
view are one :class:`syncstream.session.Session`, what ``syncstream run`` runs; its
``snapshot()`` writes the picture. Every second the example prints a status line per camera
and one for the group.

--local runs the cameras as ffmpeg test patterns on this machine, each its own pattern with
its clock burned in (320x240 unless --size says otherwise).
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from types import FrameType

from syncstream import (
    Camera,
    ConfigError,
    GroupConfig,
    GroupStartError,
    SenderConfig,
    Session,
    SessionConfig,
    SSHHost,
    StreamGroup,
    SyncStreamError,
)
from syncstream.cli.args import (
    address_arg,
    image_path_arg,
    port_arg,
    positive_arg,
    size_arg,
    udp_ports,
)
from syncstream.session_config import WallSettings, WebSettings

#: A test pattern per simulated camera, the cheapest to generate first.
PATTERNS = (
    "testsrc", "smptebars", "testsrc2", "rgbtestsrc", "smptehdbars", "pal75bars", "yuvtestsrc",
    "pal100bars", "cellauto", "colorspectrum", "gradients", "sierpinski", "life", "mandelbrot",
)  # fmt: skip
MIN_CAMERAS, MAX_CAMERAS = 2, 16


def build_parser() -> argparse.ArgumentParser:
    """The command line of this example."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "hosts", nargs="*", metavar="[user@]host[:port]", help="camera hosts, 2 to 16 (SSH)"
    )
    parser.add_argument("--local", action="store_true", help="simulated cameras on this machine")
    parser.add_argument(
        "--port-base", type=port_arg, metavar="PORT",
        help="UDP ports PORT, PORT+1, ... for the cameras (default: free ones)",
    )  # fmt: skip
    parser.add_argument(
        "--cameras",
        type=int,
        choices=range(MIN_CAMERAS, MAX_CAMERAS + 1),
        metavar="N",
        help="with --local: how many (2 to 16, default 4)",
    )
    parser.add_argument(
        "--input",
        help="device, file or test pattern on every host (default /dev/video0; "
        "with --local: a different test pattern per camera)",
    )
    parser.add_argument(
        "--size", type=size_arg, metavar="WxH", help="default 640x480, with --local 320x240"
    )
    parser.add_argument("--fps", type=positive_arg, default=30.0, help="frames per second")
    parser.add_argument("--key", metavar="PATH", help="private key file for every host")
    parser.add_argument(
        "--trust-unknown-hosts",
        action="store_true",
        help="accept hosts whose key is not in known_hosts (a warning is logged)",
    )
    parser.add_argument(
        "--serve",
        type=address_arg,
        metavar="HOST:PORT",
        help="serve the wall to browsers (no authentication: keep it on 127.0.0.1 or a "
        "network you trust)",
    )
    parser.add_argument(
        "--snapshot", type=image_path_arg, metavar="PATH", help="write the last wall picture (PNG)"
    )
    parser.add_argument(
        "--seconds", type=positive_arg, metavar="S", help="stop after S seconds (default: Ctrl-C)"
    )
    return parser


def camera_names(hosts: list[SSHHost]) -> list[str]:
    """Each host's name for its tile; a host given twice gets -2, -3, ..."""
    names: list[str] = []
    for host in hosts:
        name, count = host.hostname, 1
        while name in names:
            count += 1
            name = f"{host.hostname}-{count}"
        names.append(name)
    return names


def build_cameras(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Camera]:
    """The cameras the arguments ask for; a bad argument ends the program (exit 2)."""
    if args.local and args.hosts:
        parser.error("give camera hosts or --local, not both")
    if args.cameras is not None and not args.local:
        parser.error("--cameras goes with --local; camera hosts are counted")
    if not args.local and not MIN_CAMERAS <= len(args.hosts) <= MAX_CAMERAS:
        parser.error(f"give 2 to 16 camera hosts, or --local (got {len(args.hosts)} hosts)")
    try:
        if args.local:
            size = args.size or (320, 240)
            ports = udp_ports(args.port_base)
            return [
                Camera(
                    name=f"cam{index + 1}",
                    sender=SenderConfig(
                        input=args.input or PATTERNS[index % len(PATTERNS)],
                        size=size,
                        fps=args.fps,
                        clock_text=True,
                    ),
                    port=next(ports),
                )
                for index in range(args.cameras or 4)
            ]
        hosts = [
            SSHHost.from_target(
                target, key_filename=args.key, trust_unknown_hosts=args.trust_unknown_hosts
            )
            for target in args.hosts
        ]
        sender = SenderConfig(
            input=args.input or "/dev/video0", size=args.size or (640, 480), fps=args.fps
        )
        ports = udp_ports(args.port_base, "0.0.0.0")
        return [
            # a remote camera is read on udp://0.0.0.0:PORT: the port must be free there
            Camera(name=name, host=host, sender=sender, port=next(ports))
            for name, host in zip(camera_names(hosts), hosts, strict=True)
        ]
    except (ConfigError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        parser.error(str(exc))


def describe(camera: Camera) -> str:
    """One line: what the camera shows, where its sender runs, where it is read."""
    sender = camera.sender
    assert sender is not None
    where = "this machine" if camera.host is None else camera.host.display_name
    width, height = sender.size
    return (
        f"{camera.name}: {sender.input} {width}x{height}@{sender.fps:g} on {where}, "
        f"read on {camera.listen_url}"
    )


def print_clock_offsets(group: StreamGroup) -> None:
    """Each remote host's clock offset, as measured over SSH when the group started."""
    stats = group.stats
    shown: set[str] = set()
    for camera in group.cameras:
        if camera.host is None or camera.host.display_name in shown:
            continue
        shown.add(camera.host.display_name)
        offset = stats.cameras[camera.name].clock_offset
        print(f"{camera.host.display_name}: clock offset {offset * 1000:+.2f} ms (ours - its)")


def build_session(args: argparse.Namespace, cameras: list[Camera]) -> Session:
    """The cameras, aligned to the nearest frame, with a wall, and a web view on --serve."""
    # more than four cameras: smaller tiles, so that 16 fit a screen (4x4 of 320x180)
    wall = WallSettings(tile_size=(480, 270) if len(cameras) <= 4 else (320, 180))
    web = None
    if args.serve is not None:
        web = WebSettings(host=args.serve[0], port=args.serve[1], title="CCTV wall")
    return Session(
        SessionConfig(cameras=cameras, group=GroupConfig(sync="nearest"), wall=wall, web=web)
    )


def main() -> int:
    """Parse arguments, start the cameras and the wall, print status until stopped."""
    parser = build_parser()
    args = parser.parse_args()
    cameras = build_cameras(args, parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)

    session = build_session(args, cameras)
    group = session.group
    assert isinstance(group, StreamGroup)  # a session without [cluster]
    reason = "stopped by SIGTERM"
    try:
        for camera in cameras:
            print(describe(camera))
        with session:  # leaving it stops every sender, local or remote
            wall = session.wall
            assert wall is not None  # the session's wall is enabled
            if session.web is not None:
                print(f"web view: {session.web.url}", flush=True)
            rows, columns = wall.grid
            print(f"wall: {rows}x{columns} tiles, {wall.size[0]}x{wall.size[1]} pixels")
            print_clock_offsets(group)
            end = math.inf if args.seconds is None else time.monotonic() + args.seconds
            while not stop.wait(min(1.0, max(0.0, end - time.monotonic()))):
                print("\n".join(group.stats.lines()) + "\n", flush=True)
                if time.monotonic() >= end:
                    reason = f"stopped after {args.seconds:g} s"
                    break
    except KeyboardInterrupt:
        reason = "stopped by Ctrl-C"
    except GroupStartError as exc:  # names every camera that failed, and why
        print(f"cctv_wall: {exc}", file=sys.stderr)
        return 1
    except SyncStreamError as exc:  # e.g. the web view cannot listen on --serve
        print(f"cctv_wall: {exc}", file=sys.stderr)
        return 1
    print(reason, flush=True)

    if args.snapshot is not None:  # the wall keeps its last picture after the stop
        try:
            width, height = session.snapshot(args.snapshot)
        except SyncStreamError as exc:  # no frame set arrived, or the file cannot be written
            print(f"cctv_wall: snapshot: {exc}", file=sys.stderr)
            return 1
        print(f"snapshot: {args.snapshot} ({width}x{height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
