"""A program's own pictures sent as a camera: FrameSender against piping them to ffmpeg.

Two ways for a Python program to send its BGR pictures as low-delay MPEG-TS over UDP
loopback, 640x480 at 30 fps, with the send time painted into every picture
(:func:`~syncstream.probe.encode_stamp`):

- ``FrameSender``: :class:`syncstream.senders.FrameSender`, encoding in-process with PyAV
  (the pictures of ``syncstream send``'s test pattern);
- ``ffmpeg pipe``: :class:`syncstream.probe.StampSender`, raw ``yuv420p`` frames written
  to an ffmpeg process's stdin, which encodes and sends them with the sender recipe.

A :class:`~syncstream.VideoStream` in another process reads each in turn (the receiver's
threads and the sender's do not share a GIL, as on two hosts); for every frame it hands over,
``now - stamp`` once the BGR picture is available is the glass-to-glass latency. For the
FrameSender, ``send()``'s own cost (what the program's loop pays: a copy of the picture)
is timed too, and ``capture_time`` is checked against the stamp. A burst of 40
1920x1080 noise pictures sent in a loop (nobody listening) shows what a busy encoder
does: the pictures it has no time for are dropped, ``send()`` never waits.

Run: ``python3 benchmarks/frame_sender.py`` (``--rounds``, ``--seconds``). Prints, per
sender, the median over rounds of each round's p50 and p95 in ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import threading
import time
from multiprocessing.pool import AsyncResult, Pool

import numpy as np

from syncstream import StampNotFound, VideoStream
from syncstream.cli.send import pattern_picture
from syncstream.probe import StampSender, decode_stamp
from syncstream.senders import FrameSender, free_udp_port

SIZE = (640, 480)
FPS = 30.0
BURST = 40
_POOL: Pool  # the receiver's process, started by main()
#: What a receiver gives back: latencies, and capture_time minus stamp, in seconds.
Received = tuple[list[float], list[float]]


def _read(url: str, warmup: float, seconds: float) -> Received:
    """Latencies (s) of the frames read from ``url`` for ``seconds`` after ``warmup``, and
    how far each frame's ``capture_time`` is from its stamp (s). Runs in its own process,
    as a receiver would: the sender's threads do not compete with it for the GIL."""
    latencies: list[float] = []
    capture_errors: list[float] = []
    with VideoStream(url) as stream:
        start = time.monotonic()
        while time.monotonic() - start < warmup + seconds:
            frame = stream.read(timeout=5.0)
            image = frame.image
            now = time.time()
            try:
                stamp = decode_stamp(image)
            except StampNotFound:
                continue
            if time.monotonic() - start >= warmup:
                latencies.append(now - stamp)
                if frame.capture_time is not None:
                    capture_errors.append(abs(frame.capture_time - stamp))
    return latencies, capture_errors


def _receive(url: str, warmup: float, seconds: float) -> AsyncResult[Received]:
    """Start :func:`_read` in a receiver process."""
    return _POOL.apply_async(_read, (url, warmup, seconds))


def _pattern_loop(sender: FrameSender, stop: threading.Event, send_costs: list[float]) -> None:
    period = 1.0 / FPS
    next_mono = time.monotonic()
    index = 0
    while not stop.is_set():
        now = time.time()
        picture = pattern_picture(SIZE, index, now)
        before = time.perf_counter()
        sender.send(picture, capture_time=now)
        send_costs.append(time.perf_counter() - before)
        index += 1
        next_mono += period
        stop.wait(max(0.0, next_mono - time.monotonic()))


def round_frame_sender(
    warmup: float, seconds: float, send_costs: list[float], capture_errors: list[float]
) -> list[float]:
    """One round of FrameSender: latencies in s."""
    port = free_udp_port()
    url = f"udp://127.0.0.1:{port}"
    stop = threading.Event()
    receiver = _receive(url, warmup, seconds)
    with FrameSender(url, fps=FPS) as sender:
        thread = threading.Thread(target=_pattern_loop, args=(sender, stop, send_costs))
        thread.start()
        try:
            latencies, errors = receiver.get(timeout=warmup + seconds + 30)
        finally:
            stop.set()
            thread.join()
    capture_errors += errors
    return latencies


def round_ffmpeg_pipe(warmup: float, seconds: float) -> list[float]:
    """One round of raw frames piped to ffmpeg: latencies in s."""
    port = free_udp_port()
    url = f"udp://127.0.0.1:{port}"
    receiver = _receive(url, warmup, seconds)
    with StampSender(url, size=SIZE, fps=FPS):
        latencies, _ = receiver.get(timeout=warmup + seconds + 30)
    return latencies


def round_burst(send_costs: list[float]) -> tuple[int, int]:
    """40 pictures of 1920x1080 noise sent in a loop, nobody listening: (sent, dropped)."""
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    with FrameSender(f"udp://127.0.0.1:{free_udp_port()}", fps=FPS) as sender:
        for _ in range(BURST):
            before = time.perf_counter()
            sender.send(noise)
            send_costs.append(time.perf_counter() - before)
    return sender.stats.sent, sender.stats.dropped


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    """Run the rounds and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    args = parser.parse_args()
    global _POOL
    _POOL = multiprocessing.get_context("spawn").Pool(1)
    results: dict[str, list[tuple[float, float]]] = {"FrameSender": [], "ffmpeg pipe": []}
    send_costs: list[float] = []
    capture_errors: list[float] = []
    bursts: list[tuple[int, int]] = []
    burst_costs: list[float] = []
    for _ in range(args.rounds):
        bursts.append(round_burst(burst_costs))
        ours = round_frame_sender(args.warmup, args.seconds, send_costs, capture_errors)
        piped = round_ffmpeg_pipe(args.warmup, args.seconds)
        for name, latencies in (("FrameSender", ours), ("ffmpeg pipe", piped)):
            results[name].append((_p(latencies, 0.5), _p(latencies, 0.95)))
    print(f"{SIZE[0]}x{SIZE[1]}@{FPS:g}, {args.rounds} rounds of {args.seconds:g} s")
    for name, rounds in results.items():
        p50 = statistics.median(r[0] for r in rounds) * 1000
        p95 = statistics.median(r[1] for r in rounds) * 1000
        print(f"{name:12s} latency p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
    print(f"FrameSender send() median {statistics.median(send_costs) * 1e6:.0f} us")
    print(f"capture_time - stamp: max {max(capture_errors) * 1e6:.1f} us")
    print(
        f"burst of {BURST} 1920x1080 pictures: sent/dropped per round {bursts}, "
        f"send() median {statistics.median(burst_costs) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
