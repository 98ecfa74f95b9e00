"""Soak: does a long session leak memory, threads, file descriptors or processes?

Four local cameras (ffmpeg test patterns, 320x240@30 by default) in one StreamGroup with a
wall, a recorder (rotating segments every 10 s) and a web view with an MJPEG client, for
``--seconds`` (600 by default). Meanwhile the session is churned the way a long run is:
every ``--churn`` seconds one camera's ffmpeg is killed (the group restarts it) and the web
client reconnects. Every ``--sample`` seconds it samples this process's resident memory,
threads, open file descriptors and child processes, and the ffmpeg processes streaming to
the group's ports.

Prints the samples, then start (after a warm-up) against end, and the growth of each.
Threads, descriptors and processes are flat when the median of the last third of the
samples is not above that of the first third, and no sender is left after close. Kills
fall between samples, and a sample waits (up to 5 s) for a sender killed just before to
run again, so a restart in flight is not taken for a leak. Memory is judged on the second
half of the run (allocators and caches settle first): the slope of a least-squares line
through those samples, in MiB per hour.

With ``--cycles N`` it soaks starts and stops instead: a group of four simulated local
cameras, built as ``syncstream demo`` builds them, is started, read for ``--cycle-seconds``
(2 by default) and closed, N times. Per cycle: the time from ``start()`` to the first set,
a ``ReadTimeout`` on the first read (``--first-timeout``, 10 s) or on a later one
(``--read-timeout``, 1 s), the sets per second over the cameras' rate, and the threads,
descriptors and child processes left after ``close()``. A cycle lasts at most the start,
the first timeout, the cycle's seconds, one read timeout and the close.

Run: ``python3 benchmarks/soak.py`` (``--seconds``, ``--cameras``, ``--churn``, ``--sample``),
``python3 benchmarks/soak.py --cycles 200``. Not part of the test suite: it takes ten minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass

from syncstream import (
    Camera,
    GroupConfig,
    ReadTimeout,
    Recorder,
    SenderConfig,
    StreamGroup,
    SyncStreamError,
    Wall,
    WebView,
)
from syncstream.cli.demo import demo_config
from syncstream.senders import free_udp_port
from syncstream.stats import percentile

PATTERNS = ("testsrc", "smptebars", "testsrc2", "rgbtestsrc", "smptehdbars", "pal75bars")


@dataclass(frozen=True)
class Sample:
    """What the process holds at one instant."""

    elapsed: float
    rss_mib: float
    threads: int
    fds: int
    children: int
    senders: int
    sets: int


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _children() -> int:
    me, count = os.getpid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == me:
                        count += 1
            except (OSError, ValueError, IndexError):
                continue
    return count


def _senders(ports: list[int]) -> int:
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True)
    marks = [f"udp://127.0.0.1:{port}?" for port in ports]
    return sum(1 for line in ps.stdout.splitlines() if any(m in line for m in marks))


def _sample(start: float, ports: list[int], group: StreamGroup) -> Sample:
    """What the process holds, once a sender killed just before is running again (up to
    5 s): a restart in flight is churn, not a leak."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not all(
        sender.is_running for sender in group.senders.values()
    ):
        time.sleep(0.05)
    return Sample(
        elapsed=time.monotonic() - start,
        rss_mib=_rss_mib(),
        threads=threading.active_count(),
        fds=len(os.listdir("/proc/self/fd")),
        children=_children(),
        senders=_senders(ports),
        sets=group.stats.sets,
    )


def _watch_stream(url: str, stop: threading.Event, every: float) -> None:
    """A web client reading the MJPEG stream, reconnecting every ``every`` seconds."""
    while not stop.is_set():
        until = time.monotonic() + every
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                while not stop.is_set() and time.monotonic() < until and response.read(65536):
                    pass
        except OSError:
            time.sleep(0.2)


def _slope_per_hour(samples: list[Sample]) -> float:
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return float("nan")
    xs = [s.elapsed for s in half]
    ys = [s.rss_mib for s in half]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return cov / var * 3600 if var else float("nan")


def soak(seconds: float, cameras: int, churn: float, every: float, size: tuple[int, int]) -> int:
    """Run the soak; exit status 0 when threads, fds and processes end where they started."""
    ports = [free_udp_port() for _ in range(cameras)]
    cams = [
        Camera(
            name=f"cam{i + 1}",
            sender=SenderConfig(input=PATTERNS[i % len(PATTERNS)], size=size, clock_text=True),
            port=port,
        )
        for i, port in enumerate(ports)
    ]
    samples: list[Sample] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="syncstream-soak-") as directory:
        with StreamGroup(cams) as group:
            wall = Wall(tile_size=(320, 180))
            group.add_processor(wall)
            group.add_processor(Recorder(directory, segment_seconds=10))
            view = WebView(wall)
            group.add_processor(view)
            client = threading.Thread(
                target=_watch_stream, args=(view.url + "stream.mjpg", stop, churn), daemon=True
            )
            client.start()
            group.read(timeout=15)
            time.sleep(min(10.0, seconds / 10))  # warm-up: caches, first segments
            start = time.monotonic()
            next_churn = start + churn / 2  # kills fall between samples
            victim = 0
            while (now := time.monotonic()) - start < seconds:
                samples.append(_sample(start, ports, group))
                print(_line(samples[-1]), flush=True)
                while time.monotonic() < min(start + seconds, now + every):
                    if time.monotonic() >= next_churn:
                        pid = group.senders[cams[victim % cameras].name].pid
                        if pid is not None:
                            os.kill(pid, signal.SIGKILL)  # the group restarts it
                        victim += 1
                        next_churn += churn
                    time.sleep(0.2)
            samples.append(_sample(start, ports, group))
            print(_line(samples[-1]), flush=True)
            restarts = sum(c.sender_restarts for c in group.stats.cameras.values())
            stop.set()
        client.join(10)
    return _report(samples, restarts, ports)


def _line(sample: Sample) -> str:
    return (
        f"{sample.elapsed:7.0f} s  rss {sample.rss_mib:7.1f} MiB  threads {sample.threads:3d}  "
        f"fds {sample.fds:4d}  children {sample.children:2d}  senders {sample.senders:2d}  "
        f"sets {sample.sets}"
    )


def _report(samples: list[Sample], restarts: int, ports: list[int]) -> int:
    first, last = samples[0], samples[-1]
    print()
    print("| measure | start | end | change |")
    print("| --- | ---: | ---: | ---: |")
    for name in ("rss_mib", "threads", "fds", "children", "senders"):
        a, b = getattr(first, name), getattr(last, name)
        print(f"| {name} | {a:.1f} | {b:.1f} | {b - a:+.1f} |")
    slope = _slope_per_hour(samples)
    print(f"rss slope over the second half: {slope:+.1f} MiB/hour")
    print(f"sets: {last.sets - first.sets} in {last.elapsed:.0f} s; sender restarts: {restarts}")
    time.sleep(1)
    left = _senders(ports)
    print(f"senders left after close: {left}")
    third = max(1, len(samples) // 3)

    def grew(name: str) -> bool:  # a leak grows with time; a restart in flight does not last
        early = statistics.median(getattr(s, name) for s in samples[:third])
        late = statistics.median(getattr(s, name) for s in samples[-third:])
        return bool(late > early)

    flat = not any(grew(name) for name in ("threads", "fds", "children")) and left == 0
    print("resources: flat" if flat else "resources: GREW")
    return 0 if flat else 1


@dataclass
class Cycle:
    """One start, a few seconds of reading, one close."""

    first_set: float | None = None  # seconds from start() to the first set
    first_timeout: bool = False
    later_timeouts: int = 0
    reads: int = 0
    partial: int = 0  # sets read without every camera
    rate: float = float("nan")  # sets/s emitted after the first, over the slowest camera's fps
    close: float = float("nan")  # seconds close() took
    error: str | None = None
    threads: int = 0  # left after close()
    fds: int = 0
    children: int = 0


def _resources() -> tuple[int, int, int]:
    return threading.active_count(), len(os.listdir("/proc/self/fd")), _children()


def _cycle(
    cams: list[Camera], config: GroupConfig, seconds: float, first: float, later: float
) -> Cycle:
    """Start a group, read sets for ``seconds`` after the first, close it."""
    cycle = Cycle()
    fps = min(camera.sender.fps if camera.sender else 30.0 for camera in cams)
    begin = time.monotonic()
    group = StreamGroup(cams, config)
    try:
        group.start()
        try:
            frameset = group.read(timeout=first)
        except ReadTimeout:
            cycle.first_timeout = True
            return cycle
        cycle.first_set = time.monotonic() - begin
        cycle.reads, cycle.partial = 1, int(bool(frameset.missing))
        since, sets = time.monotonic(), group.stats.sets
        while time.monotonic() - since < seconds:
            try:
                frameset = group.read(timeout=later)
            except ReadTimeout:
                cycle.later_timeouts += 1
                continue
            cycle.reads += 1
            cycle.partial += bool(frameset.missing)
        cycle.rate = (group.stats.sets - sets) / (time.monotonic() - since) / fps
    except SyncStreamError as exc:
        cycle.error = f"{type(exc).__name__}: {exc}"
    finally:
        closing = time.monotonic()
        group.close()
        cycle.close = time.monotonic() - closing
        cycle.threads, cycle.fds, cycle.children = _resources()
    return cycle


def cycle_soak(
    count: int, cameras: int, seconds: float, size: tuple[int, int], first: float, later: float
) -> int:
    """Start and close a demo group ``count`` times; exit status 0 when no read timed out,
    no cycle failed and nothing was left behind."""
    session = demo_config(cameras, seconds, size=size)
    ports = [camera.port for camera in session.cameras if camera.port is not None]
    before = _resources()
    cycles: list[Cycle] = []
    for index in range(count):
        cycle = _cycle(session.cameras, session.group, seconds, first, later)
        cycles.append(cycle)
        first_set = "none" if cycle.first_set is None else f"{cycle.first_set:.2f} s"
        print(
            f"cycle {index + 1:3d}: first set {first_set}, sets/s {cycle.rate:.2f} of the "
            f"cameras' rate, timeouts {int(cycle.first_timeout)}/{cycle.later_timeouts}, "
            f"partial {cycle.partial}/{cycle.reads}, close {cycle.close:.2f} s, threads "
            f"{cycle.threads} fds {cycle.fds} children {cycle.children}"
            + (f", {cycle.error}" if cycle.error else ""),
            flush=True,
        )
    time.sleep(1)
    left = _senders(ports)
    return _report_cycles(cycles, before, left)


def _report_cycles(cycles: list[Cycle], before: tuple[int, int, int], left: int) -> int:
    firsts = sorted(c.first_set for c in cycles if c.first_set is not None)
    rates = [c.rate for c in cycles if not math.isnan(c.rate)]
    closes = sorted(c.close for c in cycles)
    first_timeouts = sum(c.first_timeout for c in cycles)
    later_timeouts = sum(c.later_timeouts for c in cycles)
    errors = [c.error for c in cycles if c.error]
    print()
    print(f"cycles: {len(cycles)}, failed: {len(errors)}")
    print(f"ReadTimeouts: first read {first_timeouts}, later reads {later_timeouts}")
    if firsts:
        p50, p95 = percentile(firsts, 0.5), percentile(firsts, 0.95)
        print(f"time to the first set: p50 {p50:.2f} s, p95 {p95:.2f} s, max {firsts[-1]:.2f} s")
    if rates:
        print(
            f"sets/s over the cameras' rate: median {statistics.median(rates):.2f}, "
            f"min {min(rates):.2f}"
        )
    print(f"partial sets read: {sum(c.partial for c in cycles)} of {sum(c.reads for c in cycles)}")
    print(f"close: p50 {statistics.median(closes):.2f} s, max {closes[-1]:.2f} s")
    print()
    print("| resource | before | after cycle 1 | after the last | max after a cycle |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for i, name in enumerate(("threads", "fds", "children")):
        after = [getattr(c, name) for c in cycles]
        print(f"| {name} | {before[i]} | {after[0]} | {after[-1]} | {max(after)} |")
    print(f"senders left after close: {left}")
    flat = all(
        getattr(cycles[-1], n) <= getattr(cycles[0], n) for n in ("threads", "fds", "children")
    )
    ok = flat and left == 0 and not errors and first_timeouts == later_timeouts == 0
    print("cycles: ok" if ok else "cycles: NOT OK")
    return 0 if ok else 1


def main() -> int:
    """Parse the arguments and soak."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--churn", type=float, default=30.0, help="seconds between kills")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--cycles", type=int, default=0, help="start/stop cycles instead")
    parser.add_argument("--cycle-seconds", type=float, default=2.0, help="reading per cycle")
    parser.add_argument("--first-timeout", type=float, default=10.0, help="first read (s)")
    parser.add_argument("--read-timeout", type=float, default=1.0, help="later reads (s)")
    args = parser.parse_args()
    width, _, height = args.size.partition("x")
    if args.cycles > 0:
        return cycle_soak(
            args.cycles,
            args.cameras,
            args.cycle_seconds,
            (int(width), int(height)),
            args.first_timeout,
            args.read_timeout,
        )
    return soak(args.seconds, args.cameras, args.churn, args.sample, (int(width), int(height)))


if __name__ == "__main__":
    sys.exit(main())
