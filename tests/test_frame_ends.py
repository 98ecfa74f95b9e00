"""Property tests of :mod:`syncstream.sources.frame_ends` on generated MPEG-TS streams."""

from __future__ import annotations

import functools
import io
import itertools
import logging

import av
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from syncstream.sources.frame_ends import CONFIRMATIONS, TS_PACKET, FrameEnds, end_marker

VIDEO = 0x100
AUDIO = 0x101
DATAGRAM = 7 * TS_PACKET


def _pes_packets(pid: int, payload: bytes, cc: int) -> tuple[list[bytes], int]:
    """TS packets of one PES of unknown length, the last one padded with stuffing."""
    pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05\x21\x00\x01\x00\x01" + payload
    packets = []
    first = True
    while pes:
        chunk, pes = pes[:184], pes[184:]
        head = bytes([0x47, (0x40 if first else 0) | pid >> 8, pid & 0xFF])
        if len(chunk) == 184:
            packets.append(head + bytes([0x10 | cc]) + chunk)
        else:
            field = 183 - len(chunk)
            af = bytes([field]) + (b"\x00" + b"\xff" * (field - 1) if field else b"")
            packets.append(head + bytes([0x30 | cc]) + af + chunk)
        cc = (cc + 1) & 0x0F
        first = False
    return packets, cc


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 1500), min_size=1, max_size=12))
@example(sizes=[1, 1])
@example(sizes=[1, 1, 1, 1])
@example(sizes=[1, 170, 1, 1, 354, 1, 1])  # exact fits: no stuffing, no marker
def test_markers_follow_certain_ends_only(sizes: list[int]) -> None:
    frames, cc = [], 0
    for size in sizes:
        packets, cc = _pes_packets(VIDEO, bytes(size), cc)
        frames.append(packets)
    stream = b"".join(b"".join(f) for f in frames)
    ends = FrameEnds("test")
    out = b"".join(
        ends.mark(stream[i : i + 7 * TS_PACKET], frozenset({VIDEO}))
        for i in range(0, len(stream), 7 * TS_PACKET)
    )
    packets = [out[i : i + TS_PACKET] for i in range(0, len(out), TS_PACKET)]
    markers = [p for p in packets if p[3] & 0x20 and p[5] & 0x80 and p[-9:-6] == b"\x00\x00\x01"]
    assert b"".join(p for p in packets if p not in markers) == stream
    for p in markers:
        assert p == end_marker(VIDEO, p[3], 0xE0)
    assert ends.dropped == 0
    # oracle: a PES ending in stuffing (not an exact fit) is marked once CONFIRMATIONS
    # earlier PES ended in stuffing, each followed by a start
    learned, expected = 0, 0
    for size in sizes:
        if (size + 14) % 184 != 0:  # 0: the last packet exactly full, no adaptation field
            expected += learned >= CONFIRMATIONS
            learned += 1
    assert len(markers) == expected
    assert len(markers) == ends.found
    last_marked = bool(packets) and packets[-1] in markers
    # every PES is closed by the next start (waited) or by its marker (found)
    assert ends.found + ends.waited == len(sizes) - (0 if last_marked else 1)
    assert ends.found <= max(0, len(sizes) - CONFIRMATIONS)


# --- FFmpeg's own muxer and demuxer ----------------------------------------------------------

_CODECS = {
    "libx264": {"preset": "ultrafast", "tune": "zerolatency"},
    "mpeg2video": {},
}


@functools.cache
def _encoded(codec: str) -> bytes:
    """20 frames of 160x120 muxed by FFmpeg into MPEG-TS (video PES length 0, PID 0x100):
    noise and flat pictures in turn, so the frames differ in size."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(1)
    with av.open(buffer, "w", format="mpegts") as container:
        stream = container.add_stream(codec, rate=25, options=_CODECS[codec])
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for index in range(20):
            if index % 3:
                picture = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            else:
                picture = np.full((120, 160, 3), index * 10, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _demuxed(data: bytes) -> list[tuple[int | None, bytes]]:
    """(pts, bytes) of each video packet with payload that FFmpeg's demuxer hands over."""
    with av.open(io.BytesIO(data), "r", format="mpegts") as container:
        return [(p.pts, bytes(p)) for p in container.demux(video=0) if p.size > 0]


def _datagrams(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut into datagrams of ``sizes`` TS packets, the sizes taken in turn."""
    out: list[bytes] = []
    at = 0
    for size in itertools.cycle(sizes):
        if at >= len(data):
            return out
        out.append(data[at : at + size * TS_PACKET])
        at += size * TS_PACKET
    raise AssertionError  # unreachable: cycle is endless


def _impaired(items: list[bytes], impairments: list[tuple[str, int]]) -> list[bytes]:
    """``items`` with whole ones dropped, duplicated or swapped with the next one."""
    items = list(items)
    for kind, at in impairments:
        at %= len(items)
        if kind == "drop" and len(items) > 1:
            del items[at]
        elif kind == "dup":
            items.insert(at, items[at])
        elif kind == "swap" and at + 1 < len(items):
            items[at], items[at + 1] = items[at + 1], items[at]
    return items


_CHUNKING = st.one_of(
    st.integers(1, 14).map(lambda n: [n]),  # a fixed size: 188 to 1316 * 2 bytes
    st.lists(st.integers(1, 14), min_size=2, max_size=30),  # cuts at varying packet bounds
)
_IMPAIRMENTS = st.lists(
    st.tuples(st.sampled_from(["drop", "dup", "swap"]), st.integers(0, 10**6)), max_size=4
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(_CODECS)), _CHUNKING, _IMPAIRMENTS)
@example(codec="libx264", chunking=[7], impairments=[])
@example(codec="mpeg2video", chunking=[7], impairments=[])
@example(codec="libx264", chunking=[1], impairments=[])
@example(codec="mpeg2video", chunking=[14], impairments=[("drop", 20), ("swap", 40)])
# a datagram swap moves 16 video packets: counters in sequence, a damaged frame cut short
@example(codec="mpeg2video", chunking=[9], impairments=[("dup", 29), ("swap", 4603)])
def test_ffmpeg_demuxes_the_same_frames(
    codec: str, chunking: list[int], impairments: list[tuple[str, int]]
) -> None:
    """FFmpeg's demuxer hands over the same frames from the marked stream as from the
    unmarked one; over impaired datagrams, marking never yields a frame that neither the
    clean stream nor the unmarked impaired stream holds."""
    clean_data = _encoded(codec)
    clean = _demuxed(clean_data)
    assert len(clean) == 20
    received = _impaired(_datagrams(clean_data, chunking), impairments)
    ends = FrameEnds("t")
    marked_data = b"".join(ends.mark(d, frozenset({VIDEO})) for d in received)
    unmarked = _demuxed(b"".join(received))
    marked = _demuxed(marked_data)
    if not impairments:
        assert marked == unmarked == clean
        assert ends.found > 0
        assert ends.dropped == 0
        return
    by_pts = dict(clean)
    possible = set(unmarked)
    # a frame the impairment damaged in the unmarked stream too: the marker may close it
    # earlier (packets reordered by 16 on the PID keep their counters in sequence)
    damaged = [(pts, data) for pts, data in unmarked if by_pts.get(pts) != data]
    for pts, data in marked:
        assert (
            by_pts.get(pts) == data
            or (pts, data) in possible
            or any(pts == p and d.startswith(data) for p, d in damaged)
        ), pts
    # and marking never damages a frame the unmarked stream delivers whole
    assert {f for f in unmarked if by_pts.get(f[0]) == f[1]} <= set(marked)


# --- generated streams: PCR, audio, known lengths ----------------------------------------------


def _ts(pid: int, start: bool, cc: int, chunk: bytes, fields: bytes = b"") -> bytes:
    """One TS packet carrying ``chunk``, with adaptation ``fields`` (flags byte first) and
    stuffing to fill 188 bytes."""
    head = bytes([0x47, (0x40 if start else 0) | pid >> 8, pid & 0xFF])
    room = 184 - len(chunk)
    if room == 0 and not fields:
        return head + bytes([0x10 | cc]) + chunk
    if room == 1 and not fields:
        return head + bytes([0x30 | cc, 0]) + chunk
    fields = fields or b"\x00"
    assert room >= 1 + len(fields)
    return head + bytes([0x30 | cc, room - 1]) + fields + b"\xff" * (room - 1 - len(fields)) + chunk


_PCR_FIELDS = bytes([0x10]) + bytes(6)


def _pes(
    pid: int, size: int, cc: int, *, known: bool = False, pcr: bool = False, stream_id: int = 0xE0
) -> tuple[list[bytes], int, bool]:
    """TS packets of one PES with ``size`` bytes of payload (of known length or not, a PCR in
    its first packet or not), the next counter, and whether its last packet is stuffed."""
    payload = bytes((i * 7 + size) & 0xFF for i in range(size))
    body = b"\x80\x80\x05\x21\x00\x01\x00\x01" + payload
    length = len(body) if known else 0
    pes = b"\x00\x00\x01" + bytes([stream_id, length >> 8, length & 0xFF]) + body
    packets, first, was_stuffed = [], True, False
    while pes:
        fields = _PCR_FIELDS if first and pcr else b""
        room = 184 - (1 + len(fields) if fields else 0)
        chunk, pes = pes[:room], pes[room:]
        # 182 bytes leave room for an adaptation field of flags alone, which pads too
        was_stuffed = len(chunk) < room
        packets.append(_ts(pid, first, cc, chunk, fields))
        cc = (cc + 1) & 0x0F
        first = False
    return packets, cc, was_stuffed


_PCR_ONLY = bytes([0x47, VIDEO >> 8, VIDEO & 0xFF, 0x20, 183, 0x10]) + bytes(6) + b"\xff" * 176
_VIDEO_PES = st.tuples(st.integers(1, 1500), st.booleans(), st.booleans())  # size, known, pcr


def _video_stream(
    specs: list[tuple[int, bool, bool]], audio: list[int]
) -> tuple[list[bytes], list[bytes]]:
    """The packets of a stream of video PES (``specs``) with audio PES of ``audio`` sizes
    interleaved, and the packets the marked stream must hold: a marker after each stuffed end
    of a PES of unknown length once CONFIRMATIONS stuffed ends were followed by a start."""
    stream: list[bytes] = []
    expected: list[bytes] = []
    video_cc, audio_cc, learned = 0, 0, 0
    for index, (size, known, pcr) in enumerate(specs):
        video, video_cc, was_stuffed = _pes(VIDEO, size, video_cc, known=known, pcr=pcr)
        sound: list[bytes] = []
        if index < len(audio):
            sound, audio_cc, _ = _pes(AUDIO, audio[index], audio_cc, stream_id=0xC0)
        for at, (v, a) in enumerate(itertools.zip_longest(video, sound)):
            for packet in (v, a):
                if packet is None:
                    continue
                stream.append(packet)
                expected.append(packet)
                last = packet is v and at == len(video) - 1
                if last and was_stuffed and not known and learned >= CONFIRMATIONS:
                    expected.append(end_marker(VIDEO, v[3], 0xE0))
        if was_stuffed:
            learned += 1
        if pcr:  # a packet of PCR alone: no payload, the counter does not move
            stream.append(_PCR_ONLY)
            expected.append(_PCR_ONLY)
    return stream, expected


def _mark(packets: list[bytes], ends: FrameEnds, per_datagram: int = 7) -> list[bytes]:
    data = b"".join(packets)
    size = per_datagram * TS_PACKET
    out = b"".join(
        ends.mark(data[i : i + size], frozenset({VIDEO})) for i in range(0, len(data), size)
    )
    return [out[i : i + TS_PACKET] for i in range(0, len(out), TS_PACKET)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_VIDEO_PES, min_size=1, max_size=12),
    st.lists(st.integers(1, 600), max_size=12),
    st.integers(1, 14),
)
@example(specs=[(1, False, True)] * 5, audio=[1] * 5, per_datagram=1)
@example(specs=[(176, False, True)] * 5, audio=[], per_datagram=7)  # full PCR packet
@example(specs=[(1, True, False)] * 3 + [(1, False, False)] * 2, audio=[], per_datagram=7)
def test_markers_with_pcr_audio_and_known_lengths(
    specs: list[tuple[int, bool, bool]], audio: list[int], per_datagram: int
) -> None:
    """PCR fields are no stuffing, audio passes untouched, a PES of known length is never
    marked (its stuffing still shows how the stream ends its PES)."""
    stream, expected = _video_stream(specs, audio)
    ends = FrameEnds("t")
    out = _mark(stream, ends, per_datagram)
    assert out == expected
    assert ends.found == len(expected) - len(stream)
    assert ends.dropped == 0


# --- impaired packets ----------------------------------------------------------------------------


def _is_marker(packet: bytes) -> bool:
    return packet == end_marker(VIDEO, packet[3], 0xE0)


class _Warnings(logging.Handler):
    """The records logged while it is attached (caplog is per test, not per example)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 1500), min_size=1, max_size=10),
    st.lists(
        st.tuples(st.sampled_from(["drop", "dup", "swap"]), st.integers(0, 10**6)), max_size=3
    ),
    st.integers(1, 14),
)
@example(sizes=[400, 400], impairments=[("dup", 0)], per_datagram=7)
@example(sizes=[1, 400], impairments=[("swap", 0)], per_datagram=1)
@example(sizes=[355], impairments=[("drop", 0)], per_datagram=1)  # lost start: refused
def test_no_marker_after_an_impaired_pes(
    sizes: list[int], impairments: list[tuple[str, int]], per_datagram: int
) -> None:
    """Packets lost, duplicated or swapped: a marker follows only a PES whose packets all
    arrived in order (the packets since the last start on the PID are exactly those of one
    sent PES), and later intact PES are marked again."""
    head = [(300, False, False)] * (CONFIRMATIONS + 1)
    tail = [(300, False, False)] * 3
    middle = [(size, False, False) for size in sizes]
    sent, _ = _video_stream(head + middle + tail, [])
    pes_of: list[list[bytes]] = []
    for packet in sent:
        if packet[1] & 0x40:
            pes_of.append([])
        pes_of[-1].append(packet)
    first, last = len(head) * 2, len(sent) - len(tail) * 2  # 300 bytes: two packets per PES
    received = sent[:first] + _impaired(sent[first:last], impairments) + sent[last:]
    ends = FrameEnds("t")
    warnings = _Warnings()
    logger = logging.getLogger("syncstream.sources.frame_ends")
    logger.addHandler(warnings)
    try:
        out = _mark(received, ends, per_datagram)
    finally:
        logger.removeHandler(warnings)
    since_start: list[bytes] = []
    kept = []
    for packet in out:
        if _is_marker(packet):
            assert since_start in pes_of, "a marker after a PES that did not arrive whole"
            since_start = []
            continue
        kept.append(packet)
        if packet[1] & 0x40:
            since_start = [packet]
        elif since_start:
            since_start.append(packet)
    assert len(received) - len(kept) == ends.dropped
    if not warnings.records:  # see test_lost_start_does_not_refuse
        assert all(_is_marker(p) for p in out[-1:]), "the last intact PES is marked again"
    assert not any(_is_marker(p) for p in out[: len(head) * 2])  # before CONFIRMATIONS ends


# --- a muxer that pads in the middle of a PES ----------------------------------------------------


@pytest.mark.parametrize("padded", [0, CONFIRMATIONS + 1])
def test_padding_mid_pes_stops_marking(padded: int, caplog: pytest.LogCaptureFixture) -> None:
    """A stuffed packet followed by more of the same PES in order: no marker after it on
    that PID, ever, and a warning."""
    sent: list[bytes] = []
    cc = 0
    for index in range(padded + 6):
        packets, cc, _ = _pes(VIDEO, 300, cc)
        if index == padded:  # split the first packet's payload over two stuffed packets
            one = packets[0]
            packets[0:1] = [
                _ts(VIDEO, True, one[3] & 0x0F, one[4:100]),
                _ts(VIDEO, False, (one[3] + 1) & 0x0F, one[100:]),
            ]
            for at in range(2, len(packets)):  # renumber the rest
                p = packets[at]
                packets[at] = p[:3] + bytes([p[3] & 0xF0 | (p[3] + 1) & 0x0F]) + p[4:]
            cc = (cc + 1) & 0x0F
        sent.extend(packets)
    with caplog.at_level(logging.WARNING, logger="syncstream.sources.frame_ends"):
        ends = FrameEnds("t")
        out = _mark(sent, ends)
    first_mid = out.index(sent[padded * 2])  # the stuffed first packet of the padded PES
    assert not any(_is_marker(p) for p in out[first_mid + 2 :])
    assert [r for r in caplog.records if "pads TS packets in the middle" in r.getMessage()]
    assert ends.found == (0 if padded == 0 else padded - CONFIRMATIONS + 1)


def test_lost_start_does_not_refuse(caplog: pytest.LogCaptureFixture) -> None:
    """Losing the first packet of a PES is not padding in the middle of one: later intact
    PES are marked again."""
    sent, _ = _video_stream(
        [(300, False, False)] * (CONFIRMATIONS + 1) + [(355, False, False)] * 3, []
    )
    start = sent.index(next(p for p in sent[(CONFIRMATIONS + 1) * 2 :] if p[1] & 0x40))
    received = sent[:start] + sent[start + 1 :]  # the start of a PES of 3 packets is lost
    with caplog.at_level(logging.WARNING, logger="syncstream.sources.frame_ends"):
        ends = FrameEnds("t")
        out = _mark(received, ends, 1)
    assert not caplog.records
    assert _is_marker(out[-1])


def test_two_bytes_of_padding_end_a_pes() -> None:
    """A last packet holding 182 bytes of PES and an adaptation field of no flags is padded
    (FFmpeg's muxer writes it so for libx264 frames): its end is marked like any other."""
    sent, _ = _video_stream([(300, False, False)] * CONFIRMATIONS + [(168, False, False)], [])
    assert sent[-1][4:6] == b"\x01\x00"  # 168 + 14 bytes of PES header: 182 in one packet
    ends = FrameEnds("t")
    out = _mark(sent, ends)
    assert _is_marker(out[-1])
