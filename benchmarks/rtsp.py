"""Capture-time error, set skew and latency of 2-4 RTSP cameras, one behind a longer path.

Each camera is a real RTSP server (GStreamer's, ``tests/rtsp_server.py --stamp``) on
127.0.0.1 serving 640x480@25 H.264 in which every picture carries its capture time
painted as a stamp, with RTCP sender reports mapping RTP timestamps to that same time, as
an IP camera's do. The last camera offers RTP over TCP only and is reached through a
:class:`DelayProxy` that holds everything it sends by ``--delay`` (a slower network path:
its pictures, and its sender reports with them, arrive later). The servers are started
afresh every round and each captures on its own clock from its start, so the cameras'
frame phases differ (by anything up to a frame interval, different in every round) and no
pairing can beat that difference. A round whose servers do not all serve a session is run
again on fresh servers (said on stderr). Each receiver takes its turn for ``--seconds``
per round:

- ``syncstream``: :class:`syncstream.StreamGroup` with ``sync="nearest"`` and no
  ``max_skew`` limit, reading the ``rtsp://`` URLs (default transport), measured once every
  camera's frames carry the camera's capture time (the first sender report comes within
  a few seconds of PLAY). Per frame: the capture-time error, ``capture_time`` minus the
  painted stamp;
- ``seed``: the tutorial's receiver: ``cv2.VideoCapture(url)`` in a thread per camera
  keeping the newest frame, the main loop taking the newest frame of each (polled every
  millisecond like ``cv2.waitKey(1)``), a set whenever a camera has a new frame, i.e.
  frames paired by arrival.

For every set the program holds: the skew is the spread of the painted stamps of its
pictures (not of any metadata, which alignment itself uses) and the latency is ``now -
earliest stamp`` once its pictures are in hand as BGR arrays.

Run: ``python3 benchmarks/rtsp.py`` (``--cameras``, ``--rounds``, ``--seconds``,
``--delay``, ``--json``). Prints, per receiver, the median over rounds of each round's
p50 and p95 in ms, and the ratio to the seed measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from stamped_sets import (  # this folder: what this benchmark and mixed.py do alike
    SetSamples,
    measure,
    print_head,
    print_table,
    receive_seed,
    report_reconnects,
    rtsp_server,
    wait_for_set,
)

from syncstream import Camera, StreamGroup

SIZE = (640, 480)
FPS = 25


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that delays what the server sends by ``delay`` seconds.

    What the client sends goes through at once. Each chunk from the server is held until
    ``delay`` after it arrived, in order, so an RTSP session with RTP interleaved over TCP
    sees a path ``delay`` longer for its pictures and its sender reports alike.
    """

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self._upstream, self._delay = upstream, delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return int(self._listener.getsockname()[1])

    def __enter__(self) -> DelayProxy:
        self._spawn(self._accept, "delay-proxy-accept")
        return self

    def __exit__(self, *_: object) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=2.0)
        for sock in self._sockets:
            sock.close()

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            held: deque[tuple[float, bytes | None]] = deque()
            ready = threading.Condition()
            self._spawn(self._forward, "delay-proxy-up", client, server)
            self._spawn(self._hold, "delay-proxy-hold", server, held, ready)
            self._spawn(self._release, "delay-proxy-down", client, held, ready)

    @staticmethod
    def _forward(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def _hold(
        self,
        source: socket.socket,
        held: deque[tuple[float, bytes | None]],
        ready: threading.Condition,
    ) -> None:
        data: bytes | None = b""
        while data is not None:
            try:
                data = source.recv(65536) or None
            except OSError:
                data = None
            with ready:
                held.append((time.monotonic() + self._delay, data))
                ready.notify()

    def _release(
        self,
        target: socket.socket,
        held: deque[tuple[float, bytes | None]],
        ready: threading.Condition,
    ) -> None:
        while not self._closed.is_set():
            with ready:
                ready.wait_for(lambda: bool(held) or self._closed.is_set())
                if not held:
                    return
                due, data = held[0]
                if (wait := due - time.monotonic()) > 0:
                    ready.wait(timeout=wait)  # an earlier chunk never arrives later
                    continue
                held.popleft()
            if data is None:
                break
            try:
                target.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


@dataclass
class Samples(SetSamples):
    """What one receiver measured in one round (seconds), with syncstream's capture times."""

    capture_errors: list[float] = field(default_factory=list)

    def series(self) -> dict[str, list[float]]:
        """Skew, latency and capture-time error (as magnitudes)."""
        return {**super().series(), "capture_error": [abs(e) for e in self.capture_errors]}


def receive_syncstream(urls: list[str], seconds: float) -> Samples:
    """StreamGroup(sync="nearest") on the rtsp:// cameras, once every camera reports."""
    samples = Samples()
    cams = [Camera(name=f"cam{i}", url=url) for i, url in enumerate(urls)]
    with StreamGroup(cams, sync="nearest", max_skew=None) as group:
        wait_for_set(group, lambda fs: fs.complete and fs.clock == "sender")
        begin = time.monotonic()
        while time.monotonic() - begin < seconds:
            fs = group.read(timeout=10)
            if not fs.complete or fs.clock != "sender":
                samples.unmeasured[f"missing {fs.missing}" if fs.missing else "arrival"] += 1
                continue
            stamps = samples.measure([frame.image for frame in fs.frames.values()])
            if stamps is None:
                continue
            for frame, stamp in zip(fs.frames.values(), stamps, strict=True):
                if frame.capture_time is not None:
                    samples.capture_errors.append(frame.capture_time - stamp)
        report_reconnects(group)
    return samples


RECEIVERS: dict[str, Callable[[list[str], float], Samples]] = {
    "syncstream": receive_syncstream,
    "seed": lambda urls, seconds: receive_seed(urls, seconds, Samples()),
}


@contextlib.contextmanager
def cameras(count: int, delay: float) -> Iterator[list[str]]:
    """``count`` stamped RTSP servers; the last one only over TCP, behind a DelayProxy."""
    server = rtsp_server()
    with contextlib.ExitStack() as stack:
        urls = []
        for index in range(count):
            delayed = index == count - 1 and delay > 0
            extra = ["--stamp", "--transports", "tcp"] if delayed else ["--stamp"]
            url = stack.enter_context(
                server(width=SIZE[0], height=SIZE[1], fps=FPS, extra_args=extra)
            )
            if delayed:
                host_port, _, path = url.removeprefix("rtsp://").partition("/")
                host, _, port = host_port.rpartition(":")
                proxy = stack.enter_context(DelayProxy((host, int(port)), delay))
                url = f"rtsp://{host}:{proxy.port}/{path}"
            urls.append(url)
        yield urls


def main() -> int:
    """Run every receiver ``--rounds`` times, interleaved, and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per round")
    parser.add_argument("--delay", type=float, default=0.100,
                        help="extra delay of the last camera's path (s); 0: none")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    measured = measure(
        args.rounds,
        lambda: cameras(args.cameras, args.delay),
        RECEIVERS,
        args.seconds,
        (("skew_p95_ms", "latency_p50_ms"), 3),
    )
    if measured is None:
        return 1
    summary, load = measured
    settings = {"cameras": args.cameras, "rounds": args.rounds, "seconds": args.seconds,
                "delay": args.delay}  # fmt: skip
    title = (f"{args.cameras} RTSP cameras {SIZE[0]}x{SIZE[1]}@{FPS} x264 on loopback, the last "
             f"+{args.delay * 1000:g} ms; skew and latency from pixel stamps")  # fmt: skip
    if print_head(settings, title, summary, load, args.json):
        return 0
    columns = ("capture_error_p50_ms", "capture_error_p95_ms", "skew_p50_ms", "skew_p95_ms",
               "latency_p50_ms", "latency_p95_ms", "sets_per_s", "skew_p95_vs_seed",
               "latency_p50_vs_seed")  # fmt: skip
    heads = ("err p50", "err p95", "skew p50", "skew p95", "lat p50", "lat p95", "sets/s",
             "p95/seed", "lat/seed")  # fmt: skip
    print_table(summary, columns, heads, 11)
    return 0


if __name__ == "__main__":
    sys.exit(main())
