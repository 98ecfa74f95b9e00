"""Processor workers: each callback on its own thread, fed the newest frame set.

A worker holds a slot of one: a set that arrives while the callback is still busy replaces
the set waiting in the slot (counted as skipped). So a slow processor sees fewer sets but
never holds up the group, the cameras or the other processors, and never works on a set
older than the newest one waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from ..errors import ConfigError, ProcessorError, StreamClosed
from ..frames import FrameSet
from ..slot import LatestSlot
from ..stats import ProcessorStats

if TYPE_CHECKING:
    from .group_view import GroupView

__all__ = [
    "ErrorPolicy",
    "Processor",
    "ProcessorStats",
    "ProcessorWorker",
    "SupportsAttach",
    "SupportsClose",
]

logger = logging.getLogger(__name__)

#: What a worker does when its processor raises: ``"log"`` logs and counts the error and
#: goes on with the next set; ``"stop"`` ends the worker and reports the error.
ErrorPolicy = Literal["log", "stop"]

_JOIN_TIMEOUT = 2.0


class Processor(Protocol):
    """Anything called with each frame set: a function or an object with ``__call__``.

    A processor that never reads ``Frame.image`` (it counts, records packets or serves
    stats) may say so with a class attribute ``uses_pictures = False``: a group whose
    processors all say so leaves frames unconverted (``GroupConfig.convert="auto"``).
    """

    def __call__(self, frameset: FrameSet, /) -> None: ...


@runtime_checkable
class SupportsClose(Protocol):
    """A processor with resources (a file, a server) to release when its worker stops."""

    def close(self) -> None: ...


@runtime_checkable
class SupportsAttach(Protocol):
    """A processor that needs its group: the recorder taps the cameras' packets, the web
    view serves the group's stats. :meth:`StreamGroup.add_processor` calls ``attach``
    once, before the processor sees its first set; an exception it raises is raised by
    ``add_processor``. It gets the group as a :class:`GroupView`: the members processors
    use."""

    def attach(self, group: GroupView) -> None: ...


def _describe(processor: Processor) -> str:
    """The processor's ``name`` attribute, else its function or class name.

    The built-in processors are named by it: ``wall``, ``side-by-side``, ``speaker``,
    ``recorder`` and ``web`` (each ``group.stats.processors`` key).
    """
    for attribute in ("name", "__name__"):
        name = getattr(processor, attribute, None)
        if isinstance(name, str) and name:
            return name
    return type(processor).__name__


class ProcessorWorker:
    """Runs one processor on its own thread with a slot of one (the newest set wins).

    ``on_error="log"`` logs an exception with the processor's name, counts it and goes on
    with the next set; ``"stop"`` ends the worker and reports the error to ``on_fatal``
    (the group then fails with :class:`~syncstream.errors.ProcessorError`).
    """

    def __init__(
        self,
        processor: Processor,
        *,
        name: str | None = None,
        on_error: ErrorPolicy = "log",
        on_fatal: Callable[[ProcessorError], None] | None = None,
    ) -> None:
        if on_error not in ("log", "stop"):
            raise ConfigError(f"on_error must be 'log' or 'stop', got {on_error!r}")
        self.processor = processor
        self.name = name or _describe(processor)
        self.on_error: ErrorPolicy = on_error
        self._on_fatal = on_fatal
        self._cond = threading.Condition()
        # the set waiting for the processor; the sets left at close() are still processed
        self._slot: LatestSlot[FrameSet] = LatestSlot(
            f"processor {self.name}", noun="frame set", cond=self._cond, keep_taken=False
        )
        self._thread: threading.Thread | None = None
        self._processed = 0
        self._errors = 0
        self._total_time = 0.0
        self._max_time = 0.0
        self._last_error: BaseException | None = None
        self._error: ProcessorError | None = None
        self._finished = False  # the worker thread has returned
        self._close_deferred = False  # close() found a call running: the worker closes

    def start(self) -> ProcessorWorker:
        """Start the worker thread; idempotent. A closed worker cannot restart."""
        with self._cond:
            if self._slot.closed:
                raise StreamClosed(f"processor {self.name}: closed and cannot restart")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._main, name=f"syncstream-processor:{self.name}", daemon=True
                )
                self._thread.start()
        return self

    def submit(self, frameset: FrameSet) -> None:
        """Put ``frameset`` in the slot, replacing a set not yet taken. Never blocks."""
        with self._cond:
            if self._slot.closed or self._error is not None:
                return
            self._slot.put(frameset)

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop taking sets; let the running call and the set waiting in the slot finish
        (up to ``timeout`` in all), so a processor that keeps up sees every set the group
        emitted; then close the processor if it has ``close()``. Idempotent.

        A set still waiting after ``timeout`` (the processor hangs) is dropped, counted as
        skipped: the processor is never called after its ``close()``. A call still running
        after ``timeout`` is not raced: the processor's ``close()`` is then called by the
        worker thread when that call returns (and never, if it never returns).
        """
        with self._cond:
            if self._slot.closed:
                return
            self._slot.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning(
                    "processor %s: still running after %.1f s; closed when the call returns",
                    self.name, timeout,
                )  # fmt: skip
        with self._cond:
            self._slot.drop()  # never started, or still busy: the set is not seen
            self._close_deferred = thread is not None and not self._finished
            if self._close_deferred:
                return
        self._close_processor()

    def _close_processor(self) -> None:
        if isinstance(self.processor, SupportsClose):
            try:
                self.processor.close()
            except Exception:
                logger.exception("processor %s: close() failed", self.name)

    @property
    def error(self) -> ProcessorError | None:
        """The fatal error that stopped the worker (``on_error="stop"``), else None."""
        return self._error

    @property
    def stats(self) -> ProcessorStats:
        """A consistent snapshot of the counters."""
        with self._cond:
            calls = self._processed
            thread = self._thread
            return ProcessorStats(
                name=self.name,
                processed=calls,
                skipped=self._slot.skipped,
                errors=self._errors,
                mean_time=self._total_time / calls if calls else None,
                max_time=self._max_time if calls else None,
                last_error=None if self._last_error is None else repr(self._last_error),
                running=thread is not None and thread.is_alive(),
            )

    def _main(self) -> None:
        try:
            self._run()
        finally:
            with self._cond:
                self._finished = True
                close_now = self._close_deferred
            if close_now:
                self._close_processor()

    def _run(self) -> None:
        while True:
            try:
                frameset = self._slot.take()
            except StreamClosed:  # closed, nothing left to do
                return
            started = time.monotonic()
            failure: Exception | None = None
            try:
                self.processor(frameset)
            except Exception as exc:
                failure = exc
                logger.exception("processor %s: failed on frame set %d", self.name, frameset.seq)
            elapsed = time.monotonic() - started
            with self._cond:
                self._processed += 1
                self._total_time += elapsed
                self._max_time = max(self._max_time, elapsed)
                if failure is not None:
                    self._errors += 1
                    self._last_error = failure
            if failure is not None and self.on_error == "stop":
                self._fail(failure, frameset.seq)
                return

    def _fail(self, failure: Exception, seq: int) -> None:
        error = ProcessorError(
            f"processor {self.name} failed on frame set {seq}: {failure!r}", processor=self.name
        )
        error.__cause__ = failure
        with self._cond:
            self._error = error  # submit() ignores sets from now on
            self._slot.drop(skipped=False)
        if self._on_fatal is not None:
            self._on_fatal(error)

    def __repr__(self) -> str:
        return f"ProcessorWorker({self.name!r}, on_error={self.on_error!r})"
