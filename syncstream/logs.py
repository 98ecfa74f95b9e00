"""Repeated log messages, rate-limited with a count.

A camera that sends a bad part thirty times a second must not write thirty warnings a
second. :class:`Throttle` lets the first message of a kind through at once, then at most
one per ``interval`` seconds; the one let through says how many like it were held back
since the last, so nothing is hidden, only summed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Throttle"]

#: Seconds between two messages of one kind, by default.
INTERVAL = 10.0
_MAX_KINDS = 256  # kinds remembered per throttle; beyond it, the oldest are forgotten


class Throttle:
    """At most one message per kind (a key the caller chooses, such as ``(camera,
    "refused part")``) per ``interval`` seconds to ``logger``; thread-safe.

    >>> throttle = Throttle(logging.getLogger("syncstream.sources"))
    >>> throttle.warning(("door", "part"), "%s: MJPEG part refused: %s", "door", "too big")
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = INTERVAL,
        *,
        clock_mono: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        self.logger = logger
        self.interval = interval
        self._clock_mono = clock_mono  # seconds, monotonic: a test passes its own
        self._lock = threading.Lock()
        self._kinds: dict[object, tuple[float, int]] = {}  # kind -> (last logged, held back)

    def warning(self, kind: object, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` as a warning unless one of ``kind`` went out less than
        ``interval`` s ago; returns whether it was logged."""
        return self.log(logging.WARNING, kind, msg, *args)

    def log(self, level: int, kind: object, msg: str, *args: Any) -> bool:
        """As :meth:`warning`, at ``level``."""
        now = self._clock_mono()
        with self._lock:
            last = self._kinds.get(kind)
            if last is not None and now - last[0] < self.interval:
                self._kinds[kind] = (last[0], last[1] + 1)
                return False
            held = last[1] if last is not None else 0
            self._kinds.pop(kind, None)
            self._kinds[kind] = (now, 0)
            if len(self._kinds) > _MAX_KINDS:
                del self._kinds[next(iter(self._kinds))]
        if held:
            self.logger.log(
                level,
                msg + " (and %d more like it in the last %.0f s)",
                *args,
                held,
                now - last[0] if last is not None else 0.0,
            )
        else:
            self.logger.log(level, msg, *args)
        return True

    def held(self, kind: object) -> int:
        """How many messages of ``kind`` are held back since the last one logged."""
        with self._lock:
            last = self._kinds.get(kind)
            return last[1] if last is not None else 0
