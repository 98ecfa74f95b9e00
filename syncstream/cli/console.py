"""What the commands share: stopping on signals, the live status display, running a session."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from types import FrameType, TracebackType
from typing import TextIO

from ..errors import SyncStreamError
from ..session import Session
from ..session_config import SessionConfig
from ..stats import GroupStats

__all__ = ["StatusDisplay", "StopSignals", "run_session"]

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP set :attr:`event`, so the program stops at a safe point.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once, for a stop that hangs. Handlers
    are installed by ``with`` (main thread only) and the previous ones restored after.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        logger.info("%s: stopping", signal.Signals(signum).name)
        self.event.set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True once a stop signal came."""
        return self.event.wait(timeout)

    def install(self) -> None:
        """Take the signals (again: a library started since, such as Ray connecting to a
        cluster, may have put its own SIGTERM handler in place); main thread only."""
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                previous = signal.signal(signum, self._handle)
                self._previous.setdefault(signum, previous)  # restored by __exit__

    def __enter__(self) -> StopSignals:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


class StatusDisplay:
    """Status lines redrawn in place on a terminal, or printed as blocks elsewhere."""

    def __init__(self, out: TextIO, live: bool | None = None) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self._shown = 0

    def show(self, lines: list[str]) -> None:
        """Replace the previous block with ``lines``."""
        if self.live:
            if self._shown:
                self.out.write(f"\x1b[{self._shown}F\x1b[J")  # up, then clear to the end
            self.out.write("\n".join(lines) + "\n")
            self._shown = len(lines)
        else:
            self.out.write("\n".join(lines) + "\n\n")
        self.out.flush()


def run_session(
    config: SessionConfig,
    *,
    banner: str,
    snapshot: str | None = None,
    out: TextIO = sys.stdout,
    live: bool | None = None,
) -> int:
    """Start ``config``, show its status until ``config.run.seconds`` pass or a stop signal.

    Exit status: 0 after a clean stop, 1 when the session cannot start, no frame set came
    or every camera failed, 3 when the snapshot cannot be written.
    """
    with StopSignals() as stop:
        session = Session(config)
        try:
            session.start()
        except SyncStreamError as exc:
            print(f"syncstream: {exc}", file=sys.stderr)
            return 1
        stop.install()  # Ray's driver (a [cluster] session) sets its own SIGTERM handler
        status = 0
        try:
            out.write(banner + "\n")
            if session.web is not None and session.web.options.listen:  # else: ASGI only
                out.write(f"web view: {session.web.url}\n")
            out.flush()
            status = _watch(session, stop, out, live)
            final = session.group.stats
            if snapshot is not None and status == 0:
                status = _write_snapshot(session, snapshot, out)
        finally:
            session.close()
    out.write("summary:\n" + "\n".join(final.lines()) + "\n")
    if stop.received is not None:
        out.write(f"stopped by {signal.Signals(stop.received).name}\n")
    out.flush()
    if status == 0 and final.sets == 0:
        print("syncstream: no frame set was made: no camera delivered a frame", file=sys.stderr)
        return 1
    return status


def _watch(session: Session, stop: StopSignals, out: TextIO, live: bool | None) -> int:
    settings = session.config.run
    display = StatusDisplay(out, live)
    end = None if settings.seconds is None else time.monotonic() + settings.seconds
    while True:
        remaining = settings.status_interval if end is None else end - time.monotonic()
        if stop.wait(max(0.0, min(settings.status_interval, remaining))):
            return 0
        try:
            ended = session.group.wait(0)
        except SyncStreamError as exc:
            print(f"syncstream: {exc}", file=sys.stderr)
            return 1
        stats: GroupStats = session.group.stats
        display.show(stats.lines())
        if ended:
            out.write("every camera ended\n")
            return 0
        if end is not None and time.monotonic() >= end:
            return 0


def _write_snapshot(session: Session, path: str, out: TextIO) -> int:
    try:
        width, height = session.snapshot(path)
    except SyncStreamError as exc:
        print(f"syncstream: snapshot: {exc}", file=sys.stderr)
        return 3
    out.write(f"snapshot: {path} ({width}x{height})\n")
    return 0
