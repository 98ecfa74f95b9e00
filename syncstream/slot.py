"""LatestSlot: the newest item of a producer, handed to readers that may be slower.

Every hand-over in syncstream is a slot of one: a stream's newest frame, a group's newest
set of each role, a processor's waiting set, a picture output and the web view's newest
JPEG. The producer never waits for a reader (except a stream reading a file without
``realtime``, see :meth:`LatestSlot.wait_taken`); an item replaced before its reader took
it is counted as skipped. Items are numbered from 0 (``seq``), so a reader sees what it
missed as gaps.

Two ways to read:

- :meth:`LatestSlot.take`: one consumer; returns the newest item it has not taken yet
  (:meth:`LatestSlot.items` iterates over it, with a deadline per item and in all);
- :meth:`LatestSlot.get`: any number of readers, each remembering the ``seq`` it saw last.

The slot can share its owner's ``Condition``, so that the owner's other state (a stream's
state, a group's fatal error) is changed and checked under the same lock, and a reader
waiting in the slot wakes when it changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ReadTimeout, StreamClosed, StreamEnded

__all__ = ["LatestSlot"]

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A thread-safe slot holding the newest item, its number and what was skipped.

    ``name`` and ``noun`` make the messages (``"cam0: no new frame within 2.0 s"``).
    ``cond`` is the owner's ``Condition`` when the slot shares its lock (it must be built
    on the default ``RLock``: the slot takes it again while its owner holds it).
    ``drain``: whether readers still get the items left unread after :meth:`close` before
    ``StreamClosed`` (True), or get ``StreamClosed`` at once (False). ``keep_taken=False``
    forgets an item once it is taken (:meth:`latest` is then None), so that a consumer's
    slot does not hold its last item in memory.
    """

    def __init__(
        self,
        name: str,
        *,
        noun: str = "item",
        cond: threading.Condition | None = None,
        drain: bool = True,
        keep_taken: bool = True,
    ) -> None:
        self.name = name
        self.noun = noun
        self.cond = cond if cond is not None else threading.Condition()
        self._drain = drain
        self._keep_taken = keep_taken
        self._item: T | None = None
        self._seq = -1  # of the newest item put
        self._taken_seq = -1  # of the newest item take() returned
        self._taken = 0
        self._skipped = 0
        self._closed = False

    # -- producer side ----------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The number the next :meth:`put` gives its item: for items that carry it."""
        with self.cond:
            return self._seq + 1

    def put(self, item: T, *, taken: bool = False) -> int:
        """Make ``item`` the newest and wake readers; returns its number. Never blocks.

        An item not taken yet is replaced and counted as skipped. ``taken=True`` counts
        ``item`` as taken at once (a listener of the owner consumed it).
        """
        with self.cond:
            if self._seq > self._taken_seq:
                self._skipped += 1
            self._seq += 1
            self._item = item
            if taken:
                self._taken_seq = self._seq
                self._taken += 1
            self.cond.notify_all()
            return self._seq

    def wait_taken(self, timeout: float | None = None) -> bool:
        """Wait until the newest item is taken or the slot is closed (True), or ``timeout``
        passes (False): a producer that must lose nothing calls it before :meth:`put`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self._seq > self._taken_seq and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True

    def drop(self, *, skipped: bool = True) -> bool:
        """Forget the item not taken yet, counted as skipped unless ``skipped=False``.
        Returns whether there was one."""
        with self.cond:
            if self._seq <= self._taken_seq:
                return False
            self._taken_seq = self._seq
            if skipped:
                self._skipped += 1
            if not self._keep_taken:
                self._item = None
            return True

    def close(self) -> None:
        """Wake every waiting reader (they get ``StreamClosed``); idempotent."""
        with self.cond:
            self._closed = True
            self.cond.notify_all()

    # -- reader side ------------------------------------------------------------------

    def take(
        self,
        timeout: float | None = None,
        *,
        check: Callable[[], None] | None = None,
        detail: Callable[[], str] | None = None,
    ) -> T:
        """Return the newest item not taken before, waiting up to ``timeout`` seconds.

        For one consumer: an item is taken once. While there is none, ``check()`` (called
        under the lock) may raise to end the wait, e.g. for an owner that ended. Raises
        ``StreamClosed`` after :meth:`close`, ``ReadTimeout`` when none comes in time
        (``detail()`` is added to its message).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                if self._closed and not self._drain:
                    raise StreamClosed(f"{self.name}: closed")
                item = self._item
                if item is not None and self._seq > self._taken_seq:
                    self._taken_seq = self._seq
                    self._taken += 1
                    if not self._keep_taken:
                        self._item = None
                    self.cond.notify_all()  # a producer in wait_taken()
                    return item
                self._wait(deadline, timeout, check, detail)

    def items(
        self,
        timeout: float | None = None,
        duration: float | None = None,
        *,
        check: Callable[[], None] | None = None,
        detail: Callable[[], str] | None = None,
    ) -> Iterator[T]:
        """Yield what :meth:`take` returns until ``duration`` seconds have passed since the
        first item was asked for (None: no end), the slot is closed or ``check()`` raises
        ``StreamEnded``. Raises ``ReadTimeout`` when no item comes within ``timeout``
        seconds (None: waits); the end of ``duration`` ends a wait quietly.
        """
        end = None if duration is None else time.monotonic() + duration
        while True:
            wait, by_end = timeout, False
            if end is not None:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return
                if wait is None or remaining <= wait:
                    wait, by_end = remaining, True
            try:
                item = self.take(wait, check=check, detail=detail)
            except ReadTimeout:
                if by_end:
                    return
                raise
            except (StreamEnded, StreamClosed):
                return
            yield item

    def get(
        self,
        after_seq: int,
        timeout: float | None = None,
        *,
        check: Callable[[], None] | None = None,
        detail: Callable[[], str] | None = None,
    ) -> T:
        """Return the newest item numbered above ``after_seq`` (-1: any), waiting up to
        ``timeout`` seconds. For any number of readers: nothing is marked as taken.
        ``check``, ``detail`` and the errors as in :meth:`take`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                if self._closed and not self._drain:
                    raise StreamClosed(f"{self.name}: closed")
                item = self._item
                if item is not None and self._seq > after_seq:
                    return item
                self._wait(deadline, timeout, check, detail)

    def _wait(
        self,
        deadline: float | None,
        timeout: float | None,
        check: Callable[[], None] | None,
        detail: Callable[[], str] | None,
    ) -> None:
        """Nothing to return yet (the caller holds the lock): raise, or wait once."""
        if check is not None:
            check()
        if self._closed:
            raise StreamClosed(f"{self.name}: closed")
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            message = f"{self.name}: no new {self.noun} within {timeout} s"
            if detail is not None:
                message += f" ({detail()})"
            raise ReadTimeout(message)
        self.cond.wait(remaining)

    def latest(self) -> T | None:
        """The newest item without waiting, taken or not; None before the first."""
        with self.cond:
            return self._item

    # -- counters ---------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The newest item's number: items put so far minus one."""
        return self._seq

    @property
    def unread(self) -> bool:
        """True while the newest item waits to be taken."""
        return self._seq > self._taken_seq

    @property
    def taken(self) -> int:
        """Items :meth:`take` returned (or put with ``taken=True``)."""
        return self._taken

    @property
    def skipped(self) -> int:
        """Items replaced or dropped before they were taken."""
        return self._skipped

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def __repr__(self) -> str:
        return f"LatestSlot({self.name!r}, seq={self._seq}, skipped={self._skipped})"
