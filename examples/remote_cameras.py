"""Start cameras on SSH hosts and read them as synchronized frame sets.

    python3 examples/remote_cameras.py pi@cam1.local pi@cam2.local:2222 --input /dev/video0
    python3 examples/remote_cameras.py --local        # two simulated cameras on this machine

A :class:`syncstream.StreamGroup` starts ffmpeg on every host in parallel (host keys must
be known: see docs/senders.md), sending to our address on the route to that host, and
measures each host's clock offset over SSH, so capture times of different hosts are on
one clock. Every second the example prints each camera's state and the group's skew and
set latency.
"""

from __future__ import annotations

import argparse
import sys
import time

from syncstream import Camera, GroupStartError, SenderConfig, SSHHost, StreamGroup
from syncstream.senders import free_udp_port


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

    cameras = []
    targets = [None, None] if args.local else args.hosts
    for index, target in enumerate(targets):
        host = None if target is None else parse_host(target, args.key, args.trust_unknown_hosts)
        pattern = ("testsrc", "smptebars")[index % 2] if target is None else args.input
        config = SenderConfig(input=pattern, size=size)
        cameras.append(Camera(name=f"cam{index}", sender=config, host=host, port=free_udp_port()))

    try:
        with StreamGroup(cameras, sync="nearest") as group:
            for name, camera in group.stats.cameras.items():
                print(f"{name}: clock offset {camera.clock_offset * 1e3:+.2f} ms")
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
                stats = group.stats
                for cam in stats.cameras.values():
                    state, fps = cam.stream.state.value, cam.stream.fps
                    print(f"{cam.name}: {state}, {fps:.1f} fps, restarts {cam.sender_restarts}")
                skew = "-" if stats.skew_p95 is None else f"{stats.skew_p95 * 1e3:.1f} ms"
                latency = "-" if stats.latency_p50 is None else f"{stats.latency_p50 * 1e3:.0f} ms"
                print(f"group: {stats.sets_per_second:.1f} sets/s, skew p95 {skew}, "
                      f"latency p50 {latency}, clock {stats.clock}")  # fmt: skip
    except GroupStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
