"""Processing of frame sets: each processor runs on its own worker with a slot of one.

- :mod:`~syncstream.processors.base`: the :class:`Processor` protocol and
  :class:`ProcessorWorker`, which runs any callable taking a :class:`~syncstream.FrameSet`.
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
from .output import HasOutput, ImageOutput, OutputImage
from .overlay import Box, scale_box
from .recorder import CameraRecordingStats, Recorder, RecorderStats
from .speaker import SpeakerDetector, SpeakerResult, SpeakerSelector, annotate_speaker, crop_face
from .wall import SideBySide, Wall, grid_shape, letterbox
from .web import WebClientStats, WebOutputStats, WebView, WebViewStats

__all__ = [
    "Box",
    "CameraRecordingStats",
    "DlibLandmarks",
    "ErrorPolicy",
    "FaceDetector",
    "HaarFaceDetector",
    "HasOutput",
    "ImageOutput",
    "LandmarkPredictor",
    "LandmarkScorer",
    "MouthMotionScorer",
    "MouthScorer",
    "OutputImage",
    "Processor",
    "ProcessorStats",
    "ProcessorWorker",
    "Recorder",
    "RecorderStats",
    "SideBySide",
    "SpeakerDetector",
    "SpeakerResult",
    "SpeakerSelector",
    "SupportsAttach",
    "SupportsClose",
    "Wall",
    "WebClientStats",
    "WebOutputStats",
    "WebView",
    "WebViewStats",
    "annotate_speaker",
    "crop_face",
    "grid_shape",
    "letterbox",
    "mouth_aspect_ratio",
    "scale_box",
]
