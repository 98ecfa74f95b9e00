"""Composition: the cameras of a frame set side by side or as a grid (a CCTV wall).

The picture's size is fixed when the wall is made (tile size times rows and columns, plus
the status bar), so a video writer or a viewer never sees it change, whatever the cameras
do: a camera that drops out becomes a ``NO SIGNAL`` tile, a camera whose frame is older
than ``stale_after`` gets a ``STALE`` marker, and a frame of another shape is letterboxed.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
from pydantic import Field, field_validator

from ..errors import ConfigError
from ..frames import BGRImage, Frame, FrameSet
from .output import ImageOutput
from .overlay import AMBER, RED, draw_latency, draw_marker, format_clock, put_label
from .settings import ProcessorSettings

if TYPE_CHECKING:
    from .group_view import GroupView

__all__ = ["SideBySide", "Wall", "WallOptions", "grid_shape", "letterbox"]

_NO_SIGNAL_BG = (48, 48, 48)


class WallOptions(ProcessorSettings):
    """The options of a :class:`Wall`: its constructor's keywords and the session file's
    ``[wall]`` table."""

    tile_size: tuple[int, int] = Field(
        default=(480, 270), description="Width and height of each camera's tile in pixels."
    )
    columns: int | None = Field(
        default=None, ge=1, le=16, description="Grid columns; None: as square as possible."
    )
    rows: int | None = Field(default=None, ge=1, le=16, description="Grid rows; None: enough.")
    gap: int = Field(default=2, ge=0, le=64, description="Pixels between tiles.")
    labels: bool = Field(default=True, description="Name, capture clock and age on each tile.")
    status_bar: bool = Field(default=True, description="Set number, skew and latency below.")
    stale_after: float = Field(
        default=1.0, gt=0, description="Age (s) beyond which a tile gets a STALE border."
    )

    @field_validator("tile_size")
    @classmethod
    def _check_tile(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not all(16 <= side <= 4096 for side in value):
            raise ValueError(f"tile sides must be 16 to 4096 pixels, got {value!r}")
        return value


def grid_shape(
    count: int, *, columns: int | None = None, rows: int | None = None
) -> tuple[int, int]:
    """Rows and columns for ``count`` tiles: as square as possible, wider than tall.

    >>> grid_shape(2), grid_shape(3), grid_shape(5), grid_shape(16)
    ((1, 2), (2, 2), (2, 3), (4, 4))
    """
    if count < 1:
        raise ConfigError("a wall needs at least one camera")
    if columns is not None and rows is not None:
        if columns * rows < count:
            raise ConfigError(f"{rows} rows x {columns} columns cannot hold {count} cameras")
        return rows, columns
    if columns is not None:
        return math.ceil(count / columns), columns
    if rows is not None:
        return rows, math.ceil(count / rows)
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def letterbox(image: BGRImage, out: BGRImage) -> tuple[int, int, int, int]:
    """Scale ``image`` into ``out`` keeping its aspect ratio, centred on bars of the colour
    already in ``out``. Returns the picture's rectangle in ``out`` (x, y, w, h)."""
    out_h, out_w = out.shape[:2]
    in_h, in_w = image.shape[:2]
    scale = min(out_w / in_w, out_h / in_h)
    w, h = max(1, round(in_w * scale)), max(1, round(in_h * scale))
    x, y = (out_w - w) // 2, (out_h - h) // 2
    if (w, h) == (in_w, in_h):
        out[y : y + h, x : x + w] = image
    else:
        # INTER_AREA averages when shrinking a lot (no aliasing), linear is cheaper otherwise
        shrink = scale < 0.5
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        cv2.resize(image, (w, h), dst=out[y : y + h, x : x + w], interpolation=interpolation)
    return x, y, w, h


class Wall:
    """Composes each frame set into one picture: a grid of tiles, one per camera.

    ``cameras`` fixes the tiles' order; left out, it is taken from the group on
    :meth:`attach` (``group.add_processor(wall)``) or from the first set. Each tile shows
    the camera's name, its capture time (arrival time without sender clocks) and the
    frame's age when the set was made; the status bar shows the set's number, time,
    skew and latency. The picture goes to :attr:`output` and is returned by :meth:`compose`.

    >>> wall = Wall(["door", "hall", "yard"], tile_size=(480, 270))   # doctest: +SKIP
    >>> group.add_processor(wall)                                      # doctest: +SKIP
    >>> wall.output.latest().image.shape                               # doctest: +SKIP
    (562, 960, 3)
    """

    def __init__(
        self,
        cameras: Sequence[str] | None = None,
        *,
        tile_size: tuple[int, int] = (480, 270),
        columns: int | None = None,
        rows: int | None = None,
        gap: int = 2,
        labels: bool = True,
        status_bar: bool = True,
        stale_after: float = 1.0,
        name: str = "wall",
    ) -> None:
        """Describe the wall; nothing is drawn before the first set.

        ``tile_size`` is (width, height) in pixels; ``columns``/``rows`` override the
        automatic grid; ``stale_after`` is the age in seconds beyond which a frame is
        marked STALE. The limits are those of :class:`WallOptions` (:attr:`options`):
        :class:`ConfigError` for a value beyond them, or for a grid too small.
        """
        self.options = WallOptions.check(
            name,
            tile_size=tile_size,
            columns=columns,
            rows=rows,
            gap=gap,
            labels=labels,
            status_bar=status_bar,
            stale_after=stale_after,
        )
        self.tile_size = self.options.tile_size
        self.gap = self.options.gap
        self.labels = self.options.labels
        self.status_bar = self.options.status_bar
        self.stale_after = self.options.stale_after
        self.name = name
        self._columns = self.options.columns
        self._rows = self.options.rows
        self._lock = threading.Lock()
        self._cameras: tuple[str, ...] | None = None
        self._shape: tuple[int, int] = (0, 0)
        self._last_seen: dict[str, float] = {}
        self.output = ImageOutput(name)
        if cameras is not None:
            self._set_cameras(cameras)

    @classmethod
    def from_options(
        cls, options: WallOptions, cameras: Sequence[str] | None = None, *, name: str = "wall"
    ) -> Wall:
        """A wall of ``options`` (a session file's ``[wall]`` table, for one)."""
        values = options.model_dump(include=set(WallOptions.model_fields))
        return Wall(cameras, name=name, **values)

    def _set_cameras(self, cameras: Sequence[str]) -> None:
        names = tuple(cameras)
        if len(set(names)) != len(names):
            raise ConfigError(f"camera names on a wall must be unique: {list(names)}")
        self._shape = grid_shape(len(names), columns=self._columns, rows=self._rows)
        self._cameras = names

    @property
    def cameras(self) -> tuple[str, ...]:
        """The cameras in tile order (empty until known)."""
        return self._cameras or ()

    @property
    def grid(self) -> tuple[int, int]:
        """Rows and columns of tiles ((0, 0) until the cameras are known)."""
        return self._shape

    @property
    def bar_height(self) -> int:
        """Height of the status bar in pixels (0 without one)."""
        return max(18, self.tile_size[1] // 12) if self.status_bar else 0

    @property
    def size(self) -> tuple[int, int]:
        """The picture's (width, height), fixed for the session; (0, 0) until the cameras
        are known."""
        rows, columns = self._shape
        if not rows:
            return 0, 0
        width = columns * self.tile_size[0] + (columns - 1) * self.gap
        height = rows * self.tile_size[1] + (rows - 1) * self.gap + self.bar_height
        return width, height

    def tile_rect(self, camera: str) -> tuple[int, int, int, int]:
        """The tile of ``camera`` in the picture: x, y, width, height."""
        index = self.cameras.index(camera)
        columns = self._shape[1]
        row, column = divmod(index, columns)
        tile_w, tile_h = self.tile_size
        return column * (tile_w + self.gap), row * (tile_h + self.gap), tile_w, tile_h

    def attach(self, group: GroupView) -> None:
        """Take the group's cameras when none were given (called by ``add_processor``)."""
        with self._lock:
            if self._cameras is None:
                self._set_cameras(group.names)

    def __call__(self, frameset: FrameSet) -> None:
        """Compose ``frameset`` and publish the picture to :attr:`output`."""
        self.output.publish(self.compose(frameset), frameset_seq=frameset.seq)

    def compose(self, frameset: FrameSet) -> BGRImage:
        """Return a new picture of ``frameset`` (cameras not on the wall are ignored)."""
        with self._lock:
            if self._cameras is None:
                self._set_cameras([*frameset.frames, *frameset.missing])
            width, height = self.size
            canvas: BGRImage = np.zeros((height, width, 3), np.uint8)
            for camera in self.cameras:
                x, y, w, h = self.tile_rect(camera)
                tile = canvas[y : y + h, x : x + w]
                frame = frameset.frames.get(camera)
                if frame is None:
                    self._draw_no_signal(tile, camera)
                else:
                    self._draw_tile(tile, camera, frame, frameset)
            if self.status_bar:
                self._draw_status(canvas[height - self.bar_height :], frameset)
        return canvas

    def _draw_tile(self, tile: BGRImage, camera: str, frame: Frame, frameset: FrameSet) -> None:
        letterbox(frame.image, tile)
        taken = frame.capture_time
        sender = taken is not None
        stamp = taken if taken is not None else frame.arrival_time
        self._last_seen[camera] = stamp
        age = frameset.emitted_time - stamp
        if not self.labels:
            if age > self.stale_after:
                draw_marker(tile, "STALE")
            return
        put_label(tile, camera)
        put_label(tile, format_clock(stamp) + ("" if sender else " rx"), anchor="bottom-left")
        draw_latency(tile, age, warn_above=self.stale_after / 2)
        if age > self.stale_after:
            draw_marker(tile, "STALE")

    def _draw_no_signal(self, tile: BGRImage, camera: str) -> None:
        tile[:] = _NO_SIGNAL_BG
        h, w = tile.shape[:2]
        scale = max(0.5, min(w, h * 16 / 9) / 480 * 1.2)
        put_label(tile, "NO SIGNAL", (0, 0), color=RED, scale=scale, anchor="center")
        if self.labels:
            put_label(tile, camera)
            seen = self._last_seen.get(camera)
            if seen is not None:
                put_label(tile, "last " + format_clock(seen), anchor="bottom-left")

    def _draw_status(self, bar: BGRImage, frameset: FrameSet) -> None:
        bar[:] = (24, 24, 24)
        scale = max(0.35, bar.shape[0] / 36)
        when = format_clock(frameset.time)
        text = (
            f"set {frameset.seq}  {when}  skew {frameset.skew * 1000:.1f} ms  "
            f"latency {frameset.latency * 1000:.0f} ms  {frameset.clock} clock"
        )
        put_label(bar, text, (4, 1), scale=scale, background=None)
        if frameset.missing:
            missing = "missing: " + ", ".join(frameset.missing)
            put_label(
                bar, missing, (4, 1), scale=scale, background=None, color=AMBER, anchor="top-right"
            )

    def close(self) -> None:
        """Wake readers waiting on :attr:`output` (the group calls this on close)."""
        self.output.close()

    def __repr__(self) -> str:
        rows, columns = self._shape
        return f"Wall({list(self.cameras)}, {rows}x{columns} tiles of {self.tile_size})"


class SideBySide(Wall):
    """The seed's composition: all cameras in one row, each letterboxed to ``tile_size``."""

    def __init__(
        self,
        cameras: Sequence[str] | None = None,
        *,
        tile_size: tuple[int, int] = (640, 480),
        gap: int = 2,
        labels: bool = True,
        status_bar: bool = True,
        stale_after: float = 1.0,
        name: str = "side-by-side",
    ) -> None:
        """A :class:`Wall` with one row of tiles."""
        super().__init__(
            cameras,
            tile_size=tile_size,
            rows=1,
            gap=gap,
            labels=labels,
            status_bar=status_bar,
            stale_after=stale_after,
            name=name,
        )
