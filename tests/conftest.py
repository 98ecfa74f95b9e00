"""Shared fixtures: free UDP ports and real ffmpeg senders on 127.0.0.1."""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Callable, Iterator

import pytest

from syncstream.senders import LocalSender, free_udp_port, simulated_camera_argv

__all__ = ["DATA", "SenderFactory", "free_udp_port"]

DATA = pathlib.Path(__file__).parent / "data"


SenderFactory = Callable[..., LocalSender]


@pytest.fixture
def udp_sender() -> Iterator[SenderFactory]:
    """Start simulated cameras: ``udp_sender(port)`` returns a running LocalSender."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("the ffmpeg CLI is required (the test command installs it)")
    started: list[LocalSender] = []

    def start(port: int, size: tuple[int, int] = (320, 240), fps: float = 30.0) -> LocalSender:
        argv = simulated_camera_argv(f"udp://127.0.0.1:{port}", size=size, fps=fps)
        sender = LocalSender(argv, name=f"cam{port}")
        started.append(sender.start())
        return sender

    yield start
    for sender in started:
        sender.stop()
