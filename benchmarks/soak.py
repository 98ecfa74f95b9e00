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

Run: ``python3 benchmarks/soak.py`` (``--seconds``, ``--cameras``, ``--churn``, ``--sample``).
Not part of the test suite: it takes ten minutes.
"""

from __future__ import annotations

import argparse
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

from syncstream import Camera, Recorder, SenderConfig, StreamGroup, Wall, WebView
from syncstream.senders import free_udp_port

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


def main() -> int:
    """Parse the arguments and soak."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--churn", type=float, default=30.0, help="seconds between kills")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--size", default="320x240")
    args = parser.parse_args()
    width, _, height = args.size.partition("x")
    return soak(args.seconds, args.cameras, args.churn, args.sample, (int(width), int(height)))


if __name__ == "__main__":
    sys.exit(main())
