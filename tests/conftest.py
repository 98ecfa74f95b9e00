"""Shared fixtures and helpers: free ports, real ffmpeg senders and sshd on 127.0.0.1,
the processes of this machine, and waits that poll a condition with a deadline."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from syncstream import Camera, SSHHost
from syncstream.senders import LocalSender, free_udp_port, simulated_camera_argv
from syncstream.testing.plugin import TsRecorder, TsReplayFactory
from syncstream.testing.sshd import SshdServer, sshd_unavailable_reason, start_sshd

__all__ = [
    "DATA",
    "CameraFactory",
    "Process",
    "SenderFactory",
    "descendants",
    "free_tcp_port",
    "free_udp_port",
    "get_when_served",
    "processes",
    "processes_with",
    "ssh_host",
]

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
        sender.close()


CameraFactory = Callable[[str, str], Camera]


@pytest.fixture
def replayed(ts_recorder: TsRecorder, ts_replay: TsReplayFactory) -> CameraFactory:
    """``replayed(name, pattern)``: a camera fed by a recorded test pattern over UDP."""

    def camera(name: str, pattern: str = "testsrc") -> Camera:
        replay = ts_replay(ts_recorder(seconds=2.0, pattern=pattern, name=name))
        return Camera(name=name, url=replay.url)

    return camera


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


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nobody listens on right now (nothing answers there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Process:
    """A process of this machine as /proc shows it; a zombie has no ``argv``."""

    pid: int
    parent: int
    state: str  # R, S, Z, ... (the third field of /proc/PID/stat)
    argv: tuple[str, ...]

    @property
    def command(self) -> str:
        """The arguments joined by spaces, as ``ps -o args`` shows them."""
        return " ".join(self.argv)


def processes() -> list[Process]:
    """Every process of this machine now, from /proc (one that ends meanwhile is left out)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            raw = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        argv = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
        found.append(Process(int(entry.name), int(stat[1]), stat[0], argv))
    return found


def processes_with(text: str) -> list[Process]:
    """The processes whose command line holds ``text`` (never a zombie: it has none)."""
    return [process for process in processes() if text in process.command]


def descendants(pid: int) -> list[Process]:
    """Every process below ``pid``: its children, theirs, and so on."""
    children: dict[int, list[Process]] = {}
    for process in processes():
        children.setdefault(process.parent, []).append(process)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


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


def get_when_served(url: str, timeout: float, running: Callable[[], bool] = bool) -> bytes:
    """GET ``url`` until it answers 200 and return the body; AssertionError after
    ``timeout`` s, or at once when ``running()`` (the server's process) says it ended."""
    body: list[bytes] = []

    def answered() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                body.append(bytes(response.read()))
        except OSError:  # refused, or not 200 yet (HTTPError is an OSError)
            assert running(), f"{url}: the server ended before answering"
            return False
        return True

    wait_until(answered, timeout, f"{url} answers")
    return body[0]


def group_threads() -> list[str]:
    """The names of the group, reader and processor threads alive now."""
    prefixes = ("syncstream-group", "syncstream-reader", "syncstream-processor")
    return [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]


@pytest.fixture
def no_group_threads_left() -> Iterator[None]:
    """After the test, every group thread ends within 5 s (asserted)."""
    yield
    wait_until(lambda: not group_threads(), 5.0, f"group threads left: {group_threads()}")
