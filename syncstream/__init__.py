"""syncstream: synchronized, low-latency frame sets from several network cameras.

The reader side: :class:`VideoStream` reads one source in its own thread and hands out
its newest frames, each with a sequence number, the sender's capture time (when the stream
carries it) and its arrival time.

The sender side: :class:`LocalSender` and :class:`RemoteSender` (over SSH) run the ffmpeg
described by a :class:`SenderConfig`, which writes the camera host's wall clock into the
stream; :class:`SSHSession` also measures that host's clock offset. :class:`FrameSender`
sends a program's own pictures the same way, encoded in-process.

The group: :class:`StreamGroup` starts the senders of its :class:`Camera` list, reads every
camera and aligns their frames by capture time into :class:`FrameSet` objects, which it
hands to :meth:`StreamGroup.read` and to processors, each on its own worker.

The processors (:mod:`syncstream.processors`): :class:`Wall` and :class:`SideBySide`
compose the cameras, :class:`SpeakerDetector` finds who is talking, :class:`Recorder`
writes the cameras and an index that :class:`Recording` replays, and :class:`WebView`
serves pictures and stats to browsers.

The session: a :class:`Session` runs what a :class:`SessionConfig` (a TOML session file)
describes: the cameras and the processors it names. :func:`free_udp_port` picks a port
for a camera on this machine.
"""

from __future__ import annotations

import logging

from .clock import ClockOffset
from .config import (
    Camera,
    CameraStream,
    GroupConfig,
    RestartPolicy,
    SenderConfig,
    SSHHost,
    StreamConfig,
)
from .errors import (
    AuthenticationFailed,
    ClusterError,
    ConfigError,
    FrameDecodeError,
    GroupStartError,
    HostKeyError,
    MissingDependency,
    NoFrameYet,
    PictureTooLarge,
    PreflightFailed,
    ProcessorError,
    ReadTimeout,
    RecordingError,
    SenderError,
    SourceChanged,
    SourceError,
    SourceStalled,
    SSHError,
    StampNotFound,
    StreamClosed,
    StreamEnded,
    StreamFailed,
    SyncStreamError,
    UnsupportedSource,
    WebViewError,
)
from .frames import Frame, FrameSet
from .group import StreamGroup
from .processors import (
    ImageOutput,
    ProcessorStats,
    ProcessorWorker,
    Recorder,
    SideBySide,
    SpeakerDetector,
    SpeakerResult,
    Wall,
    WebView,
)
from .recording import Recording
from .senders import FrameSender, LocalSender, RemoteSender, free_udp_port
from .session import Session
from .session_config import SessionConfig
from .ssh import SSHSession
from .stats import CameraStats, GroupStats
from .stream import StreamState, StreamStats, VideoStream

logging.getLogger(__name__).addHandler(logging.NullHandler())  # the program configures logging

__all__ = [
    "AuthenticationFailed",
    "Camera",
    "CameraStats",
    "CameraStream",
    "ClockOffset",
    "ClusterError",
    "ConfigError",
    "Frame",
    "FrameDecodeError",
    "FrameSender",
    "FrameSet",
    "GroupConfig",
    "GroupStartError",
    "GroupStats",
    "HostKeyError",
    "ImageOutput",
    "LocalSender",
    "MissingDependency",
    "NoFrameYet",
    "PictureTooLarge",
    "PreflightFailed",
    "ProcessorError",
    "ProcessorStats",
    "ProcessorWorker",
    "ReadTimeout",
    "Recorder",
    "Recording",
    "RecordingError",
    "RemoteSender",
    "RestartPolicy",
    "SSHError",
    "SSHHost",
    "SSHSession",
    "SenderConfig",
    "SenderError",
    "Session",
    "SessionConfig",
    "SideBySide",
    "SourceChanged",
    "SourceError",
    "SourceStalled",
    "SpeakerDetector",
    "SpeakerResult",
    "StampNotFound",
    "StreamClosed",
    "StreamConfig",
    "StreamEnded",
    "StreamFailed",
    "StreamGroup",
    "StreamState",
    "StreamStats",
    "SyncStreamError",
    "UnsupportedSource",
    "VideoStream",
    "Wall",
    "WebView",
    "WebViewError",
    "__version__",
    "free_udp_port",
]

__version__ = "0.1.0"
