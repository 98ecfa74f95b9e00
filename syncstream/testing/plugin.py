"""The syncstream pytest plugin: real video peers on loopback for the tests of your program.

Installed with syncstream and enabled through the ``pytest11`` entry point (disable it
with ``pytest -p no:syncstream``). Every fixture is a factory, function-scoped, and stops
everything it started when the test ends:

- ``ts_recorder(seconds=2.0, size=(320, 240), fps=30.0, pattern="testsrc",
  name="recording")``: record a test pattern into the test's ``tmp_path`` as a ``.ts``
  stamped like a live sender (:func:`~syncstream.testing.replay.record_test_pattern`);
- ``ts_replay(path, port=None, *, loop=True, restamp=True)``: play a recording to
  ``udp://127.0.0.1:PORT`` as a live camera (:class:`~syncstream.testing.replay.TsReplay`);
- ``udp_relay(target, *, delay=0.0, jitter=0.0, loss=0.0, keep_order=True, seed=None)``:
  a UDP relay that impairs one path
  (:class:`~syncstream.testing.relay.ImpairmentRelay`);
- ``stamp_sender(url, size=(320, 240), fps=30.0)``: a sender whose pictures carry their
  send time in pixels (:class:`~syncstream.probe.StampSender`).

The fixtures that run ffmpeg fail the test with a clear message when the ``ffmpeg`` CLI is
not installed. syncstream itself is imported on first use, not when pytest starts.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from ..probe import StampSender
    from .relay import ImpairmentRelay
    from .replay import TsReplay

__all__ = [
    "StampSenderFactory",
    "TsRecorder",
    "TsReplayFactory",
    "UdpRelayFactory",
    "stamp_sender",
    "ts_recorder",
    "ts_replay",
    "udp_relay",
]

_REPLAY_HOST = "127.0.0.1"


class TsRecorder(Protocol):
    """The ``ts_recorder`` fixture: records a test pattern, returns the ``.ts`` path."""

    def __call__(
        self,
        seconds: float = 2.0,
        size: tuple[int, int] = (320, 240),
        fps: float = 30.0,
        pattern: str = "testsrc",
        name: str = "recording",
    ) -> pathlib.Path: ...


class TsReplayFactory(Protocol):
    """The ``ts_replay`` fixture: replays a ``.ts`` file to a UDP port, returns it started."""

    def __call__(
        self,
        path: str | pathlib.Path,
        port: int | None = None,
        *,
        loop: bool = True,
        restamp: bool = True,
    ) -> TsReplay: ...


class UdpRelayFactory(Protocol):
    """The ``udp_relay`` fixture: a started impairment relay forwarding to ``target``."""

    def __call__(
        self,
        target: str | tuple[str, int],
        *,
        delay: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        keep_order: bool = True,
        seed: int | None = None,
    ) -> ImpairmentRelay: ...


class StampSenderFactory(Protocol):
    """The ``stamp_sender`` fixture: a started sender that paints its send time in pixels."""

    def __call__(
        self, url: str, size: tuple[int, int] = (320, 240), fps: float = 30.0
    ) -> StampSender: ...


def _require_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail(
            "the ffmpeg command-line program is required by this syncstream fixture "
            "and was not found in PATH (install ffmpeg, e.g. apt-get install ffmpeg)",
            pytrace=False,
        )


@pytest.fixture
def ts_recorder(tmp_path: pathlib.Path) -> TsRecorder:
    """Record an ffmpeg test pattern to a ``.ts`` file in ``tmp_path``; returns its path.

    ``ts_recorder(seconds=2.0, size=(320, 240), fps=30.0, pattern="testsrc",
    name="recording")``: encoded and stamped like a live syncstream sender, its PTS hold
    the wall clock at recording time. Recording is faster than real time. A name already
    used in the test gets a numbered suffix rather than overwriting the first file.
    """
    _require_ffmpeg()
    from .replay import record_test_pattern

    def record(
        seconds: float = 2.0,
        size: tuple[int, int] = (320, 240),
        fps: float = 30.0,
        pattern: str = "testsrc",
        name: str = "recording",
    ) -> pathlib.Path:
        path = tmp_path / f"{name}.ts"
        number = 1
        while path.exists():
            number += 1
            path = tmp_path / f"{name}-{number}.ts"
        return record_test_pattern(path, seconds=seconds, size=size, fps=fps, pattern=pattern)

    return record


@pytest.fixture
def ts_replay() -> Iterator[TsReplayFactory]:
    """Replay a recorded ``.ts`` to ``udp://127.0.0.1:PORT`` as a live camera; returns it started.

    ``ts_replay(path, port=None, *, loop=True, restamp=True)``: ``port=None`` picks a free
    UDP port. Open ``replay.url`` with :class:`~syncstream.VideoStream` to receive it.
    ``restamp=True`` stamps each frame with the replay's wall clock (capture times close to
    arrival, like a live camera); ``restamp=False`` keeps the file's stamps (read them with
    ``capture_clock="sender"``). Every replay is stopped when the test ends.
    """
    _require_ffmpeg()
    from ..senders import free_udp_port
    from .replay import TsReplay

    def replay(
        path: str | pathlib.Path,
        port: int | None = None,
        *,
        loop: bool = True,
        restamp: bool = True,
    ) -> TsReplay:
        chosen = free_udp_port(_REPLAY_HOST) if port is None else port
        player = TsReplay(path, f"udp://{_REPLAY_HOST}:{chosen}", loop=loop, restamp=restamp)
        cleanup.callback(player.close)
        return player.start()

    with contextlib.ExitStack() as cleanup:
        yield replay


@pytest.fixture
def udp_relay() -> Iterator[UdpRelayFactory]:
    """A UDP relay on 127.0.0.1 that delays, jitters and drops datagrams; returns it started.

    ``udp_relay(target, *, delay=0.0, jitter=0.0, loss=0.0, keep_order=True, seed=None)``:
    point a sender at ``relay.url``; it forwards to ``target`` (``udp://host:port`` or
    ``(host, port)``, where the receiver listens). ``delay`` and ``jitter`` are seconds
    (jitter drawn per burst of datagrams), ``loss`` a probability per datagram;
    ``relay.stats`` counts what happened. Every relay is closed when the test ends.
    """
    from .relay import ImpairmentRelay

    def relay(
        target: str | tuple[str, int],
        *,
        delay: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        keep_order: bool = True,
        seed: int | None = None,
    ) -> ImpairmentRelay:
        impairment = ImpairmentRelay(
            target, delay=delay, jitter=jitter, loss=loss, keep_order=keep_order, seed=seed
        )
        cleanup.callback(impairment.close)
        return impairment.start()

    with contextlib.ExitStack() as cleanup:
        yield relay


@pytest.fixture
def stamp_sender() -> Iterator[StampSenderFactory]:
    """A sender whose pictures carry their send time in pixels, to ``url``; returns it started.

    ``stamp_sender(url, size=(320, 240), fps=30.0)``: ``url`` is ``udp://host:port``.
    :func:`~syncstream.probe.decode_stamp` reads the send time back from a received
    frame's image, for glass-to-glass latency. Every sender is stopped when the test ends.
    """
    _require_ffmpeg()
    from ..probe import StampSender

    def sender(url: str, size: tuple[int, int] = (320, 240), fps: float = 30.0) -> StampSender:
        stamped = StampSender(url, size=size, fps=fps)
        cleanup.callback(stamped.close)
        return stamped.start()

    with contextlib.ExitStack() as cleanup:
        yield sender
