"""Bytes a cluster shard sends to the driver per frame, by picture mode.

A :class:`~syncstream.cluster.shard.Shard` (the class the Ray actor runs, used here
without Ray) reads two simulated 640x480 cameras at 30 fps for ``--seconds``; its records
are taken with :meth:`Shard.poll` as the driver takes them, and each batch is pickled as
Ray pickles it. Per mode: the median over rounds of the pickled bytes per frame, the
frames per poll, and the bytes per merged set of N cameras (N times the bytes per frame).

Run: ``python3 benchmarks/cluster_bytes.py`` (``--rounds``, ``--seconds``). Needs ffmpeg.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time

from syncstream import Camera, SenderConfig
from syncstream.cluster.frames import PictureMode
from syncstream.cluster.shard import Shard, pickled_size
from syncstream.senders import free_udp_port

MODES: tuple[PictureMode, ...] = ("none", "sub", "full")


def measure(mode: PictureMode, seconds: float) -> tuple[float, float, float]:
    """Pickled bytes per frame, frames per poll and bytes per report (the cameras' and
    processors' figures a poll carries about once a second) over ``seconds`` of two
    cameras."""
    sender = SenderConfig(size=(640, 480), fps=30.0)
    cameras = [
        Camera(name=name, sender=sender, port=free_udp_port()).model_dump()
        for name in ("left", "right")
    ]
    shard = Shard("bench", cameras, {}, mode, 1024 if mode == "none" else 32)
    epoch, after = "", -1
    sizes: list[int] = []
    counts: list[int] = []
    reports: list[int] = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.1)  # the driver's pace: one poll per 0.1 s at least
            result = shard.poll(epoch, after, 0.1)
            epoch, after, records = result.epoch, result.newest, result.records
            if records:
                sizes.append(len(pickle.dumps(records)))
                counts.append(len(records))
            if result.report is not None:
                reports.append(pickled_size(result.report))
    finally:
        shard.close()
    per_poll = statistics.median(counts) if counts else 0.0
    return sum(sizes) / max(1, sum(counts)), per_poll, statistics.median(reports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(
        f"{'pictures':<9} {'bytes/frame':>12} {'frames/poll':>12} {'bytes/set (4 cams)':>19} "
        f"{'bytes/report (2 cams)':>22}"
    )
    for mode in MODES:
        results = [measure(mode, args.seconds) for _ in range(args.rounds)]
        per_frame = statistics.median(r[0] for r in results)
        per_poll = statistics.median(r[1] for r in results)
        report = statistics.median(r[2] for r in results)
        sent = f"{per_frame:>12.0f} {per_poll:>12.1f} {4 * per_frame:>19.0f} {report:>22.0f}"
        print(f"{mode:<9} {sent}")


if __name__ == "__main__":
    main()
