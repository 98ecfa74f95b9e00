"""Files the user names (session files, known_hosts, SSH keys, a recording's index).

Only regular files are read. A FIFO, socket, device or directory where a file is expected
would make ``open()`` or ``read()`` block for ever (a FIFO without a writer), never end
(``/dev/zero``) or fail obscurely; each is refused with an error that names the path and
what it is, before it is opened. The file is then opened with ``O_NONBLOCK`` (an open
that cannot block) and checked again with ``fstat``, so that one swapped in between is
refused too. Files read whole are read up to a size cap, never beyond it.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from .errors import ConfigError, SyncStreamError

__all__ = ["check_regular_file", "open_regular_file", "read_regular_file"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _size_text(limit: int) -> str:
    if limit >= 1 << 20 and limit % (1 << 20) == 0:
        return f"{limit >> 20} MiB"
    if limit >= 1 << 10 and limit % (1 << 10) == 0:
        return f"{limit >> 10} KiB"
    return f"{limit} bytes"


def _check_stat(
    name: str, result: os.stat_result, what: str, limit: int | None, error: type[SyncStreamError]
) -> None:
    if not stat.S_ISREG(result.st_mode):
        raise error(f"{name}: is {_kind(result.st_mode)}; a {what} must be a regular file")
    if limit is not None and result.st_size > limit:
        raise error(
            f"{name}: {result.st_size} bytes, over the {_size_text(limit)} a {what} may have"
        )


def check_regular_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    limit: int | None = None,
    error: type[SyncStreamError] = ConfigError,
) -> None:
    """Refuse ``path`` unless it is a regular file of at most ``limit`` bytes, without
    opening it: for files that another library (paramiko) opens by name.

    Raises ``error`` naming the path and what it is (``what`` says what was expected).
    """
    name = os.fspath(path)
    try:
        result = os.stat(name)
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror or exc}") from exc
    _check_stat(name, result, what, limit, error)


def open_regular_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    limit: int | None = None,
    error: type[SyncStreamError] = ConfigError,
) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file; never blocks.

    Raises ``error`` naming the path: missing, unreadable, not a regular file (checked
    before and after the open), or over ``limit`` bytes.
    """
    check_regular_file(path, what, limit=limit, error=error)
    name = os.fspath(path)
    try:
        fd = os.open(name, _OPEN_FLAGS)
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror or exc}") from exc
    try:
        _check_stat(name, os.fstat(fd), what, limit, error)  # replaced since the stat?
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    limit: int,
    error: type[SyncStreamError] = ConfigError,
) -> bytes:
    """The bytes of the regular file ``path``, of at most ``limit`` bytes; never blocks.

    At most ``limit + 1`` bytes are read, so a file that grows while it is read is
    refused too. Raises ``error`` naming the path and the problem.
    """
    name = os.fspath(path)
    with open_regular_file(path, what, limit=limit, error=error) as file:
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise error(f"{name}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise error(f"{name}: over the {_size_text(limit)} a {what} may have")
    return data
