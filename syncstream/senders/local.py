"""LocalSender: an ffmpeg process on this machine (simulated cameras, local devices, files)."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

from ..config import RestartPolicy, SenderConfig
from ..errors import SenderError
from ..lines import LineSplitter
from .base import LineSink, ProcessHandle, Sender

__all__ = ["LocalSender"]

logger = logging.getLogger(__name__)

_CHECK_TIMEOUT = 10.0
_READ_CHUNK = 65536  # stderr read at a time

#: Starts every local ffmpeg. Linux sends a child's parent-death signal when the *thread*
#: that started it ends, so they are all started by this one thread, which lives as long
#: as the process: if the program dies (SIGKILL included), its senders get SIGTERM.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="syncstream-spawner")


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv")


def tied_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that it gets SIGTERM when this process dies (util-linux ``setpriv``).

    Without ``setpriv`` the argv is returned as it is: a process killed with SIGKILL then
    leaves its local senders running.
    """
    setpriv = _setpriv()
    if setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


def _kill_unowned(name: str, spawning: Future[subprocess.Popen[bytes]]) -> None:
    """Kill and reap a process whose start() was interrupted before it got the handle."""
    if spawning.cancelled() or spawning.exception() is not None:
        return
    process = spawning.result()
    process.kill()
    process.communicate()  # reaps it and closes its pipes
    logger.info("%s: pid %s killed, its start was interrupted", name, process.pid)


def _hand_on(raw: bytes, sink: LineSink) -> None:
    line = raw.decode("utf-8", "replace").rstrip()
    if line:
        sink(line)


class _PopenHandle:
    """A subprocess, its stderr drained line by line into a sink by a small thread."""

    def __init__(self, process: subprocess.Popen[bytes], sink: LineSink, name: str):
        self._process = process
        stderr = process.stderr
        assert stderr is not None
        self._drain = threading.Thread(
            target=self._drain_stderr,
            args=(stderr, sink),
            name=f"syncstream-stderr:{name}",
            daemon=True,
        )
        self._drain.start()

    @staticmethod
    def _drain_stderr(stderr: IO[bytes], sink: LineSink) -> None:
        splitter = LineSplitter()  # a line over 64 KiB is cut: a flood holds no more
        while chunk := os.read(stderr.fileno(), _READ_CHUNK):
            for raw in splitter.feed(chunk):
                _hand_on(raw, sink)
        for raw in splitter.flush():
            _hand_on(raw, sink)
        stderr.close()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def stdin(self) -> IO[bytes] | None:
        return self._process.stdin

    def wait(self, timeout: float | None) -> int | None:
        if timeout == 0:
            return self._process.poll()
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        if self._process.stdin is not None:
            try:
                self._process.stdin.close()
            except OSError as exc:  # the pipe is already broken: the process is ending
                logger.debug("pid %s: closing stdin: %s", self._process.pid, exc)
        if self._process.poll() is None:
            self._process.terminate()

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()

    def release(self) -> None:
        self._drain.join(_CHECK_TIMEOUT)


class LocalSender(Sender):
    """An ffmpeg process on this machine, started, watched, restarted and stopped by us.

    ``command`` is a :class:`~syncstream.SenderConfig` or a whole argv (no shell).
    ``stdin_pipe=True`` gives the process a pipe as stdin (:attr:`stdin`), for senders fed
    with raw frames by the program.
    """

    def __init__(
        self,
        command: SenderConfig | Sequence[str],
        *,
        name: str | None = None,
        restart: RestartPolicy | None = None,
        stop_timeout: float | None = None,
        stdin_pipe: bool = False,
    ):
        super().__init__(command, name=name, restart=restart, stop_timeout=stop_timeout)
        self._stdin_pipe = stdin_pipe

    def _run_check(self, argv: list[str]) -> tuple[int, list[str]]:
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=_CHECK_TIMEOUT, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SenderError(f"{self.name}: preflight {argv[0]!r} failed: {exc}") from exc
        output = (done.stdout + done.stderr).decode("utf-8", "replace").splitlines()
        return done.returncode, output

    def _spawn(self, sink: LineSink) -> ProcessHandle:
        if shutil.which(self.argv[0]) is None:  # setpriv would start, then fail to exec it
            raise SenderError(
                f"{self.name}: cannot start {self.argv[0]!r}: not found (PATH or path)",
                returncode=None,
            )
        spawning = _SPAWNER.submit(
            subprocess.Popen,
            tied_argv(self.argv),
            stdin=subprocess.PIPE if self._stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            process = spawning.result()
        except OSError as exc:
            raise SenderError(
                f"{self.name}: cannot start {self.argv[0]!r}: {exc}", returncode=None
            ) from exc
        except BaseException:  # interrupted while waiting: nobody will own that process
            spawning.add_done_callback(functools.partial(_kill_unowned, self.name))
            raise
        return _PopenHandle(process, sink, self.name)

    @property
    def stdin(self) -> IO[bytes]:
        """The running process's standard input (only with ``stdin_pipe=True``)."""
        with self._lock:
            handle = self._handle
        stdin = handle.stdin if isinstance(handle, _PopenHandle) else None
        if stdin is None:
            raise SenderError(f"{self.name}: sender has no stdin pipe")
        return stdin
