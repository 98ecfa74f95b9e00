"""Segment files of one camera: where segments start, and the thread that writes them.

:class:`SegmentPlan` decides, for each packet or frame in order, the number of the segment
it goes to: a segment starts at a keyframe, once the current one holds ``seconds`` of
stream time or about ``max_bytes`` of MPEG-TS. It is pure (no threads, no I/O), so the
camera's reader thread can run it and the index knows each frame's segment at once.

:class:`SegmentWriter` owns one camera's writer thread. It takes numbered items from a
bounded queue and writes MPEG-TS files: ``copy`` muxes the packets as they were received
(no decoding, no encoding: the timestamps and bytes stay those of the camera), ``encode``
encodes decoded frames with libx264 for cameras whose stream cannot be copied.
"""

from __future__ import annotations

import logging
import math
import os
import pathlib
import stat
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType

import av
import av.error
from av.container import OutputContainer
from av.stream import Stream
from av.video.stream import VideoStream as AvVideoStream

from ...errors import RecordingError
from ...frames import Frame
from ...recording.index import TICKS_PER_SECOND, RecordingMode, segment_path
from ...recording.writer import recording_error
from ...sources.base import EncodedPacket
from .packets import with_parameter_sets

__all__ = ["PacketItem", "PictureItem", "SegmentPlan", "SegmentWriter"]

logger = logging.getLogger(__name__)

_TS_PACKET, _TS_PAYLOAD, _PES_HEADER = 188, 184, 14
# -mpegts_copyts: keep the camera's timestamps (no shift by the muxer's delay);
# flush_packets: each packet reaches the OS at once, so a crash loses little and a full
# disk is reported on the packet that hit it.
_MUX_OPTIONS = {"mpegts_copyts": "1", "flush_packets": "1"}
_ENCODER_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency", "g": "30"}
_TS_TIME_BASE = Fraction(1, TICKS_PER_SECOND)
_JOIN_TIMEOUT = 5.0


def ts_size(payload: int) -> int:
    """About how many bytes MPEG-TS takes to carry ``payload`` bytes of one picture."""
    if payload <= 0:
        return 0
    return _TS_PACKET * math.ceil((payload + _PES_HEADER) / _TS_PAYLOAD)


class SegmentPlan:
    """Numbers segments (from 1) for a stream of units in decoding order; pure logic.

    A segment starts at a keyframe: the first one, a forced one (``restart``: the stream's
    parameters changed or its timestamps went back), or the first after the current
    segment reached ``seconds`` of stream time or ``max_bytes``. After :meth:`gap` (units
    were lost) units are refused until the next keyframe, which continues the segment.
    """

    def __init__(self, seconds: float | None, max_bytes: int | None) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.segment = 0
        self.bytes = 0
        self._start: float | None = None
        self._waiting = True

    def place(self, time: float, *, keyframe: bool, size: int, restart: bool = False) -> int | None:
        """The segment for a unit at stream ``time`` (s) of ``size`` bytes; None: drop it."""
        if not keyframe:
            if self._waiting or restart:
                self._waiting = True
                return None
        elif self._cut(time, restart):
            self.segment += 1
            self._start = time
            self.bytes = 0
        self._waiting = False
        self.bytes += ts_size(size)
        return self.segment

    def _cut(self, time: float, restart: bool) -> bool:
        if self.segment == 0 or restart or self._start is None:
            return True
        if self.seconds is not None and time - self._start >= self.seconds:
            return True
        return self.max_bytes is not None and self.bytes >= self.max_bytes

    def gap(self) -> None:
        """Units were lost: wait for the next keyframe."""
        self._waiting = True

    def observe(self, segment: int, written: int) -> None:
        """The writer reports that the file of ``segment`` holds ``written`` bytes."""
        if segment == self.segment:
            self.bytes = max(self.bytes, written)


@dataclass(frozen=True, slots=True)
class PacketItem:
    """A received packet for segment ``segment`` (``copy``)."""

    segment: int
    packet: EncodedPacket


@dataclass(frozen=True, slots=True)
class PictureItem:
    """A decoded frame for segment ``segment``, stamped ``ticks`` (90 kHz) (``encode``)."""

    segment: int
    ticks: int
    frame: Frame
    width: int
    height: int


class SegmentWriter:
    """Writes one camera's segments in its own thread, fed through a bounded queue.

    :meth:`put` never blocks: with the queue full it refuses the item (the caller counts
    it and waits for the next keyframe). A failure to write (a full disk, an unwritable
    directory) is handed to ``on_error`` as a :class:`RecordingError` and ends the thread.
    """

    def __init__(
        self,
        directory: pathlib.Path,
        camera: str,
        mode: RecordingMode,
        *,
        queue_size: int,
        on_error: Callable[[RecordingError], None],
    ) -> None:
        self.directory = directory
        self.camera = camera
        self.mode: RecordingMode = mode
        self.queue_size = queue_size
        self._on_error = on_error
        self._cond = threading.Condition()
        self._queue: deque[PacketItem | PictureItem] = deque()
        self._closing = False
        self._aborted = False
        self._thread: threading.Thread | None = None
        self._container: OutputContainer | None = None
        self._stream: Stream | None = None
        self._number = 0
        self._path: pathlib.Path | None = None
        #: Packets muxed (``copy``) or frames encoded (``encode``).
        self.written = 0
        #: (segment, bytes of its file so far): for the size limit and the stats.
        self.progress = (0, 0)
        self._finished_bytes = 0

    def start(self) -> SegmentWriter:
        """Start the writer thread; idempotent. A closed writer cannot restart."""
        with self._cond:
            if self._closing or self._aborted:
                raise RecordingError(f"camera {self.camera}: segment writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"syncstream-recorder:{self.camera}", daemon=True
                )
                self._thread.start()
        return self

    def put(self, item: PacketItem | PictureItem) -> bool:
        """Queue ``item``; False when the queue is full or the writer stopped."""
        with self._cond:
            if self._closing or self._aborted or len(self._queue) >= self.queue_size:
                return False
            self._queue.append(item)
            self._cond.notify()
            return True

    @property
    def bytes(self) -> int:
        """Bytes in this camera's segment files."""
        return self._finished_bytes + self.progress[1]

    @property
    def queued(self) -> int:
        """Items waiting to be written."""
        return len(self._queue)

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Write what is queued, finish the segment and join the thread; idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._join(timeout)

    def __enter__(self) -> SegmentWriter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def abort(self) -> None:
        """Drop what is queued and stop soon (the recording failed); does not wait."""
        with self._cond:
            self._aborted = True
            self._queue.clear()
            self._cond.notify_all()

    def _join(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s: recorder writer still busy after %.1f s", self.camera, timeout)

    # -- writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not (self._closing or self._aborted):
                        self._cond.wait()
                    if self._aborted or not self._queue:
                        break
                    item = self._queue.popleft()
                self._write(item)
            if self._aborted:
                self._abandon()
            else:
                self._finish()
        except RecordingError as exc:
            self._abandon(failed=True)
            self._on_error(exc)
        except Exception as exc:  # a bug must reach the recorder, not vanish with the thread
            logger.exception("%s: recorder writer crashed", self.camera)
            self._abandon(failed=True)
            error = recording_error(f"camera {self.camera}: writer crashed", exc)
            error.__cause__ = exc
            self._on_error(error)

    def _write(self, item: PacketItem | PictureItem) -> None:
        if item.segment != self._number:
            self._finish()
            self._open(item)
        path = self._path
        assert path is not None
        try:
            if isinstance(item, PacketItem):
                self._mux(item.packet)
            else:
                self._encode(item)
            # each packet is flushed (flush_packets), so the file's size is exact
            self.progress = (self._number, path.stat().st_size)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise recording_error(f"camera {self.camera}: writing {path}", exc) from exc

    def _open(self, item: PacketItem | PictureItem) -> None:
        path = segment_path(self.directory, self.camera, item.segment)
        self._number, self._path = item.segment, path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            container = av.open(str(path), mode="w", format="mpegts", options=_MUX_OPTIONS)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise recording_error(f"camera {self.camera}: creating {path}", exc) from exc
        assert isinstance(container, OutputContainer)
        self._container = container
        try:
            if isinstance(item, PacketItem):
                fmt = item.packet.format
                stream = container.add_mux_stream(fmt.codec, width=fmt.width, height=fmt.height)
                stream.time_base = fmt.time_base
            else:
                stream = container.add_stream("libx264", options=dict(_ENCODER_OPTIONS))
                assert isinstance(stream, AvVideoStream)
                stream.width, stream.height, stream.pix_fmt = item.width, item.height, "yuv420p"
                stream.time_base = _TS_TIME_BASE
                stream.codec_context.time_base = _TS_TIME_BASE
        except (av.FFmpegError, ValueError) as exc:
            raise recording_error(f"camera {self.camera}: setting up {path}", exc) from exc
        self._stream = stream
        self.progress = (item.segment, 0)
        logger.debug("%s: recording to %s", self.camera, path)

    def _mux(self, received: EncodedPacket) -> None:
        assert self._container is not None and self._stream is not None
        packet = av.Packet(with_parameter_sets(received))
        packet.pts = received.pts
        packet.dts = received.dts if received.dts is not None else received.pts
        packet.time_base = received.format.time_base
        packet.is_keyframe = received.is_keyframe
        packet.stream = self._stream
        self._container.mux_one(packet)
        self.written += 1

    def _encode(self, item: PictureItem) -> None:
        stream = self._stream
        assert self._container is not None and isinstance(stream, AvVideoStream)
        picture = av.VideoFrame.from_ndarray(item.frame.image, format="bgr24")
        picture.pts = item.ticks
        picture.time_base = _TS_TIME_BASE
        for packet in stream.encode(picture):
            self._container.mux_one(packet)
        self.written += 1

    def _finish(self, cut_to: int | None = None) -> None:
        """Flush the encoder, close the open segment and fsync it, so that a failure to
        write shows here; errors are RecordingErrors.

        ``cut_to``: writing failed; close without writing more (a failure to is only
        logged) and cut the file back to ``cut_to`` bytes, the end of its last whole packet.
        """
        container, self._container = self._container, None
        if container is None:
            return
        stream, path = self._stream, self._path
        self._stream = None
        try:
            if cut_to is not None:
                _close_quietly(container, self.camera)
                _cut(path, cut_to)
            else:
                if self.mode == "encode" and isinstance(stream, AvVideoStream):
                    for packet in stream.encode(None):
                        container.mux_one(packet)
                container.close()
            self._finished_bytes += _sync(path)
            self.progress = (self._number, 0)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise recording_error(f"camera {self.camera}: finishing {path}", exc) from exc

    def _abandon(self, *, failed: bool = False) -> None:
        """Close the open segment when the recording stops: after a failure of this
        writer (``failed``), or of another; a failure to close is only logged, and the
        file is cut back to its last whole packet."""
        last_whole = self.progress[1] if self.progress[0] == self._number else 0
        try:
            self._finish(last_whole if failed else None)
        except RecordingError as exc:
            logger.warning("%s: %s (after the recording stopped)", self.camera, exc)
            if not failed and self._path is not None:
                try:
                    _cut(self._path, last_whole)
                except OSError as cut_error:
                    logger.warning("%s: cannot cut %s: %s", self.camera, self._path, cut_error)


def _close_quietly(container: OutputContainer, camera: str) -> None:
    """Close a container whose writing failed; a second failure is only logged."""
    try:
        container.close()
    except (av.FFmpegError, OSError, ValueError) as exc:
        logger.warning("%s: closing the segment after the failure: %s", camera, exc)


def _cut(path: pathlib.Path | None, size: int) -> None:
    """Cut the regular file ``path`` to ``size`` bytes if it is longer."""
    if path is None:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_size > size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _sync(path: pathlib.Path | None) -> int:
    """fsync the regular file ``path``; its size (0: absent, or not a regular file)."""
    if path is None:
        return 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return 0
        os.fsync(fd)
        return info.st_size
    finally:
        os.close(fd)
