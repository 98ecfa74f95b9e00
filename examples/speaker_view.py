"""Who is talking: speaker detection across synchronized cameras, and a view of that face.

    python3 examples/speaker_view.py udp://0.0.0.0:9001 udp://0.0.0.0:9002
    python3 examples/speaker_view.py rtsp://cam1/stream rtsp://cam2/stream --serve 127.0.0.1:8080
    python3 examples/speaker_view.py --local --seconds 10 --snapshot speaker.png

The cameras (URLs of cameras already streaming: anything a VideoStream reads) form one
StreamGroup. A SpeakerDetector finds the faces of every camera, scores how much each mouth
moves, and picks the camera of the person talking, with hysteresis so that the choice does
not flicker; it publishes the speaker view, that face cropped to 320x320. Every second the
example prints the active camera, or "no speaker", with every camera's score and faces;
--serve shows the speaker view and a wall of all cameras in a browser, --snapshot writes
the last speaker view at the end.

--local streams ffmpeg test patterns from this machine instead. They hold no face, so the
detector finds nobody and the example reports "no speaker" throughout: that is the
expected output. Point it at cameras filming people to see a speaker chosen. With
--sub WxH each simulated camera is a dual-stream camera: its one ffmpeg also sends a small
10 fps sub stream, which the detector searches (docs/roles.md); the wall shows main.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from collections import Counter
from types import FrameType

from syncstream import (
    Camera,
    CameraStream,
    GroupStartError,
    SenderConfig,
    SpeakerDetector,
    SpeakerResult,
    StreamGroup,
    SyncStreamError,
    Wall,
    WebView,
)
from syncstream.cli.args import (
    address_arg,
    image_path_arg,
    port_arg,
    positive_arg,
    size_arg,
    udp_ports,
)

#: A test pattern per simulated camera.
PATTERNS = ("testsrc", "smptebars", "testsrc2", "rgbtestsrc", "smptehdbars", "pal75bars")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this example."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="*", help="camera URLs (udp://, rtsp://, http://, ...)")
    parser.add_argument("--local", action="store_true", help="simulated cameras (no faces)")
    parser.add_argument(
        "--port-base", type=port_arg, metavar="PORT",
        help="UDP ports PORT, PORT+1, ... for the cameras (default: free ones)",
    )  # fmt: skip
    parser.add_argument(
        "--cameras",
        type=int,
        choices=range(1, 17),
        metavar="N",
        help="with --local: how many (1 to 16, default 2)",
    )
    parser.add_argument(
        "--size", type=size_arg, default=(640, 480), metavar="WxH", help="with --local"
    )
    parser.add_argument(
        "--sub",
        type=size_arg,
        metavar="WxH",
        help="with --local: each camera's ffmpeg also sends its picture at this size, 10 fps; "
        "faces are searched on it and shown at full size",
    )
    parser.add_argument(
        "--serve",
        type=address_arg,
        metavar="HOST:PORT",
        help="serve the speaker view and the wall to browsers (no authentication)",
    )
    parser.add_argument(
        "--snapshot", type=image_path_arg, metavar="PATH", help="write the last speaker view (PNG)"
    )
    parser.add_argument(
        "--seconds", type=positive_arg, metavar="S", help="stop after S seconds (default: Ctrl-C)"
    )
    return parser


def build_cameras(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Camera]:
    """The cameras the arguments ask for; a bad argument ends the program (exit 2)."""
    if args.local == bool(args.urls):
        parser.error("give camera URLs or --local")
    if args.cameras is not None and not args.local:
        parser.error("--cameras goes with --local")
    if args.sub is not None and not args.local:
        parser.error("--sub goes with --local")
    if not args.local:
        return [Camera(name=f"cam{i + 1}", url=url) for i, url in enumerate(args.urls)]
    ports = udp_ports(args.port_base)
    return [
        Camera(
            name=f"cam{i + 1}",
            sender=SenderConfig(input=PATTERNS[i % len(PATTERNS)], size=args.size, clock_text=True),
            port=next(ports),
            streams={}
            if args.sub is None
            else {"sub": CameraStream(port=next(ports), size=args.sub, fps=10)},
        )
        for i in range(args.cameras or 2)
    ]


def speaker_line(result: SpeakerResult | None) -> str:
    """The active camera (or why there is none) and every camera's score and faces."""
    if result is None:
        return "speaker: waiting for the first frame set"
    faces = sum(len(boxes) for boxes in result.faces.values())
    if result.active is not None:
        who = result.active
    elif faces == 0:
        who = "no speaker (no face in any camera)"
    else:
        who = f"no speaker ({faces} face(s), nobody talking)"
    scores = "  ".join(
        f"{name} {score:.4f} ({len(result.faces.get(name, []))} faces)"
        for name, score in result.scores.items()
    )
    missing = f"  missing: {', '.join(result.missing)}" if result.missing else ""
    return f"speaker: {who}  scores: {scores}{missing}  (searched: {result.role})"


def main() -> int:
    """Parse arguments, start the cameras and the detector, print the speaker each second."""
    parser = build_parser()
    args = parser.parse_args()
    cameras = build_cameras(args, parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)

    # on_result runs on the detector's worker, once per set it processed: tally who spoke
    spoken: Counter[str] = Counter()

    def tally(result: SpeakerResult) -> None:
        spoken[result.active or "no speaker"] += 1

    group = StreamGroup(cameras, sync="nearest")
    speaker = SpeakerDetector(on_result=tally)
    reason = "stopped by SIGTERM"
    try:
        group.add_processor(speaker)
        if args.serve is not None:
            wall = Wall(tile_size=(480, 270) if len(cameras) <= 4 else (320, 180))
            group.add_processor(wall)
            view = WebView(
                {"speaker": speaker, "wall": wall},
                host=args.serve[0],
                port=args.serve[1],
                title="speaker view",
            )
            group.add_processor(view)  # listens now: a taken port fails before any camera
            print(f"web view: {view.url} (?output=speaker or ?output=wall)", flush=True)
        with group:  # leaving it stops the simulated cameras' senders
            print(f"watching {', '.join(group.names)}", flush=True)
            end = math.inf if args.seconds is None else time.monotonic() + args.seconds
            while not stop.wait(min(1.0, max(0.0, end - time.monotonic()))):
                print(speaker_line(speaker.result), flush=True)
                if time.monotonic() >= end:
                    reason = f"stopped after {args.seconds:g} s"
                    break
    except KeyboardInterrupt:
        reason = "stopped by Ctrl-C"
    except GroupStartError as exc:  # names every camera that failed, and why
        print(f"speaker_view: {exc}", file=sys.stderr)
        return 1
    except SyncStreamError as exc:  # e.g. the web view cannot listen on --serve
        print(f"speaker_view: {exc}", file=sys.stderr)
        return 1
    print(reason)
    total = sum(spoken.values())
    shares = ", ".join(f"{who} {count / total:.0%}" for who, count in spoken.most_common())
    print(f"sets analysed: {total}" + (f" ({shares})" if total else ""), flush=True)

    if args.snapshot is not None:  # the speaker view keeps its last picture after the stop
        try:
            width, height = speaker.output.write(args.snapshot)
        except SyncStreamError as exc:
            print(f"speaker_view: snapshot: {exc}", file=sys.stderr)
            return 1
        print(f"snapshot: {args.snapshot} ({width}x{height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
