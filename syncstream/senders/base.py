"""What every sender shares: preflight checks, the watcher that restarts ffmpeg, stopping.

A sender runs one ffmpeg process at a time, on this machine (:class:`LocalSender`) or on a
camera host over SSH (:class:`RemoteSender`); both only differ in how a process is started
and signalled, which is a :class:`ProcessHandle`. The watcher thread waits for the process
to exit and, unless we are stopping, starts it again after a doubling backoff.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, Self

from ..config import RestartPolicy, SenderConfig
from ..errors import PreflightFailed, SenderError, StreamClosed, SyncStreamError
from ..lines import shorten
from .command import sender_argv

__all__ = ["PreflightCheck", "ProcessHandle", "Sender", "preflight_checks"]

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT = 2.0
_STDERR_LINES = 20
#: Characters of a stderr line kept in the tail (errors, logs): ffmpeg's are far shorter.
_STDERR_LINE = 1000
# close() waits this long for a start() in flight (preflight, spawn, SSH: each has its own
# timeout below this), so that start cannot leave a process behind once close returned.
_START_TIMEOUT = 30.0

#: What a process handle calls with each line ffmpeg writes to stderr.
LineSink = Callable[[str], None]


class ProcessHandle(Protocol):
    """One started ffmpeg process, local or remote."""

    @property
    def pid(self) -> int:
        """Process id (on the host that runs it)."""
        ...

    def wait(self, timeout: float | None) -> int | None:
        """Block until the process exits or ``timeout`` passes; its exit status or None."""
        ...

    def terminate(self) -> None:
        """Ask the process to end (SIGTERM); no-op once it has exited."""
        ...

    def kill(self) -> None:
        """End the process (SIGKILL); no-op once it has exited."""
        ...

    def release(self) -> None:
        """Free what the handle holds (pipes, channel) after the process ended."""
        ...


@dataclass(frozen=True)
class PreflightCheck:
    """A shell-free test run on the sender's host before ffmpeg starts."""

    argv: list[str]
    #: What it means when the test fails.
    failure: str


def preflight_checks(config: SenderConfig) -> list[PreflightCheck]:
    """ffmpeg is on the host (in PATH or at its path); a device or file input exists."""
    checks = [
        PreflightCheck(
            ["sh", "-c", 'command -v -- "$1"', "sh", config.ffmpeg],
            f"ffmpeg program {config.ffmpeg!r} not found (PATH or path)",
        )
    ]
    if config.input_kind == "device":
        checks.append(
            PreflightCheck(["test", "-c", config.input], f"no video device {config.input!r}")
        )
    elif config.input_kind == "file":
        checks.append(
            PreflightCheck(
                ["test", "-r", config.input], f"input file {config.input!r} not readable"
            )
        )
    return checks


class Sender:
    """Base of :class:`LocalSender` and :class:`RemoteSender`: start, watch, restart, stop.

    ``command`` is a :class:`SenderConfig` (preflight checks, its restart policy and stop
    timeout) or a whole ffmpeg argv (no checks; ``restart`` defaults to off). ``restart``
    and ``stop_timeout`` given here override the config's.
    """

    #: Host name used in errors.
    host = "localhost"

    def __init__(
        self,
        command: SenderConfig | Sequence[str],
        *,
        name: str | None = None,
        restart: RestartPolicy | None = None,
        stop_timeout: float | None = None,
    ):
        if isinstance(command, SenderConfig):
            self.config: SenderConfig | None = command
            self.argv = sender_argv(command)
            policy = command.restart
            self._stop_timeout = command.stop_timeout
            self._startup_wait = command.startup_wait
        else:
            if not command:
                raise ValueError("argv must not be empty")
            self.config = None
            self.argv = list(command)
            policy = RestartPolicy(enabled=False)
            self._stop_timeout = 2.0
            self._startup_wait = 0.0
        self.restart_policy = restart if restart is not None else policy
        if stop_timeout is not None:
            self._stop_timeout = stop_timeout
        self.name = name or (self.config.destination if self.config else None) or self.argv[0]
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._handle: ProcessHandle | None = None
        self._returncode: int | None = None
        self._error: SenderError | None = None
        self._restarts = 0
        self._stderr_lines: deque[str] = deque(maxlen=_STDERR_LINES)
        self._watcher: threading.Thread | None = None
        self._started = False
        self._start_done = threading.Event()  # clear while a start() is in flight
        self._start_done.set()

    # -- what subclasses provide ------------------------------------------------------

    def _run_check(self, argv: list[str]) -> tuple[int, list[str]]:
        """Run a preflight command on the sender's host: exit status and output lines."""
        raise NotImplementedError

    def _spawn(self, sink: LineSink) -> ProcessHandle:
        """Start ``self.argv`` on the sender's host, sending stderr lines to ``sink``."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free what the sender holds besides the process (an SSH session)."""

    # -- life cycle ----------------------------------------------------------------

    def preflight(self) -> None:
        """Check the host before starting; raises :class:`PreflightFailed` naming the problem."""
        if self.config is None:
            return
        for check in preflight_checks(self.config):
            status, output = self._run_check(check.argv)
            if status != 0:
                raise PreflightFailed(
                    f"{self.name}: on {self.host}: {check.failure} (exit {status})",
                    host=self.host,
                    returncode=status,
                    stderr_tail=[shorten(line, _STDERR_LINE) for line in output[-_STDERR_LINES:]],
                )

    def start(self) -> Self:
        """Check the host, start ffmpeg and its watcher (idempotent while running).

        Raises :class:`PreflightFailed`, or :class:`SenderError` when ffmpeg exits within
        ``startup_wait``; a stopped sender refuses to start again (:class:`StreamClosed`),
        and one stopped while starting raises it too. Whatever ends a start early (an
        error, a :meth:`close` from another thread, ``KeyboardInterrupt``) leaves no process
        of this sender running and none to be restarted.
        """
        with self._lock:
            if self._stop_event.is_set():
                raise StreamClosed(f"{self.name}: sender was stopped and cannot restart")
            if self._started:
                return self
            self._started = True
            self._start_done.clear()
        try:
            self._launch()
        except BaseException:
            self._shutdown()
            raise
        finally:
            self._start_done.set()
        return self

    def _launch(self) -> None:
        """Preflight, spawn and watch the first process; :meth:`close` may run meanwhile."""
        self.preflight()
        handle = self._spawn(self._keep_line)
        with self._lock:
            stopping = self._stop_event.is_set()
            if not stopping:
                self._handle = handle  # from here on close() ends it
        if stopping:  # close() ran while we were spawning: it did not see this process
            self._end(handle)
            handle.release()
            raise StreamClosed(f"{self.name}: sender was stopped while starting")
        status = handle.wait(self._startup_wait) if self._startup_wait > 0 else None
        with self._lock:
            if self._stop_event.is_set():  # stop() ended the process during the wait
                raise StreamClosed(f"{self.name}: sender was stopped while starting")
            if status is not None:
                self._handle, self._returncode = None, status
            else:  # started under the lock: a close() now joins it, a later one sees it
                watcher = threading.Thread(
                    target=self._watch, name=f"syncstream-sender:{self.name}", daemon=True
                )
                watcher.start()
                self._watcher = watcher
        if status is not None:
            handle.release()
            raise self._exit_error(status, "exited at start")
        logger.info("%s: ffmpeg started on %s, pid %s", self.name, self.host, handle.pid)

    def _keep_line(self, line: str) -> None:
        """Keep a stderr line in the tail, cut to ``_STDERR_LINE`` characters."""
        self._stderr_lines.append(shorten(line, _STDERR_LINE))

    def _exit_error(self, status: int, what: str) -> SenderError:
        return SenderError(
            f"{self.name}: ffmpeg on {self.host} {what} with status {status}",
            host=self.host,
            returncode=status,
            stderr_tail=list(self._stderr_lines),
        )

    def _watch(self) -> None:
        policy = self.restart_policy
        delay = policy.delay
        in_a_row = 0
        started_mono = time.monotonic()
        while True:
            with self._lock:
                handle = self._handle
            if handle is None:
                return
            waited = handle.wait(None)
            status = -1 if waited is None else waited
            handle.release()
            with self._lock:
                self._returncode = status
                self._handle = None
            if self._stop_event.is_set():
                return
            if time.monotonic() - started_mono >= policy.stable_after:
                delay, in_a_row = policy.delay, 0
            logger.warning(
                "%s: ffmpeg on %s exited with status %s: %s",
                self.name, self.host, status, " | ".join(list(self._stderr_lines)[-3:]),
            )  # fmt: skip
            while True:
                if not policy.enabled:
                    if status != 0:
                        self._error = self._exit_error(status, "exited (restart is off)")
                    return
                if policy.max_restarts is not None and in_a_row >= policy.max_restarts:
                    self._error = self._exit_error(
                        status, f"gave up after {in_a_row} restarts in a row"
                    )
                    logger.error("%s: %s", self.name, self._error)
                    return
                logger.info("%s: restarting ffmpeg on %s in %.2f s", self.name, self.host, delay)
                if self._stop_event.wait(delay):
                    return
                in_a_row += 1
                delay = min(delay * 2, policy.max_delay)
                try:
                    new_handle = self._spawn(self._keep_line)
                except SyncStreamError as exc:
                    logger.warning("%s: restart on %s failed: %s", self.name, self.host, exc)
                    continue
                break
            started_mono = time.monotonic()
            with self._lock:
                self._restarts += 1
                self._handle = new_handle
                stopping = self._stop_event.is_set()
            logger.info("%s: ffmpeg restarted on %s, pid %s", self.name, self.host, new_handle.pid)
            if stopping:  # close() ran while we were spawning: it did not see this process
                self._end(new_handle)

    def _end(self, handle: ProcessHandle) -> None:
        handle.terminate()
        if handle.wait(self._stop_timeout) is None:
            logger.warning("%s: pid %s on %s ignored SIGTERM, killing", self.name, handle.pid,
                           self.host)  # fmt: skip
            handle.kill()
            handle.wait(self._stop_timeout)

    def close(self) -> None:
        """Stop ffmpeg (SIGTERM, then SIGKILL after ``stop_timeout``) and the watcher.

        Only the process this sender started is signalled. A :meth:`start` in flight in
        another thread is waited for (bounded): it ends what it spawned and raises
        :class:`StreamClosed`, so no process of this sender runs once close() returns, and
        the watcher never restarts one. Idempotent; a closed sender cannot restart.
        """
        with self._lock:
            self._stop_event.set()
            handle = self._handle
        if handle is not None:
            self._end(handle)  # a process in its startup wait too: its start() returns
        if not self._start_done.wait(_START_TIMEOUT):
            logger.warning("%s: start() on %s still running after %.0f s", self.name,
                           self.host, _START_TIMEOUT)  # fmt: skip
        self._shutdown()

    def stop(self) -> None:
        """Deprecated name of :meth:`close` (warns with :class:`DeprecationWarning`)."""
        warnings.warn(
            f"{type(self).__name__}.stop() is deprecated, use close()",
            DeprecationWarning,
            stacklevel=2,
        )
        self.close()

    def _shutdown(self) -> None:
        """Refuse restarts, end the current process, join the watcher, free the handle."""
        with self._lock:
            self._stop_event.set()
            handle, watcher = self._handle, self._watcher
        if handle is not None:
            self._end(handle)  # returns at once for a process that has ended
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(_JOIN_TIMEOUT + self._stop_timeout)
        if handle is not None:
            handle.release()
        self._release()

    # -- state -------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process id of the running ffmpeg (on its host), else None."""
        with self._lock:
            return self._handle.pid if self._handle is not None else None

    @property
    def is_running(self) -> bool:
        """True while an ffmpeg process of this sender is alive."""
        with self._lock:
            handle = self._handle
        return handle is not None and handle.wait(0) is None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last ffmpeg that ended, None while one runs or none ran.

        -1 for a remote process killed by a signal or lost with its SSH connection.
        """
        with self._lock:
            handle = self._handle
        if handle is not None:
            return handle.wait(0)
        return self._returncode

    @property
    def restarts(self) -> int:
        """How many times ffmpeg was started again after exiting."""
        return self._restarts

    @property
    def error(self) -> SenderError | None:
        """Why the sender gave up restarting, once it has."""
        return self._error

    @property
    def stderr_tail(self) -> list[str]:
        """The last 20 lines ffmpeg wrote to stderr (across restarts), each cut at 1000
        characters."""
        return list(self._stderr_lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
