"""Start cameras on SSH hosts, measure their clocks, and print what arrives from each.

    python3 examples/remote_cameras.py pi@cam1.local pi@cam2.local:2222 --input /dev/video0
    python3 examples/remote_cameras.py --local        # two simulated cameras on this machine

Each host runs ffmpeg through a :class:`syncstream.RemoteSender` (host keys must be known:
see docs/senders.md), sending to our address on the route to that host. Its clock offset,
measured over SSH, maps its capture times onto our clock, so the printed latencies of
different hosts are comparable.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from syncstream import LocalSender, RemoteSender, SenderConfig, SSHHost, VideoStream
from syncstream.senders import Sender, free_udp_port, receiver_address


def parse_host(text: str, key: str | None, trust: bool) -> SSHHost:
    """``[user@]host[:port]`` as an SSHHost."""
    user, _, rest = text.rpartition("@")
    hostname, _, port = rest.partition(":")
    return SSHHost(
        hostname=hostname,
        port=int(port or 22),
        username=user or None,
        key_filename=key,
        trust_unknown_hosts=trust,
    )


def main() -> int:
    """Parse arguments, start the senders and streams, print figures each second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hosts", nargs="*", help="[user@]host[:port] of each camera host")
    parser.add_argument("--local", action="store_true", help="two simulated cameras here")
    parser.add_argument("--input", default="testsrc", help="device, file or test pattern")
    parser.add_argument("--size", default="640x480", help="WxH")
    parser.add_argument("--key", help="private key file for every host")
    parser.add_argument("--trust-unknown-hosts", action="store_true")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if not args.hosts and not args.local:
        parser.error("give camera hosts or --local")
    width, _, height = args.size.partition("x")
    size = (int(width), int(height))

    with contextlib.ExitStack() as stack:
        streams: list[tuple[Sender, VideoStream]] = []
        targets = [None, None] if args.local else args.hosts
        for index, target in enumerate(targets):
            port = free_udp_port("0.0.0.0")
            sender: Sender
            if target is None:
                pattern = ("testsrc", "smptebars")[index]
                config = SenderConfig(
                    input=pattern, size=size, destination=f"udp://127.0.0.1:{port}"
                )
                sender = stack.enter_context(LocalSender(config, name=f"cam{index}"))
                offset = 0.0
            else:
                host = parse_host(target, args.key, args.trust_unknown_hosts)
                address = receiver_address(host.hostname)
                config = SenderConfig(
                    input=args.input, size=size, destination=f"udp://{address}:{port}"
                )
                remote = stack.enter_context(RemoteSender(host, config, name=f"cam{index}"))
                measured = remote.clock_offset()
                print(f"{target}: clock offset {measured.offset * 1e3:+.2f} ms "
                      f"+/- {measured.uncertainty * 1e3:.2f} ms")  # fmt: skip
                sender, offset = remote, measured.offset
            stream = VideoStream(f"udp://0.0.0.0:{port}", name=f"cam{index}", clock_offset=offset)
            streams.append((sender, stack.enter_context(stream)))

        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            for sender, stream in streams:
                stats = stream.stats
                p50 = "-" if stats.latency_p50 is None else f"{stats.latency_p50 * 1e3:.0f} ms"
                print(f"{stats.name}: {stats.state.value}, {stats.fps:.1f} fps, latency p50 "
                      f"{p50}, sender restarts {sender.restarts}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
