"""Faces and mouths: face detection backends and mouth-activity scorers for the speaker view.

- :func:`mouth_aspect_ratio`: the mouth aspect ratio (MAR) of dlib's 68-point landmarks;
- :class:`HaarFaceDetector`: OpenCV's bundled Haar cascade, the default face detector
  (nothing to download);
- :class:`MouthMotionScorer`: the default scorer, the motion energy of the mouth region
  between consecutive frames, less that of the eyes (head motion, noise, lighting);
- :class:`LandmarkScorer`: how much the MAR varies over a short window, from any landmark
  predictor, such as :class:`DlibLandmarks` (the ``landmarks`` extra).

A scorer turns each frame of a face into a *sample* (:meth:`MouthScorer.measure`) and a
window of samples into a *score* (:meth:`MouthScorer.score`): talking is the mouth
opening and closing, so a score measures change, not how wide the mouth is.
"""

from __future__ import annotations

import importlib
import logging
import os
import statistics
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ConfigError, MissingDependency
from .overlay import Box

__all__ = [
    "DlibLandmarks",
    "FaceDetector",
    "GrayImage",
    "HaarFaceDetector",
    "LandmarkPredictor",
    "LandmarkScorer",
    "MouthMotionScorer",
    "MouthScorer",
    "mouth_aspect_ratio",
]

logger = logging.getLogger(__name__)

#: A grayscale picture: height x width, uint8.
GrayImage = NDArray[np.uint8]

# dlib's 68-point numbering, 0-based: the mouth is points 48..67 (49..68 in the 1-based
# numbering of the usual figure). MAR = (|p51-p59| + |p53-p57|) / (2 |p49-p55|), 1-based.
_MOUTH_START = 48
_MOUTH_POINTS = 20
_UPPER = (50 - _MOUTH_START, 52 - _MOUTH_START)  # 1-based p51, p53
_LOWER = (58 - _MOUTH_START, 56 - _MOUTH_START)  # 1-based p59, p57
_CORNERS = (48 - _MOUTH_START, 54 - _MOUTH_START)  # 1-based p49, p55

_LANDMARKS_HINT = "pip install 'syncstream[landmarks]'"


def mouth_aspect_ratio(landmarks: ArrayLike) -> float:
    """The mouth aspect ratio: mouth opening over mouth width, about 0.0 closed, 0.5+ open.

    ``landmarks`` is a ``(68, 2)`` array of x, y in dlib's numbering, or the ``(20, 2)``
    mouth points alone (dlib's points 49..68, 1-based). With 1-based numbering,
    ``MAR = (|p51 - p59| + |p53 - p57|) / (2 |p49 - p55|)``. Raises
    :class:`~syncstream.ConfigError` (a ``ValueError``) for any other shape, for
    non-finite points and when the mouth corners coincide (zero width).
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] not in (68, _MOUTH_POINTS):
        raise ConfigError(
            f"landmarks must be a (68, 2) or (20, 2) array of x, y, got shape {points.shape}"
        )
    mouth = points[_MOUTH_START:] if points.shape[0] == 68 else points
    if not np.isfinite(mouth).all():
        raise ConfigError("landmarks: the mouth points must be finite numbers")
    first = float(np.linalg.norm(mouth[_UPPER[0]] - mouth[_LOWER[0]]))
    second = float(np.linalg.norm(mouth[_UPPER[1]] - mouth[_LOWER[1]]))
    width = float(np.linalg.norm(mouth[_CORNERS[0]] - mouth[_CORNERS[1]]))
    if width == 0.0:
        raise ConfigError("landmarks: the mouth corners coincide (zero mouth width)")
    return (first + second) / (2.0 * width)


class FaceDetector(Protocol):
    """Finds faces in a grayscale picture (full resolution); boxes in its pixels."""

    def detect(self, gray: GrayImage, /) -> list[Box]: ...


def _haar_cascade_path() -> str:
    data = getattr(cv2, "data", None)
    folder = getattr(data, "haarcascades", None)
    if not isinstance(folder, str):
        raise MissingDependency(
            "the Haar face detector needs OpenCV 4's bundled cascades (cv2.data), "
            "as in opencv-python-headless<5"
        )
    return os.path.join(folder, "haarcascade_frontalface_default.xml")


class HaarFaceDetector:
    """OpenCV's bundled frontal-face Haar cascade: no model to download, a few ms a frame.

    Detection runs on a copy scaled down to ``detect_width`` pixels (histogram-equalised),
    and the boxes are scaled back; ``min_size`` is in the pixels of that copy. The cascade
    file is loaded on the first :meth:`detect` (constructors do no I/O). An OpenCV
    cascade is not thread-safe: use one detector per thread.
    """

    def __init__(
        self,
        *,
        detect_width: int = 320,
        scale_factor: float = 1.15,
        min_neighbors: int = 5,
        min_size: int = 24,
        cascade_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Describe the detector; a bad value raises :class:`~syncstream.ConfigError`."""
        if detect_width < 32:
            raise ConfigError(f"detect_width must be at least 32 pixels, got {detect_width!r}")
        if not scale_factor > 1.0:
            raise ConfigError(f"scale_factor must be above 1.0, got {scale_factor!r}")
        if min_neighbors < 0:
            raise ConfigError(f"min_neighbors must be 0 or more, got {min_neighbors!r}")
        if min_size < 1:
            raise ConfigError(f"min_size must be a positive pixel count, got {min_size!r}")
        self.detect_width = detect_width
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self._path = None if cascade_path is None else os.fspath(cascade_path)
        self._cascade: cv2.CascadeClassifier | None = None

    def _load(self) -> cv2.CascadeClassifier:
        path = self._path if self._path is not None else _haar_cascade_path()
        if not os.path.isfile(path):  # OpenCV would only print an error and load nothing
            raise ConfigError(f"cascade_path: no such file {path}")
        try:
            cascade = cv2.CascadeClassifier(path)
        except cv2.error as exc:
            raise ConfigError(f"cascade_path: cannot load {path}: {exc}") from exc
        if cascade.empty():
            raise ConfigError(f"cascade_path: {path} is missing or not a Haar cascade")
        logger.debug("faces: loaded Haar cascade %s", path)
        return cascade

    def detect(self, gray: GrayImage, /) -> list[Box]:
        """Faces in ``gray`` as ``(x, y, w, h)`` boxes, largest first."""
        if self._cascade is None:
            self._cascade = self._load()
        height, width = gray.shape[:2]
        scale = min(1.0, self.detect_width / width)
        small = gray
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(cv2.resize(gray, size, interpolation=cv2.INTER_AREA), np.uint8)
        found = self._cascade.detectMultiScale(
            cv2.equalizeHist(small),
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        boxes: list[Box] = []
        for x, y, w, h in np.asarray(found, dtype=np.float64).reshape(-1, 4) / scale:
            left, top = max(0, round(x)), max(0, round(y))
            right, bottom = min(width, round(x + w)), min(height, round(y + h))
            if right > left and bottom > top:
                boxes.append((left, top, right - left, bottom - top))
        boxes.sort(key=lambda box: box[2] * box[3], reverse=True)
        return boxes


class MouthScorer(Protocol):
    """Measures mouth activity: one sample per frame of a face, one score per window.

    ``window`` is how many samples a face keeps; ``on_threshold`` and ``off_threshold``
    are the scorer's defaults for :class:`~syncstream.processors.speaker.SpeakerDetector`.
    """

    window: int
    on_threshold: float
    off_threshold: float

    def measure(self, gray: GrayImage, previous: GrayImage | None, box: Box, /) -> float | None:
        """A sample for the face in ``box`` of ``gray`` (``previous``: the camera's last
        frame, None after a gap); None when there is nothing to measure."""
        ...

    def score(self, samples: Sequence[float], /) -> float:
        """The activity over a window of samples, oldest first (0.0 when too few)."""
        ...


def _region(gray: GrayImage, box: Box, region: tuple[float, float, float, float]) -> GrayImage:
    x, y, w, h = box
    x0, y0, x1, y1 = region
    height, width = gray.shape[:2]
    left, right = max(0, x + int(x0 * w)), min(width, x + int(x1 * w))
    top, bottom = max(0, y + int(y0 * h)), min(height, y + int(y1 * h))
    return gray[top:bottom, left:right]


class MouthMotionScorer:
    """The default scorer: how much the mouth region changes from frame to frame.

    A sample is the mean absolute difference of the mouth region (the lower middle of the
    face box) between the previous frame and this one, both cut with the same box and
    resized to ``patch`` pixels, in fractions of the grey range; minus the same measure
    of the eye band, so that sensor noise, compression, lighting changes and head motion,
    which move both, cancel. The score is the mean over the window (at least half full).
    """

    #: Mouth and reference (eye band) regions, as fractions of a Haar face box: x0, y0, x1, y1.
    MOUTH = (0.25, 0.65, 0.75, 0.95)
    REFERENCE = (0.2, 0.2, 0.8, 0.5)

    def __init__(
        self,
        *,
        window: int = 8,
        on_threshold: float = 0.010,
        off_threshold: float = 0.005,
        patch: tuple[int, int] = (32, 16),
    ) -> None:
        """Describe the scorer; a bad value raises :class:`~syncstream.ConfigError`."""
        _check_scorer(window, on_threshold, off_threshold)
        if patch[0] < 2 or patch[1] < 2:
            raise ConfigError(f"patch must be at least 2x2 pixels, got {patch!r}")
        self.window = window
        self.on_threshold = on_threshold
        self.off_threshold = off_threshold
        self.patch = patch

    def _energy(
        self,
        gray: GrayImage,
        previous: GrayImage,
        box: Box,
        region: tuple[float, float, float, float],
    ) -> float | None:
        now, before = _region(gray, box, region), _region(previous, box, region)
        if now.size == 0 or now.shape != before.shape:
            return None
        a = cv2.resize(now, self.patch, interpolation=cv2.INTER_AREA).astype(np.float32)
        b = cv2.resize(before, self.patch, interpolation=cv2.INTER_AREA).astype(np.float32)
        return float(np.mean(np.abs(a - b))) / 255.0

    def measure(self, gray: GrayImage, previous: GrayImage | None, box: Box, /) -> float | None:
        """Mouth motion less eye-band motion between ``previous`` and ``gray``."""
        if previous is None or previous.shape != gray.shape:
            return None
        mouth = self._energy(gray, previous, box, self.MOUTH)
        reference = self._energy(gray, previous, box, self.REFERENCE)
        if mouth is None or reference is None:
            return None
        return mouth - reference

    def score(self, samples: Sequence[float], /) -> float:
        """The mean sample, never below 0; 0.0 until half the window is filled."""
        if len(samples) < max(2, self.window // 2):
            return 0.0
        return max(0.0, statistics.fmean(samples))


class LandmarkPredictor(Protocol):
    """Places 68 landmarks (dlib's numbering) on the face in ``box``: a ``(68, 2)`` array."""

    def __call__(self, gray: GrayImage, box: Box, /) -> NDArray[np.floating]: ...


class LandmarkScorer:
    """Scores talking from landmarks: the spread of the mouth aspect ratio over the window.

    A sample is :func:`mouth_aspect_ratio` of the landmarks ``predictor`` places; the
    score is their standard deviation, so a mouth that opens and closes scores high and
    one held open (a yawn, a smile) or shut scores low. A frame whose landmarks give no
    ratio (corners on one point) yields no sample.
    """

    def __init__(
        self,
        predictor: LandmarkPredictor,
        *,
        window: int = 10,
        on_threshold: float = 0.05,
        off_threshold: float = 0.025,
    ) -> None:
        """Describe the scorer; a bad value raises :class:`~syncstream.ConfigError`."""
        _check_scorer(window, on_threshold, off_threshold)
        self.predictor = predictor
        self.window = window
        self.on_threshold = on_threshold
        self.off_threshold = off_threshold

    def measure(self, gray: GrayImage, previous: GrayImage | None, box: Box, /) -> float | None:
        """The mouth aspect ratio of the face in ``box`` (``previous`` is not needed)."""
        try:
            return mouth_aspect_ratio(self.predictor(gray, box))
        except ConfigError as exc:
            logger.debug("faces: no mouth aspect ratio for the face at %s: %s", box, exc)
            return None

    def score(self, samples: Sequence[float], /) -> float:
        """The standard deviation of the ratios; 0.0 until half the window is filled."""
        if len(samples) < max(2, self.window // 2):
            return 0.0
        return statistics.pstdev(samples)


def _check_scorer(window: int, on_threshold: float, off_threshold: float) -> None:
    if window < 2:
        raise ConfigError(f"window must be at least 2 samples, got {window!r}")
    if not 0.0 <= off_threshold <= on_threshold:
        raise ConfigError(
            "off_threshold must be between 0 and on_threshold, got "
            f"off_threshold={off_threshold!r}, on_threshold={on_threshold!r}"
        )


def _import_optional(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"the dlib landmark backend needs {module!r}, which is not installed: "
            f"{_LANDMARKS_HINT} (dlib compiles from source, a few minutes)"
        ) from exc


class DlibLandmarks:
    """dlib's 68-point shape predictor, with the model of ``face-recognition-models``.

    Needs the ``landmarks`` extra (``pip install 'syncstream[landmarks]'``); without it the
    constructor raises :class:`~syncstream.MissingDependency`. ``model_path`` defaults to
    the 68-point model the ``face_recognition_models`` package ships. The model (about
    100 MB) is loaded on the first call. Use one instance per thread.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None) -> None:
        """Check that dlib (and the model package, without ``model_path``) can be imported."""
        self._dlib = _import_optional("dlib")
        if model_path is None:
            models = _import_optional("face_recognition_models")
            model_path = str(models.pose_predictor_model_location())
        self.model_path = os.fspath(model_path)
        self._predictor: Any = None

    def _load(self) -> Any:
        try:
            predictor = self._dlib.shape_predictor(self.model_path)
        except RuntimeError as exc:  # dlib's error for a missing or bad file
            raise ConfigError(f"model_path: cannot load {self.model_path}: {exc}") from exc
        logger.debug("faces: loaded dlib shape predictor %s", self.model_path)
        return predictor

    def __call__(self, gray: GrayImage, box: Box, /) -> NDArray[np.floating]:
        """The 68 landmarks of the face in ``box``, as a ``(68, 2)`` array of x, y."""
        if self._predictor is None:
            self._predictor = self._load()
        x, y, w, h = (int(v) for v in box)
        rect = self._dlib.rectangle(x, y, x + w, y + h)
        shape = self._predictor(np.ascontiguousarray(gray), rect)
        parts = shape.parts()
        return np.array([(p.x, p.y) for p in parts], dtype=np.float64)
