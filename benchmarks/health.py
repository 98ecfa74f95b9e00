"""Stream health: how long a camera is dark when its MPEG-TS stream changes under the reader.

A sender on a UDP port is replaced by another ffmpeg on the same port, as when a camera
restarts with other settings, and the reader (:class:`syncstream.VideoStream`, default
settings) goes on reading. The two senders alternate in each scenario:

- ``same-layout``: the same PIDs and codec (only the picture size differs): FFmpeg's
  demuxer carries on, no reopen; the floor the others compare to;
- ``pmt-pid``: the PMT on another PID (``-mpegts_pmt_start_pid``): the PAT changes;
- ``video-pid``: the video on another PID (``-streamid 0:0x200``): the PMT changes;
- ``codec``: libx264 <-> mpeg2video on the same PID (the PMT's stream_type changes),
  reported for each direction.

Each switch is timed from the first datagram of the new sender (stamped by a forwarder in
front of the reader before it passes the datagram on) to the first frame of the new
sender that ``read()`` returns (recognised by its picture size).
``null-packets`` times the other fault: the sender stops and MPEG-TS null packets keep
coming; from the last frame to the stream's state STALE, with ``--stall-timeout``.

Run: ``python3 benchmarks/health.py`` (``--rounds``, ``--stall-timeout``, ``--json``).
Prints, per scenario, the median and the range over rounds in ms.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time

from syncstream import Frame, SenderConfig, StreamState, VideoStream
from syncstream.config import Codec
from syncstream.senders import LocalSender, free_udp_port, sender_argv

SIZES = ((320, 240), (352, 288))
#: TS packets of PID 0x1FFF with no payload worth reading, seven to a datagram.
NULL_DATAGRAM = (bytes([0x47, 0x1F, 0xFF, 0x10]) + b"\xff" * 184) * 7

Variant = tuple[Codec, tuple[str, ...]]
SCENARIOS: dict[str, tuple[Variant, Variant]] = {
    "same-layout": (("libx264", ()), ("libx264", ())),
    "pmt-pid": (("libx264", ()), ("libx264", ("-mpegts_pmt_start_pid", "0x1100"))),
    "video-pid": (("libx264", ()), ("libx264", ("-streamid", "0:0x200"))),
    "codec": (("libx264", ()), ("mpeg2video", ())),
}


def sender(url: str, size: tuple[int, int], codec: Codec, mux: tuple[str, ...]) -> LocalSender:
    """A simulated camera whose MPEG-TS muxer gets the extra options ``mux``."""
    argv = sender_argv(SenderConfig(destination=url, input="testsrc", size=size, codec=codec))
    at = argv.index("mpegts") - 1  # "-f mpegts url": the muxer's options go before it
    return LocalSender([*argv[:at], *mux, *argv[at:]], name=f"{codec}{size[0]}")


class Forwarder:
    """Passes datagrams from its own port to ``target``; stamps the first one after arm()."""

    def __init__(self, target: int) -> None:
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._listen.bind(("127.0.0.1", 0))
        self._listen.settimeout(0.05)
        self.url = f"udp://127.0.0.1:{self._listen.getsockname()[1]}"
        self._target = ("127.0.0.1", target)
        self._armed = False
        self.first_mono = float("nan")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forwarder")
        self._thread.start()

    def arm(self) -> None:
        """Stamp the next datagram (the first of a new sender)."""
        self._armed = True

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            while not self._stop.is_set():
                try:
                    data = self._listen.recv(65536)
                except TimeoutError:
                    continue
                if self._armed:  # stamped before the reader can have it
                    self.first_mono, self._armed = time.monotonic(), False
                out.sendto(data, self._target)

    def close(self) -> None:
        """Stop forwarding and close the socket."""
        self._stop.set()
        self._thread.join()
        self._listen.close()


def run_switches(name: str, rounds: int) -> dict[str, list[float]]:
    """Alternate the scenario's two senders ``rounds`` times: seconds dark per switch."""
    variants = SCENARIOS[name]
    port = free_udp_port()
    samples: dict[str, list[float]] = {}
    forwarder = Forwarder(port)
    with VideoStream(f"udp://127.0.0.1:{port}", name=name) as stream:
        current = sender(forwarder.url, SIZES[0], *variants[0]).start()
        try:
            _read_size(stream, SIZES[0], 15.0)
            for index in range(1, rounds + 1):
                size, (codec, mux) = SIZES[index % 2], variants[index % 2]
                current.close()
                time.sleep(0.1)  # the old sender's last datagrams are passed on unstamped
                forwarder.arm()
                current = sender(forwarder.url, size, codec, mux).start()
                frame = _read_size(stream, size, 15.0)
                label = name if name != "codec" else f"codec to {codec}"
                samples.setdefault(label, []).append(frame.arrival_mono - forwarder.first_mono)
                time.sleep(0.5)  # a steady stream before the next switch
        finally:
            current.close()
            forwarder.close()
    return samples


def _read_size(stream: VideoStream, size: tuple[int, int], timeout: float) -> Frame:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = stream.read(timeout=timeout)
        if (frame.width, frame.height) == size:
            return frame
    raise TimeoutError(f"no {size[0]}x{size[1]} frame within {timeout} s")


def run_null_packets(rounds: int, stall_timeout: float) -> list[float]:
    """Seconds from the last frame to STALE while only null packets arrive."""
    samples: list[float] = []
    for _ in range(rounds):
        port = free_udp_port()
        camera = sender(f"udp://127.0.0.1:{port}", SIZES[0], "libx264", ()).start()
        with (
            VideoStream(f"udp://127.0.0.1:{port}", stall_timeout=stall_timeout) as stream,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        ):
            try:
                stream.read(timeout=15)
            finally:
                camera.close()
            while stream.state is StreamState.LIVE:
                sock.sendto(NULL_DATAGRAM, ("127.0.0.1", port))
                time.sleep(0.002)
            samples.append(time.monotonic() - stream.latest().arrival_mono)
    return samples


def main() -> int:
    """Run every scenario and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="switches per scenario")
    parser.add_argument("--stall-timeout", type=float, default=1.0, help="for null-packets")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {}
    for name in SCENARIOS:
        samples.update(run_switches(name, args.rounds))
    samples["null-packets"] = run_null_packets(max(1, args.rounds // 2), args.stall_timeout)
    report = {
        name: {
            "median_ms": round(statistics.median(values) * 1000, 1),
            "min_ms": round(min(values) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
            "rounds": len(values),
        }
        for name, values in samples.items()
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print("dark time after a stream change, UDP loopback, 320x240 <-> 352x288 @30, GOP 30")
    print(f"null-packets: stall_timeout {args.stall_timeout:g} s")
    print(f"{'scenario':<22} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'rounds':>7}")
    for name, row in report.items():
        print(
            f"{name:<22} {row['median_ms']:>10} {row['min_ms']:>8} {row['max_ms']:>8} "
            f"{row['rounds']:>7}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
