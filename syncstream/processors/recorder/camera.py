"""One camera's part of a recording: how it is stored, and the segment of each frame.

A :class:`CameraRecorder` is fed from two threads: the camera's reader thread hands it
every encoded packet (:meth:`CameraRecorder.on_packet`, the ``copy`` path), and the
recorder's worker asks it for the segment of each frame of a set
(:meth:`CameraRecorder.segment_of`), which on the ``encode`` path also queues the frame to
be encoded. Both only decide and enqueue; the camera's
:class:`~syncstream.processors.recorder.segments.SegmentWriter` does the writing.
"""

from __future__ import annotations

import logging
import pathlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import RecordingError
from ...frames import Frame
from ...recording.index import CameraLine, RecordingMode, frame_key, to_ticks
from ...sources.base import EncodedPacket, PacketFormat
from .packets import can_copy
from .segments import PacketItem, PictureItem, SegmentPlan, SegmentWriter

__all__ = ["CameraRecorder", "CameraRecordingStats"]

logger = logging.getLogger(__name__)

#: Packets remembered to tell a frame's segment (about 30 s at 30 fps).
_RECENT_PACKETS = 1024


@dataclass(frozen=True)
class CameraRecordingStats:
    """A snapshot of one camera's recording."""

    name: str
    #: ``"copy"``, ``"encode"``, or None before the camera delivered anything.
    mode: RecordingMode | None
    #: Number of the current segment (segments started so far).
    segment: int
    #: Packets muxed (copy) or frames encoded (encode).
    written: int
    #: Bytes in the camera's segment files.
    bytes: int
    #: Items waiting in the writer's queue.
    queued: int
    #: Lost because the writer's queue was full (recording resumes at the next keyframe).
    dropped: int
    #: Packets before the first keyframe (or after a reconnect), or without timestamps.
    skipped: int
    #: Frames of recorded sets that the segments do not hold (their ``segment`` is null).
    unrecorded: int


class CameraRecorder:
    """Decides where one camera's packets or frames go and queues them for its writer.

    The mode is settled by the first thing the camera delivers: a packet MPEG-TS can carry
    means ``copy``; a packet it cannot carry, or a frame without packets before it (MJPEG,
    framed JPEG, OpenCV sources), means ``encode``. ``on_camera_line`` receives the
    camera's index line when the mode is settled, before any frame refers to a segment.
    """

    def __init__(
        self,
        directory: pathlib.Path,
        name: str,
        plan: SegmentPlan,
        *,
        queue_size: int,
        on_error: Callable[[RecordingError], None],
        on_camera_line: Callable[[CameraLine], None],
    ) -> None:
        self.directory = directory
        self.name = name
        self.queue_size = queue_size
        self._on_error = on_error
        self._on_camera_line = on_camera_line
        self._lock = threading.Lock()
        self._plan = plan
        self._mode: RecordingMode | None = None
        self._writer: SegmentWriter | None = None
        self._stopped = False
        # copy: the last packet's format (by identity), the last recorded one, its dts
        self._seen_format: PacketFormat | None = None
        self._format: PacketFormat | None = None
        self._last_dts: int | None = None
        self._recent: dict[int, int] = {}  # 90 kHz pts of recorded packets -> segment
        self._recent_order: deque[int] = deque()
        # encode: the last frame queued, its timestamp and segment, the picture size
        self._last_frame: Frame | None = None
        self._last_key = 0.0
        self._last_segment: int | None = None
        self._size: tuple[int, int] | None = None
        self._dropped = 0
        self._skipped = 0
        self._unrecorded = 0

    # -- packets (the camera's reader thread) -------------------------------------------

    def on_packet(self, packet: EncodedPacket) -> None:
        """Queue ``packet`` for its segment (``copy``); returns at once."""
        with self._lock:
            if self._stopped:
                return
            if self._mode is None:
                fmt = packet.format
                if can_copy(packet):
                    self._start("copy", fmt.codec, fmt.width, fmt.height)
                else:
                    self._mode = "encode"
                    logger.info("%s: %s packets cannot be copied; encoding", self.name, fmt.codec)
            if self._mode == "copy":
                self._record(packet)

    def _record(self, packet: EncodedPacket) -> None:
        fmt, writer = packet.format, self._writer
        assert writer is not None
        if fmt is not self._seen_format:
            self._seen_format = fmt
            self._plan.gap()  # a new connection: its decoder waits for a keyframe, so do we
        dts = packet.dts if packet.dts is not None else packet.pts
        pts_time = packet.pts_time
        if dts is None or pts_time is None:
            self._skipped += 1
            return
        went_back = self._last_dts is not None and dts <= self._last_dts
        self._plan.observe(*writer.progress)
        segment = self._plan.place(
            dts * fmt.time_base.numerator / fmt.time_base.denominator,
            keyframe=packet.is_keyframe,
            size=len(packet.data),
            restart=fmt != self._format or went_back,
        )
        if segment is None:
            self._skipped += 1
            return
        if not writer.put(PacketItem(segment, packet)):
            self._dropped += 1
            self._plan.gap()
            return
        self._format, self._last_dts = fmt, dts
        ticks = to_ticks(pts_time)
        if ticks not in self._recent:
            self._recent_order.append(ticks)
            if len(self._recent_order) > _RECENT_PACKETS:
                self._recent.pop(self._recent_order.popleft(), None)
        self._recent[ticks] = segment

    # -- frames (the recorder's worker) -------------------------------------------------

    def segment_of(self, frame: Frame) -> int | None:
        """The segment holding ``frame`` (queued for encoding first with ``encode``);
        None when it is not recorded."""
        with self._lock:
            segment: int | None = None
            if not self._stopped:
                if self._mode != "copy":  # no packets, or none MPEG-TS can carry: encode
                    segment = self._encode(frame)
                elif frame.pts_time is not None:
                    segment = self._recent.get(to_ticks(frame.pts_time))
            if segment is None:
                self._unrecorded += 1
            return segment

    def _encode(self, frame: Frame) -> int | None:
        if frame is self._last_frame:
            return self._last_segment  # the same frame in two sets: stored once
        key = frame_key("encode", frame.pts_time, frame.arrival_time)
        assert key is not None
        width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
        if (self._last_frame is not None and key <= self._last_key) or min(width, height) < 2:
            self._skipped += 1
            return None
        writer = self._writer or self._start("encode", "h264", width, height)
        self._plan.observe(*writer.progress)
        restart = self._size is not None and self._size != (width, height)
        segment = self._plan.place(key, keyframe=True, size=0, restart=restart)
        assert segment is not None
        if not writer.put(PictureItem(segment, to_ticks(key), frame, width, height)):
            self._dropped += 1
            return None
        self._last_frame, self._last_key, self._last_segment = frame, key, segment
        self._size = (width, height)
        return segment

    # -- life cycle ---------------------------------------------------------------------

    def _start(self, mode: RecordingMode, codec: str, width: int, height: int) -> SegmentWriter:
        writer = SegmentWriter(
            self.directory, self.name, mode, queue_size=self.queue_size, on_error=self._on_error
        )
        self._mode, self._writer = mode, writer
        self._on_camera_line(
            CameraLine(camera=self.name, mode=mode, codec=codec, width=width, height=height)
        )
        logger.info("%s: recording (%s, %s %dx%d)", self.name, mode, codec, width, height)
        return writer.start()

    def close(self, timeout: float) -> None:
        """Take nothing more; write what is queued and finish the segment."""
        with self._lock:
            self._stopped = True
            writer = self._writer
        if writer is not None:
            writer.close(timeout)

    def abort(self) -> None:
        """Take nothing more and drop what is queued (the recording failed)."""
        with self._lock:
            self._stopped = True
            writer = self._writer
        if writer is not None:
            writer.abort()

    @property
    def stats(self) -> CameraRecordingStats:
        """A snapshot of the counters."""
        with self._lock:
            writer = self._writer
            return CameraRecordingStats(
                name=self.name,
                mode=self._mode,
                segment=self._plan.segment,
                written=0 if writer is None else writer.written,
                bytes=0 if writer is None else writer.bytes,
                queued=0 if writer is None else writer.queued,
                dropped=self._dropped,
                skipped=self._skipped,
                unrecorded=self._unrecorded,
            )
