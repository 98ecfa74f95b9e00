"""Replay of a recording: the frame sets a :class:`~syncstream.processors.Recorder` wrote.

:class:`Recording` reads a recording directory (the index and the segments, see
:mod:`syncstream.recording.index`) and yields the frame sets that were recorded, with the
same set and frame numbers, capture times, skew and missing cameras, and the pictures
decoded from the segments: with ``copy`` the very packets the cameras sent, so each
picture equals the one the live group decoded.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
from collections.abc import Generator, Iterator, Mapping
from functools import partial
from types import TracebackType
from typing import Any

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame

from ..frames import BGRImage, Frame, FrameSet
from .index import (
    INDEX_NAME,
    MAX_LINE_BYTES,
    PTS_MODULUS,
    TICKS_PER_SECOND,
    CameraLine,
    EndLine,
    HeaderLine,
    IndexReader,
    SetLine,
    check_camera_name,
    frame_key,
    segment_path,
    to_ticks,
)

__all__ = ["Recording"]

logger = logging.getLogger(__name__)


def _to_bgr(frame: VideoFrame) -> BGRImage:
    image = frame.to_ndarray(format="bgr24")
    assert image.dtype == np.uint8
    return image  # type: ignore[return-value]


class Recording:
    """A recording made by :class:`~syncstream.processors.Recorder`, replayed as frame sets.

    >>> with Recording("rec") as recording:  # doctest: +SKIP
    ...     for fs in recording:
    ...         print(fs.seq, fs.skew, fs["door"].capture_time, fs["door"].image.shape)

    :meth:`open` (or ``with``) reads and checks the whole index: a bad line raises
    :class:`~syncstream.errors.RecordingError` naming the file and line. Only a last line
    cut short (the recorder was killed while writing it) is skipped, with a warning.
    Iterating decodes the segments and yields one :class:`~syncstream.FrameSet` per set
    line, with the recorded numbers and timestamps. A frame the segments do not hold
    (dropped while recording, or a segment cut short) leaves its camera missing from the
    replayed set; :attr:`unavailable` counts those.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        """Describe the recording in ``directory``; nothing is read before :meth:`open`."""
        self.directory = pathlib.Path(directory)
        self.index_path = self.directory / INDEX_NAME
        self.max_line_bytes = max_line_bytes
        self._index: IndexReader | None = None
        #: Recorded frames that the segments did not hold, over all iterations.
        self.unavailable = 0

    def open(self) -> Recording:
        """Read and check the whole index; idempotent. Raises RecordingError."""
        if self._index is None:
            index = IndexReader(self.index_path, max_line_bytes=self.max_line_bytes)
            for _ in index:
                pass
            self._index = index
        return self

    def __enter__(self) -> Recording:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Nothing to release: segments are open only while a replay runs."""

    def _checked(self) -> IndexReader:
        self.open()
        assert self._index is not None
        return self._index

    @property
    def header(self) -> HeaderLine:
        """The header line: the cameras in order, the start time, the segment limits."""
        header = self._checked().header
        assert header is not None
        return header

    @property
    def cameras(self) -> tuple[str, ...]:
        """The group's camera names, in order."""
        return self.header.cameras

    @property
    def camera_lines(self) -> Mapping[str, CameraLine]:
        """How each recorded camera is stored (mode, codec, size); absent: never recorded."""
        return dict(self._checked().cameras)

    @property
    def end(self) -> EndLine | None:
        """The end line; None when the recorder did not close (killed, or still running)."""
        return self._checked().end

    @property
    def truncated(self) -> bool:
        """True when the last line was cut short and skipped."""
        return self._checked().truncated

    def __len__(self) -> int:
        """Number of frame sets in the index."""
        return self._checked().sets

    def sets(self) -> Iterator[SetLine]:
        """The set lines, checked, without decoding anything."""
        return iter(IndexReader(self.index_path, max_line_bytes=self.max_line_bytes))

    def segments(self, camera: str) -> list[pathlib.Path]:
        """The segment files of ``camera`` on disk, in order."""
        folder = self.directory / check_camera_name(camera)
        pattern = re.compile(rf"{re.escape(camera)}-\d+\.ts")
        return sorted(p for p in folder.glob("*.ts") if pattern.fullmatch(p.name))

    def __iter__(self) -> Iterator[FrameSet]:
        """Decode the segments and yield the recorded frame sets, in order."""
        stored = self._checked().cameras
        readers: dict[str, _SegmentReader] = {}
        try:
            for line in self.sets():
                yield self._frameset(line, stored, readers)
        finally:
            for reader in readers.values():
                reader.close()

    def _frameset(
        self, line: SetLine, stored: Mapping[str, CameraLine], readers: dict[str, _SegmentReader]
    ) -> FrameSet:
        frames: dict[str, Frame] = {}
        for name in self.cameras:
            entry = line.frames.get(name)
            camera = stored.get(name)
            if entry is None or camera is None:
                continue
            key = frame_key(camera.mode, entry.pts_time, entry.arrival_time)
            picture = None
            if entry.segment is not None and key is not None:
                reader = readers.get(name)
                if reader is None:
                    reader = readers[name] = _SegmentReader(self.directory, name)
                picture = reader.find(entry.segment, to_ticks(key))
            if picture is None:
                self.unavailable += 1
                continue
            frames[name] = Frame(
                source=name,
                seq=entry.seq,
                width=picture.width,
                height=picture.height,
                arrival_time=entry.arrival_time,
                arrival_mono=entry.arrival_mono,
                capture_time=entry.capture_time,
                pts_time=entry.pts_time,
                convert=partial(_to_bgr, picture),
            )
        return FrameSet(
            seq=line.seq,
            frames=frames,
            missing=tuple(name for name in self.cameras if name not in frames),
            skew=line.skew,
            time=line.time,
            clock=line.clock,
            emitted_time=line.emitted_time,
            emitted_mono=line.emitted_mono,
        )

    def __repr__(self) -> str:
        return f"Recording({str(self.directory)!r})"


def _tick_difference(a: int, b: int) -> int:
    """``a - b`` for timestamps written modulo 2**33 (the nearest of the wrapped values)."""
    difference = (a - b) % PTS_MODULUS
    return difference - PTS_MODULUS if difference >= PTS_MODULUS // 2 else difference


class _SegmentReader:
    """Decodes one camera's segments forward, finding frames by their 90 kHz timestamp."""

    def __init__(self, directory: pathlib.Path, camera: str) -> None:
        self.directory = directory
        self.camera = camera
        self._number = 0  # the segment being read (0: none yet)
        self._frames: Generator[tuple[int, VideoFrame], None, None] | None = None
        self._ahead: tuple[int, VideoFrame] | None = None
        self._last: tuple[int, int, VideoFrame] | None = None

    def find(self, number: int, ticks: int) -> VideoFrame | None:
        """The frame of segment ``number`` at ``ticks`` (within one tick), or None."""
        last = self._last
        if last is not None and last[0] == number and abs(_tick_difference(last[1], ticks)) <= 1:
            return last[2]  # the same frame in two sets
        if number != self._number:
            self._open(number)
        while True:
            item, self._ahead = self._ahead, None
            if item is None and self._frames is not None:
                item = next(self._frames, None)
            if item is None:
                return None
            difference = _tick_difference(item[0], ticks)
            if abs(difference) <= 1:
                self._last = (number, item[0], item[1])
                return item[1]
            if difference > 1:  # past it: the wanted frame is not in the segment
                self._ahead = item
                return None

    def _open(self, number: int) -> None:
        self.close()
        self._number = number
        path = segment_path(self.directory, self.camera, number)
        if path.exists():
            self._frames = _decode(path, self.camera)
        else:
            logger.warning("%s: segment %s is missing", self.camera, path)

    def close(self) -> None:
        """Close the open segment."""
        frames, self._frames, self._ahead = self._frames, None, None
        if frames is not None:
            frames.close()


def _decode(path: pathlib.Path, camera: str) -> Generator[tuple[int, VideoFrame], None, None]:
    """(90 kHz timestamp, frame) for each frame of a segment; damaged packets are skipped."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        logger.warning("%s: cannot open segment %s: %s", camera, path, exc)
        return
    assert isinstance(container, InputContainer)
    with container:
        if not container.streams.video:
            logger.warning("%s: segment %s has no video", camera, path)
            return
        stream = container.streams.video[0]
        packets: Iterator[Any] = container.demux(stream)
        while True:
            try:
                packet = next(packets, None)
                if packet is None:
                    return
                decoded = packet.decode()
            except av.error.InvalidDataError as exc:
                logger.warning("%s: damaged data in %s: %s", camera, path, exc)
                continue
            except av.FFmpegError as exc:
                logger.warning("%s: cannot read segment %s further: %s", camera, path, exc)
                return
            for frame in decoded:
                if isinstance(frame, VideoFrame) and frame.pts is not None and frame.time_base:
                    yield round(frame.pts * frame.time_base * TICKS_PER_SECOND), frame
