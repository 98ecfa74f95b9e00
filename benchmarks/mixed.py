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
on its capture time within ``REPORT_WAIT``, or the tutorial's reader not opening it) is
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
import importlib.util
import json
import os
import pathlib
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType

from latency import SeedVideoStream, pair_newest

from syncstream import Camera, StampNotFound, StreamGroup
from syncstream.probe import StampSender, decode_stamp
from syncstream.senders import free_udp_port

SIZE = (320, 240)
FPS = 25
NAMES = ("rtsp", "udp", "mjpeg")
#: Longest wait for the RTSP camera's first sender report (RFC 3550: within 7.5 s).
REPORT_WAIT = 15.0
#: Times a round is tried, on fresh servers, when a server does not serve a session.
ROUND_ATTEMPTS = 3
#: Seconds between two readings of the arrival delay in use.
STATS_EVERY = 1.0


@functools.cache
def _test_module(name: str) -> ModuleType:
    """A module of tests/ (the RTSP server fixture, the MJPEG peer), loaded by path."""
    path = pathlib.Path(__file__).resolve().parent.parent / "tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CameraFailed(RuntimeError):
    """A camera's server did not serve a session: the round is run again on fresh servers."""


@dataclass
class Samples:
    """What one receiver measured in one round (seconds)."""

    skews: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    #: ``fs.skew`` of each set: the spread of the keys syncstream aligned on.
    reported_skews: list[float] = field(default_factory=list)
    #: Per camera: ``arrival_time - stamp`` of its frames.
    delays: dict[str, list[float]] = field(default_factory=dict)
    #: The MJPEG camera's arrival delay in use, read once every STATS_EVERY.
    arrival_delays: list[float] = field(default_factory=list)
    #: Sets not measured, by reason (partial, RTSP camera by arrival, stamp unreadable).
    unmeasured: Counter[str] = field(default_factory=Counter)


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
        deadline = time.monotonic() + REPORT_WAIT
        while not ((fs := group.read(timeout=15)).complete and fs.clocks["rtsp"] == "sender"):
            if time.monotonic() > deadline:
                raise CameraFailed(f"syncstream: no full set on capture time in {REPORT_WAIT} s")
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
            images = [frame.image for frame in frames.values()]
            now = time.time()
            try:
                stamps = [decode_stamp(image) for image in images]
            except StampNotFound:
                samples.unmeasured["no stamp"] += 1
                continue
            samples.skews.append(max(stamps) - min(stamps))
            samples.latencies.append(now - min(stamps))
            samples.reported_skews.append(fs.skew)
            for (name, frame), stamp in zip(frames.items(), stamps, strict=True):
                samples.delays[name].append(frame.arrival_time - stamp)
        for name, camera in group.stats.cameras.items():
            if camera.stream.reconnects or camera.stream.last_error:
                print(f"syncstream: {name} reconnected {camera.stream.reconnects} times, "
                      f"last error: {camera.stream.last_error}", file=sys.stderr)  # fmt: skip
    return samples


def _open_seed(url: str, attempts: int = 2) -> SeedVideoStream:
    """The tutorial's reader on ``url``, opened again if the server refused the session."""
    for _ in range(attempts):
        stream = SeedVideoStream(url)
        if stream.ret:
            return stream
        stream.cap.release()
        print(f"seed: {url} not opened", file=sys.stderr)
    raise CameraFailed(f"seed: {url} not opened in {attempts} attempts")


def receive_seed(urls: dict[str, str], seconds: float) -> Samples:
    """The tutorial's loop: the newest frame of each threaded cv2 reader, polled every ms."""
    samples = Samples()
    streams: list[SeedVideoStream] = []
    try:
        for url in urls.values():
            streams.append(_open_seed(url).start())
        for skew, latency in pair_newest(streams, 0.0, seconds):
            samples.skews.append(skew)
            samples.latencies.append(latency)
    finally:
        for stream in streams:
            stream.release()
    return samples


def _receivers(arrival_delay: float) -> dict[str, Callable[[dict[str, str], float], Samples]]:
    return {
        "estimated": functools.partial(receive_syncstream, arrival_delay=None),
        "given": functools.partial(receive_syncstream, arrival_delay=arrival_delay),
        "seed": receive_seed,
    }


@contextlib.contextmanager
def cameras() -> Iterator[dict[str, str]]:
    """The three stamped cameras, started afresh: their URLs by name."""
    fixture, peers = _test_module("rtsp_fixture"), _test_module("peers")
    reason = fixture.rtsp_server_available()
    if reason is not None:
        raise RuntimeError(reason)
    port = free_udp_port()
    udp_url = f"udp://127.0.0.1:{port}"
    with (
        fixture.rtsp_server(
            width=SIZE[0], height=SIZE[1], fps=FPS, extra_args=["--stamp"]
        ) as rtsp_url,
        peers.MjpegServer([], fps=float(FPS), stamp_size=SIZE) as mjpeg,
        StampSender(udp_url, size=SIZE, fps=float(FPS)),
    ):
        yield {"rtsp": str(rtsp_url), "udp": udp_url, "mjpeg": str(mjpeg.url)}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _summary(rows: list[Samples], seconds: float) -> dict[str, float]:
    """Medians over rounds of each round's p50 and p95 in ms, delays' p50 in ms, sets/s."""
    figures: dict[str, list[float]] = {}
    for samples in rows:
        series = {
            "skew": samples.skews,
            "latency": samples.latencies,
            "reported_skew": samples.reported_skews,
        }
        for key, values in series.items():
            if values:
                figures.setdefault(f"{key}_p50_ms", []).append(_percentile(values, 0.5))
                figures.setdefault(f"{key}_p95_ms", []).append(_percentile(values, 0.95))
        for name, values in samples.delays.items():
            if values:
                figures.setdefault(f"{name}_delay_p50_ms", []).append(_percentile(values, 0.5))
        if samples.arrival_delays:
            in_use = statistics.median(samples.arrival_delays)
            figures.setdefault("arrival_delay_ms", []).append(in_use)
            if samples.delays["mjpeg"]:
                error = in_use - _percentile(samples.delays["mjpeg"], 0.5)
                figures.setdefault("arrival_delay_error_ms", []).append(error)
        figures.setdefault("sets_per_s", []).append(len(samples.skews) / seconds)
    scale = {"sets_per_s": 1.0}
    return {
        key: round(statistics.median(values) * scale.get(key, 1000.0), 1)
        for key, values in figures.items()
    }


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
    load_before = os.getloadavg()[0]
    results: dict[str, list[Samples]] = {name: [] for name in receivers}
    for round_index in range(args.rounds):
        for attempt in range(1, ROUND_ATTEMPTS + 1):
            try:
                with cameras() as urls:  # fresh phases every round
                    rows = {
                        name: receive(urls, args.seconds) for name, receive in receivers.items()
                    }
                break
            except CameraFailed as exc:
                print(f"round {round_index + 1} attempt {attempt}: {exc}", file=sys.stderr)
        else:
            return 1
        for name, samples in rows.items():
            if not samples.skews:
                print(f"{name}: no stamped set received ({dict(samples.unmeasured)})",
                      file=sys.stderr)  # fmt: skip
                return 1
            results[name].append(samples)
            row = _summary([samples], args.seconds)
            print(f"round {round_index + 1} {name:<9} "
                  + " ".join(f"{k} {v}" for k, v in row.items())
                  + f" unmeasured {dict(samples.unmeasured)}", file=sys.stderr)  # fmt: skip
    load_after = os.getloadavg()[0]

    summary = {name: _summary(rows, args.seconds) for name, rows in results.items()}
    seed = summary["seed"]
    for row in summary.values():
        for key in ("skew_p50_ms", "skew_p95_ms", "latency_p50_ms"):
            ratio = row[key] / seed[key] if seed[key] else 0.0
            row[key.removesuffix("_ms") + "_vs_seed"] = round(ratio, 2)
    if args.json:
        report = {"rounds": args.rounds, "seconds": args.seconds,
                  "arrival_delay": args.arrival_delay, "load": [load_before, load_after],
                  "receivers": summary}  # fmt: skip
        print(json.dumps(report))
        return 0
    print(f"RTSP (sender reports), UDP MPEG-TS and MJPEG cameras, {SIZE[0]}x{SIZE[1]}@{FPS} "
          f"on loopback; 'given': arrival_delay {args.arrival_delay * 1000:g} ms")  # fmt: skip
    print(f"medians over {args.rounds} rounds of {args.seconds:g} s; "
          f"load average {load_before:.2f} -> {load_after:.2f}")  # fmt: skip
    columns = ("skew_p50_ms", "skew_p95_ms", "reported_skew_p50_ms", "reported_skew_p95_ms",
               "latency_p50_ms", "latency_p95_ms", "sets_per_s", "skew_p50_vs_seed",
               "skew_p95_vs_seed", "latency_p50_vs_seed")  # fmt: skip
    heads = ("skew p50", "skew p95", "fs p50", "fs p95", "lat p50", "lat p95", "sets/s",
             "p50/seed", "p95/seed", "lat/seed")  # fmt: skip
    print(f"{'receiver':<10}" + "".join(f"{h:>10}" for h in heads))
    for name, row in summary.items():
        print(f"{name:<10}" + "".join(f"{row.get(c, '-')!s:>10}" for c in columns))
    delay_columns = ("rtsp_delay_p50_ms", "udp_delay_p50_ms", "mjpeg_delay_p50_ms",
                     "arrival_delay_ms", "arrival_delay_error_ms")  # fmt: skip
    delay_heads = ("rtsp", "udp", "mjpeg", "in use", "error")
    print("true delay p50 (arrival - stamp) per camera; the MJPEG camera's arrival delay "
          "in use and its error (in use - true), ms")  # fmt: skip
    print(f"{'receiver':<10}" + "".join(f"{h:>10}" for h in delay_heads))
    for name, row in summary.items():
        if name != "seed":
            print(f"{name:<10}" + "".join(f"{row.get(c, '-')!s:>10}" for c in delay_columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
