"""Shared fixtures: free loopback ports and real ffmpeg senders on 127.0.0.1."""

from __future__ import annotations

import pathlib
import shutil
import socket
from collections.abc import Callable, Iterator

import pytest

from syncstream.senders import LocalSender, mpegts_udp_output_args, testsrc_input_args

DATA = pathlib.Path(__file__).parent / "data"


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sender_argv(url: str, size: tuple[int, int] = (320, 240), fps: float = 30.0) -> list[str]:
    """The ffmpeg command of a simulated camera sending to ``url``."""
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
        *testsrc_input_args(size, fps),
        *mpegts_udp_output_args(url, gop=int(fps)),
    ]  # fmt: skip


SenderFactory = Callable[..., LocalSender]


@pytest.fixture
def udp_sender() -> Iterator[SenderFactory]:
    """Start simulated cameras: ``udp_sender(port)`` returns a running LocalSender."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("the ffmpeg CLI is required (the test command installs it)")
    started: list[LocalSender] = []

    def start(port: int, size: tuple[int, int] = (320, 240), fps: float = 30.0) -> LocalSender:
        sender = LocalSender(sender_argv(f"udp://127.0.0.1:{port}", size, fps), name=f"cam{port}")
        started.append(sender.start())
        return sender

    yield start
    for sender in started:
        sender.stop()
