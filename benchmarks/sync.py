"""Skew and latency of frame sets when one camera's path is 100 ms (+-10 ms) longer.

Two :class:`~syncstream.probe.StampSender` cameras stream 640x480@30 H.264 as MPEG-TS over
UDP loopback, each painting its send time into every picture; camera b's stream passes an
:class:`~syncstream.testing.relay.ImpairmentRelay` adding 100 ms +- 10 ms. Each receiver
below takes its turn for ``--seconds`` per round; for every set it hands over, the skew is
the spread of the *pixel* stamps of its pictures (not of any metadata, which alignment
itself uses) and the latency is ``now - oldest stamp`` when the set is available:

- ``seed``: the tutorial's receiver: its threaded ``VideoStream`` per camera, the main
  loop taking the newest frame of each (polled every millisecond like
  ``cv2.waitKey(1)``), a set whenever a camera has a new frame;
- ``latest``: :class:`syncstream.StreamGroup` with ``sync="latest"`` (the same pairing);
- ``nearest``: :class:`syncstream.StreamGroup` with ``sync="nearest"`` and no
  ``max_skew`` limit, so no set is hidden from the measure.

Run: ``python3 benchmarks/sync.py`` (``--rounds``, ``--seconds``, ``--delay``,
``--jitter``, ``--json``). Prints, per receiver, the median over rounds of each round's
skew minimum, p50 and p95 and latency p50 and p95 in ms, and the skew p95 ratio against
the seed measured in the same run. The two cameras run free, so no pairing can beat their
phase difference (somewhere in 0-16.7 ms, different in every run): ``nearest``'s minimum
skew shows it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

from latency import SeedVideoStream, pair_newest

from syncstream import Camera, StampNotFound, StreamGroup
from syncstream.config import SyncPolicy
from syncstream.probe import StampSender, decode_stamp
from syncstream.senders import free_udp_port
from syncstream.testing.relay import ImpairmentRelay

Sample = tuple[float, float]  # (skew, latency) in seconds
Receiver = Callable[[list[str], float, float], list[Sample]]


def _sample(images: list[object]) -> Sample | None:
    now = time.time()
    try:
        stamps = [decode_stamp(image) for image in images]  # type: ignore[arg-type]
    except StampNotFound:
        return None
    return max(stamps) - min(stamps), now - min(stamps)


def receive_seed(urls: list[str], warmup: float, seconds: float) -> list[Sample]:
    """The tutorial's loop: the newest frame of each threaded reader, polled every ms."""
    streams = [SeedVideoStream(url).start() for url in urls]
    try:
        return pair_newest(streams, warmup, seconds)
    finally:
        for stream in streams:
            stream.release()


def _group_receiver(policy: SyncPolicy) -> Receiver:
    def receive(urls: list[str], warmup: float, seconds: float) -> list[Sample]:
        samples: list[Sample] = []
        cams = [Camera(name=f"cam{i}", url=url) for i, url in enumerate(urls)]
        with StreamGroup(cams, sync=policy, max_skew=None) as group:
            group.read(timeout=15)
            begin = time.monotonic()
            while (elapsed := time.monotonic() - begin) < warmup + seconds:
                fs = group.read(timeout=10)
                if not fs.complete:
                    continue
                sample = _sample([frame.image for frame in fs.frames.values()])
                if elapsed >= warmup and sample is not None:
                    samples.append(sample)
        return samples

    receive.__doc__ = f"StreamGroup(sync={policy!r})"
    return receive


RECEIVERS: dict[str, Receiver] = {
    "seed": receive_seed,
    "latest": _group_receiver("latest"),
    "nearest": _group_receiver("nearest"),
}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    """Run every receiver ``--rounds`` times, interleaved, and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured per round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--delay", type=float, default=0.100, help="extra delay of camera b (s)")
    parser.add_argument("--jitter", type=float, default=0.010, help="+- jitter of camera b (s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    port_a, port_b = free_udp_port(), free_udp_port()
    urls = [f"udp://127.0.0.1:{port_a}", f"udp://127.0.0.1:{port_b}"]
    keys = ("skew_min", "skew_p50", "skew_p95", "latency_p50", "latency_p95")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in RECEIVERS}
    with (
        ImpairmentRelay(urls[1], delay=args.delay, jitter=args.jitter, seed=1) as relay,
        StampSender(urls[0], size=(640, 480), fps=30.0),
        StampSender(relay.url, size=(640, 480), fps=30.0),
    ):
        for round_index in range(args.rounds):
            for name, receive in RECEIVERS.items():
                samples = receive(urls, args.warmup, args.seconds)
                if not samples:
                    print(f"{name}: no stamped set received", file=sys.stderr)
                    return 1
                skews = [s for s, _ in samples]
                latencies = [lat for _, lat in samples]
                row = {
                    "skew_min": min(skews),
                    "skew_p50": _percentile(skews, 0.5),
                    "skew_p95": _percentile(skews, 0.95),
                    "latency_p50": _percentile(latencies, 0.5),
                    "latency_p95": _percentile(latencies, 0.95),
                    "sets_per_s": len(samples) / args.seconds,
                }
                results[name].append(row)
                print(f"round {round_index + 1} {name:<8} "
                      + " ".join(f"{k} {row[k] * 1000:6.1f} ms" for k in keys)
                      + f" ({row['sets_per_s']:.1f} sets/s)", file=sys.stderr)  # fmt: skip

    summary: dict[str, dict[str, float]] = {}
    for name, rows in results.items():
        summary[name] = {
            k + "_ms": round(statistics.median(r[k] for r in rows) * 1000, 1) for k in keys
        }
        summary[name]["sets_per_s"] = round(statistics.median(r["sets_per_s"] for r in rows), 1)
    seed_p95 = summary["seed"]["skew_p95_ms"]
    for row in summary.values():
        row["skew_p95_vs_seed"] = round(row["skew_p95_ms"] / seed_p95, 3) if seed_p95 else 0.0
    if args.json:
        report = {"rounds": args.rounds, "seconds": args.seconds, "delay": args.delay,
                  "jitter": args.jitter, "receivers": summary}  # fmt: skip
        print(json.dumps(report))
        return 0
    print(f"2 cameras 640x480@30 x264 over UDP loopback, camera b +{args.delay * 1000:g} ms "
          f"+-{args.jitter * 1000:g} ms; skew from pixel stamps")  # fmt: skip
    print(f"medians over {args.rounds} rounds of {args.seconds:g} s")
    print(f"{'receiver':<9} {'skew min':>9} {'skew p50':>9} {'skew p95':>9} {'lat p50':>8} "
          f"{'lat p95':>8} {'sets/s':>7} {'p95/seed':>9}")  # fmt: skip
    for name, row in summary.items():
        print(f"{name:<9} {row['skew_min_ms']:>9} {row['skew_p50_ms']:>9} {row['skew_p95_ms']:>9} "
              f"{row['latency_p50_ms']:>8} {row['latency_p95_ms']:>8} {row['sets_per_s']:>7} "
              f"{row['skew_p95_vs_seed']:>9}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
