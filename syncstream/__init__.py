"""syncstream: synchronized, low-latency frame sets from several network cameras.

The reader side: :class:`VideoStream` reads one source in its own thread and hands out
its newest frames, each with a sequence number, the sender's capture time (when the stream
carries it) and its arrival time.
"""

from __future__ import annotations

from .config import StreamConfig
from .errors import (
    ConfigError,
    FrameDecodeError,
    NoFrameYet,
    ReadTimeout,
    SourceError,
    SourceStalled,
    StampNotFound,
    StreamClosed,
    StreamEnded,
    StreamFailed,
    SyncStreamError,
    UnsupportedSource,
)
from .frames import Frame
from .senders import LocalSender
from .stream import StreamState, StreamStats, VideoStream

__all__ = [
    "ConfigError",
    "Frame",
    "FrameDecodeError",
    "LocalSender",
    "NoFrameYet",
    "ReadTimeout",
    "SourceError",
    "SourceStalled",
    "StampNotFound",
    "StreamClosed",
    "StreamConfig",
    "StreamEnded",
    "StreamFailed",
    "StreamState",
    "StreamStats",
    "SyncStreamError",
    "UnsupportedSource",
    "VideoStream",
    "__version__",
]

__version__ = "0.1.0"
