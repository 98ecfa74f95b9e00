"""The exception tree: every error syncstream raises derives from :class:`SyncStreamError`.

Each subclass also inherits the builtin that fits, so ``except TimeoutError`` keeps working.
Errors of third-party libraries (PyAV, OpenCV, sockets) are translated at the boundary
with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FrameDecodeError",
    "NoFrameYet",
    "ReadTimeout",
    "SourceError",
    "SourceStalled",
    "StampNotFound",
    "StreamClosed",
    "StreamEnded",
    "StreamFailed",
    "SyncStreamError",
    "UnsupportedSource",
]


class SyncStreamError(Exception):
    """Root of every error raised by syncstream."""


class ConfigError(SyncStreamError, ValueError):
    """A configuration value is invalid; the message names the field."""


class UnsupportedSource(ConfigError):
    """The source URL has a scheme or form that no backend reads."""


class SourceError(SyncStreamError, OSError):
    """Opening or reading a source failed (network, device, container or codec error)."""


class SourceStalled(SourceError, TimeoutError):
    """A source delivered no data for longer than its stall timeout."""


class FrameDecodeError(SourceError):
    """A unit of input (JPEG, packet, multipart part, length-prefixed frame) was refused."""


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
