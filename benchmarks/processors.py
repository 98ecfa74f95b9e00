"""CPU cost of the processors per frame set, and whether they slow a live group.

1. **Wall**: milliseconds to compose a set of 4 and of 16 cameras (640x480 pictures,
   already decoded) into a wall of 480x270 tiles, against the seed's composition in the
   same run (``cv2.resize`` of each picture to the tile size, ``np.concatenate`` into rows
   and columns, one ``cv2.putText`` of the time).
2. **Speaker detection**: milliseconds per camera for :class:`SpeakerDetector` (Haar faces
   on a reduced picture plus mouth motion) on scikit-image's astronaut photo at 640x480,
   against the seed's face step in the same run (Haar ``detectMultiScale`` on the
   full-size grey picture).
3. **Web view**: process CPU (share of one core) while a 1280x720 picture is published 30
   times a second to 1, 4 and 16 MJPEG clients, for :class:`WebView` (one JPEG per
   picture, shared) and for the seed's server in the same run (each client's handler
   encodes each picture itself).
4. **Group**: four local cameras (320x240, 30 fps) for ``--seconds``, once bare and once
   with a wall, a speaker detector, a recorder and a web view with a client attached;
   sets per second and set latency p50 of both runs. A processor that slowed the group
   would show here.

Run: ``python3 benchmarks/processors.py`` (``--rounds``, ``--seconds``, ``--skip-group``).
Prints medians over rounds.
"""

from __future__ import annotations

import argparse
import http.server
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from functools import partial

import cv2
import numpy as np

from syncstream import Camera, SenderConfig, StreamGroup, SyncStreamError
from syncstream.frames import BGRImage, Frame, FrameSet
from syncstream.processors.output import ImageOutput
from syncstream.processors.wall import Wall
from syncstream.processors.web import WebView
from syncstream.senders import free_udp_port

TILE = (480, 270)


def synthetic_set(count: int, seq: int = 0) -> FrameSet:
    """A complete set of ``count`` cameras with 640x480 noise pictures, already decoded."""
    rng = np.random.default_rng(seq)
    now = time.time()
    frames = {}
    for i in range(count):
        image: BGRImage = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        frames[f"c{i}"] = Frame(
            source=f"c{i}",
            seq=seq,
            width=640,
            height=480,
            arrival_time=now,
            arrival_mono=time.monotonic(),
            capture_time=now - 0.05,
            image=image,
        )
    return FrameSet(seq, frames, (), 0.001, now - 0.05, "sender", now, time.monotonic())


def seed_compose(frameset: FrameSet, columns: int) -> BGRImage:
    """The seed's composition generalised to a grid: resize, concatenate, stamp the time."""
    tiles = [cv2.resize(frame.image, TILE) for frame in frameset.frames.values()]
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    wall: BGRImage = np.concatenate(rows, axis=0)
    text = time.strftime("%H:%M:%S")
    cv2.putText(wall, text, (10, 100), cv2.FONT_HERSHEY_SIMPLEX, 1, (210, 155, 155), 4)
    return wall


def per_call_ms(fn: Callable[[], object], calls: int) -> float:
    """Mean milliseconds per call over ``calls`` calls (after one warm-up call)."""
    fn()
    begin = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - begin) / calls * 1000


def bench_wall(rounds: int) -> None:
    """Part 1: the wall against the seed's composition."""
    print("wall: ms per set (640x480 cameras, 480x270 tiles)")
    print(f"{'cameras':>7} {'seed ms':>8} {'wall ms':>8} {'wall/seed':>9}")
    for count in (4, 16):
        frameset = synthetic_set(count)
        wall = Wall(list(frameset.frames), tile_size=TILE)
        columns = wall.grid[1]
        seed, ours = [], []
        for _ in range(rounds):
            seed.append(per_call_ms(partial(seed_compose, frameset, columns), 50))
            ours.append(per_call_ms(partial(wall.compose, frameset), 50))
        s, w = statistics.median(seed), statistics.median(ours)
        print(f"{count:>7} {s:>8.2f} {w:>8.2f} {w / s:>9.2f}")


def _feed(processor: Callable[[FrameSet], None], make: Callable[[], FrameSet]) -> None:
    processor(make())


def bench_speaker(rounds: int) -> None:
    """Part 2: speaker detection per camera against the seed's full-size Haar detection."""
    from skimage import data

    from syncstream.processors.speaker import SpeakerDetector

    rgb = data.astronaut()  # type: ignore[no-untyped-call]
    photo = np.ascontiguousarray(cv2.cvtColor(cv2.resize(rgb, (640, 480)), cv2.COLOR_RGB2BGR))
    cascade = cv2.CascadeClassifier(
        getattr(cv2, "data").haarcascades + "haarcascade_frontalface_default.xml"  # noqa: B009
    )
    now = time.time()
    seq = [0]

    def one_set() -> FrameSet:
        seq[0] += 1
        image = photo.copy()
        frame = Frame(
            source="c0",
            seq=seq[0],
            width=640,
            height=480,
            arrival_time=now,
            arrival_mono=0.0,
            capture_time=now,
            image=image,
        )
        return FrameSet(seq[0], {"c0": frame}, (), 0.0, now, "sender", now, 0.0)

    def seed_step() -> None:
        gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
        cascade.detectMultiScale(gray)

    print("speaker detection: ms per camera (640x480 astronaut photo)")
    print(f"{'seed ms':>8} {'ours ms':>8} {'ours/seed':>9}")
    seed, ours = [], []
    for _ in range(rounds):
        detector = SpeakerDetector(["c0"])
        seed.append(per_call_ms(seed_step, 20))
        ours.append(per_call_ms(partial(_feed, detector, one_set), 20))
    s, o = statistics.median(seed), statistics.median(ours)
    print(f"{s:>8.2f} {o:>8.2f} {o / s:>9.2f}")


def _drain(address: tuple[str, int], stop: threading.Event) -> None:
    """An MJPEG client that reads and discards everything until ``stop``."""
    with socket.create_connection(address, timeout=10.0) as sock:
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: localhost\r\n\r\n")
        while not stop.is_set() and sock.recv(1 << 18):
            pass


class _SeedHandler(http.server.BaseHTTPRequestHandler):
    """The seed's MJPEG handler: encodes the newest picture for its own client, each time."""

    output: ImageOutput

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
        self.end_headers()
        seq = -1
        try:
            while True:
                item = self.output.wait_newer(seq, timeout=5.0)
                seq = item.seq
                _ok, jpeg = cv2.imencode(".jpg", item.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                self.wfile.write(head.encode() + b"\r\n\r\n" + jpeg.tobytes() + b"\r\n")
        except (OSError, SyncStreamError):
            return

    def log_message(self, format: str, *args: object) -> None:
        return


def web_cpu(clients: int, seed: bool, seconds: float = 4.0) -> float:
    """Share of one core the process used while publishing 30 pictures/s to ``clients``."""
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    base = np.asarray(cv2.GaussianBlur(noise, (9, 9), 0), dtype=np.uint8)
    pictures: list[BGRImage] = [np.roll(base, 8 * i, axis=1).copy() for i in range(30)]
    output = ImageOutput("wall")
    output.publish(pictures[0])
    stop = threading.Event()
    server: http.server.ThreadingHTTPServer | None = None
    view: WebView | None = None
    if seed:
        handler = type("Handler", (_SeedHandler,), {"output": output})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        address = server.server_address[:2]
    else:
        view = WebView(output).start()
        address = view.address
    readers = [
        threading.Thread(target=_drain, args=((str(address[0]), int(address[1])), stop))
        for _ in range(clients)
    ]
    for reader in readers:
        reader.start()
    time.sleep(0.5)
    cpu, begin = time.process_time(), time.monotonic()
    next_at = begin
    i = 0
    while time.monotonic() - begin < seconds:
        i += 1
        output.publish(pictures[i % len(pictures)])
        next_at += 1 / 30
        time.sleep(max(0.0, next_at - time.monotonic()))
    share = (time.process_time() - cpu) / (time.monotonic() - begin)
    stop.set()
    output.close()
    if server is not None:
        server.shutdown()
        server.server_close()
    if view is not None:
        view.close()
    for reader in readers:
        reader.join(5.0)
    return share


def bench_web(rounds: int) -> None:
    """Part 3: the web view's CPU against the seed's per-client encoding."""
    print("web view: share of one core, 1280x720 at 30 pictures/s")
    print(f"{'clients':>7} {'seed':>6} {'ours':>6} {'ours/seed':>9}")
    for clients in (1, 4, 16):
        seed = [web_cpu(clients, seed=True) for _ in range(rounds)]
        ours = [web_cpu(clients, seed=False) for _ in range(rounds)]
        s, o = statistics.median(seed), statistics.median(ours)
        print(f"{clients:>7} {s:>6.2f} {o:>6.2f} {o / s:>9.2f}")


def run_group(seconds: float, loaded: bool) -> tuple[float, float, dict[str, float]]:
    """Sets per second, latency p50 (ms) of four local cameras, bare or loaded, and the
    share of sets each processor took (1.0: every set)."""
    from syncstream.processors.recorder import Recorder
    from syncstream.processors.speaker import SpeakerDetector

    small = SenderConfig(size=(320, 240), fps=30.0)
    cams = [Camera(name=f"c{i}", sender=small, port=free_udp_port()) for i in range(4)]
    with tempfile.TemporaryDirectory() as tmp, StreamGroup(cams, max_wait=0.3) as group:
        client: threading.Thread | None = None
        stop = threading.Event()
        if loaded:
            wall = Wall(tile_size=(320, 180))
            group.add_processor(wall)
            group.add_processor(SpeakerDetector())
            group.add_processor(Recorder(tmp))
            view = WebView(wall)
            group.add_processor(view)
            client = threading.Thread(target=_watch, args=(view.url + "stream.mjpg", stop))
            client.start()
        group.read(timeout=15.0)
        time.sleep(1.0)  # past the first keyframes
        before = group.stats.sets
        begin = time.monotonic()
        time.sleep(seconds)
        stats = group.stats
        rate = (stats.sets - before) / (time.monotonic() - begin)
        stop.set()
        if client is not None:
            client.join(5.0)
    latency = stats.latency_p50 * 1000 if stats.latency_p50 is not None else float("nan")
    taken = {
        name: p.processed / max(1, p.processed + p.skipped) for name, p in stats.processors.items()
    }
    return rate, latency, taken


def _watch(url: str, stop: threading.Event) -> None:
    """An MJPEG client that reads as fast as it can until ``stop``."""
    with urllib.request.urlopen(url, timeout=10.0) as response:
        while not stop.is_set() and response.read(65536):
            pass


def bench_group(rounds: int, seconds: float) -> None:
    """Part 4: a bare group against one running every processor."""
    print(f"group of 4 cameras: sets/s and latency p50 over {seconds:.0f} s")
    print(f"{'':>10} {'sets/s':>7} {'lat ms':>7}  share of sets each processor took")
    for loaded in (False, True):
        rates, latencies = [], []
        shares: dict[str, list[float]] = {}
        for _ in range(rounds):
            rate, latency, taken = run_group(seconds, loaded)
            rates.append(rate)
            latencies.append(latency)
            for name, share in taken.items():
                shares.setdefault(name, []).append(share)
        label = "loaded" if loaded else "bare"
        rate, lat = statistics.median(rates), statistics.median(latencies)
        took = "  ".join(f"{n} {statistics.median(v):.2f}" for n, v in shares.items())
        print(f"{label:>10} {rate:>7.1f} {lat:>7.1f}  {took}")


def main() -> int:
    """Run the four parts; print medians over ``--rounds``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--skip-group", action="store_true")
    args = parser.parse_args()
    bench_wall(args.rounds)
    bench_speaker(args.rounds)
    bench_web(min(args.rounds, 3))
    if not args.skip_group:
        bench_group(min(args.rounds, 3), args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
