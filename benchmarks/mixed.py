"""Set skew and latency of a mixed group: cameras with capture times and one without.

Three cameras on 127.0.0.1, 320x240@25, every picture painted with the instant it was
taken (read back by :func:`syncstream.probe.decode_stamp`):

- ``rtsp``: GStreamer's RTSP server (``tests/rtsp_server.py --stamp``), H.264 over
  RTP/TCP, with RTCP sender reports mapping its RTP timestamps to that instant, as an IP
  camera's do: its frames carry capture times from the first sender report on;
- ``udp``: a :class:`~syncstream.probe.StampSender`, H.264 in MPEG-TS over UDP, whose
  PTS carry the sender's wall clock: its frames carry capture times from the start;
- ``mjpeg``: an MJPEG camera over HTTP that says nothing of its clock (tests/peers.py
  ``MjpegServer(stamp_size=...)``): its frames go by arrival minus its arrival delay.

The servers are started afresh every round, each on its own timer, so the cameras' frame
phases differ in every round. A round whose RTSP server does not serve a session (no set
on its capture time within 15 s, or the tutorial's reader not opening it) is
run again on fresh servers (said on stderr). Each receiver takes its turn for
``--seconds`` per round:

- ``estimated``: :class:`syncstream.StreamGroup` with the default policy (``nearest``,
  ``max_skew`` 50 ms), the MJPEG camera's arrival delay estimated (the median lowest
  arrival minus capture time of the cameras with capture times);
- ``given``: the same with ``Camera(arrival_delay=--arrival-delay)`` for the MJPEG camera;
- ``seed``: the tutorial's receiver: ``cv2.VideoCapture(url)`` in a thread per camera
  keeping the newest frame (OpenCV's FFmpeg backend reads all three URLs), the main loop
  taking the newest frame of each, polled every millisecond: frames paired by arrival.

The syncstream receivers count complete sets from the first one with the RTSP camera on
its capture time (``fs.clocks["rtsp"] == "sender"``). For every set the program holds: the
true skew is the spread of the painted stamps of its pictures, the latency ``now -
earliest stamp`` once its pictures are in hand as BGR arrays; for syncstream also
``fs.skew`` (the spread of the keys it aligned on, what the library reports), each
camera's true delay ``arrival_time - stamp``, and, once a second, the MJPEG camera's
arrival delay in use (``group.stats.cameras["mjpeg"].arrival_delay``).

Run: ``python3 benchmarks/mixed.py`` (``--rounds``, ``--seconds``, ``--arrival-delay``,
``--json``). Prints, per receiver, the median over rounds of each round's p50 and p95 in
ms, the ratio to the seed measured in the same run, and the cameras' delays.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from stamped_sets import (  # this folder: what this benchmark and rtsp.py do alike
    SetSamples,
    measure,
    percentile,
    print_head,
    print_table,
    receive_seed,
    report_reconnects,
    rtsp_server,
    tests_module,
    wait_for_set,
)

from syncstream import Camera, StreamGroup
from syncstream.probe import StampSender
from syncstream.senders import free_udp_port

SIZE = (320, 240)
FPS = 25
NAMES = ("rtsp", "udp", "mjpeg")
#: Seconds between two readings of the arrival delay in use.
STATS_EVERY = 1.0


@dataclass
class Samples(SetSamples):
    """What one receiver measured in one round (seconds), with syncstream's own figures."""

    #: ``fs.skew`` of each set: the spread of the keys syncstream aligned on.
    reported_skews: list[float] = field(default_factory=list)
    #: Per camera: ``arrival_time - stamp`` of its frames.
    delays: dict[str, list[float]] = field(default_factory=dict)
    #: The MJPEG camera's arrival delay in use, read once every STATS_EVERY.
    arrival_delays: list[float] = field(default_factory=list)

    def series(self) -> dict[str, list[float]]:
        """Skew, latency and the skew syncstream reports."""
        return {**super().series(), "reported_skew": self.reported_skews}

    def add_figures(self, figures: dict[str, list[float]]) -> None:
        """Each camera's delay p50, the MJPEG camera's arrival delay in use and its error."""
        for name, values in self.delays.items():
            if values:
                figures.setdefault(f"{name}_delay_p50_ms", []).append(percentile(values, 0.5))
        if self.arrival_delays:
            in_use = statistics.median(self.arrival_delays)
            figures.setdefault("arrival_delay_ms", []).append(in_use)
            if self.delays["mjpeg"]:
                error = in_use - percentile(self.delays["mjpeg"], 0.5)
                figures.setdefault("arrival_delay_error_ms", []).append(error)


def receive_syncstream(
    urls: dict[str, str], seconds: float, arrival_delay: float | None
) -> Samples:
    """The default StreamGroup on the three cameras, once the RTSP camera has capture times."""
    samples = Samples(delays={name: [] for name in NAMES})
    cams = [
        Camera(name="rtsp", url=urls["rtsp"], rtsp_transport="tcp"),
        Camera(name="udp", url=urls["udp"]),
        Camera(name="mjpeg", url=urls["mjpeg"], arrival_delay=arrival_delay),
    ]
    with StreamGroup(cams) as group:
        wait_for_set(group, lambda fs: fs.complete and fs.clocks["rtsp"] == "sender")
        begin = next_stats = time.monotonic()
        while (now_mono := time.monotonic()) - begin < seconds:
            if now_mono >= next_stats:
                next_stats = now_mono + STATS_EVERY
                in_use = group.stats.cameras["mjpeg"].arrival_delay
                if in_use is not None:
                    samples.arrival_delays.append(in_use)
            fs = group.read(timeout=10)
            if not fs.complete:
                samples.unmeasured[f"missing {fs.missing}"] += 1
                continue
            if fs.clocks != {"rtsp": "sender", "udp": "sender", "mjpeg": "arrival"}:
                samples.unmeasured[f"clocks {fs.clocks}"] += 1
                continue
            frames = {name: fs[name] for name in NAMES}
            stamps = samples.measure([frame.image for frame in frames.values()])
            if stamps is None:
                continue
            samples.reported_skews.append(fs.skew)
            for (name, frame), stamp in zip(frames.items(), stamps, strict=True):
                samples.delays[name].append(frame.arrival_time - stamp)
        report_reconnects(group)
    return samples


def _receivers(arrival_delay: float) -> dict[str, Callable[[dict[str, str], float], Samples]]:
    return {
        "estimated": functools.partial(receive_syncstream, arrival_delay=None),
        "given": functools.partial(receive_syncstream, arrival_delay=arrival_delay),
        "seed": lambda urls, seconds: receive_seed(urls.values(), seconds, Samples()),
    }


@contextlib.contextmanager
def cameras() -> Iterator[dict[str, str]]:
    """The three stamped cameras, started afresh: their URLs by name."""
    server, peers = rtsp_server(), tests_module("peers")
    port = free_udp_port()
    udp_url = f"udp://127.0.0.1:{port}"
    with (
        server(width=SIZE[0], height=SIZE[1], fps=FPS, extra_args=["--stamp"]) as rtsp_url,
        peers.MjpegServer([], fps=float(FPS), stamp_size=SIZE) as mjpeg,
        StampSender(udp_url, size=SIZE, fps=float(FPS)),
    ):
        yield {"rtsp": str(rtsp_url), "udp": udp_url, "mjpeg": str(mjpeg.url)}


def main() -> int:
    """Run every receiver ``--rounds`` times, interleaved, and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per round")
    parser.add_argument("--arrival-delay", type=float, default=0.005,
                        help="the MJPEG camera's arrival_delay in the 'given' run (s)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    receivers = _receivers(args.arrival_delay)
    ratios = (("skew_p50_ms", "skew_p95_ms", "latency_p50_ms"), 2)
    measured = measure(args.rounds, cameras, receivers, args.seconds, ratios)
    if measured is None:
        return 1
    summary, load = measured
    settings = {"rounds": args.rounds, "seconds": args.seconds,
                "arrival_delay": args.arrival_delay}  # fmt: skip
    title = (f"RTSP (sender reports), UDP MPEG-TS and MJPEG cameras, {SIZE[0]}x{SIZE[1]}@{FPS} "
             f"on loopback; 'given': arrival_delay {args.arrival_delay * 1000:g} ms")  # fmt: skip
    if print_head(settings, title, summary, load, args.json):
        return 0
    columns = ("skew_p50_ms", "skew_p95_ms", "reported_skew_p50_ms", "reported_skew_p95_ms",
               "latency_p50_ms", "latency_p95_ms", "sets_per_s", "skew_p50_vs_seed",
               "skew_p95_vs_seed", "latency_p50_vs_seed")  # fmt: skip
    heads = ("skew p50", "skew p95", "fs p50", "fs p95", "lat p50", "lat p95", "sets/s",
             "p50/seed", "p95/seed", "lat/seed")  # fmt: skip
    print_table(summary, columns, heads, 10)
    delay_columns = ("rtsp_delay_p50_ms", "udp_delay_p50_ms", "mjpeg_delay_p50_ms",
                     "arrival_delay_ms", "arrival_delay_error_ms")  # fmt: skip
    delay_heads = ("rtsp", "udp", "mjpeg", "in use", "error")
    print("true delay p50 (arrival - stamp) per camera; the MJPEG camera's arrival delay "
          "in use and its error (in use - true), ms")  # fmt: skip
    ours = {name: row for name, row in summary.items() if name != "seed"}
    print_table(ours, delay_columns, delay_heads, 10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
