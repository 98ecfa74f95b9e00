"""Read several cameras side by side and print each one's figures.

    python3 examples/read_streams.py udp://0.0.0.0:8553 udp://0.0.0.0:8554
    python3 examples/read_streams.py --local          # two simulated cameras on loopback

Each camera is a :class:`syncstream.VideoStream` with its own reader thread; the loop
composes the newest frames side by side, as the classic two-camera tutorial does, and
prints how old each frame was when it was shown.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import cv2
import numpy as np

from syncstream import LocalSender, ReadTimeout, SenderConfig, VideoStream, free_udp_port
from syncstream.cli.args import positive_arg


def main() -> int:
    """Parse arguments, start the streams, print figures until --seconds have passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="*", help="stream URLs (udp://, rtsp://, files, ...)")
    parser.add_argument("--local", action="store_true", help="two simulated cameras")
    parser.add_argument(
        "--seconds", type=positive_arg, default=10.0, metavar="S", help="read S seconds (10)"
    )
    parser.add_argument("--save", help="write the last side-by-side picture to this PNG")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        urls = list(args.urls)
        if args.local:
            for pattern in ("testsrc", "smptebars"):
                url = f"udp://127.0.0.1:{free_udp_port()}"
                config = SenderConfig(destination=url, input=pattern, size=(320, 240))
                stack.enter_context(LocalSender(config, name=pattern))
                urls.append(url)
        if not urls:
            parser.error("give stream URLs or --local")
        streams = [stack.enter_context(VideoStream(u, name=f"cam{i}")) for i, u in enumerate(urls)]
        end = time.monotonic() + args.seconds
        shown = 0
        wall = None
        while time.monotonic() < end:
            try:
                frames = [stream.read(timeout=2.0) for stream in streams]
            except ReadTimeout as exc:
                print(f"waiting: {exc}")
                continue
            height = min(f.height for f in frames)
            tiles = [cv2.resize(f.image, (f.width * height // f.height, height)) for f in frames]
            wall = np.concatenate(tiles, axis=1)
            shown += 1
            if shown % 30 == 0:
                ages = ["-" if f.latency is None else f"{f.latency * 1000:.0f} ms" for f in frames]
                print(f"set {shown}: capture-to-arrival {', '.join(ages)}")
        for stream in streams:
            stats = stream.stats
            print(f"{stats.name}: {stats.decoded} decoded, {stats.skipped} skipped, "
                  f"fps {stats.fps:.1f}, reconnects {stats.reconnects}")  # fmt: skip
        if args.save and wall is not None:
            cv2.imwrite(args.save, wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
