"""``syncstream probe URL``: what a stream carries and how late its frames arrive."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TextIO

from ..config import Backend
from ..errors import (
    ReadTimeout,
    StampNotFound,
    StreamEnded,
    SyncStreamError,
)
from ..frames import Frame
from ..probe import decode_stamp
from ..socket_words import plain_socket_error_in
from ..sources.base import EncodedPacket
from ..stats import MIN_RATE_SPAN, percentile
from ..stream import VideoStream
from .console import StopSignals

__all__ = ["ProbeReport", "probe_stream", "run_probe"]


@dataclass
class ProbeReport:
    """What :func:`probe_stream` saw. Times in seconds; None when not measured."""

    url: str
    opened: bool = False
    first_frame_after: float | None = None
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int = 0
    #: Seconds of stream read: the first to the last frame's timestamp (their arrival
    #: when the stream carries no timestamps); None before a frame.
    duration: float | None = None
    #: True when the stream ended (a file read to its end) before ``seconds`` passed.
    ended: bool = False
    #: Frames per second from the first frame to the end of the probe.
    fps: float = 0.0
    keyframes: int = 0
    #: "sender" when frames carry the sender's capture time, else "arrival".
    capture_clock: str = "arrival"
    #: Capture (sender clock, from the timestamps) to decoded, p50 and p95.
    latency_p50: float | None = None
    latency_p95: float | None = None
    #: The lowest arrival minus sender time: path delay plus the sender clock's error
    #: (see ``StreamStats.clock_error``); None when frames carry no sender time.
    clock_error: float | None = None
    #: Beyond this (seconds, either way) the sender's clock is called off.
    clock_warning: float = 1.0
    #: Glass to glass, from a stamp painted into the pixels (a StampSender), p50 and p95.
    stamp_frames: int = 0
    stamp_latency_p50: float | None = None
    stamp_latency_p95: float | None = None
    decode_errors: int = 0
    skipped: int = 0
    reconnects: int = 0
    #: udp://: frames of unknown length (PES length 0) handed over as soon as their end
    #: arrived, and those that waited for the next frame (see StreamStats).
    frame_ends_found: int = 0
    frame_ends_waited: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def probe_stream(
    url: str,
    seconds: float,
    *,
    backend: Backend = "auto",
    open_timeout: float = 10.0,
    stop: StopSignals | None = None,
) -> ProbeReport:
    """Read ``url`` for ``seconds`` after its first frame and report what it carried."""
    report = ProbeReport(url=url)
    packets: list[EncodedPacket] = []

    def on_packet(packet: EncodedPacket) -> None:
        if not packets:
            packets.append(packet)
        report.keyframes += packet.is_keyframe

    latencies: list[float] = []
    stamps: list[float] = []
    started = time.monotonic()
    with VideoStream(url, backend=backend, open_timeout=open_timeout) as stream:
        report.opened = True
        stream.add_packet_listener(on_packet)
        try:
            frame = stream.read(timeout=open_timeout)
        except StreamEnded:
            report.ended = True
            report.error = "the stream ended before its first frame"
            _fill_counters(report, stream)
            return report
        except ReadTimeout:
            stats = stream.stats
            waiting = stats.waiting_for  # "no data on udp port 9001"
            report.error = f"no frame within {open_timeout:g} s" + (
                f": {waiting}" if waiting else ""
            )
            plain = plain_socket_error_in(stats.last_error)
            if plain is not None:  # "connection refused" first, the details after
                report.error = f"{plain} ({report.error}; last error: {stats.last_error})"
            _fill_counters(report, stream)
            return report
        report.first_frame_after = time.monotonic() - started
        end = time.monotonic() + seconds
        first = frame
        while time.monotonic() < end and not (stop and stop.event.is_set()):
            if frame.capture_time is not None:
                report.capture_clock = "sender"
                latencies.append(frame.arrival_time - frame.capture_time)
            with contextlib.suppress(StampNotFound):  # most streams carry no pixel stamp
                stamps.append(frame.arrival_time - decode_stamp(frame.image))
            report.width, report.height = frame.width, frame.height
            try:
                frame = stream.read(timeout=max(0.05, end - time.monotonic()))
            except ReadTimeout:
                break
            except StreamEnded:  # a file shorter than ``seconds``: report what it held
                report.ended = True
                break
        report.frames = frame.seq - first.seq + 1
        report.duration = _span(first, frame)
        # over the probe's own span (the stream's last seconds include its opening), as
        # per_second takes it: at least MIN_RATE_SPAN, or the whole probe if shorter
        if report.ended:
            elapsed = frame.arrival_mono - first.arrival_mono
            report.fps = (report.frames - 1) / elapsed if elapsed > 0 else 0.0
        else:
            elapsed = time.monotonic() - first.arrival_mono
            report.fps = report.frames / max(elapsed, min(seconds, MIN_RATE_SPAN))
        _fill_counters(report, stream)
    if packets:
        report.codec = packets[0].format.codec
    latencies.sort()
    stamps.sort()
    report.latency_p50, report.latency_p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    report.stamp_frames = len(stamps)
    report.stamp_latency_p50 = percentile(stamps, 0.5)
    report.stamp_latency_p95 = percentile(stamps, 0.95)
    if report.capture_clock == "arrival":
        report.notes.append(
            "no sender capture time: a StreamGroup aligns this camera by arrival time"
        )
    if report.clock_error is not None and abs(report.clock_error) > report.clock_warning:
        report.notes.append(
            f"clock error beyond {report.clock_warning:g} s: the sender's clock is off; set "
            "it (NTP) or the camera's clock_offset, or choose its clock_fix"
        )
    return report


def _span(first: Frame, last: Frame) -> float:
    """Seconds from ``first`` to ``last``: by their timestamps, else by their arrival."""
    if first.pts_time is not None and last.pts_time is not None:
        return max(0.0, last.pts_time - first.pts_time)
    return last.arrival_mono - first.arrival_mono


def _fill_counters(report: ProbeReport, stream: VideoStream) -> None:
    stats = stream.stats
    report.clock_error = stats.clock_error
    report.clock_warning = stream.config.clock_warning
    report.decode_errors = stats.decode_errors
    report.skipped = stats.skipped
    report.reconnects = stats.reconnects
    report.frame_ends_found = stats.frame_ends_found
    report.frame_ends_waited = stats.frame_ends_waited
    if stats.last_error and report.error is None and report.frames == 0:
        report.error = stats.last_error


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _clock_error(report: ProbeReport) -> str:
    error = report.clock_error
    if error is None:
        return "-"
    off = abs(error) > report.clock_warning
    return f"{error:+.3f} s" + (f" (off: beyond ±{report.clock_warning:g} s)" if off else "")


def _duration(report: ProbeReport) -> str:
    if report.duration is None:
        return "-"
    return f"{report.duration:.2f} s" + (" (read to the end)" if report.ended else "")


def print_report(report: ProbeReport, out: TextIO) -> None:
    """The report as aligned ``key: value`` lines."""
    size = "-" if report.width is None else f"{report.width}x{report.height}"
    first = _ms(report.first_frame_after)
    rows = [
        ("url", report.url),
        ("codec", report.codec or "-"),
        ("size", size),
        ("frames", f"{report.frames} ({report.fps:.1f} fps, {report.keyframes} keyframes)"),
        ("duration", _duration(report)),
        ("first frame after", first),
        ("capture clock", report.capture_clock),
        ("latency p50/p95", f"{_ms(report.latency_p50)} / {_ms(report.latency_p95)}"),
        ("clock error", _clock_error(report)),
        (
            "stamp latency p50/p95",
            f"{_ms(report.stamp_latency_p50)} / {_ms(report.stamp_latency_p95)} "
            f"({report.stamp_frames} stamped frames)",
        ),
        (
            "errors",
            f"decode {report.decode_errors}, skipped {report.skipped}, "
            f"reconnects {report.reconnects}",
        ),
    ]
    if report.frame_ends_found or report.frame_ends_waited:
        rows.append(
            (
                "frame ends",
                f"{report.frame_ends_found} found at once, {report.frame_ends_waited} "
                "waited for the next frame",
            )
        )
    if report.error:
        rows.append(("error", report.error))
    rows += [("note", note) for note in report.notes]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        out.write(f"{key:<{width}}  {value}\n")
    out.flush()


def run_probe(
    url: str, seconds: float, backend: Backend, open_timeout: float, as_json: bool
) -> int:
    """Probe and print; exit status 0 when frames came (a file shorter than ``seconds``
    read to its end included), 1 otherwise."""
    with StopSignals() as stop:
        try:
            report = probe_stream(
                url, seconds, backend=backend, open_timeout=open_timeout, stop=stop
            )
        except SyncStreamError as exc:
            report = ProbeReport(url=url, error=str(exc))
    if as_json:
        json.dump(asdict(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(report, sys.stdout)
    return 0 if report.frames > 0 else 1
