"""CPU cost of alignment per frame, on synthetic timestamps (no video, no I/O).

Every camera delivers 900 frames (30 s at 30 fps), every other camera 100 ms late; each
frame is added to a :class:`~syncstream.sync.Aligner` and the aligner polled, as the
group's alignment thread does. The seed's pairing (keep the newest frame of each camera,
take them all together) is measured in the same run for the ratio.

Then uneven cameras, one table per case (:data:`CASES`): phases spread wider than
``max_skew``, mixed frame rates, a camera whose clock is 2.5 s off. Each case is fed for
``--seconds`` of synthetic time to every policy that applies, with ``on_missing``
``"partial"`` and ``"wait"``, and the aligner polled when a frame arrives and at each
:meth:`~syncstream.sync.Aligner.next_deadline`, as the group's alignment thread does. Per
row: sets per second over the slowest camera's rate, full and partial sets, the skew p50
and p95 (spread of the instants the pictures were taken, so a wrong clock shows), the p95
of the wait from a set's last frame to its emission, the CPU microseconds per frame
(median over rounds) and their ratio to the seed's pairing, and each camera's frames
used/dropped. The seed's row counts a set per frame once every camera has one.

Run: ``python3 benchmarks/align.py`` (``--rounds``, ``--seconds``, ``--verbose``). Prints
the median over rounds of the microseconds spent per frame, then the cases.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from syncstream.config import GroupConfig, MissingPolicy, SyncPolicy
from syncstream.stats import percentile
from syncstream.sync import Aligner, CameraCounts, Match


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


def run_seed(
    feed: list[Shot], names: list[str], clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds per frame (on ``clock``) keeping the newest of each camera and taking them all."""
    newest: dict[str, Shot] = {}
    begin = clock()
    for shot in feed:
        newest[shot.source] = shot
        if len(newest) == len(names):
            list(newest.values())
    return (clock() - begin) / len(feed)


@dataclass(frozen=True)
class Case:
    """Uneven cameras: each one's frame rate, capture phase and clock error, in seconds."""

    name: str
    fps: tuple[float, ...]
    phases: tuple[float, ...]
    #: Added to a camera's capture times: its clock is that far off (none by default).
    clock_errors: tuple[float, ...] = ()
    policies: tuple[SyncPolicy, ...] = ("nearest", "latest")

    @property
    def names(self) -> list[str]:
        return [f"c{i}" for i in range(len(self.fps))]

    def error(self, name: str) -> float:
        """How far camera ``name``'s clock is off."""
        return self.clock_errors[int(name[1:])] if self.clock_errors else 0.0


MIXED = (1.0, 5.0, 15.0, 30.0, 60.0)
CASES = (
    Case("4 x 10 fps, phases 0/25/50/75 ms", (10.0,) * 4, (0.0, 0.025, 0.05, 0.075)),
    Case("10 + 30 fps, phases 0/7 ms", (10.0, 30.0), (0.0, 0.007)),
    Case("10 + 30 fps, locked", (10.0, 30.0), (0.0, 0.0), policies=("nearest", "latest", "exact")),
    Case("1/5/15/30/60 fps, phases 0/7/14/21/28 ms", MIXED, (0.0, 0.007, 0.014, 0.021, 0.028)),
    Case("1/5/15/30/60 fps, locked", MIXED, (0.0,) * 5, policies=("nearest", "latest", "exact")),
    Case("4 x 30 fps, c3's clock +2.5 s", (30.0,) * 4, (0.0, 0.004, 0.008, 0.012), (0, 0, 0, 2.5)),
    Case("4 x 30 fps, c3's clock -2.5 s", (30.0,) * 4, (0.0, 0.004, 0.008, 0.012), (0, 0, 0, -2.5)),
)
MISSING: tuple[MissingPolicy, ...] = ("partial", "wait")
PATH_DELAY = 0.04  # capture to arrival, plus up to JITTER
JITTER = 0.005


def case_feed(case: Case, seconds: float) -> list[Shot]:
    """``seconds`` of the case's frames in arrival order (the same every time)."""
    rng = random.Random(16)
    out = []
    for name, fps, phase in zip(case.names, case.fps, case.phases, strict=True):
        arrival = 0.0
        for k in range(round(seconds * fps)):
            taken = 1000.0 + phase + k / fps
            arrival = max(arrival, taken + PATH_DELAY + rng.uniform(0, JITTER))  # order kept
            out.append(Shot(name, k, taken + case.error(name), arrival))
    return sorted(out, key=lambda s: s.arrival_time)


@dataclass
class Outcome:
    """One pairing of one case: its sets (with the time each was emitted) and its cost."""

    cpu: float  # seconds of this thread's CPU per frame
    sets: list[tuple[float, list[Shot], bool]]  # (emitted at, frames, partial)
    counts: dict[str, CameraCounts]


def run_case(case: Case, feed: list[Shot], policy: SyncPolicy, missing: MissingPolicy) -> Outcome:
    """Feed an Aligner with the group's defaults, polling it at each arrival and deadline."""
    config = GroupConfig()
    aligner: Aligner[Shot] = Aligner(
        case.names,
        policy=policy,
        max_skew=config.max_skew,
        max_wait=config.max_wait,
        on_missing=missing,
        history=8,  # Camera.history's default
        start_mono=1000.0,  # the first capture; the first frames arrive 40 ms later
    )
    emitted: list[tuple[float, Match[Shot]]] = []
    now = 1000.0
    begin = time.thread_time()
    for shot in feed:
        while (due := aligner.next_deadline(now)) is not None and due <= shot.arrival_mono:
            now = due
            emitted.extend((now, match) for match in aligner.poll(now))
        aligner.add(shot)
        now = shot.arrival_mono
        emitted.extend((now, match) for match in aligner.poll(now))
    cpu = (time.thread_time() - begin) / len(feed)
    sets = [(at, list(m.frames.values()), bool(m.missing)) for at, m in emitted]
    return Outcome(cpu, sets, {name: aligner.counts(name) for name in case.names})


def seed_case(feed: list[Shot], names: list[str], rounds: int) -> Outcome:
    """The seed's pairing: a set of the newest frame of each camera at every frame."""
    cpu = [run_seed(feed, names, time.thread_time) for _ in range(rounds)]
    newest: dict[str, Shot] = {}
    sets = []
    for shot in feed:
        newest[shot.source] = shot
        if len(newest) == len(names):
            sets.append((shot.arrival_mono, list(newest.values()), False))
    return Outcome(statistics.median(cpu), sets, {})


def _ms(sorted_values: list[float], fraction: float) -> str:
    value = percentile(sorted_values, fraction)
    return "—" if value is None else f"{value * 1e3:.1f}"


def _row(case: Case, label: str, missing: str, out: Outcome, seconds: float, seed: float) -> str:
    skews = sorted(
        max(s.capture_time - case.error(s.source) for s in frames)
        - min(s.capture_time - case.error(s.source) for s in frames)
        for _, frames, _ in out.sets
    )
    waits = sorted(at - max(s.arrival_mono for s in frames) for at, frames, _ in out.sets)
    partial = sum(1 for *_, is_partial in out.sets if is_partial)
    rate = len(out.sets) / seconds / min(case.fps)
    counts = " ".join(f"{c.used}/{c.dropped}" for c in out.counts.values()) or "—"
    ratio = out.cpu / seed if seed > 0 else float("inf")
    return (
        f"| {label} | {missing} | {rate:.2f} | {len(out.sets) - partial} | {partial} | "
        f"{_ms(skews, 0.5)} | {_ms(skews, 0.95)} | {_ms(waits, 0.95)} | "
        f"{out.cpu * 1e6:.1f} | {ratio:.0f} | {counts} |"
    )


def report_case(case: Case, rounds: int, seconds: float, verbose: bool) -> None:
    """Print one case's table: the seed's pairing, then each policy and on_missing."""
    feed = case_feed(case, seconds)
    seed = seed_case(feed, case.names, rounds)
    print(f"\n{case.name}: {len(feed)} frames in {seconds:g} s, slowest {min(case.fps):g} fps")
    print(
        "| pairing | on_missing | sets/s / slowest | full | partial | skew p50 ms | skew p95 ms "
        "| wait p95 ms | CPU us/frame | / seed | used/dropped per camera |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print(_row(case, "seed", "—", seed, seconds, seed.cpu))
    for policy in case.policies:
        for missing in MISSING:
            runs = [run_case(case, feed, policy, missing) for _ in range(rounds)]
            out = runs[-1]  # every round gives the same sets; the CPU time varies
            out.cpu = statistics.median(run.cpu for run in runs)
            print(_row(case, policy, missing, out, seconds, seed.cpu))
            if verbose:  # every counter the aligner keeps, whatever their names
                for name, counts in out.counts.items():
                    values = ", ".join(
                        f"{f.name} {getattr(counts, f.name)}" for f in fields(counts)
                    )
                    print(f"    {policy}/{missing} {name}: {values}")


def main() -> int:
    """Measure each receiver ``--rounds`` times for 2, 4 and 16 cameras, then each case;
    print medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30.0, help="synthetic time per case")
    parser.add_argument("--verbose", action="store_true", help="every camera counter per row")
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
    config = GroupConfig()
    print(f"\nmax_skew {config.max_skew} s, max_wait {config.max_wait} s, history 8, arrival")
    print(f"{PATH_DELAY * 1e3:g} ms after capture + 0-{JITTER * 1e3:g} ms; sets/s over the slowest")
    for case in CASES:
        report_case(case, args.rounds, args.seconds, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
