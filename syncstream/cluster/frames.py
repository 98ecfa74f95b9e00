"""What crosses the network per frame: a :class:`FrameRecord` from a shard, and the
:class:`RemoteFrame` the driver puts into its merged frame sets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np

from ..errors import SyncStreamError
from ..frames import BGRImage, Frame

__all__ = ["FrameRecord", "PictureMode", "RemoteFrame", "shrink"]

#: Which picture a shard sends with each frame: ``"none"`` (timestamps only, the default),
#: ``"sub"`` (the picture shrunk to at most ``SUB_WIDTH`` pixels wide) or ``"full"``.
PictureMode = Literal["none", "sub", "full"]

SUB_WIDTH = 160


class FrameRecord(NamedTuple):
    """One decoded frame of a shard's camera, as the shard sends it to the driver.

    Plain values only (and a small array with ``pictures="sub"``): a few dozen bytes
    pickled per frame without a picture.
    """

    #: The shard's number for the record (from 0 in each life of the shard).
    rseq: int
    camera: str
    #: The frame's sequence number in its camera's stream on the shard.
    seq: int
    #: Sender wall clock at capture, mapped to the shard node's clock (None: not carried).
    capture_time: float | None
    #: The shard node's wall clock when the frame was decoded.
    arrival_time: float
    width: int
    height: int
    picture: BGRImage | None = None


def shrink(image: BGRImage, width: int = SUB_WIDTH) -> BGRImage:
    """``image`` subsampled by a whole factor to at most ``width`` pixels wide (a copy)."""
    step = max(1, -(-image.shape[1] // width))
    return np.ascontiguousarray(image[::step, ::step])


def _no_picture(camera: str) -> Callable[[], BGRImage]:
    def refuse() -> BGRImage:
        raise SyncStreamError(
            f"{camera}: a cluster frame carries no picture; "
            'create the ClusterGroup with pictures="sub" or "full" to get one'
        )

    return refuse


class RemoteFrame(Frame):
    """A frame decoded on a shard's node: its timestamps, and a picture only when the
    :class:`~syncstream.cluster.ClusterGroup` asked for pictures (else :attr:`image`
    raises :class:`~syncstream.SyncStreamError`).

    ``capture_time`` and ``arrival_time`` are on the shard node's wall clock (the nodes'
    clocks must agree: NTP); ``arrival_mono`` is the driver's ``time.monotonic()`` when the
    record reached it. With ``pictures="sub"`` the picture is smaller than
    ``width`` x ``height``, which are those of the camera's frame.
    """

    __slots__ = ("shard",)

    def __init__(self, record: FrameRecord, *, shard: str, arrival_mono: float) -> None:
        picture = record.picture
        super().__init__(
            source=record.camera,
            seq=record.seq,
            width=record.width,
            height=record.height,
            arrival_time=record.arrival_time,
            arrival_mono=arrival_mono,
            capture_time=record.capture_time,
            image=picture,
            convert=None if picture is not None else _no_picture(record.camera),
        )
        #: The shard (its placement resource) that read the camera.
        self.shard = shard

    @property
    def has_picture(self) -> bool:
        """Whether :attr:`image` returns a picture (the group was asked for pictures)."""
        return self._image is not None
