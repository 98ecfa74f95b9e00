"""Memory and CPU bounds on hostile input: oversized pictures, a sender's output flood.

``pixels``: ffmpeg encodes ``--frames`` (20) pictures of 8192x8192 MPEG-2 (flat grey, one
keyframe each) to a UDP port that a :class:`syncstream.VideoStream` reads in a child
process of its own; the child reads every frame it can (without converting it to BGR)
and reports its resident memory once the socket is bound and its peak (``VmHWM``). Run
with the defaults (``max_pixels`` 8K UHD: the stream is refused before decoding), with
the cap lifted (``max_pixels=2**31-1``: every picture is decoded), and with
``max_history_bytes`` lifted too (the last ``history`` pictures kept: as before both).

``flood``: a program writes 8 MB without a newline, then a short line, on a sender's
host, locally (:class:`~syncstream.LocalSender`) and over SSH to a throwaway sshd on
127.0.0.1 (:class:`~syncstream.RemoteSender`). Per round: the seconds until the sender
has read all of it and given up, the characters kept in ``stderr_tail``, the longest
message logged, and the CPU seconds of this process meanwhile (SSH decryption included).
For comparison, the CPU seconds the former line loop (append each 4 KiB received, split
all that is held) takes for the same 8 MB; the bytes held by the current one.

Run: ``python3 benchmarks/bounds.py`` (``--rounds``, ``--frames``, ``--only pixels|flood``,
``--json``). Prints medians and ranges over the rounds.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from senders import sshd_host  # this folder: the SSHHost of the throwaway sshd

from syncstream import LocalSender, RemoteSender
from syncstream.lines import LineSplitter
from syncstream.senders import free_udp_port
from syncstream.senders.base import Sender
from syncstream.testing.sshd import start_sshd

FLOOD_BYTES = 8_000_000
FLOOD = f"{{ head -c {FLOOD_BYTES} /dev/zero | tr '\\0' x; echo; echo last words; }} >&2; exit 3"
UNCAPPED = 2**31 - 1

#: The reader, in a child process: prints one JSON line.
_CHILD = r"""
import json, sys, threading
from syncstream import StreamFailed, VideoStream, SyncStreamError
from syncstream.senders import LocalSender


def status(key):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(key + ":"))


port, frames, max_pixels, max_history_bytes = (int(arg) for arg in sys.argv[1:5])
stream = VideoStream(f"udp://127.0.0.1:{port}", max_reconnects=0, open_timeout=60,
                     stall_timeout=60, max_pixels=max_pixels,
                     max_history_bytes=max_history_bytes).start()
pause = threading.Event()
while stream.stats.waiting_for is None:
    pause.wait(0.02)
base = status("VmRSS")
sender = LocalSender([
    "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
    "-i", "color=c=gray:size=8192x8192:rate=5", "-frames:v", str(frames),
    "-c:v", "mpeg2video", "-strict", "-1", "-g", "1", "-f", "mpegts",
    f"udp://127.0.0.1:{port}?pkt_size=1316",
], name="big").start()
read, error = 0, None
try:
    while read < frames:
        stream.read(timeout=20)
        read += 1
except SyncStreamError as exc:
    error = exc.__cause__ or exc
finally:
    sender.close()
    stream.close()
print(json.dumps({"base_kib": base, "peak_kib": status("VmHWM"), "read": read,
                  "error": type(error).__name__ if error else None}))
"""


def pixels_round(frames: int, max_pixels: int, max_history_bytes: int) -> dict[str, float]:
    """One child reading ``frames`` 8K pictures under ``max_pixels``."""
    args = [str(free_udp_port()), str(frames), str(max_pixels), str(max_history_bytes)]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "base_mb": result["base_kib"] / 1024,
        "peak_mb": result["peak_kib"] / 1024,
        "frames_read": result["read"],
        "refused": float(result["error"] == "PictureTooLarge"),
    }


class _Longest(logging.Handler):
    """Keeps the length of the longest message logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.longest = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.longest = max(self.longest, len(record.getMessage()))


def flood_round(make: Callable[[], Sender]) -> dict[str, float]:
    """One sender running the flood until it gives up."""
    handler = _Longest()
    logger = logging.getLogger("syncstream")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    sender = make()
    cpu, begin = time.process_time(), time.monotonic()
    pause = threading.Event()
    try:
        sender.start()
        while sender.error is None:
            if time.monotonic() - begin > 120:
                raise RuntimeError("the sender did not give up within 120 s")
            pause.wait(0.01)
        seconds, cpu = time.monotonic() - begin, time.process_time() - cpu
    finally:
        sender.close()
        logger.removeHandler(handler)
    tail = sender.stderr_tail
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "tail_chars": sum(len(line) for line in tail),
        "longest_log": handler.longest,
    }


def former_split_cpu() -> float:
    """CPU seconds of the former loop (bytes appended, all re-split at each 4 KiB)."""
    data = b"x" * FLOOD_BYTES
    cpu = time.process_time()
    pending = b""
    for start in range(0, len(data), 4096):
        pending += data[start : start + 4096]
        *_lines, pending = pending.split(b"\n")
    return time.process_time() - cpu


def current_split() -> dict[str, float]:
    """CPU seconds and bytes held of :class:`LineSplitter` on the same 8 MB."""
    data = b"x" * FLOOD_BYTES
    cpu = time.process_time()
    splitter = LineSplitter()
    for start in range(0, len(data), 4096):
        splitter.feed(data[start : start + 4096])
    return {"cpu_s": time.process_time() - cpu, "held_bytes": splitter.high_water}


def summary(rounds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median, min and max of each figure over the rounds."""
    return {
        key: {
            "median": statistics.median(r[key] for r in rounds),
            "min": min(r[key] for r in rounds),
            "max": max(r[key] for r in rounds),
        }
        for key in rounds[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--only", choices=["pixels", "flood"])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    if args.only in (None, "pixels"):
        for label, cap, budget in (
            ("8K pictures, the defaults", 7680 * 4320, 256 << 20),
            ("8K pictures, max_pixels lifted", UNCAPPED, 256 << 20),
            ("8K pictures, max_pixels and max_history_bytes lifted", UNCAPPED, 1 << 40),
        ):
            rounds = [pixels_round(args.frames, cap, budget) for _ in range(args.rounds)]
            results[label] = summary(rounds)
    if args.only in (None, "flood"):
        local = [flood_round(lambda: LocalSender(["sh", "-c", FLOOD], name="flood"))
                 for _ in range(args.rounds)]  # fmt: skip
        results["8 MB line, local sender"] = summary(local)
        with tempfile.TemporaryDirectory() as workdir, start_sshd(Path(workdir)) as server:
            host = sshd_host(server)
            remote = [flood_round(lambda: RemoteSender(host, ["sh", "-c", FLOOD], name="flood"))
                      for _ in range(args.rounds)]  # fmt: skip
        results["8 MB line, remote sender"] = summary(remote)
        results["8 MB line, former split loop"] = summary(
            [{"cpu_s": former_split_cpu()} for _ in range(args.rounds)]
        )
        results["8 MB line, LineSplitter"] = summary([current_split() for _ in range(args.rounds)])
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for label, figures in results.items():
        shown = ", ".join(
            f"{key} {f['median']:.2f} ({f['min']:.2f}-{f['max']:.2f})" for key, f in figures.items()
        )
        print(f"{label}: {shown}")


if __name__ == "__main__":
    main()
