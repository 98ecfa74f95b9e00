"""The ``syncstream`` command. Logging is configured here, never by the library."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from . import __version__
from .config import Camera, SenderConfig, SyncPolicy
from .errors import SyncStreamError
from .frames import FrameSet
from .group import StreamGroup
from .senders import free_udp_port
from .stats import GroupStats
from .stream import StreamStats

__all__ = ["main"]

logger = logging.getLogger(__name__)

_PATTERNS = ("testsrc", "testsrc2", "smptebars", "rgbtestsrc", "smptehdbars", "yuvtestsrc")


def _ms(seconds: float | None) -> str:
    return "   -  " if seconds is None else f"{seconds * 1000:6.1f}"


def _status_line(stats: StreamStats) -> str:
    return (
        f"{stats.name:<6} {stats.state.value:<10} fps {stats.fps:5.1f}  "
        f"latency p50 {_ms(stats.latency_p50)} ms p95 {_ms(stats.latency_p95)} ms  "
        f"decoded {stats.decoded:5d}  skipped {stats.skipped:4d}  errors {stats.decode_errors}"
    )


def _group_line(stats: GroupStats) -> str:
    return (
        f"{'group':<6} {stats.clock:<10} sets {stats.sets_per_second:5.1f}/s  "
        f"skew p50 {_ms(stats.skew_p50)} ms p95 {_ms(stats.skew_p95)} ms  "
        f"latency p50 {_ms(stats.latency_p50)} ms p95 {_ms(stats.latency_p95)} ms  "
        f"sets {stats.sets:5d}  partial {stats.partial}"
    )


def _to_bgr(frameset: FrameSet) -> None:
    """What a program does with each set, at the least: get the pictures."""
    frameset.images  # noqa: B018 - the conversion is the work


def run_demo(
    cameras: int, seconds: float, size: tuple[int, int], fps: float, sync: SyncPolicy = "nearest"
) -> int:
    """Simulated cameras on loopback in one StreamGroup; print its figures each second."""
    if shutil.which("ffmpeg") is None:
        print(
            "syncstream demo needs the ffmpeg command (apt-get install -y ffmpeg)", file=sys.stderr
        )
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    cams = [
        Camera(
            name=f"cam{index + 1}",
            sender=SenderConfig(input=_PATTERNS[index % len(_PATTERNS)], size=size, fps=fps),
            port=free_udp_port(),
        )
        for index in range(cameras)
    ]
    try:
        with StreamGroup(cams, sync=sync) as group:
            group.add_processor(_to_bgr, name="to-bgr")
            print(
                f"syncstream {__version__} demo: {cameras} simulated cameras, "
                f"{size[0]}x{size[1]}@{fps:g}, sync={sync}, {seconds:g} s"
            )
            end = time.monotonic() + seconds
            while not stop.wait(min(1.0, max(0.0, end - time.monotonic()))):
                stats = group.stats
                for camera in stats.cameras.values():
                    print(_status_line(camera.stream))
                print(_group_line(stats))
                print(flush=True)
                if time.monotonic() >= end:
                    break
            final = group.stats
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SyncStreamError as exc:
        print(f"syncstream demo: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("summary:")
    for camera in final.cameras.values():
        print(_status_line(camera.stream))
    print(_group_line(final))
    if any(camera.stream.decoded == 0 for camera in final.cameras.values()):
        print("some cameras delivered no frame", file=sys.stderr)
        return 1
    return 0


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"size must look like 640x480, not {text!r}")
    return int(width), int(height)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``syncstream`` command."""
    parser = argparse.ArgumentParser(prog="syncstream", description=__doc__)
    parser.add_argument("--version", action="version", version=f"syncstream {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="simulated cameras on this machine")
    demo.add_argument("--cameras", type=int, default=2, choices=range(1, 17), metavar="N")
    demo.add_argument("--seconds", type=float, default=10.0, metavar="S")
    demo.add_argument("--size", type=_size, default=(640, 480), metavar="WxH")
    demo.add_argument("--fps", type=float, default=30.0)
    demo.add_argument(
        "--sync", choices=("nearest", "latest", "exact"), default="nearest", help="alignment"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``syncstream`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        if args.seconds <= 0:
            print("--seconds must be positive", file=sys.stderr)
            return 2
        return run_demo(args.cameras, args.seconds, args.size, args.fps, args.sync)
    return 2


if __name__ == "__main__":
    sys.exit(main())
