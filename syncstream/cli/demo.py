"""``syncstream demo``: simulated cameras on this machine, as a wall, with live figures."""

from __future__ import annotations

import shutil
import sys

from .. import __version__
from ..config import Camera, GroupConfig, SenderConfig, SyncPolicy
from ..errors import ConfigError
from ..senders import free_udp_port
from ..session_config import RunSettings, SessionConfig, WallSettings, WebSettings
from .console import run_session

__all__ = ["DEMO_PATTERNS", "demo_config", "run_demo"]

#: One pattern per simulated camera, the cheapest to generate first.
DEMO_PATTERNS = (
    "testsrc", "smptebars", "testsrc2", "rgbtestsrc", "smptehdbars", "pal75bars", "yuvtestsrc",
    "pal100bars", "cellauto", "colorspectrum", "gradients", "sierpinski", "life", "mandelbrot",
)  # fmt: skip


def demo_config(
    cameras: int,
    seconds: float,
    *,
    size: tuple[int, int] = (640, 480),
    fps: float = 30.0,
    sync: SyncPolicy = "nearest",
    serve: tuple[str, int] | None = None,
    port_base: int | None = None,
) -> SessionConfig:
    """The demo's session: ``cameras`` test patterns, each with the sender's clock burned in.

    Each sender runs ffmpeg on this machine, streams MPEG-TS to its own loopback UDP port
    and stamps its wall clock into the timestamps, like a camera host would: ports
    ``port_base``, ``port_base + 1``, ... (a firewall's open range), or free ones when None.
    """
    if port_base is not None and not 1 <= port_base <= 65536 - cameras:
        raise ConfigError(
            f"port_base {port_base} leaves no room for {cameras} cameras: 1 to {65536 - cameras}"
        )
    cams = [
        Camera(
            name=f"cam{index + 1}",
            sender=SenderConfig(
                input=DEMO_PATTERNS[index % len(DEMO_PATTERNS)],
                size=size,
                fps=fps,
                clock_text=True,
            ),
            port=free_udp_port() if port_base is None else port_base + index,
        )
        for index in range(cameras)
    ]
    tile = (480, 270) if cameras <= 4 else (320, 180)
    web = None if serve is None else WebSettings(host=serve[0], port=serve[1], title="demo")
    return SessionConfig(
        cameras=cams,
        group=GroupConfig(sync=sync),
        wall=WallSettings(tile_size=tile),
        web=web,
        run=RunSettings(seconds=seconds),
    )


def run_demo(
    cameras: int,
    seconds: float,
    *,
    size: tuple[int, int],
    fps: float,
    sync: SyncPolicy,
    serve: tuple[str, int] | None,
    snapshot: str | None,
    port_base: int | None = None,
) -> int:
    """Run the demo session; the exit status of :func:`run_session`, 2 without ffmpeg."""
    if shutil.which("ffmpeg") is None:
        print(
            "syncstream demo needs the ffmpeg command (apt-get install -y ffmpeg)", file=sys.stderr
        )
        return 2
    try:
        config = demo_config(
            cameras, seconds, size=size, fps=fps, sync=sync, serve=serve, port_base=port_base
        )
    except ConfigError as exc:
        print(f"syncstream demo: {exc}", file=sys.stderr)
        return 2
    banner = (
        f"syncstream {__version__} demo: {cameras} simulated cameras, "
        f"{size[0]}x{size[1]}@{fps:g}, sync={sync}, {seconds:g} s (Ctrl-C stops)"
    )
    return run_session(config, banner=banner, snapshot=snapshot)
