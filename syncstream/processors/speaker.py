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

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
from pydantic import Field, field_validator, model_validator

from ..config import MAIN_ROLE
from ..errors import ConfigError
from ..frames import BGRImage, Frame, FrameSet
from ..logs import Throttle
from ..role_match import frame_at
from .faces import FaceDetector, GrayImage, HaarFaceDetector, MouthMotionScorer, MouthScorer
from .output import ImageOutput
from .overlay import Box, draw_face_boxes, put_label, scale_box
from .settings import ProcessorSettings
from .wall import letterbox

if TYPE_CHECKING:
    from .group_view import GroupView

__all__ = [
    "SpeakerDetector",
    "SpeakerOptions",
    "SpeakerResult",
    "SpeakerSelector",
    "SpeakerStats",
    "annotate_speaker",
    "crop_face",
]

logger = logging.getLogger(__name__)

_MATCH_IOU = 0.3  # a detection continues a face when their boxes overlap this much
_MAX_MISSES = 2  # detection rounds a face may be missed before it is forgotten
_BACKGROUND = (24, 24, 24)


class SpeakerOptions(ProcessorSettings):
    """The options of a :class:`SpeakerDetector`: its constructor's keywords (but the
    cameras, detector, scorer and callback) and the session file's ``[speaker]`` table."""

    on_threshold: float | None = Field(
        default=None, ge=0, description="Score to become the speaker; None: the scorer's own."
    )
    off_threshold: float | None = Field(
        default=None, ge=0, description="Score below which the speaker is dropped; None: own."
    )
    hold: int = Field(default=6, ge=1, description="Sets a change must last before it counts.")
    switch_ratio: float = Field(
        default=1.5, ge=1.0, description="Score ratio over the speaker that takes over at once."
    )
    detect_every: int = Field(default=5, ge=1, description="Face detection every N-th set.")
    view_size: tuple[int, int] = Field(
        default=(320, 320), description="Width and height of the speaker view in pixels."
    )
    margin: float = Field(
        default=0.3, ge=0.0, description="Room around the face in the view, a fraction of it."
    )
    role: str = Field(
        default="sub",
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="The camera streams searched for faces: 'sub' where a camera has one "
        "(its main stream otherwise), or 'main'.",
    )

    @field_validator("view_size")
    @classmethod
    def _check_view(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not all(16 <= side <= 4096 for side in value):
            raise ValueError(f"view sides must be 16 to 4096 pixels, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_thresholds(self) -> SpeakerOptions:
        on, off = self.on_threshold, self.off_threshold
        if on is not None and off is not None and off > on:
            raise ValueError(f"off_threshold ({off!r}) must not exceed on_threshold ({on!r})")
        return self


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


@dataclass(frozen=True)
class SpeakerStats:
    """A snapshot of a speaker detector's counters."""

    #: Frame sets scored.
    sets: int
    #: Faces of a sub frame whose main frame of the same instant was found (the view and
    #: the main boxes come from it), counted per camera and set.
    main_matched: int
    #: ... and those whose main frame was not found (not arrived yet, already gone from
    #: the main stream's recent frames, or no capture times): the view is then cut from
    #: the searched frame, and the boxes are mapped to main pixels by the sizes alone.
    main_unmatched: int


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
    talking one marked, each labelled with its score; draws in place and returns it. A
    frame's picture is shared and read-only: pass a copy (``frame.image.copy()``).

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
        """Describe the detector (no I/O); a bad value raises :class:`~syncstream.ConfigError`
        (the limits are those of :class:`SpeakerOptions`, kept in :attr:`options`)."""
        if cameras is not None:
            cameras = list(cameras)
            if not cameras or len(set(cameras)) != len(cameras):
                raise ConfigError(f"cameras must be unique names, at least one: {cameras!r}")
        options = SpeakerOptions.check(
            name,
            on_threshold=on_threshold,
            off_threshold=off_threshold,
            hold=hold,
            switch_ratio=switch_ratio,
            detect_every=detect_every,
            view_size=view_size,
            margin=margin,
            role=role,
        )
        self.options = options
        self.cameras = cameras
        self.detector: FaceDetector = detector if detector is not None else HaarFaceDetector()
        self.scorer: MouthScorer = scorer if scorer is not None else MouthMotionScorer()
        on, off = options.on_threshold, options.off_threshold
        self.selector = SpeakerSelector(
            on_threshold=self.scorer.on_threshold if on is None else on,
            off_threshold=self.scorer.off_threshold if off is None else off,
            hold=options.hold,
            switch_ratio=options.switch_ratio,
        )
        self.detect_every = options.detect_every
        self.view_size = options.view_size
        self.margin = options.margin
        self.on_result = on_result
        self.role = options.role
        #: Its worker's name in a group and its output's name: ``"speaker"`` by default.
        self.name = name
        self._group: GroupView | None = None
        self._output = ImageOutput(name)
        self._state: dict[str, _Camera] = {}
        self._lock = threading.Lock()
        self._result: SpeakerResult | None = None
        self._view: BGRImage | None = None
        self._sets = self._matched = self._unmatched = 0
        self._throttle = Throttle(logger)

    @classmethod
    def from_options(
        cls,
        options: SpeakerOptions,
        cameras: Sequence[str] | None = None,
        *,
        name: str = "speaker",
    ) -> SpeakerDetector:
        """A detector of ``options`` (a session file's ``[speaker]`` table, for one), with
        the default face detector and mouth scorer."""
        values = options.model_dump(include=set(SpeakerOptions.model_fields))
        return cls(cameras, name=name, **values)

    def attach(self, group: GroupView) -> None:
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

    @property
    def stats(self) -> SpeakerStats:
        """A snapshot of the counters."""
        with self._lock:
            return SpeakerStats(self._sets, self._matched, self._unmatched)

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
        sizes = {name: self._main_size(name, main) for name, main in mains.items()}
        main_faces = {
            name: [scale_box(box, _size(frameset.frames[name]), size) for box in boxes]
            for name, boxes in faces.items()
            if (size := sizes[name]) is not None
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
            self._sets += 1
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
        main set; else the main stream's recent frame of that capture time (see
        :func:`~syncstream.role_match.frame_at`), or None, counted and logged, when it has
        none: not arrived yet, already gone, or the frames carry no capture times.
        """
        frame = frameset.frames[camera]
        if frame.role == MAIN_ROLE:
            return frame
        group = self._group
        stream = None if group is None else group.streams.get(camera)
        main = None if stream is None else frame_at(frame.capture_time, stream.recent())
        with self._lock:
            if main is None:
                self._unmatched += 1
            else:
                self._matched += 1
        if main is None:
            self._throttle.warning(
                ("unmatched", camera),
                "speaker: camera %s: no main frame captured with its %s frame %d "
                "(capture time %s); the view is cut from the %s frame",
                camera,
                frame.role,
                frame.seq,
                frame.capture_time,
                frame.role,
            )
        return main

    def _main_size(self, camera: str, main: Frame | None) -> tuple[int, int] | None:
        """The size of ``camera``'s main frames: of ``main``, else of its newest."""
        if main is not None:
            return _size(main)
        group = self._group
        stream = None if group is None else group.streams.get(camera)
        recent = [] if stream is None else stream.recent()
        return _size(recent[-1]) if recent else None

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
