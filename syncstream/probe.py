"""The latency probe: a sender that writes its send time into the picture, and its decoder.

Glass-to-glass latency is the time from a picture leaving the sender to the same picture
being available to the receiver. Metadata (the PTS) says when the sender *stamped* a frame,
but a timestamp can be rewritten, shifted or rounded anywhere on the way; a stamp painted
into the pixels travels with the picture itself, through the encoder, the network, the
decoder and any scaling, so ``arrival_time - decode_stamp(image)`` measures the whole path.

The stamp is a block barcode in the top band of the picture, laid out relative to the width
so that it survives downscaling:

- 3 rows x 32 columns of blocks, each ``W/32`` wide and ``W/40`` high (20 x 16 pixels at
  640x480, a band of 48 rows);
- row 0 is a fixed guard pattern (16 white, 16 black blocks): it gives the black and white
  levels for the threshold, and a picture whose guard does not match is rejected at once;
- rows 1 and 2 carry 64 bits, most significant first: the wall-clock time in whole
  microseconds since the epoch (52 bits, enough until the year 2112) and a 12-bit check
  (CRC-12 of the time, xor a constant so that an all-black band is not valid).

Blocks are painted at video black and white (luma 16 and 235). The decoder averages a
small patch at the centre of each block (away from edges, where compression rings), sets
the threshold halfway between the guard's levels and refuses a block that is not clearly
black or white. It reads only 16 points per block, never the whole frame, so it costs far
less than converting the frame. The tests read the stamp back exactly after JPEG at quality
10, after downscaling to 1/8 of the width and after x264 ultrafast/zerolatency at 640x480.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from .config import Codec
from .errors import ConfigError, SourceError, StampNotFound, StreamClosed
from .senders import LocalSender, mpegts_udp_output_args
from .urls import parse_udp_destination

__all__ = ["StampSender", "decode_stamp", "encode_stamp"]

logger = logging.getLogger(__name__)

COLUMNS = 32
ROWS = 3  # the guard row and two data rows
BLOCK_HEIGHT_DIVISOR = 40  # block height = width / 40
BLACK = 16
WHITE = 235
GUARD = 0xE2B4_1D69  # 16 ones, no run longer than 5 blocks
TIME_BITS = 52
CHECK_BITS = 12
CRC12_POLY = 0x80F  # x^12 + x^11 + x^3 + x^2 + x + 1
CHECK_XOR = 0xA5C
MIN_CONTRAST = 64.0  # white minus black guard level, in 8-bit luma steps
MARGIN = 0.25  # a block must lie this fraction of the contrast away from the threshold
SAMPLES = 4  # sample points per block along each axis, spread over the central half

_GUARD_BITS = np.array([(GUARD >> (31 - i)) & 1 for i in range(COLUMNS)], dtype=bool)


def _crc12(value: int) -> int:
    """CRC-12 of the ``TIME_BITS``-bit ``value``, most significant bit first."""
    crc = 0
    for shift in range(TIME_BITS - 1, -1, -1):
        feedback = ((value >> shift) & 1) ^ ((crc >> (CHECK_BITS - 1)) & 1)
        crc = (crc << 1) & 0xFFF
        if feedback:
            crc ^= CRC12_POLY
    return crc


def _check(micros: int) -> int:
    return _crc12(micros) ^ CHECK_XOR


def _edges(count: int, size: float) -> NDArray[np.intp]:
    """Pixel edges of ``count`` blocks of fractional ``size``, rounded to whole pixels."""
    edges: NDArray[np.intp] = np.rint(np.arange(count + 1) * size).astype(np.intp)
    return edges


def _band_height(width: int) -> float:
    return width / BLOCK_HEIGHT_DIVISOR


def encode_stamp(luma: NDArray[np.uint8], stamp_time: float) -> None:
    """Paint ``stamp_time`` (epoch seconds, microsecond resolution) into the top band of ``luma``.

    ``luma`` is an ``HxW`` ``uint8`` plane, modified in place; the band is ``3 * W/40`` rows
    high. Raises ``ValueError`` for a plane too small to hold the barcode or a time outside
    ``[0, 2**52)`` microseconds.
    """
    if luma.ndim != 2 or luma.dtype != np.uint8:
        raise ValueError(f"luma must be an HxW uint8 plane, got {luma.dtype} {luma.shape}")
    height, width = luma.shape
    block_height = _band_height(width)
    if width < 2 * COLUMNS or ROWS * block_height > height:
        raise ValueError(f"a {width}x{height} plane is too small for the stamp")
    micros = round(stamp_time * 1_000_000) if math.isfinite(stamp_time) else -1
    if not 0 <= micros < 1 << TIME_BITS:
        raise ValueError(f"stamp_time {stamp_time!r} is outside the 52-bit microsecond range")
    word = (micros << CHECK_BITS) | _check(micros)
    data = np.unpackbits(np.frombuffer(word.to_bytes(8, "big"), dtype=np.uint8)).astype(bool)
    bits = np.concatenate([_GUARD_BITS, data]).reshape(ROWS, COLUMNS)
    levels = np.where(bits, np.uint8(WHITE), np.uint8(BLACK))
    xs = _edges(COLUMNS, width / COLUMNS)
    ys = _edges(ROWS, block_height)
    band = np.repeat(np.repeat(levels, np.diff(ys), axis=0), np.diff(xs), axis=1)
    luma[: ys[-1], : xs[-1]] = band


@functools.lru_cache(maxsize=16)
def _sample_points(width: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Rows and columns sampled: ``SAMPLES`` per block per axis, over the central half."""
    offsets = np.linspace(0.25, 0.75, SAMPLES)
    block_width = width / COLUMNS
    block_height = _band_height(width)
    xs = ((np.arange(COLUMNS)[:, None] + offsets) * block_width).astype(np.intp).ravel()
    ys = ((np.arange(ROWS)[:, None] + offsets) * block_height).astype(np.intp).ravel()
    return ys, xs


def decode_stamp(image: NDArray[np.uint8]) -> float:
    """Read the stamp painted by :func:`encode_stamp`; return it in epoch seconds.

    ``image`` is a BGR picture (``HxWx3``) or a luma plane (``HxW``), possibly recompressed
    or scaled. Only the barcode band is sampled. Raises :class:`StampNotFound` when the
    picture holds no valid stamp: the guard row is missing, a block is neither clearly
    black nor clearly white, or the check bits do not match; ``ValueError`` for an array
    of another shape.
    """
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image must be HxW or HxWx3, got shape {image.shape}")
    height, width = image.shape[:2]
    if width < 2 * COLUMNS or ROWS * _band_height(width) > height:
        raise StampNotFound(f"a {width}x{height} picture is too small to hold a stamp")
    ys, xs = _sample_points(width)
    samples = image.take(ys, axis=0).take(xs, axis=1)  # take: faster than fancy indexing
    blocks = samples.reshape(ROWS, SAMPLES, COLUMNS, SAMPLES, -1)
    levels = blocks.sum(axis=(1, 3, 4), dtype=np.int32) / (SAMPLES * SAMPLES * blocks.shape[4])
    guard = levels[0]
    white = float(guard[_GUARD_BITS].mean())
    black = float(guard[~_GUARD_BITS].mean())
    contrast = white - black
    if contrast < MIN_CONTRAST:
        raise StampNotFound(f"no stamp: guard contrast {contrast:.1f} < {MIN_CONTRAST}")
    threshold = (white + black) / 2
    if np.any(np.abs(levels - threshold) < MARGIN * contrast):
        raise StampNotFound("no stamp: some blocks are neither black nor white")
    bits = levels > threshold
    if not np.array_equal(bits[0], _GUARD_BITS):
        raise StampNotFound("no stamp: the guard row does not match")
    word = int.from_bytes(np.packbits(bits[1:]).tobytes(), "big")
    micros = word >> CHECK_BITS
    if word & 0xFFF != _check(micros):
        raise StampNotFound("no stamp: the check bits do not match")
    return micros / 1_000_000


def _background(width: int, height: int) -> NDArray[np.uint8]:
    """A textured pattern ``2 * width`` wide whose columns repeat with period ``width``.

    A window of ``width`` columns sliding along it gives a scrolling picture, so the
    encoder has motion to code, without computing a new pattern per frame.
    """
    x = np.arange(2 * width) % width
    y = np.arange(height)[:, None]
    ramp = 40 + 150 * x / width
    checker = 30 * (((x // 40) + (y // 40)) % 2)
    waves = 20 * np.sin(x * (2 * np.pi * 8 / width)) * np.cos(y / 23)
    pattern: NDArray[np.uint8] = np.clip(ramp + checker + waves, 0, 255).astype(np.uint8)
    return pattern


class StampSender:
    """Streams a moving test pattern with the send time painted into every frame.

    A named thread generates raw ``yuv420p`` frames at ``fps`` and writes them to an ffmpeg
    process (:class:`~syncstream.senders.LocalSender`) that encodes them and sends MPEG-TS
    to ``url`` (``udp://host:port``) with :func:`~syncstream.senders.mpegts_udp_output_args`,
    so the PTS carries ffmpeg's wall clock and the pixels carry ours, taken just before the
    frame is written to the pipe. ``command`` replaces that ffmpeg command with another
    producer's whole argv (no shell), which reads the raw frames (``yuv420p``, ``size``,
    ``fps``) on its stdin and sends them as it likes; ``codec``, ``gop`` and ``pes_length``
    then go unused. If the producer stops reading, the error is logged with its stderr and
    kept in :attr:`error`. Use as a context manager; a stopped sender cannot restart.
    """

    def __init__(
        self,
        url: str,
        *,
        size: tuple[int, int] = (640, 480),
        fps: float = 30.0,
        codec: Codec = "libx264",
        gop: int = 30,
        join_timeout: float = 2.0,
        pes_length: bool = True,
        command: Sequence[str] | None = None,
    ) -> None:
        _, port = parse_udp_destination(url, "url")
        width, height = size
        if width < 2 * COLUMNS or width % 2 or height % 2 or ROWS * _band_height(width) > height:
            raise ConfigError(f"size must be even and hold the stamp band, got {size!r}")
        if not 0 < fps <= 240:
            raise ConfigError(f"fps must be in (0, 240], got {fps!r}")
        if gop < 1:
            raise ConfigError(f"gop must be at least 1, got {gop!r}")
        self.url = url
        self.size = (width, height)
        self.fps = fps
        self.name = f"stamp-sender:{port}"
        self._join_timeout = join_timeout
        if command is not None and not command:
            raise ConfigError("command must not be empty")
        self._argv = list(command) if command is not None else [
            "ffmpeg", "-hide_banner", "-loglevel", "warning",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
            "-r", str(fps), "-i", "-",
            *mpegts_udp_output_args(url, codec=codec, gop=gop, pes_length=pes_length),
        ]  # fmt: skip
        self._sender: LocalSender | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._fd: int | None = None
        self._frames_sent = 0
        self._error: SourceError | None = None
        self._closed = False

    @property
    def argv(self) -> list[str]:
        """The producer's command line (no shell): ffmpeg unless ``command`` was given."""
        return list(self._argv)

    @property
    def frames_sent(self) -> int:
        """Frames written to ffmpeg so far."""
        return self._frames_sent

    @property
    def pid(self) -> int | None:
        """ffmpeg's process id while started, else None."""
        return self._sender.pid if self._sender is not None else None

    @property
    def error(self) -> SourceError | None:
        """Why the sending thread ended early (ffmpeg stopped reading), else None."""
        return self._error

    def start(self) -> StampSender:
        """Start ffmpeg and the frame thread (idempotent while running)."""
        if self._closed:
            raise StreamClosed(f"{self.name}: sender was stopped and cannot restart")
        if self._sender is not None:
            return self
        self._sender = LocalSender(self._argv, name=self.name, stdin_pipe=True).start()
        # The thread writes to its own duplicate of the pipe: LocalSender.close() can then
        # close stdin and kill ffmpeg without waiting for a write blocked in another thread,
        # and the blocked write ends with EPIPE instead of on a reused descriptor.
        self._fd = os.dup(self._sender.stdin.fileno())
        self._thread = threading.Thread(target=self._run, args=(self._fd,), name=self.name)
        self._thread.start()
        logger.info("%s: sending %dx%d at %s fps to %s", self.name, *self.size, self.fps, self.url)
        return self

    def _run(self, fd: int) -> None:
        width, height = self.size
        pattern = _background(width, height)
        frame = np.full(width * height * 3 // 2, 128, dtype=np.uint8)  # U and V stay grey
        luma = frame[: width * height].reshape(height, width)
        view = frame.data
        step = max(1, width // 160)
        offset = 0
        period = 1.0 / self.fps
        next_mono = time.monotonic()
        while not self._stop_event.is_set():
            np.copyto(luma, pattern[:, offset : offset + width])
            offset = (offset + step) % width
            send_time = time.time()
            encode_stamp(luma, send_time)
            try:
                self._write_all(fd, view)
            except OSError as exc:
                self._fail(exc)
                return
            self._frames_sent += 1
            next_mono += period
            delay = next_mono - time.monotonic()
            if delay < -period:  # fell behind (stalled pipe): skip ahead rather than burst
                next_mono = time.monotonic()
            elif delay > 0 and self._stop_event.wait(delay):
                return

    @staticmethod
    def _write_all(fd: int, view: memoryview) -> None:
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def _fail(self, exc: OSError) -> None:
        assert self._sender is not None
        if self._stop_event.is_set():  # stop() killed ffmpeg under a blocked write
            logger.debug("%s: write ended by stop: %s", self.name, exc)
            return
        tail = " | ".join(self._sender.stderr_tail[-5:]) or "(no output)"
        self._error = SourceError(
            f"{self.name}: ffmpeg stopped reading frames after {self._frames_sent} "
            f"(exit status {self._sender.returncode}): {tail}"
        )
        self._error.__cause__ = exc
        logger.error("%s: ffmpeg stopped reading frames: %s; stderr: %s", self.name, exc, tail)

    def close(self) -> None:
        """Stop the frame thread and ffmpeg; idempotent."""
        self._closed = True
        self._stop_event.set()
        thread, sender = self._thread, self._sender
        if thread is not None:
            thread.join(self._join_timeout)
            if thread.is_alive() and sender is not None:
                logger.warning("%s: frame thread blocked on ffmpeg, stopping ffmpeg", self.name)
                sender.close()
                thread.join(self._join_timeout)
            if thread.is_alive():
                logger.error("%s: frame thread did not end; leaking its pipe", self.name)
                self._fd = None
        if self._fd is not None:
            os.close(self._fd)  # with stdin closed too, ffmpeg sees end of input
            self._fd = None
        if sender is not None:
            sender.close()
        logger.debug("%s: stopped after %d frames", self.name, self._frames_sent)

    def stop(self) -> None:
        """Deprecated name of :meth:`close` (warns with :class:`DeprecationWarning`)."""
        warnings.warn(
            "StampSender.stop() is deprecated, use close()", DeprecationWarning, stacklevel=2
        )
        self.close()

    def __enter__(self) -> StampSender:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
