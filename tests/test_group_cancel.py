"""Cancelled starts: Ctrl-C, an error or close() at any point of StreamGroup.start() leaves
no sender (local or over SSH), no SSH connection and no thread of the group behind."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Literal

import pytest

from syncstream import Camera, FrameSet, SenderConfig, StreamClosed, StreamGroup, VideoStream
from syncstream.processors.base import ProcessorWorker
from syncstream.senders import LocalSender, SenderFleet, free_udp_port
from syncstream.testing.sshd import SshdServer
from tests.conftest import descendants, holds_for, processes, processes_with, ssh_host, wait_until

SMALL = SenderConfig(input="testsrc", size=(160, 120), fps=15)
# A start that watches each new ffmpeg for 3 s: the senders are starting for that long.
SLOW_START = SMALL.model_copy(update={"startup_wait": 3.0})

Condition = Callable[[], bool]


# -- what runs: processes from /proc, threads ---------------------------------------------


def _senders(ports: list[int]) -> list[int]:
    """The ffmpeg processes sending to one of ``ports``: local ones, and those that sshd
    started (the SSH host is this machine)."""
    marks = [f"udp://127.0.0.1:{port}?" for port in ports]
    return [
        p.pid
        for p in processes()
        if "ffmpeg" in p.command and any(mark in p.command for mark in marks)
    ]


def _sshd_listener(server: SshdServer) -> int:
    [listener] = processes_with(str(server.workdir / "sshd_config"))
    return listener.pid


def _sshd_children(listener: int) -> list[str]:
    """The commands of every process below the sshd listener: its connections' sessions
    (a zombie, with no command line, is not one)."""
    return [p.command for p in descendants(listener) if p.argv]


def _threads_since(before: set[threading.Thread]) -> list[str]:
    """Threads started since ``before`` and still alive, except the spawner of local
    senders, which lives as long as the process by design."""
    return [
        t.name
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith("syncstream-spawner")
    ]


def _assert_nothing_left(
    ports: list[int], threads_before: set[threading.Thread], listener: int | None = None
) -> None:
    """No ffmpeg of the group, no thread of the group, no SSH session; nothing comes back."""
    wait_until(lambda: not _senders(ports), 10, f"ffmpeg gone ({_senders(ports)})")
    wait_until(
        lambda: not _threads_since(threads_before),
        10,
        f"threads gone ({_threads_since(threads_before)})",
    )
    if listener is not None:
        wait_until(
            lambda: not _sshd_children(listener),
            10,
            f"SSH connections closed ({_sshd_children(listener)})",
        )
    holds_for(lambda: not _senders(ports), 2.0, "a sender was started again")


@pytest.fixture(autouse=True)
def _default_sigint() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a plain Python program."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _ctrl_c() -> None:
    """A real Ctrl-C: SIGINT to the main thread (it interrupts what the thread waits on)."""
    main = threading.main_thread().ident
    assert main is not None
    signal.pthread_kill(main, signal.SIGINT)


class _InterruptWhen:
    """From a helper thread, Ctrl-C the main thread once ``condition()`` holds."""

    def __init__(self, condition: Condition, timeout: float = 30.0) -> None:
        self.fired = threading.Event()
        self._condition = condition
        self._timeout = timeout
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-interrupter", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self._timeout
        while not self._done.is_set() and time.monotonic() < deadline:
            if self._condition():
                self.fired.set()
                _ctrl_c()
                return
            self._done.wait(0.005)

    def __enter__(self) -> _InterruptWhen:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()  # no signal can come after this


def _start_interrupted(group: StreamGroup, interrupter: _InterruptWhen) -> None:
    """group.start() while ``interrupter`` waits for its moment: start must raise the
    KeyboardInterrupt (caught here, so that it never reaches pytest)."""
    returned = False
    try:
        with interrupter:
            group.start()
            returned = True
    except KeyboardInterrupt:
        pass
    assert interrupter.fired.is_set(), "the interrupt point was not reached during start()"
    assert not returned, "start() returned instead of raising KeyboardInterrupt"


def _remote(sshd: SshdServer, config: SenderConfig = SMALL) -> Camera:
    return Camera(name="remote", sender=config, host=ssh_host(sshd), port=free_udp_port(),
                  receiver_host="127.0.0.1")  # fmt: skip


def _local(name: str, config: SenderConfig = SMALL) -> Camera:
    return Camera(name=name, sender=config, port=free_udp_port())


def _ports(cameras: list[Camera]) -> list[int]:
    return [camera.port for camera in cameras if camera.port is not None]


# -- Ctrl-C from outside, at moments seen on the processes ------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("moment", ["ssh connecting", "clock measured"])
def test_ctrl_c_while_connecting_to_the_ssh_host_leaves_nothing(
    sshd: SshdServer, moment: str
) -> None:
    listener = _sshd_listener(sshd)
    cameras = [_local("a"), _remote(sshd)]
    threads = set(threading.enumerate())

    def reached() -> bool:
        children = _sshd_children(listener)
        if moment == "ssh connecting":
            return bool(children)  # sshd accepted the connection: the handshake is under way
        return any("EPOCHREALTIME" in command for command in children)  # the clock loop

    group = StreamGroup(cameras, clock_rounds=1000)
    _start_interrupted(group, _InterruptWhen(reached))
    assert not group.senders
    _assert_nothing_left(_ports(cameras), threads, listener)
    with pytest.raises(StreamClosed):
        group.start()  # a cancelled start closed the group


@pytest.mark.timeout(60)
@pytest.mark.parametrize("spawned", [1, 3])
def test_ctrl_c_while_senders_start_in_parallel_leaves_nothing(
    sshd: SshdServer, spawned: int
) -> None:
    """Interrupted once ``spawned`` of the three ffmpeg processes exist: every sender,
    spawned or still in its preflight, is stopped, and none is restarted."""
    listener = _sshd_listener(sshd)
    cameras = [_local("a", SLOW_START), _local("b", SLOW_START), _remote(sshd, SLOW_START)]
    ports = _ports(cameras)
    threads = set(threading.enumerate())
    group = StreamGroup(cameras)
    _start_interrupted(group, _InterruptWhen(lambda: len(_senders(ports)) >= spawned))
    _assert_nothing_left(ports, threads, listener)


# -- Ctrl-C or an error at the steps of start() ------------------------------------------

Step = Literal["connected", "streams starting", "senders started", "processors starting"]
STEPS: list[Step] = ["connected", "streams starting", "senders started", "processors starting"]


def _at_step(monkeypatch: pytest.MonkeyPatch, step: Step, action: Callable[[], None]) -> None:
    """Run ``action`` in the main thread at ``step`` of StreamGroup.start()."""
    owner: Any
    owner, method, after, nth = {
        "connected": (SenderFleet, "connect", True, 1),  # clocks measured, no reader yet
        "streams starting": (VideoStream, "start", True, 2),  # one camera's reader runs
        "senders started": (SenderFleet, "start", True, 1),  # before the alignment thread
        "processors starting": (ProcessorWorker, "start", False, 1),  # alignment runs
    }[step]
    original = getattr(owner, method)
    calls = itertools.count(1)

    def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not after and next(calls) == nth:
            action()
        result = original(self, *args, **kwargs)
        if after and next(calls) == nth:
            action()
        return result

    monkeypatch.setattr(owner, method, hooked)


def _fail() -> None:
    raise RuntimeError("failed mid-start")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("kind", ["ctrl-c", "error"])
def test_ctrl_c_or_an_error_at_each_step_of_start_leaves_nothing(
    sshd: SshdServer, monkeypatch: pytest.MonkeyPatch, step: Step, kind: str
) -> None:
    listener = _sshd_listener(sshd)
    cameras = [_local("a"), _local("b"), _remote(sshd)]
    threads = set(threading.enumerate())
    group = StreamGroup(cameras)
    seen: list[FrameSet] = []
    group.add_processor(seen.append, name="collect")
    _at_step(monkeypatch, step, _ctrl_c if kind == "ctrl-c" else _fail)
    expected = KeyboardInterrupt if kind == "ctrl-c" else RuntimeError
    returned = False
    try:
        group.start()
        returned = True
    except expected:
        pass
    assert not returned, f"start() returned instead of raising {expected.__name__}"
    _assert_nothing_left(_ports(cameras), threads, listener)


# -- close() from another thread ---------------------------------------------------------


@pytest.mark.timeout(60)
def test_close_from_another_thread_while_starting_stops_everything(sshd: SshdServer) -> None:
    listener = _sshd_listener(sshd)
    cameras = [_local("a", SLOW_START), _local("b", SLOW_START), _remote(sshd, SLOW_START)]
    ports = _ports(cameras)
    threads = set(threading.enumerate())
    group = StreamGroup(cameras)

    def close_once_a_sender_runs() -> None:
        wait_until(lambda: bool(_senders(ports)), 30, "a sender spawned")
        group.close()

    closer = threading.Thread(target=close_once_a_sender_runs, name="test-closer")
    closer.start()
    try:
        with pytest.raises(StreamClosed):
            group.start()
        assert not _senders(ports)  # start() raised once close() had stopped them all
    finally:
        closer.join(30)
    _assert_nothing_left(ports, threads, listener)


# -- one sender stopped while it starts ------------------------------------------------


@pytest.mark.timeout(30)
def test_a_sender_stopped_during_its_start_is_gone_when_stop_returns() -> None:
    port = free_udp_port()
    sender = LocalSender(SLOW_START.model_copy(update={"destination": f"udp://127.0.0.1:{port}"}))
    threads = set(threading.enumerate())
    raised: list[StreamClosed] = []

    def start() -> None:
        try:
            sender.start()
        except StreamClosed as exc:
            raised.append(exc)

    starter = threading.Thread(target=start, name="test-starter")
    starter.start()
    wait_until(lambda: bool(_senders([port])), 10, "ffmpeg spawned")
    sender.close()
    assert not _senders([port])  # close() waited for the start in flight
    starter.join(10)
    assert len(raised) == 1  # start() raised StreamClosed
    assert sender.restarts == 0
    _assert_nothing_left([port], threads)
