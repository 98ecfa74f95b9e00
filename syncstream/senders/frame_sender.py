"""FrameSender: a program's own pictures sent as a syncstream camera, from Python.

What the ffmpeg senders do for a device or a test pattern, :class:`FrameSender` does for
numpy BGR pictures a program makes (a camera it reads itself, a rendered view, a
processed picture): H.264 in MPEG-TS over UDP, with each picture's capture time (the
wall clock of this host) written into its PTS, as ``setpts=RTCTIME`` does in the ffmpeg
recipe (:mod:`~syncstream.senders.command`). A :class:`~syncstream.VideoStream` or a
:class:`~syncstream.StreamGroup` reading the port gets ``frame.capture_time`` = the time
given to :meth:`FrameSender.send` (PTS ticks are 1/90000 s).

The encoding is the recipe's: libx264 ``ultrafast``/``zerolatency``, ``yuv420p``, the
90 kHz time base kept (``mpegts_copyts``), no mux delay, the video PES length written
(the receiver hands a frame over as soon as its last packet is in) and each frame flushed
in ``pkt_size`` datagrams. :meth:`~FrameSender.send` never waits for the encoder: a
picture waits in a slot of one, and one replaced before it was encoded is counted as
dropped.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType
from typing import Any, TypedDict, Unpack

import av
import cv2
import numpy as np
from av.container import OutputContainer
from av.video.stream import VideoStream as AVVideoStream
from numpy.typing import ArrayLike
from pydantic import Field, field_validator

from ..config import SenderEncoding
from ..errors import ConfigError, MissingDependency, SenderError, StreamClosed, SyncStreamError
from ..frames import BGRImage
from ..logs import Throttle
from ..slot import LatestSlot
from ..urls import parse_udp_destination

__all__ = ["FrameSender", "FrameSenderConfig", "FrameSenderOptions", "FrameSenderStats"]

logger = logging.getLogger(__name__)
_throttle = Throttle(logger)  # a datagram refused per frame, at worst: a line per 10 s

_JOIN_TIMEOUT = 2.0
_TICKS = 90_000  # MPEG-TS timestamps: 90 kHz
_TIME_BASE = Fraction(1, _TICKS)
_SEND_BUFFER = 1 << 20  # a 1080p keyframe is ~150 datagrams: they leave in one burst
#: The recipe's muxer options (see :func:`~syncstream.senders.mpegts_udp_mux_args`):
#: ``-mpegts_copyts 1``, ``-muxdelay 0`` (``max_delay``), ``-omit_video_pes_length 0``
#: and ``-flush_packets 1``.
_MUXER_OPTIONS = {
    "mpegts_copyts": "1",
    "max_delay": "0",
    "omit_video_pes_length": "0",
    "flush_packets": "1",
}
#: The recipe's encoder: ``-preset ultrafast -tune zerolatency``.
_ENCODER_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency"}
#: PyAV's (FFmpeg's) errors and the socket's, as ours: every call into PyAV that can fail
#: runs in :func:`_translated`.
_FOREIGN_ERRORS = (av.FFmpegError, OSError, ValueError)
_UNITS = {"k": 1_000, "m": 1_000_000}


class FrameSenderConfig(SenderEncoding):
    """Where and how a :class:`FrameSender` sends: the destination and the H.264 encoding.

    ``fps``, ``bitrate``, ``gop`` and ``pkt_size`` are an ffmpeg sender's
    (:class:`~syncstream.config.SenderEncoding`).
    """

    destination: str = Field(description="udp://host:port of the receiver.")
    name: str | None = Field(
        default=None,
        min_length=1,
        description="Name in the thread's name and in log lines; None: the destination.",
    )
    size: tuple[int, int] | None = Field(
        default=None,
        description="Width and height sent (even numbers); None: the first picture's (an "
        "odd side one pixel less). Pictures of another size are scaled to it.",
    )

    @field_validator("destination")
    @classmethod
    def _check_destination(cls, value: str) -> str:
        parse_udp_destination(value)
        return value

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None:
            width, height = value
            if not (2 <= width <= 8192 and 2 <= height <= 8192) or width % 2 or height % 2:
                raise ValueError("size must be even numbers from 2 to 8192")
        return value

    @property
    def bit_rate(self) -> int | None:
        """``bitrate`` in bits per second."""
        if self.bitrate is None:
            return None
        unit = _UNITS.get(self.bitrate[-1].lower(), 1)
        number = self.bitrate.rstrip("kKmM")
        return round(float(number) * unit)


class FrameSenderOptions(TypedDict, total=False):
    """Keyword options of :class:`FrameSender`: the fields of :class:`FrameSenderConfig`."""

    name: str | None
    fps: float
    size: tuple[int, int] | None
    bitrate: str | None
    gop: int | None
    pkt_size: int


@dataclass(frozen=True)
class FrameSenderStats:
    """A snapshot of a :class:`FrameSender`'s counters."""

    #: Pictures given to send().
    submitted: int
    #: Pictures encoded and sent.
    sent: int
    #: Pictures replaced by a newer one before the encoder took them (it was busy).
    dropped: int
    #: Pictures refused because their capture time was not after the previous one's.
    out_of_order: int
    #: UDP datagrams sent, and their bytes.
    datagrams: int
    bytes_sent: int
    #: Datagrams the socket refused (logged, counted; sending goes on).
    send_errors: int
    #: Why the encoder stopped (send() raises it), else None.
    error: str | None


@dataclass(frozen=True, slots=True)
class _Picture:
    """A picture waiting for the encoder: our own copy, and its capture time in ticks."""

    image: BGRImage
    pts: int


class _DatagramSink(io.RawIOBase):
    """The muxer's output: each write (at most ``pkt_size`` bytes, whole TS packets) is
    one datagram. A datagram the socket refuses is counted and logged; the muxer goes on."""

    def __init__(self, name: str, sock: socket.socket, address: Any) -> None:
        super().__init__()
        self.name = name
        self.sock = sock
        self.address = address
        self.datagrams = 0
        self.bytes_sent = 0
        self.errors = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = len(data)
        try:
            self.sock.sendto(data, self.address)
        except OSError as exc:  # no route, a full buffer, ICMP refusals: the next may pass
            self.errors += 1
            _throttle.warning((self.name, "send"), "%s: datagram not sent: %s", self.name, exc)
            return size
        self.datagrams += 1
        self.bytes_sent += size
        return size


@contextmanager
def _translated(name: str, doing: str) -> Iterator[None]:
    """Raise PyAV's and the socket's errors inside as :class:`SenderError`."""
    try:
        yield
    except SyncStreamError:
        raise
    except _FOREIGN_ERRORS as exc:
        raise SenderError(f"{name}: {doing}: {exc}") from exc


class _Encoder:
    """The encoder thread's state: the socket, and the muxer and H.264 stream once the
    first picture gave the size. Used by that thread only."""

    def __init__(self, name: str, config: FrameSenderConfig, sink: _DatagramSink) -> None:
        self.name = name
        self.config = config
        self.sink = sink
        self.container: OutputContainer | None = None
        self.stream: AVVideoStream | None = None
        self.last_pts: int | None = None

    def open(self, image: BGRImage) -> AVVideoStream:
        """Open the muxer and the encoder for the size of ``config`` or of ``image``."""
        config = self.config
        if config.size is not None:
            width, height = config.size
        else:  # yuv420p: even sides
            height, width = (max(2, side - side % 2) for side in image.shape[:2])
        with _translated(self.name, "cannot open the encoder"):
            container = av.open(
                self.sink,
                "w",
                format="mpegts",
                container_options=_MUXER_OPTIONS,
                buffer_size=config.pkt_size,  # each flush of the buffer is one datagram
            )
            self.container = container
            stream = container.add_stream("libx264")
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.time_base = _TIME_BASE  # -enc_time_base 1:90000: the stamps unrounded
            context = stream.codec_context
            context.time_base = _TIME_BASE
            context.framerate = Fraction(config.fps).limit_denominator(1001)
            context.gop_size = config.effective_gop
            if config.bit_rate is not None:
                context.bit_rate = config.bit_rate
            context.options = dict(_ENCODER_OPTIONS)
        self.stream = stream
        logger.info("%s: sending %dx%d H.264 to %s", self.name, width, height, config.destination)
        return stream

    def encode(self, picture: _Picture) -> bool:
        """Encode and send ``picture``; False when its capture time is not after the last."""
        if self.last_pts is not None and picture.pts <= self.last_pts:
            return False
        stream = self.stream if self.stream is not None else self.open(picture.image)
        image = picture.image
        if image.shape[:2] != (stream.height, stream.width):
            size = (stream.width, stream.height)
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        with _translated(self.name, "encoding failed"):
            # OpenCV's BT.601 conversion (limited range, as swscale's): a tenth of the
            # cost of PyAV's bgr24 frame and reformat (0.3 against 2.6 ms at 640x480)
            planes = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), np.uint8)
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = picture.pts
            frame.time_base = _TIME_BASE
            self._mux(stream.encode(frame))
        self.last_pts = picture.pts
        return True

    def _mux(self, packets: list[av.Packet[Any]]) -> None:
        assert self.container is not None
        for packet in packets:
            self.container.mux(packet)  # flushed at once: the frame leaves now

    def close(self) -> None:
        """Flush the encoder and close the muxer and the socket."""
        container, stream = self.container, self.stream
        self.container = self.stream = None
        try:
            if container is not None and stream is not None:
                with _translated(self.name, "closing the encoder failed"):
                    self._mux_end(container, stream)
        finally:
            self.sink.sock.close()

    def _mux_end(self, container: OutputContainer, stream: AVVideoStream) -> None:
        for packet in stream.encode(None):
            container.mux(packet)
        container.close()


class FrameSender:
    """Sends a program's BGR pictures as a syncstream camera: H.264 in MPEG-TS over UDP,
    each picture's capture time in its timestamp.

    >>> with FrameSender("udp://192.0.2.10:9001", fps=30) as sender:  # doctest: +SKIP
    ...     ok, image = capture.read()
    ...     sender.send(image)  # capture_time: now; never waits for the encoder

    ``destination`` is ``udp://host:port`` or a whole :class:`FrameSenderConfig`;
    ``options`` are its fields. Nothing is opened before :meth:`start`. One encoder thread
    (``syncstream-frame-sender:NAME``) takes the newest picture; while it is busy, a newer
    picture replaces the waiting one (``stats.dropped``), so a program never waits for the
    encoder and the stream never falls behind. An encoder failure is raised by the next
    :meth:`send` as :class:`~syncstream.errors.SenderError`.
    """

    def __init__(
        self, destination: str | FrameSenderConfig, **options: Unpack[FrameSenderOptions]
    ) -> None:
        """Describe the sender; :class:`~syncstream.errors.ConfigError` for a bad option."""
        if isinstance(destination, FrameSenderConfig):
            config = FrameSenderConfig.model_validate({**destination.model_dump(), **options})
        else:
            config = FrameSenderConfig(destination=destination, **options)
        self.config = config
        self.name = config.name if config.name is not None else config.destination
        self._cond = threading.Condition()
        # drain: a picture still waiting at close() is sent before the encoder stops
        self._slot: LatestSlot[_Picture] = LatestSlot(
            self.name, noun="picture", cond=self._cond, keep_taken=False
        )
        self._thread: threading.Thread | None = None
        self._encoder: _Encoder | None = None
        self._started = False
        self._closed = False
        self._submitted = 0
        self._sent = 0
        self._out_of_order = 0
        self._error: SenderError | None = None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> FrameSender:
        """Check the encoder, open the socket and start the encoder thread; idempotent.

        Raises :class:`MissingDependency` when FFmpeg has no libx264,
        :class:`ConfigError` when the destination's host does not resolve, and
        ``StreamClosed`` for a closed sender.
        """
        with self._cond:
            if self._closed:
                raise StreamClosed(f"{self.name}: sender is closed and cannot restart")
            if self._started:
                return self
            try:
                av.Codec("libx264", "w")
            except ValueError as exc:  # UnknownCodecError
                raise MissingDependency(f"{self.name}: FFmpeg has no libx264 encoder") from exc
            sink = _DatagramSink(self.name, *self._socket())
            self._encoder = _Encoder(self.name, self.config, sink)
            self._thread = threading.Thread(
                target=self._run,
                args=(self._encoder,),
                name=f"syncstream-frame-sender:{self.name}",
                daemon=True,
            )
            self._started = True
            self._thread.start()
        return self

    def _socket(self) -> tuple[socket.socket, Any]:
        host, port = parse_udp_destination(self.config.destination)
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM
            )[0]
        except socket.gaierror as exc:
            raise ConfigError(f"{self.name}: cannot resolve {host!r}: {exc}") from exc
        with _translated(self.name, "cannot open a UDP socket"):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
            except OSError:
                sock.close()
                raise
        return sock, address

    def close(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Send the picture still waiting, flush the encoder, stop the thread (joined
        within ``timeout`` s) and close the socket; idempotent. Never raises the encoder's
        error (:attr:`error` keeps it)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._slot.close()  # the thread takes what is left, then ends
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s: encoder did not stop within %.1f s", self.name, timeout)
        logger.debug("%s: closed after %d pictures", self.name, self._sent)

    def __enter__(self) -> FrameSender:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the program's side -----------------------------------------------------------

    def send(self, image: ArrayLike, capture_time: float | None = None) -> int:
        """Hand over ``image`` (``HxWx3`` ``uint8`` BGR, or a :class:`~syncstream.Frame`)
        to be sent with ``capture_time`` (epoch seconds on this host's wall clock; None:
        now). Copies the picture (the array may be reused at once) and returns its number
        from 0; never waits for the encoder.

        Raises :class:`ConfigError` for a picture of another shape or type,
        :class:`SenderError` once the encoder failed, ``StreamClosed`` after :meth:`close`
        and :class:`SyncStreamError` before :meth:`start`.
        """
        stamp = time.time() if capture_time is None else capture_time
        picture = np.array(image, copy=True, order="C")
        if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
            raise ConfigError(
                f"{self.name}: a picture must be HxWx3 uint8 BGR, got {picture.dtype} "
                f"{picture.shape}"
            )
        if not 1 <= picture.shape[0] <= 8192 or not 1 <= picture.shape[1] <= 8192:
            raise ConfigError(f"{self.name}: a picture of {picture.shape[:2]} is out of range")
        if not np.isfinite(stamp) or stamp < 0:
            raise ConfigError(f"{self.name}: capture_time must be epoch seconds, got {stamp!r}")
        with self._cond:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StreamClosed(f"{self.name}: sender is closed")
            if not self._started:
                raise SyncStreamError(f"{self.name}: not started; call start() or use `with`")
            self._submitted += 1
            return self._slot.put(_Picture(picture, round(stamp * _TICKS)))

    @property
    def error(self) -> SenderError | None:
        """Why the encoder stopped, else None."""
        return self._error

    @property
    def stats(self) -> FrameSenderStats:
        """A snapshot of the counters."""
        with self._cond:
            encoder = self._encoder
            sink = encoder.sink if encoder is not None else None
            return FrameSenderStats(
                submitted=self._submitted,
                sent=self._sent,
                dropped=self._slot.skipped,
                out_of_order=self._out_of_order,
                datagrams=sink.datagrams if sink is not None else 0,
                bytes_sent=sink.bytes_sent if sink is not None else 0,
                send_errors=sink.errors if sink is not None else 0,
                error=None if self._error is None else str(self._error),
            )

    # -- encoder thread ---------------------------------------------------------------

    def _run(self, encoder: _Encoder) -> None:
        try:
            self._encode_loop(encoder)
        except SenderError as exc:
            self._fail(exc)
        except BaseException as exc:  # a bug must reach the owner, not vanish with the thread
            logger.exception("%s: encoder crashed", self.name)
            error = SenderError(f"{self.name}: encoder crashed: {exc!r}")
            error.__cause__ = exc
            self._fail(error)
        finally:
            try:
                encoder.close()
            except SenderError as exc:
                logger.warning("%s", exc)

    def _encode_loop(self, encoder: _Encoder) -> None:
        while True:
            try:
                picture = self._slot.take()
            except StreamClosed:  # closed, and the last picture sent
                return
            if encoder.encode(picture):
                with self._cond:
                    self._sent += 1
                continue
            with self._cond:
                self._out_of_order += 1
            _throttle.warning(
                (self.name, "order"),
                "%s: a picture's capture time is not after the previous one's: not sent",
                self.name,
            )

    def _fail(self, error: SenderError) -> None:
        logger.error("%s", error)
        with self._cond:
            self._error = error  # send() raises it from now on
            self._slot.close()

    def __repr__(self) -> str:
        return f"FrameSender({self.config.destination!r}, sent={self._sent})"
