"""Overlay helpers: text with a backing box, clock, latency, face boxes, markers.

Each draws in place on a BGR image and returns it, so calls chain. Text is drawn with
OpenCV's Hershey font, scaled to the image, on a dark box so it stays legible on any
picture.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import cv2

from ..frames import BGRImage

__all__ = [
    "Box",
    "Color",
    "draw_clock",
    "draw_face_boxes",
    "draw_latency",
    "draw_marker",
    "format_clock",
    "put_label",
    "scale_box",
]

#: A rectangle in pixels: x, y (top-left), width, height, as OpenCV's detectors return it.
Box = tuple[int, int, int, int]
#: A colour in OpenCV's BGR order.
Color = tuple[int, int, int]


def scale_box(box: Box, from_size: tuple[int, int], to_size: tuple[int, int]) -> Box:
    """``box`` (x, y, w, h) in a picture of ``from_size`` (width, height) moved to the same
    place in a picture of ``to_size`` showing the same view, e.g. from a camera's sub
    stream to its main stream."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    x, y, w, h = box
    return round(x * sx), round(y * sy), round(w * sx), round(h * sy)


WHITE: Color = (255, 255, 255)
GREEN: Color = (60, 220, 60)
AMBER: Color = (0, 190, 255)
RED: Color = (40, 40, 230)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_scale(image: BGRImage) -> float:
    """A font scale that gives text about 1/24 of the image height (at least legible)."""
    return max(0.35, float(min(image.shape[0], image.shape[1] * 0.75)) / 24 / 22)


def put_label(
    image: BGRImage,
    text: str,
    org: tuple[int, int] = (6, 6),
    *,
    color: Color = WHITE,
    scale: float | None = None,
    background: Color | None = (0, 0, 0),
    anchor: str = "top-left",
) -> BGRImage:
    """Draw ``text`` with its box's corner ``anchor`` (top-left, top-right, bottom-left,
    bottom-right) at ``org`` (measured from that corner of the image); ``"center"``
    centres the box, offset by ``org``."""
    scale = _text_scale(image) if scale is None else scale
    thickness = max(1, round(scale * 1.6))
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, round(height * 0.3))
    box_w, box_h = width + 2 * pad, height + baseline + 2 * pad
    img_h, img_w = image.shape[:2]
    if anchor == "center":
        x, y = (img_w - box_w) // 2 + org[0], (img_h - box_h) // 2 + org[1]
    else:
        x = org[0] if anchor.endswith("left") else img_w - org[0] - box_w
        y = org[1] if anchor.startswith("top") else img_h - org[1] - box_h
    if background is not None:
        cv2.rectangle(image, (x, y), (x + box_w, y + box_h), background, thickness=-1)
    cv2.putText(
        image, text, (x + pad, y + pad + height), _FONT, scale, color, thickness, cv2.LINE_AA
    )
    return image


def format_clock(epoch_time: float, *, millis: bool = True) -> str:
    """Local wall-clock time of day, ``HH:MM:SS.mmm``."""
    text = time.strftime("%H:%M:%S", time.localtime(epoch_time))
    if millis:
        text += f".{int(epoch_time % 1 * 1000):03d}"
    return text


def draw_clock(
    image: BGRImage, epoch_time: float, *, anchor: str = "bottom-left", color: Color = WHITE
) -> BGRImage:
    """Draw a time of day (a capture time, say) in a corner."""
    return put_label(image, format_clock(epoch_time), anchor=anchor, color=color)


def draw_latency(
    image: BGRImage,
    latency: float | None,
    *,
    anchor: str = "bottom-right",
    warn_above: float = 0.25,
) -> BGRImage:
    """Draw a latency in milliseconds, amber above ``warn_above`` seconds; ``-`` when unknown."""
    if latency is None:
        return put_label(image, "- ms", anchor=anchor)
    color = AMBER if latency > warn_above else WHITE
    return put_label(image, f"{latency * 1000:.0f} ms", anchor=anchor, color=color)


def draw_face_boxes(
    image: BGRImage,
    boxes: Iterable[Box],
    *,
    active: Sequence[bool] | None = None,
    labels: Sequence[str] | None = None,
    color: Color = WHITE,
    active_color: Color = GREEN,
) -> BGRImage:
    """Outline faces; ``active[i]`` marks the talking one (thicker, ``active_color``)."""
    thin = max(1, round(min(image.shape[:2]) / 240))
    for i, (x, y, w, h) in enumerate(boxes):
        is_active = bool(active is not None and i < len(active) and active[i])
        cv2.rectangle(
            image,
            (int(x), int(y)),
            (int(x + w), int(y + h)),
            active_color if is_active else color,
            thin * (3 if is_active else 1),
        )
        if labels is not None and i < len(labels):
            put_label(image, labels[i], (int(x), max(0, int(y) - 2 - thin)), background=None)
    return image


def draw_marker(image: BGRImage, text: str, *, color: Color = AMBER) -> BGRImage:
    """Frame the whole image in ``color`` and write ``text`` at the top right (``STALE``)."""
    thick = max(2, round(min(image.shape[:2]) / 80))
    h, w = image.shape[:2]
    cv2.rectangle(image, (0, 0), (w - 1, h - 1), color, thick)
    return put_label(image, text, (thick + 2, thick + 2), anchor="top-right", color=color)
