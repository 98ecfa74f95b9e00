"""The driver's side of a shard: a thread that pulls the shard's records, one call at a time,
and what the driver knows of the shard (its state, lives, last report)."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..logs import Throttle
from ..stats import ProcessorStats
from ..stream import StreamState
from .shard import CameraReport, PollResult, ShardReport
from .stats import ShardState, ShardStats, unseen_stream

if TYPE_CHECKING:
    from .group import ClusterGroup

__all__ = ["Poller"]

logger = logging.getLogger(__name__)

_POLL_WAIT = 0.1  # s a shard holds a poll open while it has no new record
_TIMEOUTS = 5  # poll timeouts in a row after which the call is given up and made again
_DONE = frozenset({"ended", "failed", "closed"})  # stream states a camera never leaves


class Poller:
    """Pulls one shard's records in its own thread; survives the shard's restarts.

    Its fields are written under the group's lock (``group.cond``) and read under it.
    """

    def __init__(self, group: ClusterGroup, name: str, actor: Any, cameras: list[str]) -> None:
        self.group = group
        self.name = name
        self.actor = actor
        self.cameras = cameras
        self.epoch = ""
        self.after = -1
        self.lives = 0  # epochs seen
        self.dropped = 0  # as the shard's current life reported it
        self.dropped_before = 0  # by its earlier lives
        self.state: ShardState = "starting"
        self.error: str | None = None
        self.report: ShardReport | None = None
        self.failures = 0
        self.polls = 0
        self.nbytes = 0
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
                if getattr(exc, "actor_init_failed", False):
                    self._failed(exc)  # Ray does not restart it
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
            with self.group.cond:
                if result.epoch != self.epoch:
                    if self.epoch:
                        logger.info("shard %s restarted; its cameras reopen", self.name)
                    self.lives += 1
                    self.dropped_before += self.dropped
                    self.epoch = result.epoch
                self.after = result.newest
                self.dropped = result.dropped
                self.state = "up"
                self.polls += 1
                self.nbytes += result.nbytes
                if result.report is not None:
                    self.report = result.report
            self.group.deliver(self.name, result.records)

    def _down(self, throttle: Throttle, exc: BaseException) -> None:
        with self.group.cond:
            if self.state != "down":
                self.failures += 1
            self.state = "down"
            self.group.cond.notify_all()
        throttle.warning(
            "down",
            "shard %s is down (%s: %s); retrying",
            self.name,
            type(exc).__name__,
            exc,
        )

    def _failed(self, exc: BaseException) -> None:
        message = _raised(str(exc)) or type(exc).__name__
        logger.error(
            "shard %s failed to start; its cameras %s stay missing: %s",
            self.name,
            ", ".join(self.cameras),
            exc,
        )
        with self.group.cond:
            self.failures += 1
            self.state = "failed"
            self.error = message
            self.group.cond.notify_all()

    # -- figures (the caller holds the group's lock) ----------------------------------

    @property
    def overflow(self) -> int:
        """Records the shard dropped unpolled, over its lives."""
        return self.dropped + self.dropped_before

    def finished(self) -> bool:
        """Whether none of the shard's cameras will deliver again: the shard failed for
        good, or every camera's stream ended or failed (files read to their end)."""
        if self.state == "failed":
            return True
        report = self.report
        if report is None or self.state != "up":
            return False
        states = [report.cameras[n].stream.state.value for n in self.cameras if n in report.cameras]
        return len(states) == len(self.cameras) and all(s in _DONE for s in states)

    def failed_cameras(self) -> list[str]:
        """The cameras whose stream failed, or all of them when the shard did."""
        if self.state == "failed":
            return list(self.cameras)
        cameras = self.report.cameras if self.report is not None else {}
        return [
            n for n in self.cameras if n in cameras and cameras[n].stream.state.value == "failed"
        ]

    def camera(self, name: str) -> CameraReport:
        """The camera's figures as the shard last reported them, its stream ``STALE``
        (waiting for the shard) while the shard is not up."""
        report = self.report.cameras.get(name) if self.report is not None else None
        where = f"shard {self.name or '(any)'}"
        if report is None:
            waiting = f"{where} is {self.state}"
            state = StreamState.FAILED if self.state == "failed" else StreamState.CONNECTING
            return CameraReport(unseen_stream(name, state, waiting), 0.0, None, 0)
        if self.state == "up":
            return report
        stream = replace(
            report.stream,
            state=StreamState.FAILED if self.state == "failed" else StreamState.STALE,
            fps=0.0,
            waiting_for=f"{where} is {self.state}",
        )
        running = None if report.sender_running is None else False  # it died with the shard
        return report._replace(stream=stream, sender_running=running)

    def processors(self) -> dict[str, ProcessorStats]:
        """The shard's processors as it last reported them, as ``"name@shard"``."""
        if self.report is None:
            return {}
        up = self.state == "up"
        return {
            f"{name}@{self.name}": replace(
                stats, name=f"{name}@{self.name}", running=stats.running and up
            )
            for name, stats in self.report.processors.items()
        }

    def stats(self) -> ShardStats:
        """A snapshot of the shard's figures."""
        report = self.report
        return ShardStats(
            name=self.name,
            cameras=tuple(self.cameras),
            state=self.state,
            restarts=max(0, self.lives - 1),
            pid=None if report is None else report.pid,
            node_id=None if report is None else report.node_id,
            failures=self.failures,
            error=self.error,
        )


def _raised(text: str) -> str:
    """The error a shard's constructor raised, on one line (``module.Type: message``): the
    end of the traceback Ray's error carries, from the last line that is not indented (a
    multi-line message, a GroupStartError's line per camera, goes on indented)."""
    lines = text.strip().splitlines()
    start = max((i for i, line in enumerate(lines) if line[:1] not in ("", " ", "\t")), default=0)
    return " ".join(" ".join(lines[start:]).split())
