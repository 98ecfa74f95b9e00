"""Dual-stream cameras: speaker detection on the sub stream against on the main stream.

Four cameras on this machine, each a :class:`~syncstream.LocalSender` looping a clip of
scikit-image's astronaut photo (640x480@30, H.264) in which a mouth opens and closes, so
the detector has a face to follow and a mouth to score. Each round runs two sessions, in
turn, for ``--seconds`` after ``--warmup``:

- ``sub``: every camera also sends a sub stream (``--sub-size``, ``--sub-fps``) from the
  same ffmpeg; a :class:`~syncstream.Wall` takes the main sets and a
  :class:`~syncstream.SpeakerDetector` the sub sets (its default);
- ``main``: the cameras send their main stream only, and the detector searches the main
  frames: what the tutorial does (its detector runs on the full pictures it shows).

Printed per session, medians over rounds: this process's CPU (every thread: decoding,
conversion, alignment, wall, detector) in % of one core; the senders' CPU (the camera
hosts' cost: the sub stream is one more encoder); the detector's time per set and its
share of the sets it was offered; the detection latency (the set's capture time to the
detector's result, p50/p95); the wall's set latency p50/p95; and the ratio sub / main of
each, measured in the same rounds.

Run: ``python3 benchmarks/roles.py`` (``--rounds``, ``--seconds``, ``--warmup``,
``--sub-size``, ``--sub-fps``, ``--json``).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from scale import pid_cpu  # this folder: the same /proc reading as the scale benchmark
from skimage import data

from syncstream import Camera, SenderConfig, SpeakerDetector, SpeakerResult, StreamGroup, Wall
from syncstream.config import CameraStream
from syncstream.senders import free_udp_port

SIZE = (640, 480)
FPS = 30
CAMERAS = 4


def make_clip(path: pathlib.Path, seconds: float = 4.0) -> None:
    """The astronaut on a 640x480 picture, her mouth opening and closing, as H.264."""
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)  # type: ignore[no-untyped-call]
    canvas = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    canvas[:, 64:576] = cv2.resize(photo, (512, 480))
    mouth = (64 + 222, round(144 * 480 / 512))
    frames = round(seconds * FPS)
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{SIZE[0]}x{SIZE[1]}", "-r", str(FPS),
        "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-g", str(FPS),
        "-pix_fmt", "yuv420p", str(path),
    ]  # fmt: skip
    with subprocess.Popen(command, stdin=subprocess.PIPE) as ffmpeg:
        assert ffmpeg.stdin is not None
        for i in range(frames):
            picture = canvas.copy()
            opening = 0.5 - 0.5 * math.cos(2 * math.pi * i / 6)
            axes = (16, max(1, round(9 * opening)))
            cv2.ellipse(picture, mouth, axes, 0, 0, 360, (40, 30, 60), -1)
            ffmpeg.stdin.write(picture.tobytes())
        ffmpeg.stdin.close()
    if ffmpeg.returncode != 0:
        raise SystemExit(f"ffmpeg could not write {path}")


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Measure:
    """One session of one round."""

    mode: str
    cpu: float  # this process, share of one core
    senders_cpu: float  # all senders, share of one core
    detect_ms: float | None  # the detector's mean time per set
    detect_share: float  # sets it took of those offered
    detect_rate: float  # results per second
    detect_p50_ms: float | None  # capture time of the set -> the result
    detect_p95_ms: float | None
    wall_p50_ms: float | None  # the main sets' latency
    wall_p95_ms: float | None
    faces_found: float  # share of results with a face on every camera


def run(mode: str, clip: pathlib.Path, args: argparse.Namespace) -> Measure:
    """One session: 4 cameras, a wall on main, the detector on ``mode``'s frames."""
    sub = CameraStream(size=args.sub_size, fps=args.sub_fps)
    cams = []
    for i in range(CAMERAS):
        streams = {"sub": sub.model_copy(update={"port": free_udp_port()})} if mode == "sub" else {}
        cams.append(Camera(
            name=f"cam{i + 1}",
            sender=SenderConfig(input=str(clip), size=SIZE, fps=FPS),
            port=free_udp_port(),
            streams=streams,
        ))  # fmt: skip
    latencies: list[float] = []
    faces: list[bool] = []
    measuring = threading.Event()

    def on_result(result: SpeakerResult) -> None:
        if measuring.is_set():
            latencies.append(time.time() - result.time)
            faces.append(all(result.faces.get(c.name) for c in cams))

    with StreamGroup(cams) as group:
        group.add_processor(Wall())
        detector = SpeakerDetector(on_result=on_result, role=mode)
        worker = group.add_processor(detector)
        group.read(timeout=20.0)
        time.sleep(args.warmup)
        pids = [sender.pid for sender in group.senders.values()]
        before = group.stats
        cpu0, senders0, mono0 = time.process_time(), sum(map(pid_cpu, pids)), time.monotonic()
        measuring.set()
        time.sleep(args.seconds)
        measuring.clear()
        elapsed = time.monotonic() - mono0
        cpu = (time.process_time() - cpu0) / elapsed
        senders = (sum(map(pid_cpu, pids)) - senders0) / elapsed
        after = group.stats
    old, new = before.processors[worker.name], after.processors[worker.name]
    done = new.processed - old.processed
    offered = done + new.skipped - old.skipped
    spent = (new.mean_time or 0.0) * new.processed - (old.mean_time or 0.0) * old.processed
    return Measure(
        mode=mode,
        cpu=cpu,
        senders_cpu=senders,
        detect_ms=spent / done * 1000 if done else None,
        detect_share=done / offered if offered else 0.0,
        detect_rate=done / elapsed,
        detect_p50_ms=_ms(_percentile(latencies, 0.5)),
        detect_p95_ms=_ms(_percentile(latencies, 0.95)),
        wall_p50_ms=_ms(after.latency_p50),
        wall_p95_ms=_ms(after.latency_p95),
        faces_found=sum(faces) / len(faces) if faces else 0.0,
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    """Run ``--rounds`` rounds of both sessions; print the medians and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--sub-size", type=lambda t: tuple(map(int, t.split("x"))), default=(320, 240)
    )
    parser.add_argument("--sub-fps", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rounds: list[dict[str, Measure]] = []
    with tempfile.TemporaryDirectory(prefix="roles-") as tmp:
        clip = pathlib.Path(tmp) / "astronaut.mp4"
        make_clip(clip)
        for index in range(args.rounds):
            measures = {}
            for mode in ("sub", "main"):
                m = measures[mode] = run(mode, clip, args)
                print(f"round {index + 1} {mode:<4} cpu {m.cpu * 100:5.1f} % "
                      f"senders {m.senders_cpu * 100:5.1f} % detect {_fmt(m.detect_ms, '.2f')} ms "
                      f"share {m.detect_share:.2f} latency p50 {_fmt(m.detect_p50_ms, '.1f')} "
                      f"p95 {_fmt(m.detect_p95_ms, '.1f')} ms wall p50 "
                      f"{_fmt(m.wall_p50_ms, '.1f')} ms faces {m.faces_found:.2f}",
                      file=sys.stderr)  # fmt: skip
            rounds.append(measures)
    fields = [f for f in Measure.__dataclass_fields__ if f != "mode"]
    summary = {
        mode: {f: _median([getattr(r[mode], f) for r in rounds]) for f in fields}
        for mode in ("sub", "main")
    }
    ratios = {
        f: _median([
            None if not getattr(r["main"], f) or getattr(r["sub"], f) is None
            else getattr(r["sub"], f) / getattr(r["main"], f)
            for r in rounds
        ])
        for f in ("cpu", "senders_cpu", "detect_ms", "detect_p50_ms", "detect_p95_ms",
                  "wall_p50_ms")
    }  # fmt: skip
    if args.json:
        every = [{mode: asdict(m) for mode, m in r.items()} for r in rounds]
        print(json.dumps({"summary": summary, "ratios": ratios, "rounds": every}))
        return 0
    sub_w, sub_h = args.sub_size
    print(f"4 cameras 640x480@30 H.264 (a looping face clip), wall on main; sub stream "
          f"{sub_w}x{sub_h}@{args.sub_fps:g}; medians of {args.rounds} rounds of "
          f"{args.seconds:g} s")  # fmt: skip
    print(
        "detection on  receiver CPU  senders CPU  detect/set  sets taken  "
        "detect latency p50/p95  wall latency p50/p95  faces"
    )
    for mode, row in summary.items():
        print(f"{mode:<13} {_fmt(_pct(row['cpu']), '9.1f')} %  "
              f"{_fmt(_pct(row['senders_cpu']), '9.1f')} %  "
              f"{_fmt(row['detect_ms'], '7.2f')} ms  {_fmt(row['detect_share'], '10.2f')}  "
              f"{_fmt(row['detect_p50_ms'], '8.1f')} / {_fmt(row['detect_p95_ms'], '6.1f')} ms"
              f"  {_fmt(row['wall_p50_ms'], '9.1f')} / {_fmt(row['wall_p95_ms'], '6.1f')} ms"
              f"  {_fmt(row['faces_found'], '.2f')}")  # fmt: skip
    print("sub / main: " + ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in ratios.items()))
    return 0


def _pct(value: float | None) -> float | None:
    return None if value is None else value * 100


if __name__ == "__main__":
    sys.exit(main())
