"""Where each video frame of an MPEG-TS stream ends, found on the wire.

A video PES packet is one frame. Most senders (ffmpeg's default muxing, GStreamer's
``mpegtsmux`` for frames over 64 KiB, most IP cameras) write it with a length of 0:
"unknown". FFmpeg's demuxer can only close such a PES when the next one starts, one frame
interval later (40 ms at 25 fps, 100 ms at 10 fps). Yet its end is visible at once: a PES
ends in a TS packet that the muxer pads with adaptation-field stuffing (a TS packet is 188
bytes, and the payload of a PES packet cannot be padded in any other way), unless its last
bytes happen to fill the packet exactly.

:class:`FrameEnds` watches the packets of the programme's video PIDs before the demuxer
sees them and, after the stuffed packet that ends a PES of unknown length, adds one TS
packet on the same PID that starts an empty PES: the demuxer closes the frame at once, as
if the next one had started, and the empty PES is dropped when the real next one starts
(FFmpeg hands over no PES without payload). The added packet repeats the continuity
counter of the one before it and sets the ``discontinuity_indicator``, so the demuxer's
continuity check passes for it and for the packet after it.

An end is marked only when it is certain; otherwise the frame waits for the next start as
before, and both are counted (:attr:`FrameEnds.found`, :attr:`FrameEnds.waited`):

- every packet of the PES arrived in order: continuity counters without a gap since its
  start, no transport error (a lost or late packet leaves the end to the next start);
- the stream has shown that stuffing ends its PES packets: :data:`CONFIRMATIONS` stuffed
  packets, each followed by the start of the next PES, before the first mark; a stuffed
  packet ever followed by more of the same PES (a muxer that pads in the middle) stops
  the marking on that PID for good, with a warning;
- a PES whose last packet is exactly full carries no stuffing and waits.

A frame of unknown length over 200 KiB (:data:`SPLIT_BYTES`: a 4K or very high bitrate
keyframe) is handed over by FFmpeg's demuxer in pieces of that size, each decoded as a
frame when ``parse_frames`` is off; the first such frame logs a warning that says to turn
``parse_frames`` on for that sender, and :attr:`FrameEnds.oversized` counts them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

__all__ = ["CONFIRMATIONS", "SPLIT_BYTES", "FrameEnds", "end_marker", "stuffed"]

logger = logging.getLogger(__name__)

TS_PACKET = 188
#: Stuffed packets followed by a PES start that a PID must show before its ends are marked.
CONFIRMATIONS = 3
#: Bytes of a PES of unknown length beyond which FFmpeg's demuxer hands it over in pieces
#: (its ``MAX_PES_PAYLOAD``).
SPLIT_BYTES = 200 * 1024
_PES_START = b"\x00\x00\x01"
# adaptation_field flags -> the bytes their fields take after the flags byte
_PCR_FLAG, _OPCR_FLAG, _SPLICE_FLAG, _PRIVATE_FLAG, _EXTENSION_FLAG = 0x10, 0x08, 0x04, 0x02, 0x01


def stuffed(packet: bytes | memoryview) -> bool:
    """Whether the adaptation field of a TS packet carrying payload holds stuffing bytes:
    more bytes than its flagged fields take, a field of length 0 (one byte of padding) or one
    with no flag set (there only to pad)."""
    if packet[3] & 0x30 != 0x30:  # no adaptation field, or no payload
        return False
    length = packet[4]
    if length == 0:
        return True
    if length > TS_PACKET - 6:  # no room left for payload: not a valid packet
        return False
    flags = packet[5]
    if flags == 0:  # a field holding nothing: there only to pad (2 bytes or more)
        return True
    used = 1
    if flags & _PCR_FLAG:
        used += 6
    if flags & _OPCR_FLAG:
        used += 6
    if flags & _SPLICE_FLAG:
        used += 1
    if flags & _PRIVATE_FLAG:
        if 5 + used >= TS_PACKET:
            return False
        used += 1 + packet[5 + used]
    if flags & _EXTENSION_FLAG:
        if 5 + used >= TS_PACKET:
            return False
        used += 1 + packet[5 + used]
    return length > used


def end_marker(pid: int, continuity: int, stream_id: int) -> bytes:
    """A TS packet on ``pid`` that starts an empty PES of ``stream_id``: the demuxer closes
    the PES before it. It repeats ``continuity`` (the counter of the packet before it) with
    the discontinuity indicator set, so neither it nor the next packet fails the
    demuxer's continuity check."""
    pes = _PES_START + bytes([stream_id, 0, 0, 0x80, 0, 0])  # no length, no PTS, no fields
    field = TS_PACKET - 4 - 1 - len(pes)  # adaptation field after its length byte
    return (
        bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x30 | (continuity & 0x0F), field, 0x80])
        + b"\xff" * (field - 1)
        + pes
    )


@dataclass
class _Pid:
    """What is known of one video PID."""

    continuity: int | None = None  # counter of its last packet with payload
    open: bool = False  # in a PES of unknown length whose end is not marked yet
    intact: bool = False  # every packet of that PES so far arrived in order
    stream_id: int = 0xE0
    stuffed_at: bool = False  # the last packet with payload was stuffed (an end, or not)
    marked: bool = False  # the PES was closed by a marker; the next packet must start one
    gap: bool = False  # since the marker, a packet came out of order (a start was lost)
    confirmations: int = 0  # stuffed packets seen followed by a PES start
    refused: bool = False  # stuffing was seen in the middle of a PES: never mark
    size: int = 0  # payload bytes of the open PES so far


class FrameEnds:
    """Marks the end of each video PES of unknown length in whole TS packets (see the
    module's docstring). Used by one reader thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pids: dict[int, _Pid] = {}
        self._video_pids: frozenset[int] = frozenset()  # those _pids was last pruned to
        #: PES packets of unknown length whose end was marked as soon as it arrived.
        self.found = 0
        #: PES packets of unknown length left to close at the next start (end not certain).
        self.waited = 0
        #: Packets of a PID dropped after its marked end and before its next PES start:
        #: the rest of a PES its muxer padded in the middle, or a PES whose start was lost.
        self.dropped = 0
        #: PES packets of unknown length over :data:`SPLIT_BYTES` (split by the demuxer).
        self.oversized = 0

    def mark(self, data: bytes, video_pids: frozenset[int]) -> bytes:
        """``data`` (whole TS packets) with an end marker after each certain PES end on
        ``video_pids``."""
        if not video_pids:
            return data
        if video_pids is not self._video_pids:  # the tables changed: forget PIDs gone
            self._video_pids = video_pids
            self._pids = {pid: state for pid, state in self._pids.items() if pid in video_pids}
        out: list[bytes] | None = None  # built only when a packet is added or dropped
        done = 0  # bytes of data already in out
        for offset in range(0, len(data), TS_PACKET):
            pid = ((data[offset + 1] & 0x1F) << 8) | data[offset + 2]
            if pid not in video_pids:
                continue
            state = self._pids.get(pid)
            if state is None:
                state = self._pids[pid] = _Pid()
            packet = data[offset : offset + TS_PACKET]
            verdict = self._packet(pid, state, packet)
            if verdict == _KEEP:
                continue
            if out is None:
                out = []
            out.append(data[done : offset + (TS_PACKET if verdict == _END else 0)])
            done = offset + TS_PACKET
            if verdict == _END:
                out.append(end_marker(pid, packet[3], state.stream_id))
        if out is None:
            return data
        out.append(data[done:])
        return b"".join(out)

    def _packet(self, pid: int, state: _Pid, packet: bytes) -> int:
        """Follow one packet of a video PID: keep it, drop it, or keep it and mark an end."""
        control = packet[3] >> 4 & 0x3
        if not control & 0x1:  # no payload (a PCR alone): the counter does not move
            return _KEEP
        counter = packet[3] & 0x0F
        discontinuity = bool(control & 0x2 and packet[4] > 0 and packet[5] & 0x80)
        expected = None if state.continuity is None else (state.continuity + 1) & 0x0F
        in_order = not packet[1] & 0x80 and (discontinuity or counter == expected)
        state.continuity = counter
        start = bool(packet[1] & 0x40)
        was_stuffed, state.stuffed_at = state.stuffed_at, False
        if start:
            if was_stuffed and in_order and not state.refused:
                state.confirmations += 1
            if state.open:
                self.waited += 1
            state.marked = False
            state.gap = False
            state.open = False
            self._start(state, packet)
        elif state.marked:
            # Payload after a marked end and before the next start belongs to no PES: the
            # rest of a frame its muxer padded in the middle (in order), or a frame whose
            # start was lost. FFmpeg would hand it to the decoder without a header. Only
            # a packet right after the marked one, in order, shows padding mid-PES.
            state.gap = state.gap or not in_order
            if not state.gap:
                self._refuse(pid, state)
            self.dropped += 1
            return _DROP
        elif was_stuffed and in_order and not state.refused:
            self._refuse(pid, state)
        is_stuffed = stuffed(packet)
        if not state.open:  # a PES of known length (or none): its stuffing teaches alone
            state.stuffed_at = is_stuffed and not state.marked
            return _KEEP
        state.intact = state.intact and in_order
        if state.size <= SPLIT_BYTES:
            state.size += TS_PACKET - 4 - (1 + packet[4] if control & 0x2 else 0)
            if state.size > SPLIT_BYTES:
                self._oversized(pid)
        if not is_stuffed:
            return _KEEP
        if state.intact and not state.refused and state.confirmations >= CONFIRMATIONS:
            state.open = False
            state.marked = True
            state.gap = False
            self.found += 1
            return _END
        state.stuffed_at = True
        return _KEEP

    def _start(self, state: _Pid, packet: bytes) -> None:
        """Read the PES header starting in ``packet``: open when its length is unknown."""
        at = 4 + (1 + packet[4] if packet[3] & 0x20 else 0)
        header = packet[at : at + 6]
        if len(header) < 6 or header[:3] != _PES_START:
            return  # a header split over packets, or not a PES: the demuxer's business
        if header[4] or header[5]:
            return  # a known length: the demuxer closes it itself
        state.open = True
        state.intact = True
        state.stream_id = header[3]
        state.size = TS_PACKET - at

    def _oversized(self, pid: int) -> None:
        self.oversized += 1
        if self.oversized == 1:
            logger.warning(
                "%s: a frame of unknown length over %d KiB (PID 0x%04x): FFmpeg's demuxer "
                "hands such frames over in pieces; set parse_frames=True for this sender",
                self.name, SPLIT_BYTES // 1024, pid,
            )  # fmt: skip

    def _refuse(self, pid: int, state: _Pid) -> None:
        if state.refused:
            return
        state.refused = True
        logger.warning(
            "%s: the sender pads TS packets in the middle of its frames (PID 0x%04x): "
            "frame ends are no longer marked early on this PID",
            self.name, pid,
        )  # fmt: skip


_KEEP, _DROP, _END = 0, 1, 2
