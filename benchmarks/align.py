"""CPU cost of alignment per frame, on synthetic timestamps (no video, no I/O).

Every camera delivers 900 frames (30 s at 30 fps), every other camera 100 ms late; each
frame is added to a :class:`~syncstream.sync.Aligner` and the aligner polled, as the
group's alignment thread does. The seed's pairing (keep the newest frame of each camera,
take them all together) is measured in the same run for the ratio.

Run: ``python3 benchmarks/align.py`` (``--rounds``). Prints the median over rounds of the
microseconds spent per frame.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

from syncstream.config import SyncPolicy
from syncstream.sync import Aligner


@dataclass(frozen=True)
class Shot:
    """A frame as alignment sees it."""

    source: str
    seq: int
    capture_time: float
    arrival_time: float

    @property
    def arrival_mono(self) -> float:
        return self.arrival_time


def shots(cameras: int, frames: int = 900) -> list[Shot]:
    """Frames of ``cameras`` cameras in arrival order."""
    out = []
    for i in range(cameras):
        for k in range(frames):
            capture = 1000.0 + k / 30 + i * 0.001
            out.append(Shot(f"c{i}", k, capture, capture + 0.04 + (0.1 if i % 2 else 0.0)))
    return sorted(out, key=lambda s: s.arrival_time)


def run_aligner(feed: list[Shot], names: list[str], policy: SyncPolicy) -> float:
    """Seconds per frame through Aligner.add and Aligner.poll."""
    aligner: Aligner[Shot] = Aligner(names, policy=policy, max_skew=0.02)
    begin = time.perf_counter()
    for shot in feed:
        aligner.add(shot)
        aligner.poll(shot.arrival_mono)
    return (time.perf_counter() - begin) / len(feed)


def run_seed(feed: list[Shot], names: list[str]) -> float:
    """Seconds per frame keeping the newest of each camera and taking them all."""
    newest: dict[str, Shot] = {}
    begin = time.perf_counter()
    for shot in feed:
        newest[shot.source] = shot
        if len(newest) == len(names):
            list(newest.values())
    return (time.perf_counter() - begin) / len(feed)


def main() -> int:
    """Measure each receiver ``--rounds`` times for 2, 4 and 16 cameras; print medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{'cameras':>7} {'seed us':>8} {'latest us':>10} {'nearest us':>11} {'n/seed':>6}")
    for count in (2, 4, 16):
        names = [f"c{i}" for i in range(count)]
        feed = shots(count)
        seed, latest, nearest = [], [], []
        for _ in range(args.rounds):
            seed.append(run_seed(feed, names))
            latest.append(run_aligner(feed, names, "latest"))
            nearest.append(run_aligner(feed, names, "nearest"))
        s, la, ne = (statistics.median(v) * 1e6 for v in (seed, latest, nearest))
        print(f"{count:>7} {s:>8.2f} {la:>10.1f} {ne:>11.1f} {ne / s:>6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
