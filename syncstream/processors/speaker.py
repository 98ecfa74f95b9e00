"""Speaker detection: who is talking, across cameras, and a picture of that face.

:class:`SpeakerDetector` is a processor: for each frame set it finds the faces of every
camera (re-detected every few sets, followed in between by box overlap), scores how much
each face's mouth moves, and picks the camera of the talking face with hysteresis
(:class:`SpeakerSelector`), so the choice does not flicker between cameras or on pauses
between words. It reports a :class:`SpeakerResult` and publishes the *speaker view*: the
active face, cropped and letterboxed to a fixed size.

It asks its group for the sets of the cameras' ``sub`` streams (small, cheap to search)
where the cameras have one, and maps the faces it finds to ``main`` pixels
(:attr:`SpeakerResult.main_faces`); the view is cropped from the main frame captured at
the same instant, so detection costs no display resolution.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..config import MAIN_ROLE
from ..errors import ConfigError
from ..frames import BGRImage, Frame, FrameSet
from .faces import FaceDetector, GrayImage, HaarFaceDetector, MouthMotionScorer, MouthScorer
from .output import ImageOutput
from .overlay import Box, draw_face_boxes, put_label, scale_box
from .wall import letterbox

if TYPE_CHECKING:
    from ..group import StreamGroup

__all__ = [
    "SpeakerDetector",
    "SpeakerResult",
    "SpeakerSelector",
    "annotate_speaker",
    "crop_face",
]

logger = logging.getLogger(__name__)

_MATCH_IOU = 0.3  # a detection continues a face when their boxes overlap this much
_MAX_MISSES = 2  # detection rounds a face may be missed before it is forgotten
_BACKGROUND = (24, 24, 24)


@dataclass(frozen=True)
class SpeakerResult:
    """Who is talking in one frame set, with every camera's score and faces."""

    #: The camera of the talking face, or None when nobody talks.
    active: str | None
    #: Camera name to its score (the highest of its faces; 0.0 without a face), for the
    #: cameras present in the set.
    scores: dict[str, float]
    #: Camera name to the boxes ``(x, y, w, h)`` of its faces, in the frame's pixels.
    faces: dict[str, list[Box]]
    #: Camera name to the score of each face, in the order of :attr:`faces`.
    face_scores: dict[str, list[float]]
    #: The talking face's box in the active camera's frame (None when nobody talks or the
    #: active camera is missing from the set).
    active_face: Box | None
    #: The frame set's ``seq`` and ``time`` (epoch seconds).
    frameset_seq: int
    time: float
    #: Cameras without a frame in the set: they score nothing.
    missing: tuple[str, ...] = ()
    #: The role of the frames searched (``"sub"``, or ``"main"``): :attr:`faces` and
    #: :attr:`active_face` are in their pixels.
    role: str = MAIN_ROLE
    #: :attr:`faces` in the pixels of each camera's main stream (the same boxes when the
    #: main frames were searched). A camera whose main size is not known yet is absent.
    main_faces: dict[str, list[Box]] = field(default_factory=dict)
    #: :attr:`active_face` in the active camera's main pixels.
    main_active_face: Box | None = None


class SpeakerSelector:
    """Picks the active speaker from per-camera scores, with hysteresis.

    A camera becomes active after ``hold`` consecutive updates at or above
    ``on_threshold`` (and, while another camera is active, at least ``switch_ratio``
    times that camera's score). The active camera is dropped after ``hold`` consecutive
    updates below ``off_threshold``. A camera absent from an update scores 0.0. Pure
    logic: no threads, no images.
    """

    def __init__(
        self,
        *,
        on_threshold: float,
        off_threshold: float,
        hold: int = 6,
        switch_ratio: float = 1.5,
    ) -> None:
        """Describe the rule; a bad value raises :class:`~syncstream.ConfigError`."""
        if not 0.0 <= off_threshold <= on_threshold:
            raise ConfigError(
                "off_threshold must be between 0 and on_threshold, got "
                f"off_threshold={off_threshold!r}, on_threshold={on_threshold!r}"
            )
        if hold < 1:
            raise ConfigError(f"hold must be at least 1 frame set, got {hold!r}")
        if not switch_ratio >= 1.0:
            raise ConfigError(f"switch_ratio must be at least 1.0, got {switch_ratio!r}")
        self.on_threshold = on_threshold
        self.off_threshold = off_threshold
        self.hold = hold
        self.switch_ratio = switch_ratio
        self.active: str | None = None
        self._quiet = 0
        self._streak: dict[str, int] = {}

    def update(self, scores: Mapping[str, float]) -> str | None:
        """Take one set's scores; return the active camera (None: nobody talks)."""
        current = self.active
        if current is not None:
            level = scores.get(current, 0.0)
            self._quiet = self._quiet + 1 if level < self.off_threshold else 0
            if self._quiet >= self.hold:
                logger.info("speaker: camera %s stopped talking (score %.4f)", current, level)
                self.active = current = None
                self._quiet = 0
        floor = 0.0 if current is None else self.switch_ratio * scores.get(current, 0.0)
        for camera in [*scores, *(c for c in self._streak if c not in scores)]:
            level = scores.get(camera, 0.0)
            rising = camera != current and level >= self.on_threshold and level >= floor
            self._streak[camera] = self._streak.get(camera, 0) + 1 if rising else 0
        ready = [camera for camera, count in self._streak.items() if count >= self.hold]
        if ready:
            chosen = max(ready, key=lambda camera: scores.get(camera, 0.0))
            logger.info(
                "speaker: camera %s is talking (score %.4f, was %s)",
                chosen,
                scores.get(chosen, 0.0),
                current,
            )
            self.active = chosen
            self._quiet = 0
            self._streak.clear()
        return self.active


def _iou(a: Box, b: Box) -> float:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    """One face followed from set to set: its box and its window of samples."""

    box: Box
    samples: deque[float]
    misses: int = 0


@dataclass
class _Camera:
    """What the detector keeps per camera between sets."""

    previous: GrayImage | None = None
    tracks: list[_Track] = field(default_factory=list)
    #: Sets since the last detection (None: never). Cameras start their rounds staggered
    #: by ``stagger`` sets, so that the detections of several cameras fall on different sets.
    since_detect: int | None = None
    stagger: int = 0


def _match(tracks: list[_Track], boxes: list[Box], window: int) -> list[_Track]:
    """Continue ``tracks`` with the detected ``boxes`` (greedy, by overlap)."""
    pairs = sorted(
        ((_iou(t.box, b), ti, bi) for ti, t in enumerate(tracks) for bi, b in enumerate(boxes)),
        reverse=True,
    )
    used_tracks: set[int] = set()
    used_boxes: set[int] = set()
    for overlap, ti, bi in pairs:
        if overlap < _MATCH_IOU:
            break
        if ti in used_tracks or bi in used_boxes:
            continue
        used_tracks.add(ti)
        used_boxes.add(bi)
        tracks[ti].box, tracks[ti].misses = boxes[bi], 0
    kept = []
    for ti, track in enumerate(tracks):
        if ti not in used_tracks:
            track.misses += 1
        if track.misses <= _MAX_MISSES:
            kept.append(track)
    kept += [
        _Track(box, deque(maxlen=window)) for bi, box in enumerate(boxes) if bi not in used_boxes
    ]
    return kept


def crop_face(image: BGRImage, box: Box, size: tuple[int, int], *, margin: float = 0.3) -> BGRImage:
    """The face in ``box`` with ``margin`` (a fraction of the box) around it, resized to
    ``size`` (width, height) keeping its aspect, on black bars."""
    x, y, w, h = box
    height, width = image.shape[:2]
    left, top = max(0, round(x - margin * w)), max(0, round(y - margin * h))
    right = min(width, round(x + w + margin * w))
    bottom = min(height, round(y + h + margin * h))
    out_w, out_h = size
    canvas: BGRImage = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    if right > left and bottom > top:
        letterbox(image[top:bottom, left:right], canvas)
    return canvas


def annotate_speaker(
    image: BGRImage, result: SpeakerResult, camera: str, *, main: bool = False
) -> BGRImage:
    """Outline ``camera``'s faces of ``result`` on ``image`` (that camera's frame), the
    talking one marked, each labelled with its score; draws in place and returns it.

    ``main=True``: ``image`` is the camera's main frame, so the boxes mapped to it
    (:attr:`SpeakerResult.main_faces`) are drawn rather than those of the searched frame.
    """
    boxes = (result.main_faces if main else result.faces).get(camera, [])
    active_face = result.main_active_face if main else result.active_face
    talking = [camera == result.active and box == active_face for box in boxes]
    labels = [f"{score:.3f}" for score in result.face_scores.get(camera, [])]
    return draw_face_boxes(image, boxes, active=talking, labels=labels)


class SpeakerDetector:
    """A processor that finds who is talking and publishes a picture of their face.

    ``cameras`` limits it to some cameras of the group (default: every camera of each
    set). Faces come from ``detector`` (default :class:`HaarFaceDetector`), run every
    ``detect_every`` sets per camera, the boxes followed in between; mouths are scored by
    ``scorer`` (default :class:`MouthMotionScorer`), whose thresholds are the defaults of
    ``on_threshold``/``off_threshold``. The active camera changes as
    :class:`SpeakerSelector` says with ``hold`` and ``switch_ratio``. :attr:`result` is the
    newest :class:`SpeakerResult` (``on_result`` is also called with it, on the
    processor's thread), and :attr:`output` gets the speaker view: the talking face with
    ``margin``, letterboxed to ``view_size`` (width, height) and labelled with its camera,
    or a dark "no speaker" picture of the same size.

    ``role`` is the stream role it asks its group for (:meth:`StreamGroup.add_processor`):
    ``"sub"`` by default, so cameras with a small sub stream are searched on it and the
    others on their main stream. Faces found on a sub frame are mapped to main pixels by
    the ratio of the two sizes (both streams show the whole picture), and the view is
    cropped from the main frame with the same capture time.
    """

    #: Recorded-only processors use main; detection is cheaper on a small stream.
    role: str = "sub"

    def __init__(
        self,
        cameras: Sequence[str] | None = None,
        *,
        detector: FaceDetector | None = None,
        scorer: MouthScorer | None = None,
        on_threshold: float | None = None,
        off_threshold: float | None = None,
        hold: int = 6,
        switch_ratio: float = 1.5,
        detect_every: int = 5,
        view_size: tuple[int, int] = (320, 320),
        margin: float = 0.3,
        on_result: Callable[[SpeakerResult], None] | None = None,
        name: str = "speaker",
        role: str = "sub",
    ) -> None:
        """Describe the detector (no I/O); a bad value raises :class:`~syncstream.ConfigError`."""
        if cameras is not None:
            cameras = list(cameras)
            if not cameras or len(set(cameras)) != len(cameras):
                raise ConfigError(f"cameras must be unique names, at least one: {cameras!r}")
        if detect_every < 1:
            raise ConfigError(f"detect_every must be at least 1 set, got {detect_every!r}")
        if len(view_size) != 2 or min(view_size) < 16:
            raise ConfigError(f"view_size must be (width, height), 16 pixels or more: {view_size}")
        if not margin >= 0.0:
            raise ConfigError(f"margin must be 0 or more, got {margin!r}")
        self.cameras = cameras
        self.detector: FaceDetector = detector if detector is not None else HaarFaceDetector()
        self.scorer: MouthScorer = scorer if scorer is not None else MouthMotionScorer()
        self.selector = SpeakerSelector(
            on_threshold=self.scorer.on_threshold if on_threshold is None else on_threshold,
            off_threshold=self.scorer.off_threshold if off_threshold is None else off_threshold,
            hold=hold,
            switch_ratio=switch_ratio,
        )
        self.detect_every = detect_every
        self.view_size = (int(view_size[0]), int(view_size[1]))
        self.margin = margin
        self.on_result = on_result
        self.role = role
        self._group: StreamGroup | None = None
        self._output = ImageOutput(name)
        self._state: dict[str, _Camera] = {}
        self._lock = threading.Lock()
        self._result: SpeakerResult | None = None
        self._view: BGRImage | None = None

    def attach(self, group: StreamGroup) -> None:
        """Keep ``group``: its main streams give the sizes to map faces to, and the view."""
        self._group = group

    @property
    def output(self) -> ImageOutput:
        """The speaker view: one picture per set, always ``view_size``."""
        return self._output

    @property
    def result(self) -> SpeakerResult | None:
        """The newest result, or None before the first set."""
        with self._lock:
            return self._result

    def __call__(self, frameset: FrameSet, /) -> None:
        """Score every camera of ``frameset``, update the speaker, publish the view."""
        names = self.cameras
        if names is None:
            names = [*frameset.frames, *frameset.missing]
        scores: dict[str, float] = {}
        faces: dict[str, list[Box]] = {}
        face_scores: dict[str, list[float]] = {}
        missing: list[str] = []
        for camera in names:
            state = self._state.get(camera)
            if state is None:
                state = self._state[camera] = _Camera(stagger=len(self._state) % self.detect_every)
            if camera not in frameset.frames:
                state.previous = None  # no frame-to-frame motion across a gap
                missing.append(camera)
                continue
            per_face = self._update_camera(camera, state, frameset.frames[camera].image)
            faces[camera] = [track.box for track in state.tracks]
            face_scores[camera] = per_face
            scores[camera] = max(per_face, default=0.0)
        active = self.selector.update(scores)
        active_face: Box | None = None
        if active is not None and face_scores.get(active):
            best = int(np.argmax(face_scores[active]))
            active_face = faces[active][best]
        mains = {name: self._main_frame(frameset, name) for name in faces}
        main_faces = {
            name: [scale_box(box, _size(frameset.frames[name]), _size(main)) for box in boxes]
            for name, boxes in faces.items()
            if (main := mains[name]) is not None
        }
        main_active_face: Box | None = None
        if active is not None and active_face is not None and active in main_faces:
            main_active_face = main_faces[active][faces[active].index(active_face)]
        result = SpeakerResult(
            active=active,
            scores=scores,
            faces=faces,
            face_scores=face_scores,
            active_face=active_face,
            frameset_seq=frameset.seq,
            time=frameset.time,
            missing=tuple(missing),
            role=frameset.role,
            main_faces=main_faces,
            main_active_face=main_active_face,
        )
        with self._lock:
            self._result = result
        self._publish(frameset, result, mains)
        if self.on_result is not None:
            self.on_result(result)

    def _update_camera(self, camera: str, state: _Camera, image: BGRImage) -> list[float]:
        gray = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), np.uint8)
        if state.since_detect is None or state.since_detect + 1 >= self.detect_every:
            boxes = self.detector.detect(gray)
            state.tracks = _match(state.tracks, boxes, self.scorer.window)
            state.since_detect = -state.stagger if state.since_detect is None else 0
            logger.debug("speaker: camera %s: %d face(s) found", camera, len(boxes))
        else:
            state.since_detect += 1
        per_face = []
        for track in state.tracks:
            sample = self.scorer.measure(gray, state.previous, track.box)
            if sample is not None:
                track.samples.append(sample)
            per_face.append(self.scorer.score(track.samples))
        state.previous = gray
        return per_face

    def _main_frame(self, frameset: FrameSet, camera: str) -> Frame | None:
        """The main frame captured with ``camera``'s frame of ``frameset``: that frame on a
        main set; else the main stream's recent frame of the nearest capture time, within
        half its frame interval, or its newest (None before the first).

        One sender gives a sub frame the very capture time of its main frame; an IP
        camera's two RTSP sessions each map their own reports, a millisecond or so apart.
        """
        frame = frameset.frames[camera]
        if frame.role == MAIN_ROLE:
            return frame
        stream = None if self._group is None else self._group.streams.get(camera)
        recent = [] if stream is None else stream.recent()
        target = frame.capture_time
        timed = [(f.capture_time, f) for f in recent if f.capture_time is not None]
        if target is not None and timed:
            steps = [b[0] - a[0] for a, b in itertools.pairwise(timed) if b[0] > a[0]]
            tolerance = min(steps) / 2 if steps else 0.0
            when, nearest = min(timed, key=lambda item: abs(item[0] - target))
            if abs(when - target) <= tolerance:
                return nearest
        return recent[-1] if recent else None

    def _publish(
        self, frameset: FrameSet, result: SpeakerResult, mains: Mapping[str, Frame | None]
    ) -> None:
        active = result.active
        main = None if active is None else mains.get(active)
        if active is not None and main is not None and result.main_active_face is not None:
            box = result.main_active_face
            view = crop_face(main.image, box, self.view_size, margin=self.margin)
            put_label(view, active, anchor="bottom-left")
        elif active is not None and result.active_face is not None:
            image = frameset.frames[active].image
            view = crop_face(image, result.active_face, self.view_size, margin=self.margin)
            put_label(view, active, anchor="bottom-left")
        elif active is not None and self._view is not None:
            view = self._view  # the active camera is missing: show its last picture again
        else:
            view = np.full((self.view_size[1], self.view_size[0], 3), _BACKGROUND, np.uint8)
            put_label(view, "no speaker", anchor="bottom-left", color=(160, 160, 160))
        self._view = view if active is not None else None
        self._output.publish(view, frameset_seq=frameset.seq)

    def close(self) -> None:
        """Close :attr:`output` (its readers get ``StreamClosed``); idempotent."""
        self._output.close()
        self._group = None

    def __repr__(self) -> str:
        result = self.result
        active = None if result is None else result.active
        return f"SpeakerDetector(cameras={self.cameras!r}, active={active!r})"


def _size(frame: Frame) -> tuple[int, int]:
    return frame.width, frame.height
