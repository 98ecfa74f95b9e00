"""The last minute of each camera's chart numbers, kept by the web view for its page.

The page draws each camera's fps, latency and skew over the last :data:`WINDOW` seconds.
A thread of the view samples them once a second into a bounded deque per camera, and
``/stats?history=1`` serves them, so a page opened or reloaded draws the last minute at
once instead of starting empty.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ...logs import Throttle
from ...stats import GroupStats

__all__ = ["INTERVAL", "WINDOW", "ChartHistory", "ChartSample"]

logger = logging.getLogger(__name__)

#: Seconds of history in the page's charts (its ``WINDOW``).
WINDOW = 60.0
#: Seconds between two samples (the page polls ``/stats`` as often).
INTERVAL = 1.0


@dataclass(frozen=True)
class ChartSample:
    """One camera's chart numbers at ``time_mono``; None where not measured."""

    time_mono: float
    fps: float
    latency: float | None
    skew: float | None


class ChartHistory:
    """Each camera's :class:`ChartSample` over the last ``window`` seconds: at most
    :attr:`max_samples` per camera, one each ``interval`` seconds."""

    def __init__(self, window: float = WINDOW, interval: float = INTERVAL) -> None:
        self.window = window
        self.interval = interval
        #: The cap of each camera's deque: a window's samples and the one that starts it.
        self.max_samples = math.ceil(window / interval) + 1
        self._lock = threading.Lock()
        self._samples: dict[str, deque[ChartSample]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._throttle = Throttle(logger)

    def add(self, camera: str, sample: ChartSample) -> None:
        """Keep ``sample`` of ``camera``; its oldest goes beyond :attr:`max_samples`."""
        with self._lock:
            samples = self._samples.setdefault(camera, deque(maxlen=self.max_samples))
            samples.append(sample)

    def sample(self, stats: GroupStats, now_mono: float) -> None:
        """Keep each camera's numbers from ``stats``; forget cameras no longer in it."""
        for name, camera in stats.cameras.items():
            stream = camera.stream
            self.add(name, ChartSample(now_mono, stream.fps, stream.latency_p50, camera.offset_p50))
        with self._lock:
            for name in [name for name in self._samples if name not in stats.cameras]:
                del self._samples[name]

    def document(self, now_mono: float) -> dict[str, list[dict[str, float | None]]]:
        """The samples of the last ``window`` seconds by camera, oldest first, each with its
        ``age`` in seconds (the page places it on its own clock)."""
        with self._lock:
            copies = {name: list(samples) for name, samples in self._samples.items()}
        return {
            name: [
                {
                    "age": now_mono - s.time_mono,
                    "fps": s.fps,
                    "latency": s.latency,
                    "skew": s.skew,
                }
                for s in samples
                if now_mono - s.time_mono <= self.window
            ]
            for name, samples in copies.items()
        }

    def __len__(self) -> int:
        """The samples kept, all cameras together."""
        with self._lock:
            return sum(len(samples) for samples in self._samples.values())

    def start(self, stats: Callable[[], GroupStats], name: str) -> None:
        """Sample ``stats()`` every ``interval`` seconds on a thread named after the view
        ``name``, until :meth:`close`; idempotent."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run,
                args=(stats, name),
                name=f"syncstream-web-history:{name}",
                daemon=True,
            )
            self._thread.start()

    def close(self, timeout: float) -> None:
        """Stop sampling and join the thread (``timeout`` s); idempotent."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("web view %s: history thread still running", thread.name)

    def _run(self, stats: Callable[[], GroupStats], name: str) -> None:
        while True:
            try:
                self.sample(stats(), time.monotonic())
            except Exception as exc:  # noqa: BLE001 - logged: the charts only miss a sample
                self._throttle.warning("sample", "web view %s: no chart sample: %s", name, exc)
            if self._stop.wait(self.interval):
                return
