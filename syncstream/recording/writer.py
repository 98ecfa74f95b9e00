"""Writing a recording's index: whole lines only, counted once on disk, an end line on a full disk.

:class:`IndexWriter` appends lines to ``index.jsonl``. :meth:`IndexWriter.write` only
queues a line, so the recorder's worker never waits for the disk; the writer's thread
writes the queued lines every ``flush_interval`` seconds and ``fsync``\\ s the file, and
only then counts them (:attr:`IndexWriter.sets`): the count is what a reader finds.

A write or ``fsync`` that fails (``ENOSPC``, ``EDQUOT``, ``EFBIG``, ``EIO``) cuts the file
back to the end of its last whole line, stops the thread and is reported once, as a
:class:`~syncstream.errors.RecordingError` with the errno. :meth:`IndexWriter.close`
writes the end line. For a full disk, the index has ``index.reserve`` beside it: a file of
:data:`RESERVE_BYTES` set aside when the index is created and deleted when it is closed;
an end line that does not fit is written again once the reserve is deleted.
"""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import re
import threading
import time
from collections.abc import Callable
from typing import Literal

from ..errors import RecordingError
from .index import CameraLine, EndLine, HeaderLine, SetLine

__all__ = ["RESERVE_BYTES", "RESERVE_SUFFIX", "IndexWriter", "recording_error"]

logger = logging.getLogger(__name__)

#: Bytes set aside beside the index while recording, freed for its end line.
RESERVE_BYTES = 64 * 1024
#: The reserve is the index's name with this suffix (``index.reserve``).
RESERVE_SUFFIX = ".reserve"
#: Longest error text kept in the end line, so that the end line fits the reserve.
END_ERROR_CHARS = 1000
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_JOIN_TIMEOUT = 5.0

_State = Literal["new", "open", "closing", "closed"]


def recording_error(message: str, exc: BaseException) -> RecordingError:
    """A RecordingError for ``message``, with the errno of ``exc`` when it has one."""
    if isinstance(exc, OSError) and exc.errno is not None:  # PyAV's too, for system errors
        return RecordingError(exc.errno, f"{message}: {exc.strerror or exc}")
    return RecordingError(f"{message}: {exc}")


def _encode(line: HeaderLine | CameraLine | SetLine | EndLine) -> bytes:
    return (line.model_dump_json() + "\n").encode()


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``; a short write is continued, so a full disk
    raises its OSError."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, "the write made no progress")
        view, offset = view[written:], offset + written


def _reserve(path: pathlib.Path, size: int) -> None:
    """Create ``path`` holding ``size`` bytes of disk space."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:  # a file system without it: write the bytes
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            _write_all(fd, bytes(size), 0)
    finally:
        os.close(fd)


def _compact(end: EndLine) -> EndLine:
    """``end`` with its error cut to ``[Errno N] text``, or to 60 characters."""
    text = end.error
    if text is None:
        return end
    match = re.match(r"\[Errno (\d+)\]", text)
    short = f"[Errno {match[1]}] {os.strerror(int(match[1]))}" if match else text[:60]
    return end.model_copy(update={"error": short})


def _shorten(text: str | None) -> str | None:
    if text is None or len(text) <= END_ERROR_CHARS:
        return text
    return text[: END_ERROR_CHARS - 3] + "..."


class IndexWriter:
    """Appends lines to a new index; a thread writes them every ``flush_interval`` s.

    :meth:`write` may be called from one thread at a time (the recorder serialises its
    calls). The first failure to write is handed to ``on_error`` by the thread, once, and
    raised by every later :meth:`write` and :meth:`flush`; the set lines queued but never
    written are counted in :attr:`lost_sets`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_interval: float = 1.0,
        on_error: Callable[[RecordingError], None] | None = None,
    ) -> None:
        self.path = pathlib.Path(path)
        self.reserve_path = self.path.with_suffix(RESERVE_SUFFIX)
        self.flush_interval = flush_interval
        self._on_error = on_error
        self._cond = threading.Condition()
        self._io = threading.Lock()  # one writer of the file: the thread, or close()
        self._state: _State = "new"
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._pending: list[bytes] = []
        self._pending_sets = 0
        self._error: RecordingError | None = None
        self._told = False  # on_error was called
        self._size = 0  # bytes of whole lines written and fsynced
        self._sets = 0
        self._lost_sets = 0
        #: The end line written by :meth:`close`; None before, or when it could not be.
        self.end: EndLine | None = None

    def open(self, header: HeaderLine) -> None:
        """Create the index (it must not exist) and its reserve, write the header to disk
        and start the thread. Raises RecordingError; a failure leaves no file behind."""
        with self._cond:
            if self._state != "new":
                raise RecordingError(f"{self.path}: index already opened")
            self._state = "closed"  # until it is open
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, _CREATE_FLAGS, 0o644)
        except FileExistsError as exc:
            raise RecordingError(f"{self.path}: the directory holds a recording already") from exc
        except OSError as exc:
            raise recording_error(f"{self.path}: cannot create the index", exc) from exc
        data = _encode(header)
        try:
            _reserve(self.reserve_path, RESERVE_BYTES)
            _write_all(fd, data, 0)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            self.reserve_path.unlink(missing_ok=True)
            raise recording_error(f"{self.path}: cannot start the index", exc) from exc
        thread = threading.Thread(
            target=self._run,
            name=f"syncstream-recorder-index:{self.path.parent.name}",
            daemon=True,
        )
        with self._cond:
            self._fd, self._size, self._state, self._thread = fd, len(data), "open", thread
        thread.start()

    def write(self, line: CameraLine | SetLine) -> None:
        """Queue ``line`` for the thread; raises the thread's RecordingError, or one when
        the index is not open."""
        data = _encode(line)
        with self._cond:
            if self._error is not None:
                raise self._error
            if self._state != "open":
                raise RecordingError(f"{self.path}: index is not open")
            self._pending.append(data)
            if isinstance(line, SetLine):
                self._pending_sets += 1
            if self.flush_interval == 0:
                self._cond.notify_all()

    @property
    def sets(self) -> int:
        """Set lines on disk (written and fsynced)."""
        with self._cond:
            return self._sets

    @property
    def lost_sets(self) -> int:
        """Set lines queued but never written, because writing failed."""
        with self._cond:
            return self._lost_sets

    @property
    def error(self) -> RecordingError | None:
        """The failure that stopped the writing, or None."""
        return self._error

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._state == "open":
                    if self.flush_interval > 0:
                        self._cond.wait(self.flush_interval)
                    else:
                        self._cond.wait_for(lambda: bool(self._pending) or self._state != "open")
                if self._state != "open":
                    return  # close() writes what is left
            try:
                self._flush()
            except RecordingError as exc:
                if self._on_error is not None and not self._told:
                    self._told = True
                    self._on_error(exc)
                return

    def flush(self) -> None:
        """Write the queued lines and fsync now, in the caller's thread; raises the
        RecordingError that kept them from the disk."""
        self._flush()

    def _flush(self) -> None:
        """Write the queued lines and fsync; on a failure cut back to the last whole line."""
        with self._io:
            with self._cond:
                if self._error is not None:
                    raise self._error
                lines, sets = self._pending, self._pending_sets
                self._pending, self._pending_sets = [], 0
                fd = self._fd
            if not lines or fd is None:
                return
            data = b"".join(lines)
            try:
                _write_all(fd, data, self._size)
                os.fsync(fd)
            except OSError as exc:
                error = recording_error(f"{self.path}: cannot write the index", exc)
                self._cut(fd)
                with self._cond:
                    self._error = error
                    self._lost_sets += sets
                raise error from exc
            with self._cond:
                self._size += len(data)
                self._sets += sets

    def _cut(self, fd: int) -> None:
        """Cut the file back to its last whole line (a failed write may have left part of
        one); a failure is logged: the reader skips a last line cut short."""
        try:
            os.ftruncate(fd, self._size)
        except OSError as exc:
            logger.warning(
                "%s: cannot cut the index back to its last whole line (byte %d): %s",
                self.path,
                self._size,
                exc,
            )

    # -- the end ------------------------------------------------------------------------

    def close(self, *, error: str | None = None) -> None:
        """Write the queued lines and the end line (with ``error``, else the writer's own
        failure), fsync, close and delete the reserve; idempotent.

        Raises the RecordingError that kept a line from the disk, if any (the thread's
        failure again, when it had one). :attr:`end` is the end line, when written.
        """
        with self._cond:
            if self._state != "open":
                self._state = "closed" if self._state == "new" else self._state
                return
            self._state = "closing"
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)
        failure: RecordingError | None = None
        try:
            self._flush()
        except RecordingError as exc:
            failure = exc
        with self._cond:
            self._lost_sets += self._pending_sets  # queued after a failure: never written
            self._pending, self._pending_sets = [], 0
            reason = str(failure) if error is None and failure is not None else error
            end = EndLine(sets=self._sets, stop_time=time.time(), error=_shorten(reason))
            fd, self._fd = self._fd, None
        try:
            if fd is not None:
                with self._io:
                    self.end = self._write_end(fd, end)
        except RecordingError as exc:
            if failure is None:
                failure = exc
            else:
                logger.warning("%s: %s (after the recording stopped)", self.path, exc)
        finally:
            failure = self._release(fd, failure)
            with self._cond:
                self._state = "closed"
        if failure is not None:
            raise failure

    def _write_end(self, fd: int, end: EndLine) -> EndLine:
        """Write ``end``; without room, again once the reserve is deleted, then with its
        error only as errno and text (for the room a file size limit leaves). Returns the
        line written."""
        try:
            return self._append(fd, end)
        except OSError as exc:
            logger.info("%s: no room for the end line (%s); using the reserve", self.path, exc)
            self._delete_reserve()
        try:
            return self._append(fd, end)
        except OSError as exc:
            logger.info("%s: no room for the end line (%s); shortening it", self.path, exc)
        try:
            return self._append(fd, _compact(end))
        except OSError as exc:
            raise recording_error(f"{self.path}: cannot write the end line", exc) from exc

    def _append(self, fd: int, line: EndLine) -> EndLine:
        data = _encode(line)
        try:
            _write_all(fd, data, self._size)
            os.fsync(fd)
        except OSError:
            self._cut(fd)
            raise
        self._size += len(data)
        return line

    def _release(self, fd: int | None, failure: RecordingError | None) -> RecordingError | None:
        """Close the file and delete the reserve; returns ``failure``, or the close's."""
        if fd is not None:
            try:
                os.close(fd)  # a network file system may report a full disk only here
            except OSError as exc:
                error = recording_error(f"{self.path}: cannot finish the index", exc)
                if failure is None:
                    failure = error
                else:
                    logger.warning("%s: %s (after the recording stopped)", self.path, error)
        self._delete_reserve()
        return failure

    def _delete_reserve(self) -> None:
        try:
            self.reserve_path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("%s: cannot delete the reserve: %s", self.reserve_path, exc)

    def __repr__(self) -> str:
        return f"IndexWriter({str(self.path)!r})"
