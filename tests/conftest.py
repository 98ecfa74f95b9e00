"""Shared fixtures: free UDP ports, real ffmpeg senders and a real sshd on 127.0.0.1."""

from __future__ import annotations

import os
import pathlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from syncstream import SSHHost
from syncstream.senders import LocalSender, free_udp_port, simulated_camera_argv
from syncstream.testing.sshd import SshdServer, sshd_unavailable_reason, start_sshd

__all__ = ["DATA", "SenderFactory", "free_udp_port", "ssh_host"]

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


@pytest.fixture
def sshd(tmp_path: pathlib.Path) -> Iterator[SshdServer]:
    """A real OpenSSH server on a free 127.0.0.1 port, keys in a temp dir."""
    reason = sshd_unavailable_reason()
    if reason is not None:
        pytest.fail(f"{reason} (the test command installs openssh-server)")
    with start_sshd(tmp_path / "sshd") as server:
        yield server


def ssh_host(server: SshdServer, **overrides: Any) -> SSHHost:
    """An SSHHost for ``server`` that trusts its key and logs in with the user key only."""
    fields: dict[str, Any] = {
        "hostname": server.host,
        "port": server.port,
        "username": server.username,
        "key_filename": str(server.user_key),
        "known_hosts_file": str(server.known_hosts),
        "allow_agent": False,
        "look_for_keys": False,
        "connect_timeout": 5.0,
    }
    fields.update(overrides)
    return SSHHost(**fields)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie counts until it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


_POLL = 0.02  # how often a wait looks at its condition (s)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: its wait() is the pause between looks
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        pause.wait(_POLL)


def holds_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` for ``seconds``: AssertionError naming ``what`` at the first miss."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while time.monotonic() < deadline:
        assert condition(), what
        pause.wait(_POLL)


def group_threads() -> list[str]:
    """The names of the group, reader and processor threads alive now."""
    prefixes = ("syncstream-group", "syncstream-reader", "syncstream-processor")
    return [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]


@pytest.fixture
def no_group_threads_left() -> Iterator[None]:
    """After the test, every group thread ends within 5 s (asserted)."""
    yield
    wait_until(lambda: not group_threads(), 5.0, f"group threads left: {group_threads()}")
