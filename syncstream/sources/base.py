"""The backend Protocol: what :class:`~syncstream.VideoStream` needs from a source reader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol, runtime_checkable

from ..errors import PictureTooLarge
from ..frames import BGRImage

__all__ = [
    "LOW_DELAY_OPTIONS",
    "OPEN_TIMEOUT_CAP",
    "READ_TIMEOUT_CAP",
    "EncodedPacket",
    "PacketFormat",
    "PacketListener",
    "PacketSource",
    "Source",
    "SourceCounters",
    "SourceFrame",
    "check_picture_size",
]

#: FFmpeg demuxer and decoder options for live sources: hand over each packet at once, no
#: reordering delay, and a probe small enough not to hold back the first frame.
#: ``fflags=nobuffer`` drops the packets read while probing, so the first picture is the
#: next keyframe (up to one GOP later) rather than a burst of frames that already aged in
#: the probe buffer (measured up to 0.7 s old), which would skew the latency figures.
LOW_DELAY_OPTIONS = {
    "fflags": "nobuffer",
    "flags": "low_delay",
    "probesize": "32768",
    "analyzeduration": "0",
}
# FFmpeg-native network reads (and OpenCV's) can only be interrupted by a timeout, and an
# interrupted reader is dead. These caps keep close() within 2 s; a longer silence reopens.
OPEN_TIMEOUT_CAP = 1.8
READ_TIMEOUT_CAP = 1.0


@dataclass(frozen=True, slots=True)
class SourceFrame:
    """One decoded picture as a backend hands it over, before it gets a seq and clocks.

    ``convert`` turns the decoded picture into BGR; it is called at most once, lazily, and
    possibly from another thread, so it must not depend on decoder state that changes.
    """

    width: int
    height: int
    convert: Callable[[], BGRImage]
    #: Stream timestamp in seconds (the PTS), when the container has one.
    pts_time: float | None = None
    #: The timestamps wrap with this period in seconds (MPEG-TS: 2**33 / 90 kHz).
    pts_period: float | None = None
    #: A sender wall-clock stamp carried outside the PTS (an MJPEG ``X-Timestamp`` header,
    #: an RTSP camera's RTCP sender report).
    sender_time: float | None = None
    #: The PTS may be the sender's wall clock (MPEG-TS, files). False where it cannot be
    #: (RTP timestamps start at random): only :attr:`sender_time` gives a capture time.
    wall_clock_pts: bool = True


@dataclass(frozen=True, slots=True)
class PacketFormat:
    """What a stream's encoded packets hold: enough to mux them into a file unchanged.

    One value per opened source; packets of the same open share it, so a new value (after
    a reconnect) tells a consumer that the parameters may have changed.
    """

    #: FFmpeg's codec name: ``"h264"``, ``"hevc"``, ``"mpeg2video"``, ...
    codec: str
    #: Picture size as the demuxer's probe found it (0 when not yet known).
    width: int
    height: int
    #: Unit of the packets' ``pts`` and ``dts`` (MPEG-TS and RTSP: 1/90000 s).
    time_base: Fraction
    #: The codec's setup (H.264: SPS and PPS), in Annex B or in avcC/hvcC form; may be empty.
    extradata: bytes = b""
    #: The demuxer that read the packets: ``"mpegts"``, ``"rtsp"``, ``"mov,mp4,m4a,..."``.
    container: str = ""


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One compressed video packet as the demuxer delivered it, before decoding.

    ``data`` is a copy of the packet's bytes, so the value may be handed to another thread
    while the demuxer reuses its buffers.
    """

    data: bytes
    #: Presentation and decoding timestamps in :attr:`time_base` units, when known.
    pts: int | None
    dts: int | None
    #: The packet starts a picture that decodes on its own (an IDR picture for H.264).
    is_keyframe: bool
    format: PacketFormat
    #: The demuxer saw missing or damaged input in this packet (decoded all the same).
    is_corrupt: bool = False

    @property
    def time_base(self) -> Fraction:
        """Unit of :attr:`pts` and :attr:`dts` in seconds."""
        return self.format.time_base

    @property
    def pts_time(self) -> float | None:
        """The presentation timestamp in seconds: a decoded frame's ``pts_time``."""
        return None if self.pts is None else float(self.pts * self.format.time_base)


#: Called with every encoded packet a source demuxes, in the reader thread.
PacketListener = Callable[[EncodedPacket], None]


@runtime_checkable
class PacketSource(Protocol):
    """A source that can hand over the encoded packets it demuxes (the PyAV backend).

    :class:`~syncstream.VideoStream` sets :attr:`on_packet` when somebody listens; the
    source calls it for every video packet before decoding it. The callback must return
    quickly and never raise. Sources that only see decoded pictures (MJPEG over HTTP,
    framed JPEG over TCP, OpenCV) do not implement this.
    """

    on_packet: PacketListener | None


@dataclass(slots=True)
class SourceCounters:
    """Problems a backend survived; read by the stream for its stats."""

    #: Packets or frames the decoder refused, and packets the demuxer marked corrupt.
    decode_errors: int = 0
    #: Input units refused before decoding: non-TS datagrams, oversized or malformed frames.
    rejected: int = 0
    #: udp://: MPEG-TS packets dropped before the demuxer for their PID, not the programme's.
    foreign_packets: int = 0
    #: udp://: datagrams dropped for their sender: an address outside ``allowed_senders``,
    #: or a second sender of the programme's PIDs while the first sends.
    foreign_datagrams: int = 0
    #: udp://: video frames of unknown length (PES length 0) whose end was seen on the wire
    #: and handed to the decoder at once (see :mod:`~syncstream.sources.frame_ends`).
    frame_ends_found: int = 0
    #: udp://: video frames of unknown length whose end was not certain (a last packet
    #: exactly full, a packet lost or late): they waited for the next frame to start.
    frame_ends_waited: int = 0
    #: Short description of the last survived problem.
    last_problem: str | None = field(default=None)
    #: Set while an opened source has received no input at all, saying what it waits for
    #: (``"no data on udp port 9001"``); None once input arrives, or when the backend
    #: cannot tell.
    waiting_for: str | None = None


def check_picture_size(
    name: str, width: int, height: int, max_pixels: int, counters: SourceCounters
) -> None:
    """Refuse a picture of ``width`` x ``height`` over ``max_pixels``: count it in
    ``counters.rejected`` and raise :class:`~syncstream.errors.PictureTooLarge` naming the
    size and the cap. Called before decoding where the size is known first."""
    if width * height <= max_pixels:
        return
    problem = f"picture of {width}x{height} is over max_pixels ({max_pixels} pixels)"
    counters.rejected += 1
    counters.last_problem = problem
    raise PictureTooLarge(f"{name}: {problem}")


class Source(Protocol):
    """A reader of one source. Used from one thread, except :meth:`interrupt`.

    ``open()`` and ``read()`` block for at most about a second between checks, so that
    :meth:`interrupt` (called from another thread) makes them return soon with a
    :class:`~syncstream.errors.SourceError`.
    """

    #: True for network streams and devices; False for files (paced, end with StreamEnded).
    is_live: bool
    counters: SourceCounters

    def open(self) -> None:
        """Connect or open the file; raise ``SourceError`` on failure."""

    def read(self) -> SourceFrame:
        """Return the next decoded picture.

        Raises ``StreamEnded`` at the end of a file, ``SourceStalled`` after the stall timeout
        without a picture and ``SourceError`` on any failure of the source.
        ``SourceChanged`` says that the stream changed and the source stays open: the next
        call reads on (from a new demuxer).
        """

    def interrupt(self) -> None:
        """Make a blocked ``open()`` or ``read()`` return soon. Thread-safe."""

    def close(self) -> None:
        """Release everything; safe to call twice."""
