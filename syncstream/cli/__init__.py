"""The ``syncstream`` command. Logging is configured here, never by the library.

- ``syncstream demo``: simulated cameras on this machine, as a wall, with live figures;
- ``syncstream run FILE``: the cameras, hosts and processors of a session file;
- ``syncstream check FILE``: preflight of every sender host (or of a ``[cluster]``'s nodes);
- ``syncstream probe URL``: what a stream carries and how late its frames arrive;
- ``syncstream send URL``: a test pattern, a webcam or a file sent as a camera from Python.

Exit status: 0 success, 1 failure (a camera, a host, no frames), 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import ConfigError
from ..session_config import SessionConfig, load_session_config
from .args import address_arg, port_arg, positive_arg, size_arg

__all__ = ["build_parser", "main"]

#: The logger of the per-host progress lines of a starting session (see senders.fleet).
PROGRESS_LOGGER = "syncstream.senders.fleet.progress"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``syncstream`` command."""
    parser = argparse.ArgumentParser(
        prog="syncstream",
        description="Synchronized frame sets from several network cameras.",
        epilog="Exit status: 0 success, 1 failure, 2 bad usage or configuration.",
    )
    parser.add_argument("--version", action="version", version=f"syncstream {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="more log (-vv)")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="simulated cameras on this machine, as a wall with live figures"
    )
    demo.add_argument("--cameras", type=int, default=4, choices=range(1, 17), metavar="N",
                      help="simulated cameras, 1 to 16 (default 4)")  # fmt: skip
    demo.add_argument("--seconds", type=positive_arg, default=10.0, metavar="S",
                      help="run time (default 10)")  # fmt: skip
    demo.add_argument("--serve", type=address_arg, metavar="HOST:PORT",
                      help="serve the wall and stats to browsers (web view)")  # fmt: skip
    demo.add_argument("--snapshot", default="syncstream-demo.png", metavar="PATH",
                      help="PNG of the wall written at the end (default %(default)s)")  # fmt: skip
    demo.add_argument("--no-snapshot", action="store_true", help="write no PNG")
    demo.add_argument("--size", type=size_arg, metavar="WxH",
                      help="picture size (default 640x480; 320x240 above 4 cameras)")  # fmt: skip
    demo.add_argument("--fps", type=positive_arg, default=30.0)
    demo.add_argument("--sync", choices=("nearest", "latest", "exact"), default="nearest",
                      help="alignment policy (default nearest)")  # fmt: skip
    demo.add_argument("--port-base", type=port_arg, metavar="PORT",
                      help="UDP ports PORT, PORT+1, ... (default: free ones)")  # fmt: skip

    run = commands.add_parser("run", help="run the cameras and processors of a session file")
    run.add_argument("config", metavar="FILE", help="session file (TOML)")
    run.add_argument("--seconds", type=positive_arg, metavar="S", help="override [run] seconds")
    run.add_argument("--snapshot", metavar="PATH", help="override [run] snapshot")

    check = commands.add_parser(
        "check", help="preflight every host of a session file (or its cluster's nodes)"
    )
    check.add_argument("config", metavar="FILE", help="session file (TOML)")

    probe = commands.add_parser("probe", help="what a stream carries and how late it arrives")
    probe.add_argument("url", help="udp://, rtsp://, http:// (MJPEG), tcp://, a file, ...")
    probe.add_argument("--seconds", type=positive_arg, default=5.0, metavar="S",
                       help="how long to read after the first frame (default 5)")  # fmt: skip
    probe.add_argument("--backend", default="auto",
                       choices=("auto", "pyav", "opencv", "mjpeg_http", "tcp_framed"))  # fmt: skip
    probe.add_argument("--open-timeout", type=positive_arg, default=10.0, metavar="S")
    probe.add_argument("--json", action="store_true", help="print the report as JSON")

    send = commands.add_parser(
        "send", help="send a test pattern, a webcam or a file to udp://host:port, from Python"
    )
    send.add_argument("url", metavar="udp://HOST:PORT", help="where to send (a receiver)")
    send.add_argument("--input", metavar="SRC",
                      help="a webcam (0, /dev/video0) or a video file; default: a test "
                           "pattern with the send time painted in")  # fmt: skip
    send.add_argument("--seconds", type=positive_arg, metavar="S",
                      help="how long to send (default: until stopped)")  # fmt: skip
    send.add_argument("--size", type=size_arg, metavar="WxH",
                      help="picture size (pattern default 640x480; asked of a webcam)")  # fmt: skip
    send.add_argument("--fps", type=positive_arg, metavar="F",
                      help="frame rate (pattern default 30; asked of a webcam)")  # fmt: skip
    send.add_argument("--input-format", metavar="NAME",
                      help="what to ask a webcam for: mjpeg, yuyv422, h264, ...")  # fmt: skip
    send.add_argument("--bitrate", metavar="RATE", help="H.264 target bitrate, e.g. 2M")
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv, errors with -q."""
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # one plain line per SSH host while a session starts, unless -q
    progress = logging.getLogger(PROGRESS_LOGGER)
    progress.setLevel(logging.ERROR if quiet else logging.INFO)
    progress.propagate = False
    for old in [h for h in progress.handlers if getattr(h, "syncstream_progress", False)]:
        progress.removeHandler(old)  # main() called again: today's stderr, one handler
    handler = logging.StreamHandler()  # stderr, so that stdout stays the status
    handler.setFormatter(logging.Formatter("syncstream: %(message)s"))
    handler.syncstream_progress = True  # type: ignore[attr-defined]
    progress.addHandler(handler)
    # paramiko logs a traceback for a failed handshake; the error raised says it in a line
    logging.getLogger("paramiko").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


def _load(path: str) -> SessionConfig | None:
    try:
        return load_session_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``syncstream`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    try:
        return _dispatch(args)
    except BrokenPipeError:  # the reader of our output went away (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to flush at exit
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        snapshot = None if args.no_snapshot else args.snapshot
        size = args.size or ((640, 480) if args.cameras <= 4 else (320, 240))
        return run_demo(
            args.cameras,
            args.seconds,
            size=size,
            fps=args.fps,
            sync=args.sync,
            serve=args.serve,
            snapshot=snapshot,
            port_base=args.port_base,
        )
    if args.command == "probe":
        from .probe import run_probe

        return run_probe(args.url, args.seconds, args.backend, args.open_timeout, args.json)
    if args.command == "send":
        from .send import run_send

        return run_send(
            args.url,
            source=args.input,
            seconds=args.seconds,
            size=args.size,
            fps=args.fps,
            input_format=args.input_format,
            bitrate=args.bitrate,
        )
    config = _load(args.config)
    if config is None:
        return 2
    if args.command == "check":
        from .check import run_check

        return run_check(config, path=args.config)
    from .console import run_session

    overrides = {"seconds": args.seconds} if args.seconds is not None else {}
    if overrides:
        config = config.model_copy(update={"run": config.run.model_copy(update=overrides)})
    snapshot = args.snapshot if args.snapshot is not None else config.run.snapshot
    names = ", ".join(camera.name for camera in config.cameras)
    banner = f"syncstream {__version__}: {args.config}: {len(config.cameras)} cameras ({names})"
    return run_session(config, banner=banner, snapshot=snapshot)
