"""The index of a recording: its JSON-lines schema, the layout of the files, reading.

A recording directory holds ``index.jsonl`` and one folder of MPEG-TS segments per camera::

    index.jsonl                  one JSON object per line, ``type`` first
    index.reserve                disk space for the end line, while recording
    <camera>/<camera>-000001.ts  the camera's segments, numbered from 1

The index starts with a :class:`HeaderLine`. A :class:`CameraLine` says, before the first
set that holds a recorded frame of the camera, whether its segments hold the stream as it
was received (``copy``) or frames encoded again (``encode``). Each frame set is a
:class:`SetLine`. A recorder that was closed writes an :class:`EndLine` last. A frame is
found again in its segment by its timestamp (:func:`frame_key`) in the 90 kHz units of
MPEG-TS, modulo 2**33 as MPEG-TS writes it. :mod:`syncstream.recording.writer` writes it.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import RecordingError
from ..files import open_regular_file
from ..sync import SyncClock

__all__ = [
    "FORMAT",
    "INDEX_NAME",
    "MAX_LINE_BYTES",
    "PTS_MODULUS",
    "TICKS_PER_SECOND",
    "VERSION",
    "CameraLine",
    "EndLine",
    "FrameEntry",
    "HeaderLine",
    "IndexLine",
    "IndexReader",
    "RecordingMode",
    "SetLine",
    "check_camera_name",
    "frame_key",
    "parse_index_line",
    "segment_path",
    "to_ticks",
]

logger = logging.getLogger(__name__)

FORMAT: Literal["syncstream-recording"] = "syncstream-recording"
VERSION = 1
INDEX_NAME = "index.jsonl"
#: MPEG-TS timestamps: 90 kHz ticks, written modulo 2**33.
TICKS_PER_SECOND = 90_000
PTS_MODULUS = 2**33
#: Longest index line accepted when reading (a set of 64 cameras takes about 15 kB).
MAX_LINE_BYTES = 1 << 20
_MAX_CAMERAS = 1024
_SEGMENT_DIGITS = 6

#: ``copy``: the packets as received, not decoded; ``encode``: decoded frames encoded again.
RecordingMode = Literal["copy", "encode"]
_CameraName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s/\\]+$")]


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class HeaderLine(_Line):
    """First line: what the file is and which cameras the group had, in order."""

    type: Literal["header"] = "header"
    format: Literal["syncstream-recording"] = FORMAT
    version: int = VERSION
    cameras: tuple[_CameraName, ...] = Field(min_length=1, max_length=_MAX_CAMERAS)
    #: Our wall clock when the recorder was attached (epoch seconds).
    start_time: float
    segment_seconds: float | None
    segment_bytes: int | None


class CameraLine(_Line):
    """How one camera is stored; written once, before its first recorded frame."""

    type: Literal["camera"] = "camera"
    camera: _CameraName
    mode: RecordingMode
    #: Codec of the segments (the camera's own with ``copy``, H.264 with ``encode``).
    codec: str = Field(max_length=64)
    width: int = Field(ge=0)
    height: int = Field(ge=0)


class FrameEntry(_Line):
    """One camera's frame in a set: the :class:`~syncstream.Frame` fields, and its segment."""

    seq: int = Field(ge=0)
    #: The raw stream timestamp in seconds (with ``copy``, the key to the frame's packet).
    pts_time: float | None
    capture_time: float | None
    arrival_time: float
    arrival_mono: float
    #: Number of the segment file holding the frame; None when it was not recorded.
    segment: int | None = Field(ge=1)


class SetLine(_Line):
    """One frame set: the :class:`~syncstream.FrameSet` fields and a :class:`FrameEntry`
    per camera present."""

    type: Literal["set"] = "set"
    seq: int = Field(ge=0)
    time: float
    skew: float = Field(ge=0)
    clock: SyncClock
    missing: tuple[_CameraName, ...]
    emitted_time: float
    emitted_mono: float
    frames: dict[_CameraName, FrameEntry]


class EndLine(_Line):
    """Last line of a recording that was closed: how it ended."""

    type: Literal["end"] = "end"
    #: Set lines written.
    sets: int = Field(ge=0)
    #: Our wall clock at close (epoch seconds).
    stop_time: float
    #: Why recording stopped early (a full disk, ...), or None.
    error: str | None


IndexLine = Annotated[HeaderLine | CameraLine | SetLine | EndLine, Field(discriminator="type")]
_INDEX_LINE: TypeAdapter[IndexLine] = TypeAdapter(IndexLine)


def check_camera_name(name: str) -> str:
    """Return ``name`` if it can name a camera's directory; else raise RecordingError."""
    if name in (".", "..") or not re.fullmatch(r"[^\s/\\]{1,64}", name):
        raise RecordingError(f"camera name {name!r} cannot name a directory of a recording")
    return name


def segment_path(directory: str | os.PathLike[str], camera: str, number: int) -> pathlib.Path:
    """Where segment ``number`` (from 1) of ``camera`` lives in a recording directory."""
    name = check_camera_name(camera)
    return pathlib.Path(directory) / name / f"{name}-{number:0{_SEGMENT_DIGITS}d}.ts"


def to_ticks(seconds: float) -> int:
    """Seconds as MPEG-TS 90 kHz ticks."""
    return round(seconds * TICKS_PER_SECOND)


def frame_key(mode: RecordingMode, pts_time: float | None, arrival_time: float) -> float | None:
    """The timestamp (s) a frame carries in its segment, or None when it cannot be stored.

    ``copy`` keeps the packets' own timestamps, so a frame without one cannot be matched;
    ``encode`` stamps each frame with its stream timestamp, or its arrival time without one.
    """
    if mode == "copy":
        return pts_time
    return pts_time if pts_time is not None else arrival_time


def parse_index_line(text: str | bytes, *, where: str = "index") -> IndexLine:
    """Parse and validate one index line; RecordingError names ``where`` and the problem."""
    try:
        return _INDEX_LINE.validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'line'}: {error['msg']}"
            for error in exc.errors()[:3]
        )
        raise RecordingError(f"{where}: not a valid index line: {problems}") from exc


def _read_lines(path: pathlib.Path, max_line_bytes: int) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, line without newline, complete) for each line; capped in length."""
    try:
        # a FIFO or device named index.jsonl is refused, never opened for a blocking read
        with open_regular_file(path, "recording index", error=RecordingError) as file:
            number = 0
            while True:
                number += 1
                line = file.readline(max_line_bytes + 1)
                if not line:
                    return
                complete = line.endswith(b"\n")
                if len(line) > max_line_bytes and not complete:
                    raise RecordingError(
                        f"{path}:{number}: line longer than {max_line_bytes} bytes"
                    )
                yield number, line.rstrip(b"\r\n"), complete
    except OSError as exc:
        if isinstance(exc, RecordingError):
            raise
        raise RecordingError(f"{path}: cannot read the index: {exc}") from exc


class IndexReader:
    """Reads and checks an index line by line; iterating yields the set lines.

    After a full iteration, :attr:`header`, :attr:`cameras` (camera lines), :attr:`sets`,
    :attr:`end` and :attr:`truncated` describe the whole index. A bad line raises
    :class:`RecordingError` naming the file and line; only a last line without its newline
    that does not parse (the recorder died while writing it) is skipped, with a warning,
    and sets :attr:`truncated`. A last line lacking only its newline is read.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES):
        self.path = pathlib.Path(path)
        self.max_line_bytes = max_line_bytes
        self.header: HeaderLine | None = None
        self.cameras: dict[str, CameraLine] = {}
        self.sets = 0
        self.end: EndLine | None = None
        self.truncated = False

    def __iter__(self) -> Iterator[SetLine]:
        """Read the file from its start, checking every line; yield the set lines."""
        for number, text, complete in _read_lines(self.path, self.max_line_bytes):
            where = f"{self.path}:{number}"
            try:
                line = parse_index_line(text, where=where)
            except RecordingError:
                if complete:
                    raise
                logger.warning("%s: last line cut short; skipped", where)
                self.truncated = True
                break
            if isinstance(line, SetLine):
                self._check_set(line, where)
                self.sets += 1
                yield line
            else:
                self._take(line, where)
        if self.header is None:
            cut = " (cut within its first line)" if self.truncated else ""
            raise RecordingError(f"{self.path}: no header line: empty index{cut}")
        if self.end is not None and self.end.sets != self.sets:
            logger.warning(
                "%s: the end line counts %d sets, the index holds %d",
                self.path,
                self.end.sets,
                self.sets,
            )

    def _take(self, line: HeaderLine | CameraLine | EndLine, where: str) -> None:
        if isinstance(line, HeaderLine):
            if self.header is not None:
                raise RecordingError(f"{where}: a second header")
            if line.version != VERSION:
                raise RecordingError(f"{where}: format version {line.version} unsupported")
            if len(set(line.cameras)) != len(line.cameras):
                raise RecordingError(f"{where}: a camera is named twice: {list(line.cameras)}")
            try:
                for name in line.cameras:
                    check_camera_name(name)
            except RecordingError as exc:
                raise RecordingError(f"{where}: {exc}") from exc
            self.header = line
            return
        header = self._require_header(where)
        if self.end is not None:
            raise RecordingError(f"{where}: a line after the end line")
        if isinstance(line, EndLine):
            self.end = line
        elif line.camera not in header.cameras:
            raise RecordingError(f"{where}: unknown camera {line.camera!r}")
        else:
            self.cameras[line.camera] = line

    def _require_header(self, where: str) -> HeaderLine:
        if self.header is None:
            raise RecordingError(f"{where}: the first line must be the header")
        return self.header

    def _check_set(self, line: SetLine, where: str) -> None:
        cameras = self._require_header(where).cameras
        if self.end is not None:
            raise RecordingError(f"{where}: a line after the end line")
        present, missing = set(line.frames), set(line.missing)
        if (
            present & missing
            or present | missing != set(cameras)
            or len(missing) != len(line.missing)
        ):
            raise RecordingError(
                f"{where}: set {line.seq}: frames {sorted(present)} and missing "
                f"{list(line.missing)} do not name the cameras {list(cameras)} once each"
            )
        for name, entry in line.frames.items():
            if entry.segment is not None and name not in self.cameras:
                raise RecordingError(f"{where}: set {line.seq}: camera {name!r} before its line")
