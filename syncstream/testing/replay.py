"""Recorded MPEG-TS for tests: record a stamped test pattern, replay a file as a live camera.

A live syncstream sender writes its wall clock into every frame's PTS
(:mod:`syncstream.senders.command`), and receivers recover capture times from it. A test
that replays a recording must therefore do the same, or the receiver would see stamps
from the day the file was made:

- :func:`record_test_pattern` writes a short ``.ts`` file encoded and muxed exactly like
  a live sender's stream (same encoder settings, same muxer flags), as fast as ffmpeg
  can encode it;
- :class:`TsReplay` sends a ``.ts`` file to ``udp://host:port`` at real-time pace,
  looping, and by default rewrites its timestamps to the replay's wall clock, so the
  receiver sees capture times like a live camera's.
"""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import subprocess
import time
import warnings
from typing import Self

from ..config import TEST_PATTERNS, Codec
from ..errors import ConfigError, SenderError, StreamClosed
from ..senders import LocalSender, mpegts_udp_output_args, testsrc_input_args
from ..urls import parse_udp_destination

__all__ = ["TsReplay", "record_test_pattern", "replay_argv"]

logger = logging.getLogger(__name__)

#: Time a recording may take: this much, plus ``_RECORD_TIMEOUT_PER_SECOND`` per second.
_RECORD_TIMEOUT = 30.0
_RECORD_TIMEOUT_PER_SECOND = 5.0
_STDERR_LINES = 20
_TS_PACKET = 188
_MAX_DATAGRAM = 65_507  # largest UDP payload over IPv4


def record_test_pattern(
    path: str | os.PathLike[str],
    *,
    seconds: float = 2.0,
    size: tuple[int, int] = (320, 240),
    fps: float = 30.0,
    pattern: str = "testsrc",
    codec: Codec = "libx264",
    gop: int | None = None,
    ffmpeg: str = "ffmpeg",
    timeout: float | None = None,
) -> pathlib.Path:
    """Write ``seconds`` of an ffmpeg test pattern to ``path`` as a live sender would stream it.

    The encoder and muxer arguments are a live sender's
    (:func:`~syncstream.senders.mpegts_udp_output_args`), with the UDP URL replaced by
    the file. The one difference is the stamp: the pattern is generated faster than real
    time (no ``-re``), so instead of the wall clock at each frame (``RTCTIME``), frame ``n``
    carries the wall clock when ffmpeg started plus ``n / fps`` (``RTCSTART + PTS``): the
    stamps of a perfectly paced camera that was recording at that moment. ``gop`` defaults
    to one keyframe per second. ``timeout`` (default 30 s plus 5 s per recorded second)
    bounds the run. Returns the path; raises :class:`~syncstream.ConfigError` for a bad
    value and :class:`~syncstream.SenderError`, with ffmpeg's last stderr lines, when
    ffmpeg is missing, fails or times out.
    """
    width, height = size
    if not (seconds > 0 and fps > 0):
        raise ConfigError(f"seconds and fps must be positive, got {seconds!r} and {fps!r}")
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise ConfigError(f"size must be two positive even numbers, got {size!r}")
    if pattern not in TEST_PATTERNS:
        raise ConfigError(f"pattern must be one of {sorted(TEST_PATTERNS)}, got {pattern!r}")
    if gop is not None and gop < 1:
        raise ConfigError(f"gop must be at least 1, got {gop!r}")
    target = pathlib.Path(path)
    frames = max(1, round(seconds * fps))
    # The live sender's input without -re (the first element): the frames are counted,
    # not timed.
    input_args = [arg for arg in testsrc_input_args(size, fps, pattern) if arg != "-re"]
    placeholder = "udp://127.0.0.1:9"  # replaced by the file: the URL is the last element
    output_args = mpegts_udp_output_args(
        placeholder,
        codec=codec,
        gop=gop if gop is not None else max(1, round(fps)),
        stamp_wallclock=False,
        # Runs right after settb=1/90000, where a live sender has setpts=RTCTIME*9/100.
        overlay_filters=["setpts=RTCSTART*9/100+PTS"],
    )
    assert output_args[-1].startswith(placeholder), output_args
    argv = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        *input_args,
        "-frames:v", str(frames),
        *output_args[:-1],
        str(target),
    ]  # fmt: skip
    limit = _RECORD_TIMEOUT + _RECORD_TIMEOUT_PER_SECOND * seconds if timeout is None else timeout
    try:
        done = subprocess.run(argv, capture_output=True, timeout=limit, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise SenderError(f"recording {target}: cannot run {ffmpeg!r}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SenderError(
            f"recording {target}: ffmpeg did not finish within {limit:.0f} s",
            stderr_tail=_tail(exc.stderr),
        ) from exc
    if done.returncode != 0:
        raise SenderError(
            f"recording {target}: ffmpeg exited with status {done.returncode}",
            returncode=done.returncode,
            stderr_tail=_tail(done.stderr),
        )
    logger.debug("recorded %d frames of %s to %s", frames, pattern, target)
    return target


def _tail(stderr: bytes | None) -> list[str]:
    text = (stderr or b"").decode("utf-8", "replace")
    return [line for line in text.splitlines() if line.strip()][-_STDERR_LINES:]


def replay_argv(
    path: str | os.PathLike[str],
    url: str,
    *,
    start_time: float | None,
    loop: bool = True,
    pkt_size: int = 1316,
    ffmpeg: str = "ffmpeg",
) -> list[str]:
    """The ffmpeg command that sends the video of ``path`` to ``url`` at real-time pace.

    The packets are copied, not re-encoded. With ``start_time`` (our wall clock, epoch
    seconds) the timestamps are rewritten to ``start_time`` plus each frame's offset from
    the first frame of the file; with ``None`` they are sent as they are in the file.
    ``loop`` plays the file again and again; ffmpeg adds the file's duration to the
    timestamps of each pass, so they keep increasing.
    """
    # -copyts: the file's own stamps, untouched. Without it, ffmpeg shifts the file to
    # start at 0 and the offset moves it to our wall clock; the muxer writes that modulo
    # 2**33 ticks of 90 kHz, like a live sender's stamp, and receivers unwrap it against
    # the arrival time.
    stamps = ["-copyts"] if start_time is None else ["-output_ts_offset", f"{start_time:.6f}"]
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
        "-re", *(["-stream_loop", "-1"] if loop else []), "-i", os.fspath(path),
        "-map", "0:v:0", "-c", "copy",
        *stamps,
        # As a live sender: no shift by the muxer, each frame sent as soon as it is read,
        # with its PES length so the receiver need not wait for the next frame.
        "-mpegts_copyts", "1",
        "-muxdelay", "0",
        "-omit_video_pes_length", "0",
        "-flush_packets", "1",
        "-f", "mpegts",
        f"{url}?pkt_size={pkt_size}",
    ]  # fmt: skip


class TsReplay:
    """Plays a recorded MPEG-TS file into ``udp://host:port`` as if the camera were live.

    The packets are sent at the pace of their timestamps (``ffmpeg -re``), looping over the
    file with ``loop=True``. ``restamp=True`` rewrites every timestamp to the replay's
    wall clock (the time :meth:`start` was called plus the frame's offset in the file), so
    a :class:`~syncstream.VideoStream` reading ``url`` gets frames whose ``capture_time``
    lies just before their arrival, as from a live sender. ``restamp=False`` keeps the
    file's own stamps: a recording of hardware-synchronized cameras replays with its
    original capture times (read it with ``capture_clock="sender"``; the default ``"auto"``
    refuses stamps that are far from the arrival time).

    The process is a :class:`~syncstream.senders.LocalSender` (stop, stderr tail); it is not
    restarted when it exits (end of the file with ``loop=False``, or an error: see
    :attr:`error`). The constructor does no I/O; the file must exist when :meth:`start`
    runs. Use as a context manager; a stopped replay cannot restart.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        url: str,
        *,
        loop: bool = True,
        restamp: bool = True,
        pkt_size: int = 1316,
        ffmpeg: str = "ffmpeg",
        name: str | None = None,
    ) -> None:
        """Describe the replay; ``url`` must be ``udp://host:port`` (:class:`ConfigError`)."""
        _, port = parse_udp_destination(url, "replay url")
        if not _TS_PACKET <= pkt_size <= _MAX_DATAGRAM or pkt_size % _TS_PACKET:
            raise ConfigError(
                f"pkt_size must be a multiple of {_TS_PACKET} up to {_MAX_DATAGRAM}, "
                f"got {pkt_size!r}"
            )
        self._path = pathlib.Path(path)
        self._url = url
        self.loop = loop
        self.restamp = restamp
        self.pkt_size = pkt_size
        self.ffmpeg = ffmpeg
        self.name = name or f"replay:{self._path.name}:{port}"
        self._sender: LocalSender | None = None
        self._start_time: float | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """Where the stream goes; a receiver opens the same URL (``VideoStream(url)``)."""
        return self._url

    @property
    def path(self) -> pathlib.Path:
        """The ``.ts`` file being replayed."""
        return self._path

    @property
    def start_time(self) -> float | None:
        """With ``restamp``: our wall clock stamped on the file's first frame, once started."""
        return self._start_time

    @property
    def argv(self) -> list[str] | None:
        """The ffmpeg command line once started (no shell), else None."""
        return list(self._sender.argv) if self._sender is not None else None

    @property
    def pid(self) -> int | None:
        """ffmpeg's process id while it runs, else None."""
        return self._sender.pid if self._sender is not None else None

    @property
    def is_running(self) -> bool:
        """True while ffmpeg runs."""
        return self._sender is not None and self._sender.is_running

    @property
    def returncode(self) -> int | None:
        """ffmpeg's exit status once it ended, else None."""
        return self._sender.returncode if self._sender is not None else None

    @property
    def error(self) -> SenderError | None:
        """Why ffmpeg ended with an error (it is not restarted), else None."""
        return self._sender.error if self._sender is not None else None

    @property
    def stderr_tail(self) -> list[str]:
        """The last lines ffmpeg wrote to stderr."""
        return self._sender.stderr_tail if self._sender is not None else []

    def start(self) -> Self:
        """Start ffmpeg (idempotent while running).

        Raises ``FileNotFoundError`` when the file is missing, :class:`SenderError` when
        ffmpeg cannot start, :class:`StreamClosed` after :meth:`stop`.
        """
        if self._closed:
            raise StreamClosed(f"{self.name}: replay was stopped and cannot restart")
        if self._sender is not None:
            return self
        if not self._path.is_file():
            raise FileNotFoundError(
                errno.ENOENT, f"{self.name}: no recording to replay", str(self._path)
            )
        start_time = time.time() if self.restamp else None
        argv = replay_argv(
            self._path,
            self._url,
            start_time=start_time,
            loop=self.loop,
            pkt_size=self.pkt_size,
            ffmpeg=self.ffmpeg,
        )
        self._sender = LocalSender(argv, name=self.name).start()
        self._start_time = start_time
        logger.info("%s: replaying %s to %s", self.name, self._path, self._url)
        return self

    def close(self) -> None:
        """Stop ffmpeg (SIGTERM, then SIGKILL); idempotent."""
        self._closed = True
        if self._sender is not None:
            self._sender.close()

    def stop(self) -> None:
        """Deprecated name of :meth:`close` (warns with :class:`DeprecationWarning`)."""
        warnings.warn(
            "TsReplay.stop() is deprecated, use close()", DeprecationWarning, stacklevel=2
        )
        self.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TsReplay({str(self._path)!r}, {self._url!r}, restamp={self.restamp})"
