"""Shared by the benchmarks that hold sets of stamped pictures against the tutorial's receiver.

``rtsp.py`` and ``mixed.py`` run receivers in turn, in rounds on freshly started cameras
whose pictures carry the instant they were taken (read back by
:func:`syncstream.probe.decode_stamp`). For every set a receiver hands to the program, the
true skew is the spread of the stamps of its pictures and the latency ``now - earliest
stamp`` once its pictures are in hand as BGR arrays. This module holds what both do alike:
the measurement of a set, the tutorial's receiver, the rounds, their summary and tables.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import pathlib
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from latency import SeedVideoStream, pair_newest

from syncstream import FrameSet, StampNotFound, StreamGroup
from syncstream.probe import decode_stamp

#: Longest wait for the cameras' first sender report (RFC 3550: within 7.5 s).
REPORT_WAIT = 15.0
#: Times a round is tried, on fresh servers, when a server does not serve a session.
ROUND_ATTEMPTS = 3


@functools.cache
def tests_module(name: str) -> ModuleType:
    """A module of tests/ (the RTSP server fixture, the MJPEG peer), loaded by path."""
    path = pathlib.Path(__file__).resolve().parent.parent / "tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rtsp_server() -> Callable[..., AbstractContextManager[str]]:
    """``rtsp_server`` of tests/rtsp_fixture.py, which starts and stops the test server."""
    fixture = tests_module("rtsp_fixture")
    reason = fixture.rtsp_server_available()
    if reason is not None:
        raise RuntimeError(reason)
    server: Callable[..., AbstractContextManager[str]] = fixture.rtsp_server
    return server


class CameraFailed(RuntimeError):
    """A camera's server did not serve a session: the round is run again on fresh servers."""


@dataclass
class SetSamples:
    """What one receiver measured in one round (seconds); benchmarks add their own series."""

    skews: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    #: Sets not measured, by reason (partial, on the wrong clock, stamp unreadable).
    unmeasured: Counter[str] = field(default_factory=Counter)

    def measure(self, images: Sequence[Any]) -> list[float] | None:
        """Record the skew and latency of a set's pictures; their stamps, or None (counted)
        where one cannot be read."""
        now = time.time()
        try:
            stamps = [decode_stamp(image) for image in images]
        except StampNotFound:
            self.unmeasured["no stamp"] += 1
            return None
        self.skews.append(max(stamps) - min(stamps))
        self.latencies.append(now - min(stamps))
        return stamps

    def series(self) -> dict[str, list[float]]:
        """The series (s) whose p50 and p95 a round reports, by name."""
        return {"skew": self.skews, "latency": self.latencies}

    def add_figures(self, figures: dict[str, list[float]]) -> None:
        """Append the round's figures (s) besides the series' percentiles: none here."""


Samples = TypeVar("Samples", bound=SetSamples)
Cameras = TypeVar("Cameras")
Summary = dict[str, dict[str, float]]  # per receiver, its figures by name


def wait_for_set(group: StreamGroup, ready: Callable[[FrameSet], bool]) -> None:
    """Read sets until one is ``ready``; CameraFailed after REPORT_WAIT."""
    deadline = time.monotonic() + REPORT_WAIT
    while not ready(fs := group.read(timeout=15)):
        if time.monotonic() > deadline:
            raise CameraFailed(f"syncstream: no full set on capture time in {REPORT_WAIT} s: {fs}")


def report_reconnects(group: StreamGroup) -> None:
    """Say on stderr which of the group's cameras reconnected, and why."""
    for name, camera in group.stats.cameras.items():
        if camera.stream.reconnects or camera.stream.last_error:
            print(f"syncstream: {name} reconnected {camera.stream.reconnects} times, "
                  f"last error: {camera.stream.last_error}", file=sys.stderr)  # fmt: skip


def _open_seed(url: str, attempts: int = 2) -> SeedVideoStream:
    """The tutorial's reader on ``url``, opened again if the server refused the session."""
    for _ in range(attempts):
        stream = SeedVideoStream(url)
        if stream.ret:
            return stream
        stream.cap.release()
        print(f"seed: {url} not opened", file=sys.stderr)
    raise CameraFailed(f"seed: {url} not opened in {attempts} attempts")


def receive_seed(urls: Iterable[str], seconds: float, samples: Samples) -> Samples:
    """The tutorial's loop: the newest frame of each threaded cv2 reader, polled every ms."""
    streams: list[SeedVideoStream] = []
    try:
        for url in urls:
            streams.append(_open_seed(url).start())
        for skew, latency in pair_newest(streams, 0.0, seconds):
            samples.skews.append(skew)
            samples.latencies.append(latency)
    finally:
        for stream in streams:
            stream.release()
    return samples


def percentile(values: list[float], fraction: float) -> float:
    """The value at ``fraction`` (0..1) of the sorted ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(rows: Sequence[SetSamples], seconds: float) -> dict[str, float]:
    """Medians over rounds of each round's p50 and p95 of each series, and of its other
    figures, in ms (``<series>_p50_ms``, ...), and of its sets a second, to 0.1."""
    figures: dict[str, list[float]] = {}
    for samples in rows:
        for key, values in samples.series().items():
            if values:
                figures.setdefault(f"{key}_p50_ms", []).append(percentile(values, 0.5))
                figures.setdefault(f"{key}_p95_ms", []).append(percentile(values, 0.95))
        samples.add_figures(figures)
        figures.setdefault("sets_per_s", []).append(len(samples.skews) / seconds)
    scale = {"sets_per_s": 1.0}
    return {
        key: round(statistics.median(values) * scale.get(key, 1000.0), 1)
        for key, values in figures.items()
    }


def run_rounds(
    rounds: int,
    cameras: Callable[[], AbstractContextManager[Cameras]],
    receivers: dict[str, Callable[[Cameras, float], Samples]],
    seconds: float,
) -> dict[str, list[Samples]] | None:
    """Every receiver in turn on fresh ``cameras()``, ``rounds`` times; a round whose
    servers fail is tried again (ROUND_ATTEMPTS in all). Each round's figures go to stderr.
    None (said on stderr) where a round fails every attempt or a receiver measured nothing."""
    results: dict[str, list[Samples]] = {name: [] for name in receivers}
    width = max(map(len, receivers))
    for round_index in range(rounds):
        for attempt in range(1, ROUND_ATTEMPTS + 1):
            try:
                with cameras() as urls:  # fresh phases every round
                    rows = {name: receive(urls, seconds) for name, receive in receivers.items()}
                break
            except CameraFailed as exc:
                print(f"round {round_index + 1} attempt {attempt}: {exc}", file=sys.stderr)
        else:
            return None
        for name, samples in rows.items():
            if not samples.skews:
                print(f"{name}: no stamped set received ({dict(samples.unmeasured)})",
                      file=sys.stderr)  # fmt: skip
                return None
            results[name].append(samples)
            row = summary([samples], seconds)
            print(f"round {round_index + 1} {name:<{width}} "
                  + " ".join(f"{k} {v}" for k, v in row.items())
                  + f" unmeasured {dict(samples.unmeasured)}", file=sys.stderr)  # fmt: skip
    return results


def measure(
    rounds: int,
    cameras: Callable[[], AbstractContextManager[Cameras]],
    receivers: dict[str, Callable[[Cameras, float], Samples]],
    seconds: float,
    ratios: tuple[Sequence[str], int],
) -> tuple[Summary, list[float]] | None:
    """:func:`run_rounds`, then each receiver's :func:`summary` over the rounds with, for each
    of ``ratios[0]``, its ratio to the seed's (to ``ratios[1]`` digits), and the load
    average before and after. None where :func:`run_rounds` failed."""
    load_before = os.getloadavg()[0]
    results = run_rounds(rounds, cameras, receivers, seconds)
    if results is None:
        return None
    load = [load_before, os.getloadavg()[0]]
    table = {name: summary(rows, seconds) for name, rows in results.items()}
    keys, digits = ratios
    seed = table["seed"]
    for row in table.values():
        for key in keys:
            ratio = row[key] / seed[key] if seed[key] else 0.0
            row[key.removesuffix("_ms") + "_vs_seed"] = round(ratio, digits)
    return table, load


def print_head(
    settings: dict[str, Any], title: str, table: Summary, load: list[float], as_json: bool
) -> bool:
    """With ``as_json``, print the settings, load and figures as one JSON line (True: done);
    else the title and the rounds' line, for the tables to follow (False)."""
    if as_json:
        print(json.dumps({**settings, "load": load, "receivers": table}))
        return True
    print(title)
    print(f"medians over {settings['rounds']} rounds of {settings['seconds']:g} s; "
          f"load average {load[0]:.2f} -> {load[1]:.2f}")  # fmt: skip
    return False


def print_table(rows: Summary, columns: Sequence[str], heads: Sequence[str], width: int) -> None:
    """A table: a row per receiver (names ``width`` wide), ``heads`` over ``columns``."""
    print(f"{'receiver':<{width}}" + "".join(f"{h:>10}" for h in heads))
    for name, row in rows.items():
        print(f"{name:<{width}}" + "".join(f"{row.get(c, '-')!s:>10}" for c in columns))
