"""Glass-to-glass latency of the reader, measured from pixel stamps.

A :class:`~syncstream.probe.StampSender` streams 640x480@30 H.264 (x264 ultrafast,
zerolatency) as MPEG-TS over UDP loopback, with its send time painted into every frame.
Each receiver below reads the stream in turn, repeatedly, and for every frame it hands to
the program computes ``now - stamp`` after the frame is available as a BGR array:

- ``syncstream``: :class:`syncstream.VideoStream` (``read()``, then ``frame.image``);
- ``syncstream-parsed``: the same with ``parse_frames=True``: FFmpeg's parser finds where
  each frame ends, which it only knows when the next one starts (the reader before
  ``parse_frames`` existed);
- ``floor``: a bare PyAV low-delay decode loop in the calling thread, the least any
  Python receiver can do (the same demuxer options: each PES packet a frame, slice
  threads, BGR conversion);
- ``floor-parsed``: the same loop with FFmpeg's parser, as PyAV opens a stream by default;
- ``seed-sequential``: ``cv2.VideoCapture(url).read()`` in a loop, as the tutorial's
  first receiver;
- ``seed-threaded``: the tutorial's threaded ``VideoStream`` (a thread overwriting the
  newest frame; the program polls it like ``cv2.waitKey(1)`` would).

Run: ``python3 benchmarks/latency.py`` (``--rounds``, ``--seconds``; ``--omit-pes-length``
sends with ffmpeg's default MPEG-TS muxing, to show what the sender recipe is worth).
Prints, per receiver, the median over rounds of each round's p50 and p95 in ms, and the
ratio of each p50 to the floor's p50 measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import av
import cv2

from syncstream import StampNotFound, VideoStream
from syncstream.probe import StampSender, decode_stamp
from syncstream.senders import free_udp_port
from syncstream.sources.base import LOW_DELAY_OPTIONS

Receiver = Callable[[str, float, float], list[float]]


def _latency(image: Any) -> float | None:
    now = time.time()
    try:
        return now - decode_stamp(image)
    except StampNotFound:
        return None


def receive_syncstream(url: str, warmup: float, seconds: float) -> list[float]:
    """Our reader: VideoStream.read() and the BGR image."""
    return _read_stream(VideoStream(url), warmup, seconds)


def receive_syncstream_parsed(url: str, warmup: float, seconds: float) -> list[float]:
    """Our reader with FFmpeg's parser finding frame ends."""
    return _read_stream(VideoStream(url, parse_frames=True), warmup, seconds)


def _read_stream(stream: VideoStream, warmup: float, seconds: float) -> list[float]:
    samples: list[float] = []
    with stream:
        stream.read(timeout=10)  # opened and past the first keyframe, like the others
        begin = time.monotonic()
        while (elapsed := time.monotonic() - begin) < warmup + seconds:
            latency = _latency(stream.read(timeout=10).image)
            if elapsed >= warmup and latency is not None:
                samples.append(latency)
    return samples


def receive_floor(url: str, warmup: float, seconds: float) -> list[float]:
    """A bare PyAV low-delay loop: demux (each PES a frame), decode, convert."""
    options = {**LOW_DELAY_OPTIONS, "fflags": "nobuffer+noparse"}
    return _bare_loop(url, options, warmup, seconds)


def receive_floor_parsed(url: str, warmup: float, seconds: float) -> list[float]:
    """The same loop with FFmpeg's parser."""
    return _bare_loop(url, LOW_DELAY_OPTIONS, warmup, seconds)


def _bare_loop(url: str, options: dict[str, str], warmup: float, seconds: float) -> list[float]:
    samples: list[float] = []
    container = av.open(url, format="mpegts", options=options, timeout=(10, 10))
    try:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        begin = time.monotonic()
        for packet in container.demux(stream):
            for frame in packet.decode():
                latency = _latency(frame.to_ndarray(format="bgr24"))
                elapsed = time.monotonic() - begin
                if elapsed >= warmup and latency is not None:
                    samples.append(latency)
            if time.monotonic() - begin >= warmup + seconds:
                break
    finally:
        container.close()
    return samples


def receive_seed_sequential(url: str, warmup: float, seconds: float) -> list[float]:
    """The tutorial's first receiver: cv2.VideoCapture(url).read() in a loop."""
    samples: list[float] = []
    cap = cv2.VideoCapture(url)
    try:
        begin = time.monotonic()
        while cap.isOpened() and (elapsed := time.monotonic() - begin) < warmup + seconds:
            ok, frame = cap.read()
            if ok:
                latency = _latency(frame)
                if elapsed >= warmup and latency is not None:
                    samples.append(latency)
    finally:
        cap.release()
    return samples


class SeedVideoStream:
    """The tutorial's threaded reader, kept as published (Python 3 spelling only)."""

    def __init__(self, src: str) -> None:
        self.cap = cv2.VideoCapture(src)
        self.ret, self.frame = self.cap.read()
        self.started = False
        self.read_lock = threading.Lock()

    def start(self) -> SeedVideoStream:
        self.started = True
        self.thread = threading.Thread(target=self.update, args=())
        self.thread.start()
        return self

    def update(self) -> None:
        while self.started:
            ret, frame = self.cap.read()
            self.read_lock.acquire()
            self.ret, self.frame = ret, frame
            self.read_lock.release()

    def read(self) -> tuple[bool, Any]:
        self.read_lock.acquire()
        ret = self.ret
        frame = self.frame.copy()
        self.read_lock.release()
        return ret, frame

    def release(self) -> None:
        self.started = False
        self.thread.join()
        self.cap.release()


def pair_newest(
    streams: list[SeedVideoStream], warmup: float, seconds: float
) -> list[tuple[float, float]]:
    """The tutorial's pairing: the newest frame of each running reader, polled every ms.

    Each new combination of painted stamps (some camera has a new frame) after ``warmup``
    gives (latest minus earliest stamp, now minus earliest stamp) in seconds.
    """
    pairs: list[tuple[float, float]] = []
    last: list[float] = []
    begin = time.monotonic()
    while (elapsed := time.monotonic() - begin) < warmup + seconds:
        frames = [stream.read() for stream in streams]
        if all(ok for ok, _ in frames):
            now = time.time()
            try:
                stamps = [decode_stamp(frame) for _, frame in frames]
            except StampNotFound:
                stamps = []
            if stamps and stamps != last:
                last = stamps
                if elapsed >= warmup:
                    pairs.append((max(stamps) - min(stamps), now - min(stamps)))
        time.sleep(0.001)
    return pairs


def receive_seed_threaded(url: str, warmup: float, seconds: float) -> list[float]:
    """The tutorial's threaded VideoStream, polled every millisecond like cv2.waitKey(1)."""
    samples: list[float] = []
    stream = SeedVideoStream(url).start()
    last_stamp = None
    try:
        begin = time.monotonic()
        while (elapsed := time.monotonic() - begin) < warmup + seconds:
            ok, frame = stream.read()
            if ok:
                now = time.time()
                try:
                    stamp = decode_stamp(frame)
                except StampNotFound:
                    stamp = None
                if stamp is not None and stamp != last_stamp:
                    last_stamp = stamp
                    if elapsed >= warmup:
                        samples.append(now - stamp)
            time.sleep(0.001)
    finally:
        stream.release()
    return samples


RECEIVERS: dict[str, Receiver] = {
    "syncstream": receive_syncstream,
    "syncstream-parsed": receive_syncstream_parsed,
    "floor": receive_floor,
    "floor-parsed": receive_floor_parsed,
    "seed-sequential": receive_seed_sequential,
    "seed-threaded": receive_seed_threaded,
}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    """Run every receiver ``--rounds`` times, interleaved, and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--omit-pes-length", action="store_true",
                        help="send with ffmpeg's default (PES length omitted)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    port = free_udp_port()
    url = f"udp://127.0.0.1:{port}"
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in RECEIVERS}
    with StampSender(url, size=(640, 480), fps=30.0, pes_length=not args.omit_pes_length):
        for round_index in range(args.rounds):
            for name, receive in RECEIVERS.items():
                samples = receive(url, args.warmup, args.seconds)
                if not samples:
                    print(f"{name}: no stamped frame received", file=sys.stderr)
                    return 1
                p50, p95 = _percentile(samples, 0.5), _percentile(samples, 0.95)
                results[name].append((p50, p95, len(samples)))
                print(f"round {round_index + 1} {name:<16} p50 {p50 * 1000:6.1f} ms "
                      f"p95 {p95 * 1000:6.1f} ms ({len(samples)} frames)",
                      file=sys.stderr)  # fmt: skip

    floor_p50 = statistics.median(r[0] for r in results["floor"])
    summary = {
        name: {
            "p50_ms": round(statistics.median(r[0] for r in runs) * 1000, 1),
            "p95_ms": round(statistics.median(r[1] for r in runs) * 1000, 1),
            "frames_per_round": round(statistics.median(r[2] for r in runs)),
            "p50_vs_floor": round(statistics.median(r[0] for r in runs) / floor_p50, 2),
        }
        for name, runs in results.items()
    }
    if args.json:
        report = {"rounds": args.rounds, "seconds": args.seconds,
                  "pes_length": not args.omit_pes_length, "receivers": summary}  # fmt: skip
        print(json.dumps(report))
        return 0
    sender = "PES length omitted (ffmpeg default)" if args.omit_pes_length else "syncstream recipe"
    print(f"latency over UDP loopback, 640x480@30 x264 zerolatency, sender: {sender}")
    print(f"medians over {args.rounds} rounds of {args.seconds:g} s")
    print(f"{'receiver':<16} {'p50 ms':>8} {'p95 ms':>8} {'p50/floor':>10}")
    for name, row in summary.items():
        print(f"{name:<16} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['p50_vs_floor']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
