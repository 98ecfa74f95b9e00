"""Scale: frame sets from 1 to 16 cameras of 640x480@30 on this machine, against bare decoding.

Each camera is a :class:`~syncstream.testing.replay.TsReplay`: ffmpeg sending a short
640x480@30 H.264 MPEG-TS clip (recorded once per run with
:func:`~syncstream.testing.replay.record_test_pattern`, one clip per ``--patterns`` entry,
cameras taking them in turn) to its own UDP port at real-time pace, looping, restamped with
the wall clock. Copying packets costs far less than encoding, so the receiver is what is
measured; the replayers' own CPU is printed too. ffmpeg starts sending a moment after the
replay stamps its first frame, so each camera's stamps are early by that start-up delay
(0.1-0.4 s): it is measured from the first datagram and passed as the camera's
``clock_offset``, as a host's measured offset would be, so latency and skew are real.

For each camera count, each round runs these receivers in turn on the same streams:

- ``bare``: one thread per camera, a plain PyAV loop (``av.open(url, format="mpegts",
  options=LOW_DELAY_OPTIONS)``, slice threads) decoding every frame and converting it to
  BGR (``frame.to_ndarray(format="bgr24")``), no alignment: the floor;
- ``bare_raw``: the same loop without the conversion to BGR (decoding alone);
- ``syncstream``: ``StreamGroup(sync="nearest")`` with a processor that takes
  ``fs.images`` (every camera's BGR picture: what a program does at least). The group
  converts each frame in its camera's reader thread (``GroupConfig.convert="auto"``), so
  a set's pictures are converted in parallel and ready when the processor takes them;
- ``lazy``: the same with ``convert="lazy"``: the processor converts a set's pictures
  itself, one after another, on first access;
- ``unconverted``: the group without a processor: frames are never converted to BGR;
- ``pool`` (prototype): ``lazy`` whose processor converts a set's pictures on a pool of
  one thread per core instead of one after another in its own thread;
- ``processes`` (prototype): a process per camera runs the ``bare`` loop and writes each
  BGR picture into a ring of 16 slots in shared memory (``/dev/shm``), sending its slot,
  count and capture time through a pipe; one thread here feeds the library's
  :class:`~syncstream.sync.Aligner` and a :class:`ProcessorWorker` running the same
  processor. The slots are not reference-counted (a picture is overwritten 16 frames
  later): enough to measure, not to ship. CPU counts the workers' too.

After ``--warmup`` seconds, ``--seconds`` are measured:

- **sets/s**: sets emitted (``bare``: frames per second per camera); **part**: the share
  of them with a camera missing; **proc**: the share the processor took (it has a slot
  of one and skips sets while busy);
- **lost**: frames the cameras sent in the window that never reached a frame set, over
  frames sent. Per camera, the newest decoded frame is read at both ends of the window:
  the replay sends exactly one frame per 1/30 s of capture time (its PTS advance by
  exactly one frame interval, across loop passes too), so frames *sent* between those two
  frames is their capture-time difference times 30, and frames *decoded* is their ``seq``
  difference. Lost = (sent - decoded) [**undec**: datagrams the kernel dropped because a
  reader fell behind, frames the decoder refused] + **unal**: the aligner's ``dropped``
  plus the group's ``overflow`` [decoded frames that fit no set]. In a group the aligner
  consumes every decoded frame, so the gaps in ``seq`` between the frames of consecutive
  sets are exactly those ``dropped`` frames: counting gaps as well would count them
  twice. ``bare`` loses only sent - decoded. Sets the processor skipped are not lost
  frames: they show in **proc**;
- **skew, latency** p50/p95: ``group.stats`` (its last 300 sets: the window at 30 sets/s);
  latency is the oldest capture of a set to the set being ready, so it includes the skew.
  ``bare``: capture to a BGR frame in its thread, no skew;
- **CPU per camera**: this process's CPU time over the window (``time.process_time()``:
  every thread, FFmpeg's included; plus the workers' for ``processes``) per camera and
  second, in % of one core; **x bare** is the median over rounds of the ratio to
  ``bare`` in the same round. A ``proc`` below 1 means fewer pictures were converted than
  ``bare`` converted, so the ratio flatters the receiver;
- **replayers**: their CPU from ``/proc/<pid>/stat`` (% of one core, all of them), and
  **other**: the rest of the machine's busy time (``/proc/stat``), other work included.

Run: ``python3 benchmarks/scale.py`` (``--cameras 1,4,8,16``, ``--rounds 3``,
``--seconds 10``, ``--warmup``, ``--patterns``, ``--receivers``, ``--json``). Prints a
table per camera count, medians over rounds, and the goal at 16 cameras (at least 29
complete sets/s taken by the program, at most 1 % lost, CPU at most 1.3x bare), for
``syncstream`` and the prototypes. Every replayer and worker is stopped at the end, on
Ctrl-C and on SIGTERM too.

``--knee`` finds where one machine ends instead: for each mode (``group converted``:
``syncstream``; ``group not converted``: ``unconverted``; ``bare converted``: ``bare``;
``bare not converted``: ``bare_raw``) the most cameras received at >= 29 complete sets/s
(``bare``: frames per second per camera) with <= 1 % of frames lost. The camera count
doubles from ``--knee-start`` (16) until a count fails or reaches ``--knee-limit`` (64),
then is bisected down to ``--knee-step`` (4) cameras; each count starts its own replays
and takes the medians of ``--knee-rounds`` (3) rounds of ``--knee-seconds`` (3) after
``--knee-warmup`` (1). A count whose cameras do not all deliver a frame within 20 s
fails. It prints each mode's knee, the count one step beyond, the CPU per camera at the
knee, the replayers' CPU and the rest of the machine's (about 8 minutes on 2 cores;
``--knee-limit 128 --knee-step 2`` to go wider and finer, ``--modes`` to pick).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import select
import signal
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any

import av
import numpy as np

from syncstream import Camera, NoFrameYet, StreamGroup
from syncstream.clock import MPEGTS_PTS_PERIOD, unwrap_pts_time
from syncstream.config import ConvertPolicy
from syncstream.frames import BGRImage, Frame, FrameSet
from syncstream.processors.base import ProcessorWorker
from syncstream.senders import free_udp_port
from syncstream.sources.base import LOW_DELAY_OPTIONS
from syncstream.sync import Aligner
from syncstream.testing.replay import TsReplay, record_test_pattern

WIDTH, HEIGHT = SIZE = (640, 480)
FPS = 30.0
SLOTS = 16  # pictures per camera in shared memory (processes prototype)
_PICTURE = WIDTH * HEIGHT * 3
_MESSAGE = struct.Struct("<qd")  # frame count, capture time
_TICK = os.sysconf("SC_CLK_TCK")
_OPEN_WAIT = 20.0  # seconds for every camera to deliver its first frame


@dataclass(frozen=True)
class Feed:
    """A replayed camera: where it sends and how early its stamps are (its clock offset)."""

    name: str
    url: str
    pattern: str
    replay: TsReplay
    clock_offset: float


@dataclass
class Measure:
    """One receiver's window. CPU figures are shares of one core."""

    receiver: str
    cameras: int
    sets_per_s: float
    lost: float
    not_decoded: int
    unaligned: int
    sent: int
    skew_p50_ms: float | None
    skew_p95_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cpu_per_camera: float
    replayers_cpu: float
    other_cpu: float
    processor_share: float | None = None
    partial: float | None = None


# -- CPU accounting ----------------------------------------------------------------------


def pid_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; 0 once it is gone."""
    if pid is None:
        return 0.0
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores; idle and iowait excluded)."""
    values = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _TICK  # up to steal; guest is in user


@dataclass(frozen=True)
class Clocks:
    """Monotonic time and the CPU counters, at one instant."""

    mono: float
    process: float
    replayers: float
    machine: float

    @classmethod
    def now(cls, feeds: list[Feed], workers: tuple[int | None, ...] = ()) -> Clocks:
        """Read them; ``workers``: processes whose CPU counts as this receiver's."""
        return cls(
            mono=time.monotonic(),
            process=time.process_time() + sum(pid_cpu(pid) for pid in workers),
            replayers=sum(pid_cpu(feed.replay.pid) for feed in feeds),
            machine=machine_busy(),
        )


def _cpu_fields(before: Clocks, after: Clocks, cameras: int) -> dict[str, float]:
    seconds = after.mono - before.mono
    process = (after.process - before.process) / seconds
    replayers = (after.replayers - before.replayers) / seconds
    machine = (after.machine - before.machine) / seconds
    return {
        "cpu_per_camera": process / cameras,
        "replayers_cpu": replayers,
        "other_cpu": max(0.0, machine - process - replayers),
    }


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _sent(capture_before: float, capture_after: float) -> int:
    return round((capture_after - capture_before) * FPS)


# -- cameras -----------------------------------------------------------------------------


def record_clips(folder: pathlib.Path, patterns: list[str], seconds: float) -> dict[str, float]:
    """Record one clip per pattern into ``folder``; returns each clip's bitrate (Mbit/s)."""
    rates = {}
    for pattern in patterns:
        path = record_test_pattern(
            folder / f"{pattern}.ts", seconds=seconds, size=SIZE, fps=FPS, pattern=pattern
        )
        rates[pattern] = path.stat().st_size * 8 / seconds / 1e6
    return rates


def start_feed(
    stack: contextlib.ExitStack, clip: pathlib.Path, name: str, taken: set[int] | None = None
) -> Feed:
    """Start replaying ``clip`` to a free port; measure how early its stamps are.

    ``taken``: ports already given to other cameras of this run, which nothing binds until
    a receiver opens them (so the system may offer them again); the new port is added.

    The replay stamps its first frame with the time ``start()`` was called; ffmpeg sends it
    once it has started and opened the file. The first datagram's arrival, minus that stamp,
    is the offset to add to every stamp of this camera (loopback adds microseconds).
    """
    taken = set() if taken is None else taken
    port = free_udp_port()
    while port in taken:
        port = free_udp_port()
    taken.add(port)
    url = f"udp://127.0.0.1:{port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))
        replay = stack.enter_context(TsReplay(clip, url, name=f"replay:{name}"))
        ready, _, _ = select.select([probe], [], [], 10.0)
        arrival = time.time()
        if not ready or replay.start_time is None:
            raise RuntimeError(f"{name}: no datagram from the replay: {replay.stderr_tail}")
    return Feed(name, url, clip.stem, replay, arrival - replay.start_time)


# -- the bare loop, in threads or in processes -------------------------------------------


def decode_bgr(
    url: str, clock_offset: float, stop: Callable[[], bool], *, bgr: bool = True
) -> Iterator[Any]:
    """Yield ``(bgr, capture_time, arrival_time)`` for every frame of ``url`` until ``stop()``.

    The floor: PyAV's own UDP input and demuxer (each PES packet a frame, as syncstream
    reads it), slice-threaded decoding, BGR conversion (``bgr=False``: none, the picture
    is ``None``). Packets that do not decode (before the first keyframe) are skipped.
    """
    # Reads give up after 1 s without data (as syncstream's cap): a stop is seen that soon
    # even when the replayers are gone (Ctrl-C reaches them too).
    options = {**LOW_DELAY_OPTIONS, "fflags": "nobuffer+noparse"}
    container = av.open(url, format="mpegts", options=options, timeout=(10, 1))
    try:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.InvalidDataError:
                continue
            for frame in frames:
                image = frame.to_ndarray(format="bgr24") if bgr else None
                arrival = time.time()
                if frame.pts is None or frame.time_base is None:
                    continue
                stamp = float(frame.pts * frame.time_base)
                reference = arrival - clock_offset
                capture = unwrap_pts_time(stamp, reference, MPEGTS_PTS_PERIOD) + clock_offset
                yield image, capture, arrival
            if stop():
                return
    finally:
        container.close()


class BareReader:
    """One camera read by :func:`decode_bgr` in its own thread."""

    def __init__(self, feed: Feed, stop: threading.Event, *, bgr: bool = True) -> None:
        self.feed = feed
        self.stop = stop
        self.bgr = bgr
        #: (frames decoded, capture time of the newest): one tuple, replaced at once.
        self.progress: tuple[int, float] | None = None
        #: (arrival_mono, capture-to-BGR latency) of every frame.
        self.samples: list[tuple[float, float]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"bare:{feed.name}", daemon=True)

    def started(self) -> bool:
        """True once a frame was decoded or the reader failed."""
        return self.progress is not None or self.error is not None

    def _run(self) -> None:
        count = 0
        try:
            for _, capture, arrival in decode_bgr(
                self.feed.url, self.feed.clock_offset, self.stop.is_set, bgr=self.bgr
            ):
                count += 1
                self.progress = (count, capture)
                self.samples.append((time.monotonic(), arrival - capture))
        except (av.FFmpegError, OSError, ValueError) as exc:  # reported by the main thread
            self.error = exc


def _wait_for(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _OPEN_WAIT
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: no frame within {_OPEN_WAIT:.0f} s")
        time.sleep(0.05)


def run_bare(feeds: list[Feed], warmup: float, seconds: float, *, bgr: bool = True) -> Measure:
    """The floor: a PyAV decode-and-convert thread per camera (``bgr=False``: decode only)."""
    stop = threading.Event()
    readers = [BareReader(feed, stop, bgr=bgr) for feed in feeds]
    for reader in readers:
        reader.thread.start()
    try:
        for reader in readers:
            _wait_for(reader.started, "bare")
            if reader.error is not None:
                raise RuntimeError(f"bare {reader.feed.name}: {reader.error}")
        time.sleep(warmup)
        first = [reader.progress for reader in readers]
        before = Clocks.now(feeds)
        time.sleep(seconds)
        after = Clocks.now(feeds)
        last = [reader.progress for reader in readers]
    finally:
        stop.set()
        for reader in readers:
            reader.thread.join(15.0)
    sent = decoded = 0
    for start, end in zip(first, last, strict=True):
        assert start is not None and end is not None
        sent += _sent(start[1], end[1])
        decoded += end[0] - start[0]
    latencies = [
        latency
        for reader in readers
        for mono, latency in reader.samples
        if before.mono <= mono <= after.mono
    ]
    return Measure(
        receiver="bare" if bgr else "bare_raw",
        cameras=len(feeds),
        sets_per_s=decoded / len(feeds) / (after.mono - before.mono),
        lost=max(0, sent - decoded) / max(1, sent),
        not_decoded=sent - decoded,
        unaligned=0,
        sent=sent,
        skew_p50_ms=None,
        skew_p95_ms=None,
        latency_p50_ms=_ms(_percentile(latencies, 0.5)),
        latency_p95_ms=_ms(_percentile(latencies, 0.95)),
        **_cpu_fields(before, after, len(feeds)),
    )


# -- syncstream --------------------------------------------------------------------------


def touch_images(fs: FrameSet) -> None:
    """What a program does at least with a set: take every camera's BGR picture."""
    fs.images  # noqa: B018  (converts each frame, once)


class PoolImages:
    """The ``pool`` prototype's processor: a set's pictures converted on a few threads."""

    name = "touch_images"

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="convert")

    def __call__(self, fs: FrameSet) -> None:
        list(self._pool.map(_image, fs.frames.values()))

    def close(self) -> None:
        """Stop the threads (the group closes its processors)."""
        self._pool.shutdown()


def _image(frame: Frame) -> BGRImage:
    return frame.image


def run_group(feeds: list[Feed], warmup: float, seconds: float, mode: str) -> Measure:
    """StreamGroup(sync="nearest"); ``mode``: syncstream, lazy, unconverted or pool."""
    cams = [Camera(name=f.name, url=f.url, clock_offset=f.clock_offset) for f in feeds]
    convert: ConvertPolicy = "auto" if mode == "syncstream" else "lazy"
    group = StreamGroup(cams, sync="nearest", convert=convert)
    if mode == "pool":
        group.add_processor(PoolImages())
    elif mode != "unconverted":
        group.add_processor(touch_images)
    with group:

        def newest() -> list[tuple[int, float]]:
            frames = [group.streams[feed.name].latest() for feed in feeds]
            return [(f.seq, f.capture_time or 0.0) for f in frames]

        def live() -> bool:
            try:
                return all(capture for _, capture in newest())
            except NoFrameYet:
                return False

        _wait_for(live, mode)
        time.sleep(warmup)
        first, stats_before = newest(), group.stats
        before = Clocks.now(feeds)
        time.sleep(seconds)
        after = Clocks.now(feeds)
        last, stats = newest(), group.stats
        if stats.sets - stats_before.sets < 0.5 * 30 * seconds:  # say why, for the record
            print("\n".join([f"{mode}: few sets; the group said:", *stats.lines()]),
                  file=sys.stderr)  # fmt: skip
            for name, camera in stats.cameras.items():
                if camera.stream.last_error:
                    print(f"  {name}: {camera.stream.last_error}", file=sys.stderr)
    sent = sum(_sent(a[1], b[1]) for a, b in zip(first, last, strict=True))
    decoded = sum(b[0] - a[0] for a, b in zip(first, last, strict=True))
    unaligned = stats.overflow - stats_before.overflow
    for name, camera in stats.cameras.items():
        unaligned += camera.dropped - stats_before.cameras[name].dropped
    share = None
    for worker in stats.processors.values():
        old = stats_before.processors[worker.name]
        taken = worker.processed - old.processed
        share = taken / max(1, taken + worker.skipped - old.skipped)
    return Measure(
        receiver=mode,
        cameras=len(feeds),
        sets_per_s=(stats.sets - stats_before.sets) / (after.mono - before.mono),
        lost=max(0, sent - decoded + unaligned) / max(1, sent),
        not_decoded=sent - decoded,
        unaligned=unaligned,
        sent=sent,
        skew_p50_ms=_ms(stats.skew_p50),
        skew_p95_ms=_ms(stats.skew_p95),
        latency_p50_ms=_ms(stats.latency_p50),
        latency_p95_ms=_ms(stats.latency_p95),
        processor_share=share,
        partial=(stats.partial - stats_before.partial) / max(1, stats.sets - stats_before.sets),
        **_cpu_fields(before, after, len(feeds)),
    )


# -- processes prototype -----------------------------------------------------------------


def decode_worker(
    url: str, clock_offset: float, ring_path: str, conn: Any, stop: Any
) -> None:  # pragma: no cover - runs in a child process
    """A camera's decoding process: the bare loop, pictures into the shared ring."""
    with open(ring_path, "r+b") as file:
        ring_map = mmap.mmap(file.fileno(), SLOTS * _PICTURE)
    ring = np.frombuffer(ring_map, dtype=np.uint8).reshape(SLOTS, HEIGHT, WIDTH, 3)
    count = 0
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        for image, capture, _ in decode_bgr(url, clock_offset, stop.is_set):
            ring[count % SLOTS] = image
            conn.send_bytes(_MESSAGE.pack(count, capture))
            count += 1


@dataclass
class _Collector:
    """What the processes prototype's receiving thread saw."""

    progress: dict[str, tuple[int, float]] = field(default_factory=dict)
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # mono, skew, lat
    sets: int = 0
    partial: int = 0
    error: BaseException | None = None


def _receive(
    conns: dict[Any, tuple[str, BGRImage]],
    aligner: Aligner[Frame],
    worker: ProcessorWorker,
    seen: _Collector,
    stop: threading.Event,
) -> None:
    """Frames from the workers' pipes into the aligner; its sets to the processor."""
    try:
        while not stop.is_set():
            for conn in multiprocessing.connection.wait(list(conns), timeout=0.1):
                name, ring = conns[conn]
                count, capture = _MESSAGE.unpack(conn.recv_bytes())  # type: ignore[union-attr]
                seen.progress[name] = (count, capture)
                frame = Frame(source=name, seq=count, width=WIDTH, height=HEIGHT,
                              arrival_time=time.time(), arrival_mono=time.monotonic(),
                              capture_time=capture, image=ring[count % SLOTS])  # fmt: skip
                aligner.add(frame)
            for match in aligner.poll(time.monotonic()):
                now, mono = time.time(), time.monotonic()
                oldest = min(f.arrival_time if f.capture_time is None else f.capture_time
                             for f in match.frames.values())  # fmt: skip
                fs = FrameSet(seen.sets, match.frames, match.missing, match.skew, match.time,
                              match.clock, now, mono)  # fmt: skip
                seen.sets += 1
                seen.partial += bool(match.missing)
                seen.samples.append((mono, match.skew, now - oldest))
                worker.submit(fs)
    except (OSError, EOFError) as exc:
        seen.error = exc


def run_processes(feeds: list[Feed], warmup: float, seconds: float) -> Measure:
    """Decoding in a process per camera, pictures in shared memory, alignment here."""
    context = multiprocessing.get_context("spawn")
    names = [feed.name for feed in feeds]
    worker_stop = context.Event()
    stop = threading.Event()
    seen = _Collector()
    aligner: Aligner[Frame] = Aligner(names, policy="nearest", start_mono=time.monotonic(),
                                      first_frame_wait=_OPEN_WAIT)  # fmt: skip
    processor = ProcessorWorker(touch_images).start()
    conns: dict[Any, tuple[str, BGRImage]] = {}
    processes: list[Any] = []
    receiver = threading.Thread(target=_receive, args=(conns, aligner, processor, seen, stop))
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="scale-") as shm:
        try:
            for feed in feeds:
                path = pathlib.Path(shm) / feed.name
                with path.open("wb") as file:
                    file.truncate(SLOTS * _PICTURE)
                with path.open("r+b") as file:
                    ring_map = mmap.mmap(file.fileno(), SLOTS * _PICTURE)
                ring = np.frombuffer(ring_map, dtype=np.uint8).reshape(SLOTS, HEIGHT, WIDTH, 3)
                ours, theirs = context.Pipe(duplex=False)
                process = context.Process(
                    target=decode_worker,
                    args=(feed.url, feed.clock_offset, str(path), theirs, worker_stop),
                    name=f"decode:{feed.name}",
                    daemon=True,
                )
                process.start()
                theirs.close()
                conns[ours] = (feed.name, ring)
                processes.append(process)
            receiver.start()
            _wait_for(lambda: len(seen.progress) == len(feeds) or seen.error is not None,
                      "processes")  # fmt: skip
            time.sleep(warmup)
            pids = tuple(process.pid for process in processes)
            first, sets_before, partial_before = dict(seen.progress), seen.sets, seen.partial
            counts_before = {name: aligner.counts(name).dropped for name in names}
            stats_before = processor.stats
            before = Clocks.now(feeds, pids)
            time.sleep(seconds)
            after = Clocks.now(feeds, pids)
            last, sets, partial = dict(seen.progress), seen.sets, seen.partial
            dropped = sum(aligner.counts(n).dropped - counts_before[n] for n in names)
            stats = processor.stats
        finally:
            worker_stop.set()
            stop.set()
            if receiver.is_alive():
                receiver.join(5.0)
            processor.close()
            deadline = time.monotonic() + 5.0
            for process in processes:
                process.join(max(0.0, deadline - time.monotonic()))
            for process in processes:
                if process.is_alive():
                    process.terminate()
                    process.join(5.0)
    sent = sum(_sent(first[n][1], last[n][1]) for n in names)
    decoded = sum(last[n][0] - first[n][0] for n in names)
    window = [s for s in seen.samples if before.mono <= s[0] <= after.mono]
    taken = stats.processed - stats_before.processed
    return Measure(
        receiver="processes",
        cameras=len(feeds),
        sets_per_s=(sets - sets_before) / (after.mono - before.mono),
        lost=max(0, sent - decoded + dropped) / max(1, sent),
        not_decoded=sent - decoded,
        unaligned=dropped,
        sent=sent,
        skew_p50_ms=_ms(_percentile([s[1] for s in window], 0.5)),
        skew_p95_ms=_ms(_percentile([s[1] for s in window], 0.95)),
        latency_p50_ms=_ms(_percentile([s[2] for s in window], 0.5)),
        latency_p95_ms=_ms(_percentile([s[2] for s in window], 0.95)),
        processor_share=taken / max(1, taken + stats.skipped - stats_before.skipped),
        partial=(partial - partial_before) / max(1, sets - sets_before),
        **_cpu_fields(before, after, len(feeds)),
    )


def _group_receiver(mode: str) -> Callable[[list[Feed], float, float], Measure]:
    def receive(feeds: list[Feed], warmup: float, seconds: float) -> Measure:
        return run_group(feeds, warmup, seconds, mode)

    return receive


def _bare_raw(feeds: list[Feed], warmup: float, seconds: float) -> Measure:
    return run_bare(feeds, warmup, seconds, bgr=False)


RECEIVERS: dict[str, Callable[[list[Feed], float, float], Measure]] = {
    "bare": run_bare,
    "bare_raw": _bare_raw,
    "syncstream": _group_receiver("syncstream"),
    "lazy": _group_receiver("lazy"),
    "unconverted": _group_receiver("unconverted"),
    "pool": _group_receiver("pool"),
    "processes": run_processes,
}


# -- report ------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 4) if present else None


def summarize(rounds: list[dict[str, Measure]]) -> dict[str, dict[str, float | None]]:
    """Medians over rounds per receiver, and the CPU ratio to ``bare`` of the same round."""
    summary: dict[str, dict[str, float | None]] = {}
    for name in rounds[0]:
        rows = [asdict(r[name]) for r in rounds]
        keys = [k for k in rows[0] if k not in ("receiver", "cameras")]
        summary[name] = {k: _median([row[k] for row in rows]) for k in keys}
        if "bare" in rounds[0]:
            ratios = [r[name].cpu_per_camera / r["bare"].cpu_per_camera for r in rounds]
            summary[name]["cpu_vs_bare"] = _median(list(ratios))
    return summary


def _fmt(value: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def print_table(cameras: int, summary: dict[str, dict[str, float | None]]) -> None:
    """One table: a row per receiver."""
    replayers = statistics.median(row["replayers_cpu"] or 0.0 for row in summary.values())
    other = statistics.median(row["other_cpu"] or 0.0 for row in summary.values())
    print(f"\n{cameras} camera{'s' if cameras > 1 else ''}: replayers {replayers * 100:.1f} % "
          f"of a core in all; other work on the machine {other * 100:.0f} %")  # fmt: skip
    print(f"{'receiver':<10} {'sets/s':>6} {'part':>4} {'proc':>4} {'lost %':>6} {'undec':>5} "
          f"{'unal':>4} {'skew p50':>8} {'p95':>5} {'lat p50':>7} {'p95':>6} {'CPU/cam %':>9} "
          f"{'x bare':>6}")  # fmt: skip
    for name, row in summary.items():
        lost = None if row["lost"] is None else row["lost"] * 100
        cpu = None if row["cpu_per_camera"] is None else row["cpu_per_camera"] * 100
        print(f"{name:<10} {_fmt(row['sets_per_s'], '.1f', 6)} {_fmt(row['partial'], '.2f', 4)} "
              f"{_fmt(row['processor_share'], '.2f', 4)} {_fmt(lost, '.2f', 6)} "
              f"{_fmt(row['not_decoded'], '.0f', 5)} {_fmt(row['unaligned'], '.0f', 4)} "
              f"{_fmt(row['skew_p50_ms'], '.1f', 8)} {_fmt(row['skew_p95_ms'], '.1f', 5)} "
              f"{_fmt(row['latency_p50_ms'], '.1f', 7)} {_fmt(row['latency_p95_ms'], '.1f', 6)} "
              f"{_fmt(cpu, '.1f', 9)} {_fmt(row.get('cpu_vs_bare'), '.2f', 6)}")  # fmt: skip


def goal(summary: dict[str, dict[str, float | None]], receiver: str) -> str:
    """The issue's goal at 16 cameras for ``receiver``: sets the program took, loss, CPU."""
    row = summary.get(receiver)
    if row is None or row.get("cpu_vs_bare") is None:
        return f"{receiver}: needs it and bare"
    complete = 1 - (row["partial"] or 0)
    taken = (row["sets_per_s"] or 0) * (row["processor_share"] or 0) * complete
    checks = [
        (f"{taken:.1f} complete sets/s taken >= 29", taken >= 29),
        (f"lost {(row['lost'] or 0) * 100:.2f} % <= 1 %", (row["lost"] or 0) <= 0.01),
        (f"CPU {row['cpu_vs_bare']:.2f}x <= 1.3x bare", (row["cpu_vs_bare"] or 0) <= 1.3),
    ]
    verdicts = ", ".join(f"{text} {'met' if ok else 'MISSED'}" for text, ok in checks)
    return f"{receiver}: {verdicts}"


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so replayers and workers are stopped."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the knee ----------------------------------------------------------------------------

#: The knee's modes: the receiver each runs.
KNEE_MODES = {
    "group converted": "syncstream",
    "group not converted": "unconverted",
    "bare converted": "bare",
    "bare not converted": "bare_raw",
}
KNEE_SETS_PER_S = 29.0
KNEE_LOST = 0.01


@dataclass(frozen=True)
class Point:
    """One camera count of one mode: medians over rounds. CPU figures are shares of a core."""

    cameras: int
    sets_per_s: float  # complete sets per second (bare: frames per second per camera)
    lost: float
    cpu_per_camera: float
    replayers_cpu: float
    other_cpu: float
    processor_share: float | None = None
    failure: str | None = None  # why no figures: a camera gave no frame in time

    @property
    def holds(self) -> bool:
        """At least 29 sets/s and at most 1 % of frames lost."""
        return self.sets_per_s >= KNEE_SETS_PER_S and self.lost <= KNEE_LOST


def search_knee(
    measure: Callable[[int], Point], start: int, limit: int, step: int
) -> dict[int, Point]:
    """Double the camera count from ``start`` until a point fails or passes ``limit``, then
    bisect between the last count that held and the first that did not, down to ``step``
    cameras. Returns every point measured, by camera count."""
    points: dict[int, Point] = {}
    good, bad, count = 0, None, start
    while count <= limit:
        points[count] = measure(count)
        if not points[count].holds:
            bad = count
            break
        good, count = count, count * 2
    if bad is None and good < limit:  # the next doubling is past the limit: try the limit
        points[limit] = measure(limit)
        if points[limit].holds:
            return points
        bad = limit
    while bad is not None and bad - good > step:
        middle = max(1, good + (bad - good) // 2 // step * step)
        if middle in (good, bad):
            break
        points[middle] = measure(middle)
        good, bad = (middle, bad) if points[middle].holds else (good, middle)
    return points


def measure_point(
    folder: pathlib.Path,
    patterns: list[str],
    receiver: str,
    count: int,
    rounds: int,
    warmup: float,
    seconds: float,
) -> Point:
    """Start ``count`` replays, run ``receiver`` on them ``rounds`` times, stop them.

    A port taken by another program between its choice and the receiver's bind is not the
    receiver's failure: the point is measured again on fresh ports, once.
    """
    for attempt in (1, 2):
        measures: list[Measure] = []
        ports: set[int] = set()
        try:
            with contextlib.ExitStack() as stack:
                feeds = [
                    start_feed(stack, folder / f"{patterns[i % len(patterns)]}.ts", f"c{i}", ports)
                    for i in range(count)
                ]
                for _ in range(rounds):
                    measures.append(RECEIVERS[receiver](feeds, warmup, seconds))
            break
        except RuntimeError as exc:  # a camera gave no frame within _OPEN_WAIT, or no port
            print(f"{receiver} {count} cameras: {exc}", file=sys.stderr)
            if attempt == 1 and "Address already in use" in str(exc):
                continue
            return Point(count, 0.0, 1.0, 0.0, 0.0, 0.0, failure=str(exc))
    shares = [m.processor_share for m in measures if m.processor_share is not None]
    return Point(
        cameras=count,
        sets_per_s=statistics.median(m.sets_per_s * (1 - (m.partial or 0)) for m in measures),
        lost=statistics.median(m.lost for m in measures),
        cpu_per_camera=statistics.median(m.cpu_per_camera for m in measures),
        replayers_cpu=statistics.median(m.replayers_cpu for m in measures),
        other_cpu=statistics.median(m.other_cpu for m in measures),
        processor_share=statistics.median(shares) if shares else None,
    )


def _point_text(point: Point | None) -> str:
    if point is None:
        return f"{'-':>4} {'-':>6} {'-':>6}"
    return f"{point.cameras:>4} {point.sets_per_s:>6.1f} {point.lost * 100:>6.2f}"


def print_knees(knees: dict[str, dict[int, Point]], limit: int) -> None:
    """A row per mode: the knee, the point one step beyond it, CPU at the knee."""
    print(f"\n{'mode':<20} {'knee':>4} {'sets/s':>6} {'lost %':>6} | {'next':>4} {'sets/s':>6} "
          f"{'lost %':>6} | {'CPU/cam %':>9} {'replayers %':>11} {'other %':>7}")  # fmt: skip
    for mode, points in knees.items():
        held = [p for p in points.values() if p.holds]
        knee = max(held, key=lambda p: p.cameras) if held else None
        floor = knee.cameras if knee else 0
        above = [p for p in points.values() if not p.holds and p.cameras > floor]
        beyond = min(above, key=lambda p: p.cameras) if above else None
        cpu = "-" if knee is None else f"{knee.cpu_per_camera * 100:.1f}"
        replayers = "-" if knee is None else f"{knee.replayers_cpu * 100:.1f}"
        other = "-" if knee is None else f"{knee.other_cpu * 100:.0f}"
        note = f" (held up to --knee-limit {limit})" if knee and knee.cameras >= limit else ""
        print(f"{mode:<20} {_point_text(knee)} | {_point_text(beyond)} | {cpu:>9} "
              f"{replayers:>11} {other:>7}{note}")  # fmt: skip


def run_knee(args: argparse.Namespace, patterns: list[str], modes: list[str]) -> int:
    """Search each mode's knee; print every point as it is measured, then the table."""
    knees: dict[str, dict[int, Point]] = {}
    began = time.monotonic()
    with _signals_raise(), tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        folder = pathlib.Path(tmp)
        record_clips(folder, patterns, args.clip_seconds)
        for mode in modes:

            def measure(count: int, mode: str = mode) -> Point:
                receiver = KNEE_MODES[mode]
                point = measure_point(folder, patterns, receiver, count, args.knee_rounds,
                                      args.knee_warmup, args.knee_seconds)  # fmt: skip
                print(f"{time.monotonic() - began:5.0f} s {mode:<20} {count:>3} cams "
                      f"{point.sets_per_s:5.1f} sets/s lost {point.lost * 100:5.2f} % "
                      f"cpu/cam {point.cpu_per_camera * 100:4.1f} % "
                      f"replayers {point.replayers_cpu * 100:4.1f} % "
                      f"other {point.other_cpu * 100:3.0f} % "
                      f"{'holds' if point.holds else 'FAILS'}", file=sys.stderr)  # fmt: skip
                return point

            knees[mode] = search_knee(measure, args.knee_start, args.knee_limit, args.knee_step)
    if args.json:
        print(json.dumps({mode: [asdict(p) for p in points.values()]
                          for mode, points in knees.items()}))  # fmt: skip
        return 0
    print(f"knee: most 640x480@30 cameras with >= {KNEE_SETS_PER_S:g} complete sets/s and "
          f"<= {KNEE_LOST * 100:g} % lost; {os.cpu_count()} cores; medians of "
          f"{args.knee_rounds} rounds of {args.knee_seconds:g} s; "
          f"{time.monotonic() - began:.0f} s in all")  # fmt: skip
    print_knees(knees, args.knee_limit)
    return 0


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> int:
    """Run every receiver ``--rounds`` times per camera count, interleaved; print medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=_ints, default=[1, 4, 8, 16], help="e.g. 1,4,8,16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per receiver")
    parser.add_argument("--warmup", type=float, default=2.0, help="after the first frames")
    parser.add_argument(
        "--patterns",
        default="testsrc2,testsrc,cellauto,smptebars",
        help="ffmpeg test patterns: a clip each, cameras take them in turn",
    )
    parser.add_argument("--clip-seconds", type=float, default=6.0, help="length of each clip")
    names = ",".join(name for name in RECEIVERS if name != "bare_raw")
    parser.add_argument("--receivers", default=names, help=f"some of {', '.join(RECEIVERS)}")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    knee = parser.add_argument_group("knee", "--knee: search each mode's most cameras")
    knee.add_argument("--knee", action="store_true", help="search the knee instead")
    knee.add_argument("--modes", default=",".join(KNEE_MODES), help="some of these")
    knee.add_argument("--knee-start", type=int, default=16, help="first camera count")
    knee.add_argument("--knee-limit", type=int, default=64, help="most cameras tried")
    knee.add_argument("--knee-step", type=int, default=4, help="bisect down to this")
    knee.add_argument("--knee-rounds", type=int, default=3)
    knee.add_argument("--knee-seconds", type=float, default=3.0, help="measured per round")
    knee.add_argument("--knee-warmup", type=float, default=1.0)
    args = parser.parse_args()
    receivers = [name for name in args.receivers.split(",") if name]
    unknown = sorted(set(receivers) - set(RECEIVERS))
    if unknown:
        parser.error(f"unknown receivers {unknown}")
    patterns = [p for p in args.patterns.split(",") if p]
    if args.knee:
        modes = [mode for mode in args.modes.split(",") if mode]
        if set(modes) - set(KNEE_MODES):
            parser.error(f"unknown modes {sorted(set(modes) - set(KNEE_MODES))}")
        try:
            return run_knee(args, patterns, modes)
        except KeyboardInterrupt:
            print("interrupted; every replayer stopped", file=sys.stderr)
            return 130

    report: dict[int, dict[str, dict[str, float | None]]] = {}
    try:
        with _signals_raise(), tempfile.TemporaryDirectory(prefix="scale-") as tmp:
            folder = pathlib.Path(tmp)
            rates = record_clips(folder, patterns, args.clip_seconds)
            mix = [rates[patterns[i % len(patterns)]] for i in range(max(args.cameras))]
            print(f"clips: {', '.join(f'{p} {r:.2f}' for p, r in rates.items())} Mbit/s",
                  file=sys.stderr)  # fmt: skip
            for count in args.cameras:
                rounds: list[dict[str, Measure]] = []
                ports: set[int] = set()
                with contextlib.ExitStack() as stack:
                    feeds = [
                        start_feed(
                            stack, folder / f"{patterns[i % len(patterns)]}.ts", f"c{i}", ports
                        )
                        for i in range(count)
                    ]
                    offsets = ", ".join(f"{f.clock_offset * 1000:.0f}" for f in feeds)
                    print(f"{count} cameras, stamp offsets {offsets} ms", file=sys.stderr)
                    for index in range(args.rounds):
                        measures: dict[str, Measure] = {}
                        for name in receivers:
                            m = RECEIVERS[name](feeds, args.warmup, args.seconds)
                            measures[name] = m
                            share = "-" if m.processor_share is None else f"{m.processor_share:.2f}"
                            print(f"round {index + 1} {count:>2} cams {name:<10} "
                                  f"{m.sets_per_s:5.1f} sets/s part {m.partial or 0:.2f} "
                                  f"proc {share:>4} "
                                  f"lost {m.lost * 100:5.2f} % "
                                  f"lat p50 {m.latency_p50_ms} p95 {m.latency_p95_ms} ms "
                                  f"cpu/cam {m.cpu_per_camera * 100:5.1f} % "
                                  f"replayers {m.replayers_cpu * 100:4.1f} % "
                                  f"other {m.other_cpu * 100:3.0f} %",
                                  file=sys.stderr)  # fmt: skip
                        rounds.append(measures)
                report[count] = summarize(rounds)
    except KeyboardInterrupt:
        print("interrupted; every replayer and worker stopped", file=sys.stderr)
        return 130

    if args.json:
        print(json.dumps({"rounds": args.rounds, "seconds": args.seconds, "patterns": patterns,
                          "cameras": report}))  # fmt: skip
        return 0
    print(f"640x480@30 H.264 replays over UDP loopback ({', '.join(patterns)} in turn, "
          f"{statistics.mean(mix):.1f} Mbit/s mean); {os.cpu_count()} cores")  # fmt: skip
    print(f"medians over {args.rounds} rounds of {args.seconds:g} s; latency and skew in ms; "
          "CPU in % of one core")  # fmt: skip
    for count, summary in report.items():
        print_table(count, summary)
    if 16 in report:
        print("\ngoal at 16 cameras:")
        for name in ("syncstream", "lazy", "pool", "processes"):
            if name in report[16]:
                print(f"  {goal(report[16], name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
