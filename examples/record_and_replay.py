"""Record synchronized cameras to segment files, then replay them as the same frame sets.

    python3 examples/record_and_replay.py udp://0.0.0.0:9001 udp://0.0.0.0:9002 --seconds 60
    python3 examples/record_and_replay.py --local --cameras 3 --directory rec/today
    python3 examples/record_and_replay.py --local --segment-seconds 2

A Recorder added to the StreamGroup copies each camera's stream, packet for packet, into
numbered MPEG-TS segments (``<camera>/<camera>-000001.ts``, ...) and writes ``index.jsonl``,
one line per frame set. After --seconds (5) of recording (or Ctrl-C, or SIGTERM) the group
stops and Recording reads the directory back: the same sets, the same frames, their
pictures decoded from the segments. The example then prints the sets recorded and
replayed, the frames per camera in the index and in the replay, the median skew of the
recorded sets against the skew recomputed from the replayed frames' timestamps, and the
segment files with their sizes. It exits 1 when the replay yields no set.

--local records simulated cameras (ffmpeg test patterns) from this machine. Without
--directory the recording goes to a new temporary directory, printed at the start.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import FrameType

from syncstream import (
    Camera,
    FrameSet,
    GroupStartError,
    Recorder,
    Recording,
    SenderConfig,
    StreamGroup,
    SyncStreamError,
)
from syncstream.cli.args import port_arg, positive_arg, size_arg, udp_ports

#: A test pattern per simulated camera.
PATTERNS = ("testsrc", "smptebars", "testsrc2", "rgbtestsrc", "smptehdbars", "pal75bars")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this example."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="*", help="camera URLs (udp://, rtsp://, http://, ...)")
    parser.add_argument("--local", action="store_true", help="simulated cameras on this machine")
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
        "--seconds", type=positive_arg, default=5.0, metavar="S", help="record S seconds (5)"
    )
    parser.add_argument(
        "--directory", help="where to record; must not hold a recording (default: a temp dir)"
    )
    parser.add_argument(
        "--segment-seconds",
        type=positive_arg,
        default=60.0,
        metavar="S",
        help="start a new segment file at the first keyframe after S seconds (60)",
    )
    return parser


def build_cameras(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Camera]:
    """The cameras the arguments ask for; a bad argument ends the program (exit 2)."""
    if args.local == bool(args.urls):
        parser.error("give camera URLs or --local")
    if args.cameras is not None and not args.local:
        parser.error("--cameras goes with --local")
    if not args.local:
        return [Camera(name=f"cam{i + 1}", url=url) for i, url in enumerate(args.urls)]
    ports = udp_ports(args.port_base)
    return [
        Camera(
            name=f"cam{i + 1}",
            sender=SenderConfig(input=PATTERNS[i % len(PATTERNS)], size=args.size, clock_text=True),
            port=next(ports),
        )
        for i in range(args.cameras or 2)
    ]


def record_line(recorder: Recorder) -> str:
    """Sets written so far, and per camera its mode, segment number and bytes."""
    stats = recorder.stats
    cameras = "  ".join(
        f"{name} {camera.mode or '-'} segment {camera.segment} {camera.bytes / 1e3:.0f} kB"
        + (f" dropped {camera.dropped}" if camera.dropped else "")
        for name, camera in stats.cameras.items()
    )
    return f"recording: {stats.sets} sets  {cameras}"


def set_skew(frameset: FrameSet) -> float | None:
    """The spread of the set's frame times, recomputed from its frames (None: no frame)."""
    sender = frameset.clock == "sender"
    times = [
        frame.capture_time if sender and frame.capture_time is not None else frame.arrival_time
        for frame in frameset.frames.values()
    ]
    return max(times) - min(times) if times else None


@dataclass
class Replay:
    """What the replay of a recording gave."""

    sets: int = 0
    frames: Counter[str] = field(default_factory=Counter)
    skews: list[float] = field(default_factory=list)
    interrupted: bool = False


def replay(recording: Recording, stop: threading.Event) -> Replay:
    """Decode every recorded set, as a program reading the recording would."""
    result = Replay()
    try:
        for frameset in recording:
            if stop.is_set():
                result.interrupted = True
                break
            result.sets += 1
            for name, frame in frameset.frames.items():
                frame.image  # noqa: B018 - decodes the picture: it is there, and it converts
                result.frames[name] += 1
            skew = set_skew(frameset)
            if skew is not None:
                result.skews.append(skew)
    except KeyboardInterrupt:
        result.interrupted = True
    return result


def median_ms(values: list[float]) -> str:
    """The median in milliseconds, or '-' for no value."""
    return f"{statistics.median(values) * 1000:.2f} ms" if values else "-"


def print_summary(recording: Recording, recorder: Recorder, emitted: int, result: Replay) -> None:
    """Sets, frames per camera, skews and files of the recording and its replay."""
    lines = list(recording.sets())
    indexed: Counter[str] = Counter()
    for line in lines:
        indexed.update(name for name, entry in line.frames.items() if entry.segment is not None)
    print(f"sets recorded: {len(lines)} (the group emitted {emitted}, the recorder wrote "
          f"{recorder.stats.sets})")  # fmt: skip
    print(f"sets replayed: {result.sets}" + (" (interrupted)" if result.interrupted else ""))
    print("frames per camera (in the index / replayed):")
    stored = recording.camera_lines
    for name in recording.cameras:
        camera = stored.get(name)
        how = "never recorded" if camera is None else (
            f"{camera.mode} {camera.codec} {camera.width}x{camera.height}")  # fmt: skip
        print(f"  {name}: {indexed[name]} / {result.frames[name]}  {how}")
    print(f"median skew: recorded {median_ms([line.skew for line in lines])}, "
          f"replayed {median_ms(result.skews)}")  # fmt: skip
    if recording.unavailable:
        print(f"frames the segments did not hold: {recording.unavailable}")
    print("files:")
    for name in recording.cameras:
        for path in recording.segments(name):
            print(f"  {path.relative_to(recording.directory)}  {path.stat().st_size} bytes")
    print(f"  {recording.index_path.name}  {recording.index_path.stat().st_size} bytes")
    end = recording.end
    if end is not None and end.error is not None:
        print(f"the recording stopped early: {end.error}")


def main() -> int:
    """Parse arguments, record the group, replay the recording, print what both gave."""
    parser = build_parser()
    args = parser.parse_args()
    cameras = build_cameras(args, parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.directory is None:
        directory = pathlib.Path(tempfile.mkdtemp(prefix="syncstream-recording-"))
    else:
        directory = pathlib.Path(args.directory)

    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)

    group = StreamGroup(cameras, sync="nearest")
    recorder = Recorder(directory, segment_seconds=args.segment_seconds)
    reason = "stopped by SIGTERM"
    try:
        # before start: the recording begins with each camera's first keyframe
        group.add_processor(recorder)
        print(f"recording {', '.join(group.names)} to {directory}", flush=True)
        with group:  # leaving it stops the senders and closes the recorder (the end line)
            end = time.monotonic() + args.seconds
            while not stop.wait(min(1.0, max(0.0, end - time.monotonic()))):
                print(record_line(recorder), flush=True)
                if time.monotonic() >= end:
                    reason = f"recorded {args.seconds:g} s"
                    break
    except KeyboardInterrupt:
        reason = "recording stopped by Ctrl-C"
    except GroupStartError as exc:  # names every camera that failed, and why
        print(f"record_and_replay: {exc}", file=sys.stderr)
        return 1
    except SyncStreamError as exc:  # e.g. the directory holds a recording already
        print(f"record_and_replay: {exc}", file=sys.stderr)
        return 1
    print(reason, flush=True)
    stopped_early = stop.is_set() or "Ctrl-C" in reason
    stop.clear()  # from here, SIGTERM ends the replay

    try:
        with Recording(directory) as recording:
            result = replay(recording, stop)
            print(f"replay of {directory}:")
            print_summary(recording, recorder, group.stats.sets, result)
    except SyncStreamError as exc:  # e.g. a damaged index
        print(f"record_and_replay: {exc}", file=sys.stderr)
        return 1
    if recorder.error is not None:
        print(f"record_and_replay: {recorder.error}", file=sys.stderr)
        return 1
    if result.sets == 0 and not (stopped_early or result.interrupted):
        print("record_and_replay: the replay yielded no frame set", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
