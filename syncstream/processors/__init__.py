"""Processing of frame sets: each processor runs on its own worker with a slot of one.

- :mod:`~syncstream.processors.base`: the :class:`Processor` protocol and
  :class:`ProcessorWorker`, which runs any callable taking a :class:`~syncstream.FrameSet`.
- :mod:`~syncstream.processors.group_view`: :class:`GroupView`, what ``attach`` gets of
  the group (names, streams, stats, packet listener).
- :mod:`~syncstream.processors.settings`: :class:`ProcessorSettings`, the base of each
  processor's options model (``WallOptions``, ...), shared with the session file.
- :mod:`~syncstream.processors.output`: :class:`ImageOutput`, the newest picture a
  processor drew, for viewers, writers and the web view.
- :mod:`~syncstream.processors.overlay`: text, clock, latency and face-box drawing.
- :mod:`~syncstream.processors.wall`: :class:`Wall` and :class:`SideBySide` composition.
- :mod:`~syncstream.processors.speaker` and :mod:`~syncstream.processors.faces`:
  :class:`SpeakerDetector`, who is talking, and its face and mouth backends.
- :mod:`~syncstream.processors.recorder`: :class:`Recorder`, each camera to segmented
  files and an index of the sets (:class:`~syncstream.Recording` replays them).
- :mod:`~syncstream.processors.web`: :class:`WebView`, MJPEG, a page and stats over HTTP.
"""

from .base import (
    ErrorPolicy,
    Processor,
    ProcessorStats,
    ProcessorWorker,
    SupportsAttach,
    SupportsClose,
)
from .faces import (
    DlibLandmarks,
    FaceDetector,
    HaarFaceDetector,
    LandmarkPredictor,
    LandmarkScorer,
    MouthMotionScorer,
    MouthScorer,
    mouth_aspect_ratio,
)
from .group_view import FrameHistory, GroupView
from .output import HasOutput, ImageOutput, OutputImage
from .overlay import Box, scale_box
from .recorder import CameraRecordingStats, Recorder, RecorderOptions, RecorderStats
from .settings import ProcessorSettings
from .speaker import (
    SpeakerDetector,
    SpeakerOptions,
    SpeakerResult,
    SpeakerSelector,
    SpeakerStats,
    annotate_speaker,
    crop_face,
)
from .wall import SideBySide, Wall, WallOptions, grid_shape, letterbox
from .web import WebClientStats, WebOutputStats, WebView, WebViewOptions, WebViewStats

__all__ = [
    "Box",
    "CameraRecordingStats",
    "DlibLandmarks",
    "ErrorPolicy",
    "FaceDetector",
    "FrameHistory",
    "GroupView",
    "HaarFaceDetector",
    "HasOutput",
    "ImageOutput",
    "LandmarkPredictor",
    "LandmarkScorer",
    "MouthMotionScorer",
    "MouthScorer",
    "OutputImage",
    "Processor",
    "ProcessorSettings",
    "ProcessorStats",
    "ProcessorWorker",
    "Recorder",
    "RecorderOptions",
    "RecorderStats",
    "SideBySide",
    "SpeakerDetector",
    "SpeakerOptions",
    "SpeakerResult",
    "SpeakerSelector",
    "SpeakerStats",
    "SupportsAttach",
    "SupportsClose",
    "Wall",
    "WallOptions",
    "WebClientStats",
    "WebOutputStats",
    "WebView",
    "WebViewOptions",
    "WebViewStats",
    "annotate_speaker",
    "crop_face",
    "grid_shape",
    "letterbox",
    "mouth_aspect_ratio",
    "scale_box",
]
