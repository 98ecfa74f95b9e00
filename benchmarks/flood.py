"""UDP flood: how many of a camera's frames get through a flood of TS packets on its port.

A camera (:class:`syncstream.probe.StampSender`, 320x240@25, the send time painted into
each picture) streams MPEG-TS to a UDP port that a :class:`syncstream.VideoStream` reads,
in a child process of its own so that its peak resident memory is the reader's alone.
Once the stream is live, another socket on 127.0.0.1 (the same source address as the
camera, so that no allow-list of senders can tell them apart) sends ``--rate`` datagrams
a second (1000 by default) for ``--seconds`` (5): each seven TS packets with a sync byte,
a random PID, a random continuity counter and payload-start flag, and a random payload
behind a PES header where the flag is set (as a misdirected sender's video would look).

Per round: the frames whose painted send time falls in the flood, over the frames the
camera sent in it (``kept``); the longest gap between two of them; the reader's
reconnects; the packets it dropped as foreign to the programme; the reader process's
peak RSS (``ru_maxrss``) and CPU (per second, from the first frame on, with the
conversion of every picture to read its stamp). The ``quiet`` scenario is the same
without the flood.

``--filter-cost`` times the reader's per-datagram TS work instead (table watch and PID
filter) on normal streams cut as ffmpeg sends them, seven packets a datagram: the 1 s
320x240 ``tests/data/testsrc_wallclock.ts`` (half of its datagrams carry a table) and ten
seconds of 640x480@30 H.264 made by ffmpeg; the median over ``--rounds`` of the CPU µs
per datagram.

Run: ``python3 benchmarks/flood.py`` (``--rounds``, ``--seconds``, ``--rate``, ``--json``),
``python3 benchmarks/flood.py --filter-cost``. Prints medians and ranges over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import pathlib
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from syncstream import Frame, VideoStream
from syncstream.errors import StampNotFound
from syncstream.probe import StampSender, decode_stamp
from syncstream.senders import free_udp_port
from syncstream.sources.mpegts import ProgramWatch
from syncstream.testing.flood import UdpFlood

SIZE = (320, 240)
FPS = 25.0
PACKETS = 7  # per datagram, as ffmpeg sends MPEG-TS over UDP (pkt_size 1316)
TS_FILE = pathlib.Path(__file__).parents[1] / "tests" / "data" / "testsrc_wallclock.ts"


# -- the reader, in a child process --------------------------------------------------------


def reader(port: int) -> int:
    """Child: read the camera, print ``ready`` at its first frame, then on ``stop`` from
    stdin print a JSON line: the painted send times read, the stream's stats, peak RSS."""
    stamps: list[float] = []
    frames: queue.SimpleQueue[Frame | None] = queue.SimpleQueue()

    def read_stamps() -> None:
        while (frame := frames.get()) is not None:
            with contextlib.suppress(StampNotFound):  # a damaged picture: not kept
                stamps.append(decode_stamp(frame.image))

    worker = threading.Thread(target=read_stamps, name="stamps")
    worker.start()
    with VideoStream(f"udp://127.0.0.1:{port}", name="cam") as stream:
        stream.add_listener(frames.put)
        stream.read(timeout=20)
        print("ready", flush=True)
        start = resource.getrusage(resource.RUSAGE_SELF)
        start_mono = time.monotonic()
        sys.stdin.readline()
        stats = stream.stats
        end = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime) / (
            time.monotonic() - start_mono
        )
    frames.put(None)
    worker.join()
    counters = {
        name: getattr(stats, name)
        for name in (
            "decoded",
            "decode_errors",
            "rejected",
            "reconnects",
            "foreign_packets",
            "foreign_datagrams",
        )
        if hasattr(stats, name)
    }
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"stamps": stamps, "stats": counters, "rss_mib": peak_kib / 1024, "cpu": cpu}
    print(json.dumps(result))
    return 0


def run_round(seconds: float, rate: float, seed: int) -> dict[str, float]:
    """One camera, one reader process, a flood of ``rate`` datagrams/s (none for 0)."""
    port = free_udp_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--reader", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    sender = StampSender(f"udp://127.0.0.1:{port}", size=SIZE, fps=FPS).start()
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the reader did not start")
        time.sleep(1.0)  # a steady stream first
        flood = UdpFlood(port, rate=rate, seed=seed) if rate > 0 else None
        start_time, sent_before = time.time(), sender.frames_sent
        if flood is not None:
            flood.start()
        time.sleep(seconds)
        if flood is not None:
            flood.stop()
        end_time, sent = time.time(), sender.frames_sent - sent_before
        time.sleep(0.5)  # the last frames of the flood reach the reader
        child.stdin.write("stop\n")
        child.stdin.flush()
        result = json.loads(child.stdout.readline())
    finally:
        sender.close()
        child.wait(30)
    inside = sorted(s for s in result["stamps"] if start_time <= s < end_time)
    edges = [start_time, *inside, end_time]
    gap = max(b - a for a, b in itertools.pairwise(edges))
    stats = result["stats"]
    return {
        "kept": len(inside) / sent,
        "gap_s": gap,
        "reconnects": stats["reconnects"],
        "foreign": stats.get("foreign_packets", -1),
        "rss_mib": result["rss_mib"],
        "cpu_percent": result["cpu"] * 100,
        "datagrams": flood.sent if flood is not None else 0,
    }


def _vga_stream(directory: str) -> bytes:
    """Ten seconds of 640x480@30 H.264 in MPEG-TS, as ffmpeg muxes it."""
    path = os.path.join(directory, "vga.ts")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30",
         "-t", "10", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
         "-g", "30", "-f", "mpegts", path],
        check=True, timeout=120,
    )  # fmt: skip
    return pathlib.Path(path).read_bytes()


def filter_cost(rounds: int) -> dict[str, list[float]]:
    """CPU µs per datagram of the reader's TS work on normal streams, per round: the table
    watch and PID filter (:meth:`ProgramWatch.filter`; before it existed, ``feed``)."""
    with tempfile.TemporaryDirectory() as directory:
        streams = {"320x240 1 s (test file)": TS_FILE.read_bytes(), "640x480@30 10 s": b""}
        streams["640x480@30 10 s"] = _vga_stream(directory)
    step = PACKETS * 188
    samples: dict[str, list[float]] = {}
    for name, data in streams.items():
        datagrams = [data[i : i + step] for i in range(0, len(data) - step + 1, step)]
        repeat = max(1, 20000 // len(datagrams))
        for _ in range(rounds):
            watch = ProgramWatch()
            work = getattr(watch, "filter", watch.feed)
            start = time.thread_time()  # CPU time: the other processes' load does not count
            for _ in range(repeat):
                for datagram in datagrams:
                    work(datagram)
            cost = (time.thread_time() - start) / (repeat * len(datagrams)) * 1e6
            samples.setdefault(name, []).append(cost)
    return samples


def _row(name: str, values: list[float], unit: str, digits: int = 1) -> str:
    return (
        f"{name:<26} {statistics.median(values):>9.{digits}f} {min(values):>9.{digits}f} "
        f"{max(values):>9.{digits}f} {unit}"
    )


def main() -> int:
    """Run the rounds and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="flood duration")
    parser.add_argument("--rate", type=float, default=1000.0, help="datagrams per second")
    parser.add_argument("--filter-cost", action="store_true", help="time the TS work only")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--reader", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader is not None:
        return reader(args.reader)
    if args.filter_cost:
        costs = filter_cost(args.rounds)
        if args.json:
            print(json.dumps({"us_per_datagram": costs}))
        else:
            print(f"TS work per datagram of {PACKETS} packets, CPU µs, {args.rounds} rounds")
            print(f"{'':<26} {'median':>9} {'min':>9} {'max':>9}")
            for name, cost in costs.items():
                print(_row(name, cost, "µs", 2))
        return 0
    report: dict[str, list[dict[str, float]]] = {"quiet": [], "flood": []}
    for index in range(args.rounds):
        report["quiet"].append(run_round(args.seconds, 0, index))
        report["flood"].append(run_round(args.seconds, args.rate, index))
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"camera {SIZE[0]}x{SIZE[1]}@{FPS:g}, {args.seconds:g} s, flood {args.rate:g} "
        f"datagrams/s of {PACKETS} random-PID packets, {args.rounds} rounds, pid {os.getpid()}"
    )
    print(f"{'':<26} {'median':>9} {'min':>9} {'max':>9}")
    for scenario, rounds in report.items():
        print(_row(f"{scenario}: kept", [r["kept"] * 100 for r in rounds], "%"))
        print(_row(f"{scenario}: longest gap", [r["gap_s"] for r in rounds], "s", 2))
        print(_row(f"{scenario}: reconnects", [r["reconnects"] for r in rounds], "", 0))
        print(_row(f"{scenario}: foreign packets", [r["foreign"] for r in rounds], "", 0))
        print(_row(f"{scenario}: peak RSS", [r["rss_mib"] for r in rounds], "MiB"))
        print(_row(f"{scenario}: reader CPU", [r["cpu_percent"] for r in rounds], "% core"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
