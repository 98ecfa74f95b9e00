"""Recorder on a full disk: what a recording that ran out of space holds, and what reads back.

A tmpfs of ``--size`` is mounted (root needed) and filled but ``--free`` KiB; a group of
two simulated cameras (ffmpeg test patterns, 320x240@30 H.264 over UDP, started by the
group) records onto it with segments of 1 s until the disk is full, goes on for 3 s and
closes; then the recording is read back. What is on the full disk: ``all`` (the index and
the segments), ``index`` (the camera folders link to a roomy disk) or ``segments`` (the
recording is on a roomy disk, the camera folders link to the full one).

Per round: which file failed, the seconds from the start to the failure, the sets on disk
(``recorder.stats.sets``) against those read back (``len`` and a full replay), the end
line and whether it needed the reserve, the sets lost, the frames of recorded sets that
the segments do not hold, the complete sets the group delivered after the failure, and
whether every segment ends at a whole MPEG-TS packet.

Run: ``sudo python3 benchmarks/full_disk.py`` (``--rounds``, ``--free``, ``--size``,
``--json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from syncstream import Camera, FrameSet, Recorder, SenderConfig, StreamGroup
from syncstream.recording import Recording
from syncstream.recording.index import INDEX_NAME
from syncstream.senders import free_udp_port

PLACES = ("all", "index", "segments")
CAMERAS = (("door", "testsrc"), ("hall", "smptebars"))
AFTER = 3.0  # seconds the group goes on after the failure


class ReserveLog(logging.Handler):
    """Notes the index writer's message that the end line used the reserve."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.used = False

    def emit(self, record: logging.LogRecord) -> None:
        if "using the reserve" in record.getMessage():
            self.used = True


class Counter:
    """Complete sets the group delivered, and when the recorder's worker raised first."""

    def __init__(self) -> None:
        self.complete = 0
        self.lock = threading.Lock()

    def __call__(self, fs: FrameSet) -> None:
        with self.lock:
            self.complete += fs.complete


def _mount(point: pathlib.Path, size: str, free: int) -> None:
    point.mkdir()
    argv = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)]
    subprocess.run(argv, check=True, capture_output=True)
    info = os.statvfs(point)
    with (point / "filler").open("wb") as file:
        file.write(bytes(max(0, info.f_bavail * info.f_frsize - free)))


def round_once(place: str, size: str, free: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        base = pathlib.Path(scratch)
        disk = base / "disk"
        _mount(disk, size, free)
        try:
            return _record(place, disk, base)
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def _record(place: str, disk: pathlib.Path, roomy: pathlib.Path) -> dict[str, Any]:
    home, folders = (roomy, disk) if place == "segments" else (disk, roomy)
    target = home / "rec"
    if place != "all":
        target.mkdir()
        for name, _ in CAMERAS:
            (folders / name).mkdir()
            (target / name).symlink_to(folders / name)
    cams = [
        Camera(
            name=name,
            sender=SenderConfig(input=pattern, size=(320, 240), fps=30),
            port=free_udp_port(),
        )
        for name, pattern in CAMERAS
    ]
    reserve = ReserveLog()
    logging.getLogger("syncstream.recording.writer").addHandler(reserve)
    logging.getLogger("syncstream.recording.writer").setLevel(logging.INFO)
    recorder, counter = Recorder(target, segment_seconds=1.0), Counter()
    group = StreamGroup(cams)
    worker = group.add_processor(recorder)
    group.add_processor(counter, name="counter")
    try:
        with group:
            started = time.monotonic()
            while worker.stats.errors == 0:
                group.read(timeout=10.0)
                if time.monotonic() - started > 120:
                    raise RuntimeError("the disk did not fill within 120 s")
            failed_after = time.monotonic() - started
            before = counter.complete
            until = time.monotonic() + AFTER
            while time.monotonic() < until:
                group.read(timeout=10.0)
            after = counter.complete - before
    finally:
        logging.getLogger("syncstream.recording.writer").removeHandler(reserve)
    stats = recorder.stats
    with Recording(target) as recording:
        replayed = sum(1 for _ in recording)
        end = recording.end
        whole_packets = all(
            path.stat().st_size % 188 == 0
            for name, _ in CAMERAS
            for path in recording.segments(name)
        )
        result = {
            "place": place,
            "failed": "index" if INDEX_NAME in (stats.error or "") else "segment",
            "errno": None if recorder.error is None else recorder.error.errno,
            "failed_after_s": round(failed_after, 2),
            "sets_on_disk": stats.sets,
            "sets_read_back": len(recording),
            "sets_replayed": replayed,
            "end_line": end is not None and end.sets == len(recording),
            "reserve_used": reserve.used,
            "lost_sets": stats.lost_sets,
            "unavailable_frames": recording.unavailable,
            "complete_sets_after": after,
            "whole_packets": whole_packets,
            "index_ends_whole": (target / INDEX_NAME).read_bytes().endswith(b"\n"),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--free", type=int, default=320, help="KiB left free on the disk")
    parser.add_argument("--size", default="2m", help="size of the tmpfs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("mounting a tmpfs needs root")
    results = [
        round_once(place, args.size, args.free * 1024)
        for place in PLACES
        for _ in range(args.rounds)
    ]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    columns = list(results[0])
    print("  ".join(columns))
    for result in results:
        print("  ".join(str(result[column]) for column in columns))


if __name__ == "__main__":
    main()
