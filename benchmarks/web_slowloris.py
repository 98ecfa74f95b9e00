"""Slowloris against the web view: what a legitimate client gets, and the server's memory.

A web view runs in a child process (so its memory is its own), showing a 640x480 output
published 20 times a second, with its default limits. Per round, the legitimate client
(127.0.0.1) reads ``/stream.mjpg`` and asks for ``/stats`` over and over for ``--seconds``,
first alone, then while ``--connections`` connections
(:class:`~syncstream.testing.slowloris.Slowloris`, from 127.0.0.2 and up, ten per address)
each send one byte of a request head that never ends every 0.5-0.8 s, and open
again whenever the server closes them. For each phase: the ``/stats`` requests answered
and failed (reset, refused or no answer within 5 s), and the stream pictures received.
The child reports its resident memory before the first round and its peak (``VmHWM`` of
``/proc/self/status``) after the last, its most threads at once, and its web stats.

Run: ``python3 benchmarks/web_slowloris.py`` (``--rounds``, ``--seconds``,
``--connections``). ``--tree DIR`` serves with the syncstream package found in DIR
instead, e.g. an earlier version unpacked with ``git archive REV syncstream | tar -x -C DIR``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

FRAME_RATE = 20.0


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM) or a count (Threads)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def serve() -> None:
    """The child: a web view until stdin closes; then one JSON line of what it measured."""
    import numpy as np

    from syncstream.processors.output import ImageOutput
    from syncstream.processors.web import WebView
    from syncstream.processors.web.http import json_document

    output = ImageOutput("wall")
    stop = threading.Event()
    peak_threads = 0

    def publish() -> None:
        index = 0
        rng = np.random.default_rng(1)
        noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        while not stop.wait(1 / FRAME_RATE):
            output.publish(np.roll(noise, index, axis=1))
            index += 1

    def sample() -> None:
        nonlocal peak_threads
        while not stop.wait(0.05):
            peak_threads = max(peak_threads, _status("Threads"))

    threads = [threading.Thread(target=f, daemon=True) for f in (publish, sample)]
    for thread in threads:
        thread.start()
    with WebView(output) as view:
        rss_before = _status("VmRSS")
        print(json.dumps({"port": view.address[1], "rss_kib": rss_before}), flush=True)
        sys.stdin.read()  # until the parent closes it
        report = {
            "rss_before_kib": rss_before,
            "peak_rss_kib": _status("VmHWM"),
            "peak_threads": peak_threads,
            "web": json.loads(json_document(view.stats)),
        }
    stop.set()
    print(json.dumps(report), flush=True)


class Watcher:
    """Reads the MJPEG stream, counting the pictures (parts) received."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pictures = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5.0)
            conn.request("GET", "/stream.mjpg")
            reply = conn.getresponse()
            boundary = b"--" + reply.getheader("Content-Type", "").split("=")[1].encode()
            tail = b""
            while not self._stop.is_set():
                chunk = reply.read1(65536)
                if not chunk:
                    self.error = "the stream ended"
                    return
                data = tail + chunk
                self.pictures += data.count(boundary)
                tail = data[-len(boundary) :]
            conn.close()
        except (OSError, http.client.HTTPException, IndexError) as exc:
            self.error = repr(exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10.0)


def phase(port: int, seconds: float) -> dict[str, Any]:
    """Ask for /stats over and over for ``seconds`` while watching the stream."""
    watcher = Watcher(port)
    answered = failed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
        try:
            conn.request("GET", "/stats")
            reply = conn.getresponse()
            reply.read()
            if reply.status == 200:
                answered += 1
            else:
                failed += 1
        except (OSError, http.client.HTTPException):
            failed += 1
        finally:
            conn.close()
    watcher.close()
    return {
        "stats_answered": answered,
        "stats_failed": failed,
        "pictures": watcher.pictures,
        "stream_error": watcher.error,
    }


def main() -> int:
    """Run the rounds and print the medians and the child's memory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--tree", help="serve with the syncstream package in this directory")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    # here, not at the top: the child may serve with a --tree from before this module
    from syncstream.testing.slowloris import Slowloris

    env = dict(os.environ)
    if args.tree:
        env["PYTHONPATH"] = os.path.abspath(args.tree)
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdin is not None and child.stdout is not None
    port = json.loads(child.stdout.readline())["port"]
    rows: dict[str, list[dict[str, Any]]] = {"alone": [], "slowloris": []}
    for _ in range(args.rounds):
        rows["alone"].append(phase(port, args.seconds))
        with Slowloris(port, count=args.connections, per_source=10) as drippers:
            time.sleep(1.0)  # let them connect
            rows["slowloris"].append(phase(port, args.seconds))
        time.sleep(6.0)  # the server lets go of the last ones
    child.stdin.close()
    report = json.loads(child.stdout.readline())
    child.wait(30)
    print(f"{args.rounds} rounds of {args.seconds:.0f} s; {args.connections} dripping connections")
    print(f"{'phase':<10} {'/stats ok':>10} {'/stats failed':>14} {'pictures':>9}  (medians)")
    for name, results in rows.items():
        ok = statistics.median(r["stats_answered"] for r in results)
        bad = statistics.median(r["stats_failed"] for r in results)
        pictures = statistics.median(r["pictures"] for r in results)
        errors = {r["stream_error"] for r in results} - {None}
        print(f"{name:<10} {ok:>10.0f} {bad:>14.0f} {pictures:>9.0f}  {', '.join(errors)}")
    print(f"dripping connections opened: {drippers.opened} in the last round")
    web = report["web"]
    counters = ("requests", "refused", "stalled", "errors", "timed_out", "evicted")
    print("server:", ", ".join(f"{k} {web[k]}" for k in counters if k in web))
    print(
        f"server memory: {report['rss_before_kib'] / 1024:.1f} MiB before, peak "
        f"{report['peak_rss_kib'] / 1024:.1f} MiB; most threads at once {report['peak_threads']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
