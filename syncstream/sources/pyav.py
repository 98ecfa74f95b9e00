"""PyAV (FFmpeg) backend: udp:// MPEG-TS, rtsp://, files and V4L2 devices, with raw PTS.

Decoding is tuned for delay, not throughput: slice threading only (frame threading holds
one frame per thread: measured 137 ms against 72 ms on loopback), ``fflags=nobuffer`` and
``flags=low_delay``, and a small probe so the first frame is not held back. Pictures stay
in the decoder's YUV until a consumer asks for BGR.

RTP (rtsp://) carries no wall clock in its timestamps, but the camera's RTCP sender reports
map them to its wall clock, and FFmpeg attaches that mapping to every packet after the first
report (``AV_PKT_DATA_PRFT``). It becomes the frame's ``sender_time``; frames before the
first report have none.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame

from ..clock import MPEGTS_PTS_PERIOD
from ..config import DEVICE_PREFIXES, StreamConfig
from ..errors import SourceChanged, SourceError, SourceStalled, StreamEnded
from ..frames import BGRImage
from ..logs import Throttle
from ..urls import redact_text, redact_url
from .base import (
    LOW_DELAY_OPTIONS,
    OPEN_TIMEOUT_CAP,
    READ_TIMEOUT_CAP,
    EncodedPacket,
    PacketFormat,
    PacketListener,
    SourceCounters,
    SourceFrame,
    check_picture_size,
)
from .pipe import PipeReader
from .udp import UdpTsReader, parse_udp_url

__all__ = ["PyAVSource", "v4l2_options"]

logger = logging.getLogger(__name__)
_throttle = Throttle(logger)  # closing fails at each reconnect, at worst: a line per 10 s

_NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "srt://", "tcp://")
_RTSP_SCHEMES = ("rtsp://", "rtsps://")
#: Demuxers of RTP, whose timestamps start at random and whose wall clock comes from RTCP.
_RTP_FORMATS = frozenset({"rtsp", "rtp", "sdp"})
#: FFmpeg's AVProducerReferenceTime: the wall clock in microseconds since the epoch, flags.
_PRFT = struct.Struct("=qi")
#: Wall times kept for packets whose frame has not been decoded yet (reordering, errors).
_WALL_TIMES_KEPT = 64
#: Codecs whose decoders forget a refused picture size (see :func:`_mpeg_video_size`).
_MPEG_VIDEO = frozenset({"mpeg1video", "mpeg2video"})
#: PyAV's (FFmpeg's) errors as ours: the first row that matches wins. Every call into
#: PyAV that can fail runs in :meth:`PyAVSource._translated`, which uses it.
_AV_ERRORS: tuple[tuple[type[Exception], type[SourceError]], ...] = (
    (av.error.ExitError, SourceStalled),  # PyAV's timeout on a native protocol: no data
    (av.FFmpegError, SourceError),
    (OSError, SourceError),
    (ValueError, SourceError),  # av.open of an option or URL it cannot take
)
_SEQUENCE_HEADER = b"\x00\x00\x01\xb3"
_EXTENSION_START = b"\x00\x00\x01\xb5"


def _wall_time(packet: av.Packet[Any]) -> float | None:
    """The sender's wall clock for ``packet`` (epoch seconds) from its PRFT side data."""
    if not packet.has_sidedata("prft"):
        return None
    data = bytes(packet.get_sidedata("prft"))
    if len(data) < _PRFT.size:
        return None
    wallclock, _flags = _PRFT.unpack_from(data)
    return float(wallclock) / 1_000_000


def _mpeg_video_size(data: bytes) -> tuple[int, int] | None:
    """The picture size declared by an MPEG-1/2 sequence header in ``data`` (with the
    high bits of its sequence extension), or None when ``data`` holds none."""
    start = data.find(_SEQUENCE_HEADER)
    if start < 0 or start + 7 > len(data):
        return None
    head = data[start + 4 : start + 7]
    width = (head[0] << 4) | (head[1] >> 4)
    height = ((head[1] & 0x0F) << 8) | head[2]
    ext = data.find(_EXTENSION_START, start + 4)
    if 0 <= ext <= len(data) - 7 and data[ext + 4] >> 4 == 1:  # a sequence extension
        tail = data[ext + 4 : ext + 7]
        width |= (((tail[1] & 0x01) << 1) | (tail[2] >> 7)) << 12
        height |= ((tail[2] >> 5) & 0x03) << 12
    return width, height


def v4l2_options(config: StreamConfig) -> dict[str, str]:
    """FFmpeg's V4L2 reader options for a webcam: the size, rate and format ``config`` asks
    for, and ``ts=abs``: the kernel's capture time as a wall clock (a UVC driver's
    monotonic stamps are converted), as the ffmpeg sender reads a device, so that frames
    carry their capture time."""
    options = {"ts": "abs"}
    if config.size is not None:
        options["video_size"] = f"{config.size[0]}x{config.size[1]}"
    if config.fps is not None:
        options["framerate"] = f"{config.fps:g}"
    if config.input_format is not None:
        options["input_format"] = config.input_format
    return options


def _to_bgr(frame: VideoFrame) -> BGRImage:
    image = frame.to_ndarray(format="bgr24")
    assert image.dtype == np.uint8
    return image  # type: ignore[return-value]


class PyAVSource:
    """Reads one video stream through PyAV; see :class:`~syncstream.sources.base.Source`.

    It is a :class:`~syncstream.sources.base.PacketSource`: with :attr:`on_packet` set,
    every video packet is handed over (as a copy) right after it is decoded, so a recorder
    can store the stream without encoding it again.
    """

    def __init__(self, config: StreamConfig, location: str, *, fifo: bool = False) -> None:
        """``fifo``: ``location`` is a FIFO, read live through a
        :class:`~syncstream.sources.pipe.PipeReader` (FFmpeg's own open would block)."""
        self.config = config
        self.name = config.display_name
        self.location = location
        #: The location without credentials, for messages.
        self.shown = redact_url(location)
        self.counters = SourceCounters()
        self._udp = location.startswith("udp://")
        # parsed here so that a malformed URL fails at start(), not in the reader thread
        self._udp_address = parse_udp_url(location) if self._udp else None
        self._device = location.startswith(DEVICE_PREFIXES)
        #: What a webcam is opened with (see :func:`v4l2_options`); empty for other sources.
        self.device_options = v4l2_options(config) if self._device else {}
        self._rtsp = location.startswith(_RTSP_SCHEMES)
        self._network = self._udp or location.startswith(_NETWORK_SCHEMES)
        self._fifo = fifo
        self.is_live = self._network or self._device or fifo
        self._reader: UdpTsReader | PipeReader | None = None
        self._container: InputContainer | None = None
        self._packets: Iterator[av.Packet[Any]] | None = None
        self._pending: deque[SourceFrame] = deque()
        self._pts_period: float | None = None
        #: RTP input: capture times come from RTCP sender reports, never from the PTS.
        self._rtp = False
        #: Packet PTS -> the sender's wall clock, until the frame of that PTS is decoded.
        self._wall_times: OrderedDict[int, float] = OrderedDict()
        self._reported = False  # a frame of this open carried a sender report's wall clock
        self._report_seen = False  # a packet of this open carried one (see _decode)
        self._last_frame_mono = 0.0
        self._interrupted = False
        self._packet_format: PacketFormat | None = None
        #: Called with every demuxed video packet (see PacketSource); set by the stream.
        self.on_packet: PacketListener | None = None

    def open(self) -> None:
        """Open the container and its first video stream."""
        try:
            if self._udp_address is not None:
                self._reader = UdpTsReader(
                    self._udp_address,
                    name=self.name,
                    counters=self.counters,
                    receive_buffer=self.config.udp_buffer_bytes,
                    timeout=self.config.open_timeout,
                    allowed_senders=self.config.allowed_senders,
                    mark_frame_ends=not self.config.parse_frames,
                )
                self._reader.open()
            elif self._fifo:
                self._reader = PipeReader(
                    self.location,
                    name=self.name,
                    counters=self.counters,
                    timeout=self.config.open_timeout,
                )
                self._reader.open()
            self._open_demuxer()
        except SourceError:
            self.close()
            raise

    def _open_demuxer(self) -> None:
        """Open the container (on our reader of a udp:// socket or a FIFO) and its video
        stream."""
        options = dict(LOW_DELAY_OPTIONS) if self.is_live else {}
        # The probe's decoders refuse a picture over the cap too, rather than decode one
        # (H.264 is decoded while probing: 150 MB more for 8192x8192).
        options["max_pixels"] = str(self.config.max_pixels)
        reader = self._reader
        with self._translated(f"cannot open {self.shown!r}"):
            if reader is not None:
                reader.watch(self.config.open_timeout)
                if self._udp and not self.config.parse_frames:
                    # Each PES packet is a whole frame: hand it over as soon as it is in,
                    # not when FFmpeg's parser sees the next frame start (a frame interval).
                    # "nobuffer" stays: the packets read while the stream is probed are
                    # dropped, as with the parser, rather than handed over late (after a
                    # SourceChanged too: the new stream shows from its next keyframe).
                    options["fflags"] = "nobuffer+noparse"
                container = av.open(
                    reader,
                    mode="r",
                    format="mpegts" if self._udp else None,
                    options=options,
                    buffer_size=65536,
                )
                reader.watch(self.config.stall_timeout)
            else:
                container = self._open_native(options)
        self._container = container
        if not container.streams.video:
            raise SourceError(f"{self.name}: {self.shown!r} has no video stream")
        stream = container.streams.video[0]
        # Refused before the first picture is decoded when probing found the size; the
        # decoder's own max_pixels refuses a picture of a size learnt later (a change, or
        # none known yet) before it allocates it.
        self._check_size(stream.codec_context)
        stream.codec_context.options = {"max_pixels": str(self.config.max_pixels)}
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = self.config.decoder_threads
        if container.format.name == "mpegts":
            self._pts_period = MPEGTS_PTS_PERIOD
        self._rtp = container.format.name in _RTP_FORMATS
        self._wall_times.clear()
        self._reported = False
        self._report_seen = False
        if stream.time_base is not None:
            context = stream.codec_context
            self._packet_format = PacketFormat(
                codec=context.name,
                width=context.width,
                height=context.height,
                time_base=stream.time_base,
                extradata=bytes(context.extradata or b""),
                container=container.format.name,
            )
        self._packets = container.demux(stream)
        self._last_frame_mono = time.monotonic()
        logger.info(
            "%s: opened %s (%s, %s)",
            self.name,
            self.shown,
            container.format.name,
            stream.codec_context.name,
        )

    def _open_native(self, options: dict[str, str]) -> InputContainer:
        timeout: tuple[float, float] | None = None
        if self.is_live:
            timeout = (
                min(self.config.open_timeout, OPEN_TIMEOUT_CAP),
                min(self.config.stall_timeout, READ_TIMEOUT_CAP),
            )
        if self._rtsp and self.config.rtsp_transport != "auto":
            options = {**options, "rtsp_transport": self.config.rtsp_transport}
        kwargs: dict[str, Any] = {"mode": "r", "options": options, "timeout": timeout}
        if self._device:
            kwargs["format"] = "v4l2"
            kwargs["options"] = {**options, **self.device_options}
        container = av.open(self.location, **kwargs)
        assert isinstance(container, InputContainer)
        return container

    def read(self) -> SourceFrame:
        """Return the next decoded picture (see the Protocol for the errors).

        Raises ``SourceChanged`` when the udp:// stream changed (PIDs, codec); the socket
        stays open and the next call opens a new demuxer on the data from the change on.
        """
        if self._packets is None and self._reader is not None:
            self._open_demuxer()  # after SourceChanged
        packets = self._packets
        if packets is None:
            raise SourceError(f"{self.name}: source is not open")
        while not self._pending:
            if self._interrupted:
                raise SourceError(f"{self.name}: interrupted")
            silent = time.monotonic() - self._last_frame_mono
            if self.is_live and silent > self.config.stall_timeout:
                self._raise_reader_failure()  # no data at all: the reader's reason is truer
                raise SourceStalled(
                    f"{self.name}: data but no decodable frame for {self.config.stall_timeout} s"
                )
            try:
                with self._translated("read failed"):
                    packet = next(packets)
            except StopIteration:
                self._raise_reader_failure()
                if self.is_live:
                    raise SourceError(f"{self.name}: stream ended") from None
                raise StreamEnded(f"{self.name}: end of {self.shown!r}") from None
            key = self._decode(packet)
            self._tap(packet, key)
        self._last_frame_mono = time.monotonic()
        if self._reader is not None:
            self._reader.last_frame_mono = self._last_frame_mono
        return self._pending.popleft()

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Raise PyAV's errors inside as ours (see ``_AV_ERRORS``), naming the stream and
        ``doing``, credentials cut from the URL; when the UDP reader ended the input, its
        reason (a stall, a change) instead, which is truer than FFmpeg's EOF."""
        try:
            yield
        except SourceError:  # already ours (an OSError too)
            raise
        except tuple(foreign for foreign, _ in _AV_ERRORS) as exc:
            self._raise_reader_failure()
            ours = next(ours for foreign, ours in _AV_ERRORS if isinstance(exc, foreign))
            reason = redact_text(str(exc), self.location)
            raise ours(f"{self.name}: {doing}: {reason}") from exc

    def _raise_reader_failure(self) -> None:
        """Raise why the UDP reader ended the input (a stall, say), if it did.

        For ``SourceChanged`` the demuxer is dropped first and the reader keeps the data
        from the change on for the next one.
        """
        reader = self._reader
        failure = reader.failure if reader is not None else None
        if failure is None:
            return
        if isinstance(failure, SourceChanged) and reader is not None:
            self._close_demuxer()
            reader.resume()
        raise failure from None

    def _tap(self, packet: av.Packet[Any], key: bool) -> None:
        """Hand a copy of ``packet`` to :attr:`on_packet` (the demuxer reuses its buffer).

        ``key``: the packet decoded into a keyframe. Without FFmpeg's parser the demuxer
        does not mark keyframes, so the decoder's word counts too.
        """
        listener, packet_format = self.on_packet, self._packet_format
        if listener is None or packet_format is None or packet.size == 0:
            return  # no listener, or the empty packet that flushes the decoder at the end
        listener(
            EncodedPacket(
                data=bytes(packet),
                pts=packet.pts,
                dts=packet.dts,
                is_keyframe=packet.is_keyframe or key,
                format=packet_format,
                is_corrupt=packet.is_corrupt,
            )
        )

    def _decode(self, packet: av.Packet[Any]) -> bool:
        """Decode ``packet`` into :attr:`_pending`; True when it gave a keyframe."""
        if packet.is_corrupt:
            self.counters.decode_errors += 1
            self.counters.last_problem = "corrupt packet"
        if self._rtp and packet.pts is not None:
            wall_time = _wall_time(packet)
            if wall_time is not None and not self._report_seen:
                # The first packet after the first sender report may be a picture that
                # FFmpeg's frame parser held until the next one started, stamped with the
                # next one's wall clock (seen in 4 of 10 sessions: one frame interval
                # late). Its frame goes by arrival, like those before the report.
                self._report_seen = True
                wall_time = None
            if wall_time is not None:
                self._wall_times[packet.pts] = wall_time
                if len(self._wall_times) > _WALL_TIMES_KEPT:
                    self._wall_times.popitem(last=False)
        with self._translated("decoder failed"):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as exc:  # survived: counted, the next may do
                self._check_size(packet.stream.codec_context)  # the decoder refused its size
                self.counters.decode_errors += 1
                self.counters.last_problem = f"decode error: {exc}"
                logger.debug("%s: decode error: %s", self.name, exc)
                return False
            except av.FFmpegError as exc:
                context = packet.stream.codec_context
                self._check_size(context)
                if isinstance(exc, av.error.ArgumentError):  # the decoder's max_pixels refusal
                    data = bytes(packet) if context.name in _MPEG_VIDEO else b""
                    size = _mpeg_video_size(data) if data else None
                    if size is not None:  # MPEG-1/2 forget the size they refused: read it
                        check_picture_size(self.name, *size, self.config.max_pixels, self.counters)
                raise
        key = False
        for frame in frames:
            if not isinstance(frame, VideoFrame):
                continue
            check_picture_size(
                self.name, frame.width, frame.height, self.config.max_pixels, self.counters
            )
            key = key or bool(frame.key_frame)
            pts_time = None
            if frame.pts is not None and frame.time_base is not None:
                pts_time = float(frame.pts * frame.time_base)
            self._pending.append(
                SourceFrame(
                    width=frame.width,
                    height=frame.height,
                    convert=partial(_to_bgr, frame),
                    pts_time=pts_time,
                    pts_period=self._pts_period,
                    sender_time=self._sender_time(frame.pts),
                    wall_clock_pts=not self._rtp,
                )
            )
        return key

    def _check_size(self, context: Any) -> None:
        """Raise ``PictureTooLarge`` when the decoder's picture size is over the cap."""
        check_picture_size(
            self.name, context.width, context.height, self.config.max_pixels, self.counters
        )

    def _sender_time(self, pts: int | None) -> float | None:
        """The wall clock the sender reported for the packet of ``pts`` (RTP input only).

        Looked up by PTS because a decoder may hand frames over in another order than
        their packets came.
        """
        if not self._wall_times or pts is None:
            return None
        sender_time = self._wall_times.pop(pts, None)
        if sender_time is not None and not self._reported:
            self._reported = True
            logger.info("%s: capture times from the camera's RTCP sender reports", self.name)
        return sender_time

    def interrupt(self) -> None:
        """Make a blocked read return soon (at once for udp://, within 1 s for others)."""
        self._interrupted = True
        if self._reader is not None:
            self._reader.interrupt()

    def close(self) -> None:
        """Close the container and the socket; idempotent."""
        self._close_demuxer()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _close_demuxer(self) -> None:
        container, self._container = self._container, None
        self._packets = None
        self._packet_format = None
        self._pending.clear()
        self._wall_times.clear()
        if container is not None:
            try:
                container.close()
            except av.FFmpegError as exc:
                _throttle.warning(
                    (self.name, "close"), "%s: error while closing: %s", self.name, exc
                )
