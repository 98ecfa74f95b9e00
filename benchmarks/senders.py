"""Remote senders over SSH: start, stop, cleanup after a receiver crash, clock offset.

A throwaway OpenSSH server on 127.0.0.1 (:mod:`syncstream.testing.sshd`) plays the camera
host; its ffmpeg sends a 640x480@30 test pattern to a UDP socket here.
Each round measures, for :class:`~syncstream.RemoteSender` and for the tutorial's way
(paramiko ``exec_command`` of a formatted shell string, stopped with ``killall ffmpeg``):

- ``first_packet``: from the start call (SSH connect included) to the first UDP datagram
  at the receiver (the first decoded frame then depends on the codec and bitrate, not on
  how the sender was started);
- ``stop``: from the stop call to the remote ffmpeg process being gone;
- ``orphan``: a receiver process is SIGKILLed; time until its remote ffmpeg is gone
  (capped at ``--orphan-wait`` seconds: a capped value means it was still streaming);

plus, for RemoteSender only, the clock offset and its uncertainty. The tutorial's
``killall ffmpeg`` would also end every other ffmpeg on the machine, so here it is
confined to the round's process (``pkill -f`` on its unique destination).

Run: ``python3 benchmarks/senders.py`` (``--rounds``, ``--orphan-wait``, ``--json``;
``--seed-quiet`` runs the tutorial's ffmpeg without progress output on stderr).
Prints medians over rounds in ms, and the tutorial's figure over ours.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import paramiko

from syncstream import RemoteSender, SenderConfig, SSHHost, SSHSession
from syncstream.senders import free_udp_port
from syncstream.testing.sshd import SshdServer, start_sshd

SIZE = (640, 480)


def sshd_host(server: SshdServer) -> SSHHost:
    """An SSHHost for the throwaway ``server``: its known key, the user key only."""
    return SSHHost(
        hostname=server.host,
        port=server.port,
        username=server.username,
        key_filename=str(server.user_key),
        known_hosts_file=str(server.known_hosts),
        allow_agent=False,
        look_for_keys=False,
    )


#: ffmpeg options added to the tutorial's command by --seed-quiet.
QUIET = ""


def _seed_command(destination: str) -> str:
    # The tutorial's command, with a test pattern instead of /dev/video0.
    return (
        f"ffmpeg {QUIET}-re -f lavfi -i testsrc=size={SIZE[0]}x{SIZE[1]}:rate=30 "
        f"-f mpegts {destination}?pkt_size=1316"
    )


def _seed_client(server: SshdServer) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts))  # the tutorial uses AutoAddPolicy
    client.connect(
        server.host,
        port=server.port,
        username=server.username,
        key_filename=str(server.user_key),
        allow_agent=False,
        look_for_keys=False,
    )
    return client


def _ffmpeg_pids(destination: str) -> list[int]:
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"ffmpeg") and any(destination.encode() in a for a in argv):
            pids.append(int(entry.name))
    return pids


def _wait(condition: Callable[[], bool], limit: float) -> float:
    """Seconds until ``condition`` holds, polled every 5 ms; ``limit`` if it never does."""
    begin = time.monotonic()
    while not condition():
        if time.monotonic() - begin >= limit:
            return limit
        time.sleep(0.005)
    return time.monotonic() - begin


def _gone(destination: str) -> Callable[[], bool]:
    return lambda: not _ffmpeg_pids(destination)


def _receiver() -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    return sock, f"udp://127.0.0.1:{sock.getsockname()[1]}"


def start_stop_ours(server: SshdServer) -> tuple[float, float]:
    """RemoteSender: seconds to the first datagram, seconds for close() to end ffmpeg."""
    receiver, destination = _receiver()
    config = SenderConfig(destination=destination, size=SIZE)
    with receiver:
        begin = time.monotonic()
        sender = RemoteSender(sshd_host(server), config)
        starter = threading.Thread(target=sender.start)  # start() also waits startup_wait
        starter.start()
        receiver.recv(2048)
        first = time.monotonic() - begin
        starter.join()
        stop_begin = time.monotonic()
        sender.close()
        _wait(_gone(destination), 10)
        stopped = time.monotonic() - stop_begin
    return first, stopped


def start_stop_seed(server: SshdServer) -> tuple[float, float]:
    """The tutorial: connect, exec_command(str), then ``killall ffmpeg`` (confined)."""
    receiver, destination = _receiver()
    with receiver:
        begin = time.monotonic()
        client = _seed_client(server)
        client.exec_command(_seed_command(destination))
        receiver.recv(2048)
        first = time.monotonic() - begin
        stop_begin = time.monotonic()
        client.exec_command(f"pkill -f {destination}")  # the tutorial: killall ffmpeg
        _wait(_gone(destination), 10)
        stopped = time.monotonic() - stop_begin
        client.close()
    return first, stopped


_CHILD_OURS = """
import sys, time
from syncstream import RemoteSender, SenderConfig, SSHHost
host = SSHHost.model_validate_json(sys.argv[1])
sender = RemoteSender(host, SenderConfig(destination=sys.argv[2], size=(640, 480))).start()
print(sender.pid, flush=True)
time.sleep(60)
"""

_CHILD_SEED = """
import sys, time, paramiko
host, port, user, key, known, command = sys.argv[1:7]
client = paramiko.SSHClient()
client.load_host_keys(known)
client.connect(host, port=int(port), username=user, key_filename=key,
               allow_agent=False, look_for_keys=False)
client.exec_command(command)
print(0, flush=True)
time.sleep(60)
"""


def orphan(server: SshdServer, seed: bool, limit: float) -> float:
    """Seconds from SIGKILL of a receiver process until its remote ffmpeg is gone."""
    destination = f"udp://127.0.0.1:{free_udp_port()}"
    if seed:
        args = [server.host, str(server.port), server.username, str(server.user_key),
                str(server.known_hosts), _seed_command(destination)]  # fmt: skip
        argv = [sys.executable, "-c", _CHILD_SEED, *args]
    else:
        argv = [sys.executable, "-c", _CHILD_OURS, sshd_host(server).model_dump_json(), destination]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        child.stdout.readline()
        if _wait(lambda: bool(_ffmpeg_pids(destination)), 10) >= 10:
            raise RuntimeError("the remote ffmpeg did not start")
        child.send_signal(signal.SIGKILL)
        child.wait()
        return _wait(_gone(destination), limit)
    finally:
        child.kill()
        child.wait()
        for pid in _ffmpeg_pids(destination):  # what the receiver left streaming
            os.kill(pid, signal.SIGKILL)


def main() -> int:
    """Run the rounds and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--orphan-wait", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--seed-quiet",
        action="store_true",
        help="the tutorial's ffmpeg with -loglevel error -nostats (no progress on stderr)",
    )
    args = parser.parse_args()
    global QUIET
    QUIET = "-loglevel error -nostats " if args.seed_quiet else ""
    results: dict[str, dict[str, list[float]]] = {
        name: {"first_packet": [], "stop": [], "orphan": []} for name in ("syncstream", "seed")
    }
    offsets: list[float] = []
    uncertainties: list[float] = []
    with tempfile.TemporaryDirectory() as workdir, start_sshd(pathlib.Path(workdir)) as server:
        for round_ in range(args.rounds):
            for name, run in (("syncstream", start_stop_ours), ("seed", start_stop_seed)):
                first, stopped = run(server)
                results[name]["first_packet"].append(first)
                results[name]["stop"].append(stopped)
                results[name]["orphan"].append(orphan(server, name == "seed", args.orphan_wait))
            with SSHSession(sshd_host(server)) as session:
                measured = session.measure_clock_offset()
            offsets.append(measured.offset)
            uncertainties.append(measured.uncertainty)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    medians = {
        name: {key: statistics.median(values) * 1e3 for key, values in metrics.items()}
        for name, metrics in results.items()
    }
    clock = {
        "offset_ms": statistics.median(offsets) * 1e3,
        "uncertainty_ms": statistics.median(uncertainties) * 1e3,
    }
    if args.json:
        print(json.dumps({"medians_ms": medians, "clock": clock, "rounds": args.rounds}))
        return 0
    print(f"{'metric':<12} {'syncstream':>12} {'seed':>12} {'seed/ours':>10}")
    for key in ("first_packet", "stop", "orphan"):
        ours, seed = medians["syncstream"][key], medians["seed"][key]
        print(f"{key:<12} {ours:>9.1f} ms {seed:>9.1f} ms {seed / ours:>9.1f}x")
    print(f"orphan figures are capped at {args.orphan_wait * 1e3:.0f} ms (still streaming)")
    print(f"clock offset {clock['offset_ms']:+.3f} ms, "
          f"uncertainty {clock['uncertainty_ms']:.3f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
