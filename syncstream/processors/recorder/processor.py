"""Recorder: each camera to segment files, and an index that replays into the same sets.

The recorder taps the cameras' encoded packets in their reader threads (see
:meth:`StreamGroup.add_packet_listener`) and copies them, unchanged, into numbered MPEG-TS
segments, one writer thread per camera; a camera whose source gives no packets, or
packets MPEG-TS cannot carry, has the frames of its sets encoded again instead (see
:mod:`syncstream.processors.recorder.camera`). Called with each frame set, it appends one
line to ``index.jsonl`` naming each camera's frame and the segment holding it.
:class:`~syncstream.recording.Recording` replays the result; the layout and the index
schema are in :mod:`syncstream.recording.index`.
"""

from __future__ import annotations

import logging
import os
import pathlib
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from pydantic import Field

from ...errors import RecordingError
from ...frames import Frame, FrameSet
from ...recording.index import (
    INDEX_NAME,
    CameraLine,
    FrameEntry,
    HeaderLine,
    SetLine,
    check_camera_name,
)
from ...recording.writer import IndexWriter
from ...sources.base import EncodedPacket
from ..settings import ProcessorSettings
from .camera import CameraRecorder, CameraRecordingStats
from .segments import SegmentPlan

if TYPE_CHECKING:
    from ..group_view import GroupView

__all__ = ["CameraRecordingStats", "Recorder", "RecorderOptions", "RecorderStats"]

logger = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 5.0


class RecorderOptions(ProcessorSettings):
    """The options of a :class:`Recorder`: its constructor's keywords and, with the
    directory, the session file's ``[record]`` table."""

    segment_seconds: float | None = Field(
        default=60.0, gt=0, description="Start a new segment after this much stream time."
    )
    segment_bytes: int | None = Field(
        default=None, gt=0, description="Start a new segment after this many bytes."
    )
    queue_size: int = Field(
        default=300,
        ge=1,
        description="Packets (or frames) that may wait per camera; dropped (counted) beyond.",
    )
    flush_interval: float = Field(
        default=1.0, ge=0, description="Seconds between writes (and fsyncs) of the index."
    )


@dataclass(frozen=True)
class RecorderStats:
    """A snapshot of a recorder's counters."""

    directory: str
    #: Set lines on disk (written and fsynced): the sets a replay yields. Sets reach the
    #: disk every ``flush_interval`` seconds, so this lags the sets the recorder was given.
    sets: int
    #: Sets given to the recorder that are not recorded because it stopped on an error
    #: (those given after it, and those whose lines could not be written).
    lost_sets: int
    #: True from :meth:`Recorder.attach` until it stops (closed, or an error).
    recording: bool
    error: str | None
    cameras: dict[str, CameraRecordingStats]


class Recorder:
    """A processor that records a :class:`~syncstream.StreamGroup` into ``directory``.

    >>> with StreamGroup(cams) as group:  # doctest: +SKIP
    ...     recorder = Recorder("rec", segment_seconds=60.0)
    ...     group.add_processor(recorder)
    ...     group.wait(timeout=30.0)

    Each camera's stream is copied as it was received into ``<camera>/<camera>-NNNNNN.ts``
    segments; a new segment starts at the first keyframe after ``segment_seconds`` of
    stream time or about ``segment_bytes`` bytes (None: no limit). ``queue_size`` packets
    (or frames) may wait per camera; beyond that they are dropped, counted, and recording
    resumes at the next keyframe. The index is written to disk (and fsynced) every
    ``flush_interval`` seconds; a set counts as recorded (:attr:`stats`) once it is.

    A failure to write (a full disk, an unwritable directory) stops the whole recording:
    :attr:`error` holds the :class:`RecordingError`; the next call finishes the segments
    (cut back to their last whole packet) and the index (cut back to its last whole line,
    then its end line) and raises it, once (the group's worker logs and counts it and, with
    ``on_error="log"``, goes on); later sets are counted as lost. The group and its other
    processors are not affected. Calling the recorder after :meth:`close` raises
    ``RecordingError``. The directory must not hold a recording.
    """

    #: Copies encoded packets; only sources without them are converted, in each camera's
    #: writer thread. So the group need not convert pictures for it (GroupConfig.convert).
    uses_pictures = False
    #: It records the cameras' main streams (the packets of further roles are not kept).
    role = "main"
    #: Its worker's name in a group (``group.stats.processors["recorder"]``).
    name = "recorder"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_seconds: float | None = 60.0,
        segment_bytes: int | None = None,
        queue_size: int = 300,
        flush_interval: float = 1.0,
    ) -> None:
        """Describe the recording; nothing is created before :meth:`attach`.

        Raises :class:`~syncstream.errors.ConfigError` for a limit beyond those of
        :class:`RecorderOptions` (kept in :attr:`options`).
        """
        self.options = RecorderOptions.check(
            "recorder",
            segment_seconds=segment_seconds,
            segment_bytes=segment_bytes,
            queue_size=queue_size,
            flush_interval=flush_interval,
        )
        self.directory = pathlib.Path(directory)
        self.segment_seconds = self.options.segment_seconds
        self.segment_bytes = self.options.segment_bytes
        self.queue_size = self.options.queue_size
        self._index = IndexWriter(
            self.directory / INDEX_NAME,
            flush_interval=self.options.flush_interval,
            on_error=self._on_error,
        )
        self._lock = threading.Lock()
        self._finish_lock = threading.Lock()
        self._finished = False
        self._cameras: dict[str, CameraRecorder] = {}
        self._pending: deque[CameraLine] = deque()  # appended by any thread, written in sets
        self._attached = False
        self._closed = False
        self._error: RecordingError | None = None
        self._reported = False
        self._lost_sets = 0  # sets given after the recording stopped

    @classmethod
    def from_options(cls, directory: str | os.PathLike[str], options: RecorderOptions) -> Recorder:
        """A recorder into ``directory`` with ``options`` (a session's ``[record]`` table)."""
        return cls(directory, **options.model_dump(include=set(RecorderOptions.model_fields)))

    # -- life cycle -------------------------------------------------------------------

    def attach(self, group: GroupView) -> None:
        """Create the directory and the index, and tap the group's packets.

        Called by :meth:`StreamGroup.add_processor`. Raises :class:`RecordingError` when
        the directory holds a recording already or cannot be written, when a camera's name
        cannot name a folder, and when the recorder is attached or closed already.
        """
        names = tuple(check_camera_name(name) for name in group.names)
        with self._lock:
            if self._closed:
                raise RecordingError(f"recorder {self.directory}: closed")
            if self._attached:
                raise RecordingError(f"recorder {self.directory}: already attached to a group")
            header = HeaderLine(
                cameras=names,
                start_time=time.time(),
                segment_seconds=self.segment_seconds,
                segment_bytes=self.segment_bytes,
            )
            self._index.open(header)
            self._cameras = {
                name: CameraRecorder(
                    self.directory,
                    name,
                    SegmentPlan(self.segment_seconds, self.segment_bytes),
                    queue_size=self.queue_size,
                    on_error=self._on_error,
                    on_camera_line=self._pending.append,
                )
                for name in names
            }
            self._attached = True
        group.add_packet_listener(self._on_packet)
        logger.info("recording %d cameras to %s", len(names), self.directory)

    def close(self) -> None:
        """Write what is queued, finish the segments and the index; idempotent.

        A recording error not yet raised by a call is logged here.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finish()
        with self._lock:
            error_to_log = None if self._reported else self._error
            self._reported = True
        if error_to_log is not None:
            logger.error("recorder %s: recording stopped: %s", self.directory, error_to_log)
        logger.info("recorder %s: closed after %d sets", self.directory, self._index.sets)

    def _finish(self) -> None:
        """Finish the segments, then the index with its end line; once.

        The segments first: their writers are done when the index's reserve is freed
        for the end line.
        """
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
            for camera in self._cameras.values():
                camera.close(_CLOSE_TIMEOUT)
            with self._lock:
                if self._error is None:
                    try:
                        self._write_pending()
                    except RecordingError as exc:
                        self._error = exc
                error = self._error
            try:
                self._index.close(error=None if error is None else str(error))
            except RecordingError as exc:
                with self._lock:
                    if self._error is None:
                        self._error = exc
                    elif exc is not self._error:
                        logger.warning(
                            "recorder %s: %s (after the recording stopped)", self.directory, exc
                        )

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- frame sets (the processor's worker) --------------------------------------------

    def __call__(self, frameset: FrameSet) -> None:
        """Queue the index line of ``frameset``; cheap: the files are written elsewhere.

        After a failure to write, the first call finishes the recording and raises it.
        """
        with self._lock:
            if self._closed:
                raise RecordingError(f"recorder {self.directory}: closed")
            if not self._attached:
                raise RecordingError(
                    f"recorder {self.directory}: not attached; use group.add_processor(recorder)"
                )
            if self._error is None and self._record(frameset):
                return
            self._lost_sets += 1
            if self._reported:
                return
            self._reported = True
            error = self._error
        assert error is not None
        self._finish()  # outside the lock: it waits for the writers, which report to it
        raise error

    def _record(self, frameset: FrameSet) -> bool:
        """Queue the set's line; False when the recording stopped (``_error`` is set)."""
        frames = {name: self._entry(name, frame) for name, frame in frameset.frames.items()}
        line = SetLine.model_construct(
            seq=frameset.seq,
            time=frameset.time,
            skew=frameset.skew,
            clock=frameset.clock,
            missing=frameset.missing,
            emitted_time=frameset.emitted_time,
            emitted_mono=frameset.emitted_mono,
            frames=frames,
        )
        try:
            self._write_pending()
            self._index.write(line)
        except RecordingError as exc:
            if self._error is None:
                self._error = exc
                self._stop_writers()
            return False
        return True

    def _write_pending(self) -> None:
        while self._pending:
            self._index.write(self._pending.popleft())

    def _entry(self, name: str, frame: Frame) -> FrameEntry:
        camera = self._cameras.get(name)
        return FrameEntry.model_construct(
            seq=frame.seq,
            pts_time=frame.pts_time,
            capture_time=frame.capture_time,
            arrival_time=frame.arrival_time,
            arrival_mono=frame.arrival_mono,
            segment=None if camera is None else camera.segment_of(frame),
        )

    def _on_packet(self, name: str, packet: EncodedPacket) -> None:
        """The group's packet listener, in camera ``name``'s reader thread."""
        camera = self._cameras.get(name)
        if camera is not None:
            camera.on_packet(packet)

    # -- errors -------------------------------------------------------------------------

    def _on_error(self, error: RecordingError) -> None:
        """A segment writer's or the index writer's thread failed: stop recording."""
        with self._lock:
            if self._error is not None:
                if error is not self._error:
                    logger.warning(
                        "recorder %s: %s (after the recording stopped)", self.directory, error
                    )
                return
            self._error = error
        logger.warning("recorder %s: recording stops: %s", self.directory, error)
        self._stop_writers()

    def _stop_writers(self) -> None:
        for camera in self._cameras.values():
            camera.abort()

    @property
    def error(self) -> RecordingError | None:
        """The error that stopped the recording, or None."""
        return self._error

    @property
    def stats(self) -> RecorderStats:
        """A snapshot of the counters."""
        cameras = {name: camera.stats for name, camera in self._cameras.items()}
        with self._lock:
            return RecorderStats(
                directory=str(self.directory),
                sets=self._index.sets,
                lost_sets=self._lost_sets + self._index.lost_sets,
                recording=self._attached and not self._closed and self._error is None,
                error=None if self._error is None else str(self._error),
                cameras=cameras,
            )

    def __repr__(self) -> str:
        return f"Recorder({str(self.directory)!r})"
