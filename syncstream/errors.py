"""The exception tree: every error syncstream raises derives from :class:`SyncStreamError`.

Each subclass also inherits the builtin that fits, so ``except TimeoutError`` keeps working.
Errors of third-party libraries (PyAV, OpenCV, paramiko, sockets) are translated at the boundary
with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AuthenticationFailed",
    "ClusterError",
    "ConfigError",
    "FrameDecodeError",
    "GroupStartError",
    "HostKeyError",
    "MissingDependency",
    "NoFrameYet",
    "PictureTooLarge",
    "PreflightFailed",
    "ProcessorError",
    "ReadTimeout",
    "RecordingError",
    "SSHError",
    "SenderError",
    "SourceChanged",
    "SourceError",
    "SourceStalled",
    "StampNotFound",
    "StreamClosed",
    "StreamEnded",
    "StreamFailed",
    "SyncStreamError",
    "UnsupportedSource",
    "WebViewError",
]


def _rebuild(cls: type[SyncStreamError], args: tuple[Any, ...]) -> SyncStreamError:
    """An error of type ``cls`` with ``args``, made without calling its ``__init__`` (the
    attributes follow as the pickled state)."""
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class SyncStreamError(Exception):
    """Root of every error raised by syncstream.

    Every subclass pickles, whatever its ``__init__`` takes (Ray sends errors between
    processes): the message and attributes are restored without calling ``__init__`` again.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args), self.__dict__


class ConfigError(SyncStreamError, ValueError):
    """A configuration value is invalid; the message names the field."""


class UnsupportedSource(ConfigError):
    """The source URL has a scheme or form that no backend reads."""


class SourceError(SyncStreamError, OSError):
    """Opening or reading a source failed (network, device, container or codec error)."""


class SourceStalled(SourceError, TimeoutError):
    """A source delivered no data for longer than its stall timeout."""


class SourceChanged(SourceError):
    """The stream changed under a live source: other PIDs, programs or codec.

    Raised by a source's ``read()`` after it dropped its demuxer and decoder; the source
    stays open (a UDP source keeps its socket and the data from the change on), and the
    next ``read()`` opens a new demuxer. A stream counts it as a reconnect.
    """


class FrameDecodeError(SourceError):
    """A unit of input (JPEG, packet, multipart part, length-prefixed frame) was refused."""


class PictureTooLarge(FrameDecodeError):
    """A source's pictures are larger than its ``max_pixels``; the message names both.

    Checked before decoding where the size is known first (a JPEG's header, the stream's
    codec parameters), else on the decoded frame; the stream reopens with its backoff.
    """


class ReadTimeout(SyncStreamError, TimeoutError):
    """No new frame arrived within the timeout given to ``read()``."""


class NoFrameYet(SyncStreamError, LookupError):
    """``latest()`` was called before the stream decoded its first frame."""


class StreamEnded(SyncStreamError, EOFError):
    """A finite source (a file) has delivered its last frame."""


class StreamClosed(SyncStreamError, RuntimeError):
    """The stream was closed; a closed stream cannot be read or restarted."""


class StreamFailed(SourceError):
    """The stream gave up after its reconnect budget; ``__cause__`` is the last error."""


class StampNotFound(SyncStreamError, ValueError):
    """A picture carries no readable latency-probe stamp (see :mod:`syncstream.probe`)."""


class SSHError(SyncStreamError, ConnectionError):
    """Connecting to a sender host over SSH, or running a command there, failed."""


class HostKeyError(SSHError):
    """The host's key is unknown (refused by default) or differs from the known one."""


class AuthenticationFailed(SSHError, PermissionError):
    """The SSH server refused every credential offered (key, agent, password)."""


class SenderError(SyncStreamError, RuntimeError):
    """A sender could not start or gave up; the message carries host, exit code and stderr."""

    def __init__(
        self,
        message: str,
        *,
        host: str = "localhost",
        returncode: int | None = None,
        stderr_tail: list[str] | None = None,
    ):
        self.host = host
        self.returncode = returncode
        self.stderr_tail = list(stderr_tail or [])
        detail = message
        if self.stderr_tail:
            detail += "\n  stderr: " + "\n  stderr: ".join(self.stderr_tail[-8:])
        super().__init__(detail)


class PreflightFailed(SenderError):
    """A check before starting failed: ffmpeg or the input is missing on the sender host."""


class GroupStartError(SyncStreamError, RuntimeError):
    """Cameras of a group failed to start; ``failures`` maps each camera's name to its error.

    Every camera is tried (in parallel) before this is raised, so one start shows all the
    broken cameras at once; what did start has been stopped again.
    """

    def __init__(self, failures: Mapping[str, BaseException]):
        self.failures = dict(failures)
        lines = [f"  {name}: {type(exc).__name__}: {exc}" for name, exc in self.failures.items()]
        count = len(self.failures)
        super().__init__(f"{count} camera(s) failed to start:\n" + "\n".join(lines))


class ProcessorError(SyncStreamError, RuntimeError):
    """A processor declared fatal (``on_error="stop"``) raised; the cause is chained."""

    def __init__(self, message: str, *, processor: str):
        self.processor = processor
        super().__init__(message)


class MissingDependency(SyncStreamError, ImportError):
    """An optional feature needs a package that is not installed; the message names the extra."""


class RecordingError(SyncStreamError, OSError):
    """A recording cannot be written or read: a full disk, a closed writer, a bad index.

    The recorder reports it and stops recording; the group and its cameras go on.
    """


class ClusterError(SyncStreamError, ConnectionError):
    """The Ray cluster of a :class:`~syncstream.cluster.ClusterGroup` cannot be reached."""


class WebViewError(SyncStreamError, OSError):
    """The web view cannot serve: its address is taken or cannot be bound."""
