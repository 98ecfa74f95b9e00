"""Glass-to-glass latency of several senders and receivers, measured from pixel stamps.

A :class:`~syncstream.probe.StampSender` generates 640x480@30 frames with its send time
painted into their pixels and pipes them, raw ``yuv420p``, to a producer that encodes them
and sends MPEG-TS over UDP loopback. Producers (``--producers`` picks some):

- ``seed``: the seed tutorial's sender, ``ffmpeg -i - -f mpegts udp://HOST:PORT?pkt_size=1316``
  (ffmpeg's default codec, mpeg2video, at its default settings: the stamp stays readable).
  The video PES length is omitted, as ffmpeg does by default;
- ``x264``: ``-c:v libx264 -preset ultrafast -tune zerolatency -f mpegts udp://...`` (PES
  length omitted);
- ``x265``: the same with libx265, if ffmpeg has it;
- ``gstreamer``: ``fdsrc ! rawvideoparse ! x264enc tune=zerolatency ! mpegtsmux ! udpsink``,
  run with ``/usr/bin/python3`` and python3-gi; skipped with a note if Gst cannot be imported;
- ``floor-with-lengths``: syncstream's sender recipe (video PES lengths written), the
  reference; always run.

The x264, x265 and GStreamer producers get a keyframe every 30 frames (``-g 30``,
``key-int-max=30``, as the seed's mpeg2video has one every 12) so that each receiver joins
within a second; that does not change how frames are muxed. Each ffmpeg producer also
runs as ``NAME-with-lengths`` (``-omit_video_pes_length 0``), read by the floor alone: the
codec's own floor, the ``/own`` column.

Each receiver below reads each producer's stream in turn, and for every frame it hands to
the program computes ``now - stamp`` once the frame is available as a BGR array:

- ``syncstream``: :class:`syncstream.VideoStream` (``read()``, then ``frame.image``);
- ``syncstream-parsed``: the same with ``parse_frames=True``: FFmpeg's parser finds where
  each frame ends, which it only knows when the next one starts;
- ``floor``: a bare PyAV low-delay decode loop in the calling thread, the least any
  Python receiver can do (the same demuxer options: each PES packet a frame, slice
  threads, BGR conversion) but without syncstream's marking of frame ends;
- ``floor-parsed`` (only if asked with ``--receivers``): the same loop with FFmpeg's parser;
- ``seed-sequential``: ``cv2.VideoCapture(url).read()`` in a loop, as the tutorial's
  first receiver;
- ``seed-threaded``: the tutorial's threaded ``VideoStream`` (a thread overwriting the
  newest frame; the program polls it like ``cv2.waitKey(1)`` would).

Run: ``python3 benchmarks/latency.py`` (``--rounds``, ``--seconds``, ``--producers``,
``--receivers``, ``--json``). Prints, per producer and receiver, the median over rounds of
each round's p50 and p95 in ms, and the ratio of each p50 to the p50 of ``floor`` reading
``floor-with-lengths`` in the same run (``/ref``) and to the producer's own floor (``/own``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import av

# The tutorials' receivers log every decode error of a stream joined mid-way; quiet them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import cv2

from syncstream import StampNotFound, SyncStreamError, VideoStream
from syncstream.probe import StampSender, decode_stamp
from syncstream.senders import free_udp_port
from syncstream.sources.base import LOW_DELAY_OPTIONS

Receiver = Callable[[str, float, float], list[float]]
Producer = Callable[[str], list[str] | None]  # url -> the producer's argv (None: recipe)

SIZE = (640, 480)
FPS = 30
GST_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gi


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
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:  # joined mid-stream: skipped, as any reader must
                frames = []
            for frame in frames:
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
DEFAULT_RECEIVERS = [name for name in RECEIVERS if name != "floor-parsed"]


def _ffmpeg(*output_args: str) -> list[str]:
    """ffmpeg reading the StampSender's raw frames on stdin, then ``output_args``."""
    width, height = SIZE
    return ["ffmpeg", "-hide_banner", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
            "-r", str(FPS), "-i", "-", *output_args]  # fmt: skip


def produce_seed(url: str) -> list[str]:
    """The seed tutorial's sender: ffmpeg's default codec (mpeg2video) and muxing."""
    return _ffmpeg("-f", "mpegts", f"{url}?pkt_size=1316")


def produce_seed_low_delay(url: str) -> list[str]:
    """The seed's sender with the MPEG-2 encoder's low delay flag: without it the encoder
    holds two frames back (a sender's own cost, paid by every receiver)."""
    return _ffmpeg("-flags", "+low_delay", "-f", "mpegts", f"{url}?pkt_size=1316")


def produce_x264(url: str) -> list[str]:
    """The classic low-latency H.264 sender, ffmpeg's default muxing."""
    return _ffmpeg("-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                   "-g", "30", "-f", "mpegts", f"{url}?pkt_size=1316")  # fmt: skip


def produce_x265(url: str) -> list[str]:
    """The same with HEVC."""
    return _ffmpeg("-c:v", "libx265", "-preset", "ultrafast", "-tune", "zerolatency",
                   "-x265-params", "log-level=error",
                   "-g", "30", "-f", "mpegts", f"{url}?pkt_size=1316")  # fmt: skip


GST_SCRIPT = """
import sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
width, height, fps, host, port = sys.argv[1:]
Gst.init(None)
pipeline = Gst.parse_launch(
    f"fdsrc fd=0 blocksize={int(width) * int(height) * 3 // 2} "
    f"! rawvideoparse width={width} height={height} format=i420 framerate={fps}/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 "
    f"! mpegtsmux ! udpsink host={host} port={port} sync=false"
)
pipeline.set_state(Gst.State.PLAYING)
bus = pipeline.get_bus()
done = bus.timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.ERROR | Gst.MessageType.EOS)
pipeline.set_state(Gst.State.NULL)
if done.type == Gst.MessageType.ERROR:
    sys.exit(f"gstreamer: {done.parse_error()[0].message}")
"""


def produce_gstreamer(url: str) -> list[str]:
    """GStreamer's mpegtsmux behind x264enc, fed raw frames through fdsrc."""
    host, port = url.removeprefix("udp://").rsplit(":", 1)
    width, height = SIZE
    return [GST_PYTHON, "-c", GST_SCRIPT, str(width), str(height), str(FPS), host, port]


def produce_recipe(url: str) -> None:
    """syncstream's sender recipe (StampSender's own ffmpeg command, PES lengths written)."""
    return None


def with_lengths(producer: Producer) -> Producer:
    """The same ffmpeg command with the video PES lengths written: the codec's own floor."""

    def produce(url: str) -> list[str] | None:
        argv = producer(url)
        assert argv is not None and argv[0] == "ffmpeg"
        mux = argv.index("mpegts") - 1  # before "-f mpegts"
        return [*argv[:mux], "-omit_video_pes_length", "0", *argv[mux:]]

    return produce


REFERENCE = "floor-with-lengths"
PRODUCERS: dict[str, Producer] = {
    "seed": produce_seed,
    "seed-low-delay": produce_seed_low_delay,
    "x264": produce_x264,
    "x265": produce_x265,
    "gstreamer": produce_gstreamer,
    REFERENCE: produce_recipe,
}
#: Each ffmpeg producer's twin with PES lengths written, read by the floor alone: what the
#: codec and encoder cost without any wait for the next frame. GStreamer's mpegtsmux writes
#: the length of every PES under 64 KiB, so its own floor serves.
TWINS = {name: f"{name}-with-lengths" for name in ("seed", "seed-low-delay", "x264", "x265")}


def _unavailable(producer: str) -> str | None:
    """Why ``producer`` cannot run on this machine, else None."""
    if producer == "x265":
        encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True,
                                  text=True, timeout=30).stdout  # fmt: skip
        return None if "libx265" in encoders else "ffmpeg has no libx265"
    if producer == "gstreamer":
        if shutil.which(GST_PYTHON) is None:
            return f"{GST_PYTHON} not found"
        check = ("import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; "
                 "Gst.init(None); missing = [n for n in ('fdsrc', 'rawvideoparse', 'x264enc', "
                 "'mpegtsmux', 'udpsink') if Gst.ElementFactory.find(n) is None]; "
                 "assert not missing, missing")  # fmt: skip
        done = subprocess.run([GST_PYTHON, "-c", check], capture_output=True, text=True,
                              timeout=30)  # fmt: skip
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["failed"])[-1]
            return f"GStreamer not usable from {GST_PYTHON}: {last}"
    return None


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _measure(
    receive: Receiver, url: str, warmup: float, seconds: float
) -> tuple[float, float, int] | None:
    """One receiver's round: (p50, p95, frames), or None if it read no stamped frame."""
    try:
        samples = receive(url, warmup, seconds)
    except (SyncStreamError, av.FFmpegError, OSError) as exc:
        print(f"  {exc!r}", file=sys.stderr)
        return None
    if not samples:
        return None
    return _percentile(samples, 0.5), _percentile(samples, 0.95), len(samples)


def _names(value: str, known: list[str], what: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


Runs = dict[str, dict[str, list[tuple[float, float, int]]]]


def _summary(results: Runs) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Medians over rounds per producer and receiver, and the p50 ratios."""

    def p50(producer: str, receiver: str) -> float | None:
        runs = results.get(producer, {}).get(receiver, [])
        return statistics.median(r[0] for r in runs) if runs else None

    reference = p50(REFERENCE, "floor")
    summary: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for producer, by_receiver in results.items():
        own_floor = p50(TWINS.get(producer, producer), "floor")
        summary[producer] = {}
        for receiver, runs in by_receiver.items():
            median = p50(producer, receiver)
            summary[producer][receiver] = {
                "p50_ms": None if median is None else round(median * 1000, 1),
                "p95_ms": round(statistics.median(r[1] for r in runs) * 1000, 1) if runs else None,
                "frames_per_round": round(statistics.median(r[2] for r in runs)) if runs else 0,
                "p50_vs_reference": round(median / reference, 2) if median and reference else None,
                "p50_vs_own_floor": round(median / own_floor, 2) if median and own_floor else None,
            }
    return summary


def main() -> int:
    """Run every producer and receiver ``--rounds`` times, interleaved; print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--producers", default=",".join(PRODUCERS),
                        help=f"comma-separated subset of {', '.join(PRODUCERS)} "
                             f"({REFERENCE} always runs)")  # fmt: skip
    parser.add_argument("--receivers", default=",".join(DEFAULT_RECEIVERS),
                        help=f"comma-separated subset of {', '.join(RECEIVERS)} "
                             "(floor always runs)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    producers = _names(args.producers, list(PRODUCERS), "producers")
    receivers = _names(args.receivers, list(RECEIVERS), "receivers")
    producers = [name for name in PRODUCERS if name in producers or name == REFERENCE]
    receivers = [name for name in RECEIVERS if name in receivers or name == "floor"]

    skipped: dict[str, str] = {}
    for name in producers:
        if (reason := _unavailable(name)) is not None:
            skipped[name] = reason
            print(f"note: skipping producer {name}: {reason}", file=sys.stderr)
    plan: list[tuple[str, Producer, list[str]]] = []
    for name in producers:
        if name not in skipped:
            plan.append((name, PRODUCERS[name], receivers))
            if name in TWINS:
                plan.append((TWINS[name], with_lengths(PRODUCERS[name]), ["floor"]))

    results: Runs = {name: {receiver: [] for receiver in wanted} for name, _, wanted in plan}
    failures = 0
    for round_index in range(args.rounds):
        for name, produce, wanted in plan:
            url = f"udp://127.0.0.1:{free_udp_port()}"
            with StampSender(url, size=SIZE, fps=FPS, command=produce(url)) as sender:
                for receiver in wanted:
                    row = _measure(RECEIVERS[receiver], url, args.warmup, args.seconds)
                    label = f"round {round_index + 1} {name:<18} {receiver:<17}"
                    if row is None:
                        failures += 1
                        print(f"{label} no stamped frame received", file=sys.stderr)
                        continue
                    results[name][receiver].append(row)
                    p50, p95, frames = row
                    print(f"{label} p50 {p50 * 1000:6.1f} ms p95 {p95 * 1000:6.1f} ms "
                          f"({frames} frames)", file=sys.stderr)  # fmt: skip
                if sender.error is not None:
                    print(f"{name}: {sender.error}", file=sys.stderr)

    summary = _summary(results)
    reference = summary[REFERENCE]["floor"]["p50_ms"]
    if args.json:
        report = {"rounds": args.rounds, "seconds": args.seconds, "reference_p50_ms": reference,
                  "skipped": skipped, "producers": summary}  # fmt: skip
        print(json.dumps(report))
        return 1 if failures else 0
    width, height = SIZE
    print(f"latency over UDP loopback, {width}x{height}@{FPS}, "
          f"medians over {args.rounds} rounds of {args.seconds:g} s")  # fmt: skip
    print(f"ref: floor reading {REFERENCE}, p50 {reference} ms; own floor: floor reading "
          "the same producer with PES lengths written")  # fmt: skip
    print(f"{'producer':<24} {'receiver':<17} {'p50 ms':>7} {'p95 ms':>7} {'/ref':>6} "
          f"{'/own':>6} {'frames':>6}")  # fmt: skip
    for producer, by_receiver in summary.items():
        for receiver, entry in by_receiver.items():
            cells = [entry["p50_ms"], entry["p95_ms"], entry["p50_vs_reference"],
                     entry["p50_vs_own_floor"]]  # fmt: skip
            p50_ms, p95_ms, ratio, own = ("-" if cell is None else cell for cell in cells)
            print(f"{producer:<24} {receiver:<17} {p50_ms:>7} {p95_ms:>7} {ratio:>6} {own:>6} "
                  f"{entry['frames_per_round']:>6}")  # fmt: skip
    for producer, reason in skipped.items():
        print(f"{producer}: skipped ({reason})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
