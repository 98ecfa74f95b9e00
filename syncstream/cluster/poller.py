"""The driver's side of a shard: a thread that pulls the shard's records, one call at a time."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ..logs import Throttle
from .shard import PollResult

if TYPE_CHECKING:
    from .group import ClusterGroup

__all__ = ["Poller"]

logger = logging.getLogger(__name__)

_POLL_WAIT = 0.1  # s a shard holds a poll open while it has no new record
_TIMEOUTS = 5  # poll timeouts in a row after which the call is given up and made again


class Poller:
    """Pulls one shard's records in its own thread; survives the shard's restarts."""

    def __init__(self, group: ClusterGroup, name: str, actor: Any, cameras: list[str]) -> None:
        self.group = group
        self.name = name
        self.actor = actor
        self.cameras = cameras
        self.epoch = ""
        self.after = -1
        self.dropped = 0  # as the shard's current life reported it
        self.dropped_before = 0  # by its earlier lives
        self.states: dict[str, str] = {c: "connecting" for c in cameras}
        self.failures = 0
        self.thread = threading.Thread(
            target=self.run, name=f"syncstream-shard-{name}", daemon=True
        )

    def run(self) -> None:
        ray = self.group.ray
        throttle = Throttle(logger)
        stop = self.group.stopping
        ref = None  # the poll in flight: waited for again after a timeout, never stacked
        timeouts = 0
        while not stop.is_set():
            if ref is None:
                ref = self.actor.poll.remote(self.epoch, self.after, _POLL_WAIT)
                timeouts = 0
            try:
                result: PollResult = ray.get(ref, timeout=self.group.poll_timeout)
            except Exception as exc:  # noqa: BLE001 - any Ray error: the shard is down
                if stop.is_set():
                    return
                timeout = isinstance(exc, ray.exceptions.GetTimeoutError)
                timeouts += timeout
                if not timeout or timeouts >= _TIMEOUTS:
                    ref = None  # the call failed (the actor died) or is lost: a new one
                if timeout and not self.epoch:
                    continue  # the shard is still opening its cameras
                self._down(throttle, exc)
                if not timeout:
                    stop.wait(self.group.retry_interval)
                continue
            ref = None
            epoch, newest, records, dropped, states = result
            with self.group.cond:
                if epoch != self.epoch:
                    if self.epoch:
                        logger.info("shard %s restarted; its cameras reopen", self.name)
                    self.dropped_before += self.dropped
                    self.epoch = epoch
                self.after = newest
                self.dropped = dropped
                self.states = states
            self.group.deliver(self.name, records)

    def _down(self, throttle: Throttle, exc: BaseException) -> None:
        with self.group.cond:
            if "down" not in self.states.values():
                self.failures += 1
            self.states = dict.fromkeys(self.cameras, "down")
        throttle.warning(
            "down",
            "shard %s is down (%s: %s); retrying",
            self.name,
            type(exc).__name__,
            exc,
        )
