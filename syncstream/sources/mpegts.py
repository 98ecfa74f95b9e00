"""MPEG-TS program tables (PAT, PMT): which PIDs carry the programme, and when that changes.

FFmpeg's demuxer keeps the programs and streams it found when it was opened. A sender
restarted on the same port with other PIDs sends packets of a stream the reader never
selected, which the demuxer drops without a word; one restarted with another codec on
the same PID is still decoded with the first codec. :class:`ProgramWatch` reads the PAT
and the PMTs of each datagram before FFmpeg sees it and says when the video layout
changed, so that the UDP reader can open a new demuxer at once.

It also keeps FFmpeg away from packets that are not the programme's: once the demuxer has
read its tables it sets up a stream for every new PID whose packet starts with a PES
header, up to its stream limit and then out of memory, and each one costs it a probe.
:meth:`ProgramWatch.filter` passes only the PAT, the PMTs it names and the PIDs those
list (elementary streams and PCR), so packets on any other PID never reach the demuxer.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

__all__ = ["VIDEO_STREAM_TYPES", "Filtered", "ProgramWatch", "crc32_mpeg2"]

TS_PACKET = 188
_PAT_PID = 0x0000
_LAST_SI_PID = 0x001F  # PIDs 0x0001-0x001F: CAT, NIT, SDT, EIT, ... (service information)
_NULL_PID = 0x1FFF
_PAT_TABLE = 0x00
_PMT_TABLE = 0x02
_MAX_SECTION = 1024  # a PAT or PMT section: at most 1021 bytes after its 3-byte header
_PID_HIGH_BITS = bytes(byte & 0x1F for byte in range(256))  # 2nd header byte -> PID's top bits
_MAX_PLAIN = 1024  # PID layouts remembered as the programme's alone

#: PMT ``stream_type`` values that FFmpeg's demuxer reads as video, with their codec.
VIDEO_STREAM_TYPES = {
    0x01: "MPEG-1",
    0x02: "MPEG-2",
    0x10: "MPEG-4",
    0x1B: "H.264",
    0x1F: "H.264 SVC",
    0x20: "H.264 MVC",
    0x21: "JPEG 2000",
    0x24: "HEVC",
    0x33: "VVC",
    0x42: "CAVS",
    0xD1: "Dirac",
    0xD2: "AVS2",
    0xD4: "AVS3",
    0xEA: "VC-1",
}


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = (crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 of ``data``; 0 for a PSI section whose trailing CRC is right."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


class _Sections:
    """Reassembles the PSI sections of table PIDs from their TS packets.

    A section starts in a packet with ``payload_unit_start`` set (after the pointer
    field) and may go on in the next packets of its PID (a PMT with many streams or
    descriptors); ffmpeg's PAT and PMT fit in one. Only the first section of a packet is
    read; a transport error or a section longer than a table can be drops what was
    gathered.
    """

    def __init__(self) -> None:
        self._partial: dict[int, bytearray] = {}  # PID -> the start of an unfinished section

    def clear(self, pid: int) -> None:
        """Forget the unfinished section of ``pid``."""
        self._partial.pop(pid, None)

    def feed(self, pid: int, packet: bytes) -> bytes | None:
        """The section that ``packet`` (of ``pid``) completes, or None."""
        if packet[1] & 0x80:  # transport error
            self._partial.pop(pid, None)
            return None
        control = (packet[3] >> 4) & 0x3
        if not control & 0x1:  # no payload
            return None
        start = 4 + (1 + packet[4] if control & 0x2 else 0)
        if start >= TS_PACKET:
            return None
        if packet[1] & 0x40:  # a section starts here, after the pointer field
            start += 1 + packet[start]
            if start >= TS_PACKET:
                self._partial.pop(pid, None)
                return None
            gathered = bytearray(packet[start:])
        else:
            partial_section = self._partial.get(pid)
            if partial_section is None:
                return None
            gathered = partial_section + packet[start:]
        if len(gathered) < 3:
            self._partial[pid] = gathered
            return None
        end = 3 + (((gathered[1] & 0x0F) << 8) | gathered[2])
        if end < 12 or end > _MAX_SECTION:
            self._partial.pop(pid, None)
            return None
        if len(gathered) < end:
            self._partial[pid] = gathered
            return None
        self._partial.pop(pid, None)
        return bytes(gathered[:end])


def _whole_current_table(section: bytes, table_id: int) -> bool:
    """A current (not next) table of one section, with a right CRC."""
    return (
        section[0] == table_id
        and section[5] & 0x01 == 1
        and section[6] == 0
        and section[7] == 0
        and crc32_mpeg2(section) == 0
    )


Programs = dict[int, int]  # program_number -> PMT PID
Videos = tuple[tuple[int, int], ...]  # (elementary PID, stream_type) of each video stream


class Filtered(NamedTuple):
    """What :meth:`ProgramWatch.filter` made of some TS packets."""

    #: The packets on the programme's PIDs, in their order (the input itself if all are).
    data: bytes
    #: Packets dropped on PIDs outside the programme, not counting null packets and the
    #: service-information PIDs 0x0001-0x001F that senders add (SDT, NIT, ...).
    foreign: int
    #: What changed in the video layout (as :meth:`ProgramWatch.feed` says), or None.
    change: str | None
    #: The packets carried the current PAT (a valid one, new or repeated).
    pat: bool


def _describe_programs(programs: Programs) -> str:
    if not programs:
        return "no program"
    return ", ".join(f"program {n} on PMT PID 0x{pid:04x}" for n, pid in sorted(programs.items()))


def _describe_videos(videos: Videos) -> str:
    if not videos:
        return "no video"
    return ", ".join(f"PID 0x{pid:04x} {VIDEO_STREAM_TYPES[kind]}" for pid, kind in videos)


class ProgramWatch:
    """Follows the PAT and PMTs of a transport stream; reports changes of its video layout
    and keeps the packets of its programme.

    The first PAT and PMTs establish the layout. Afterwards :meth:`feed` describes the
    change when the PAT lists other programs or PMT PIDs, or a PMT lists other video
    streams (elementary PID or ``stream_type``), and takes the new layout as the
    reference. A new table version with the same layout is no change: FFmpeg follows
    that itself. Sections with a wrong CRC, or split in several sections, are ignored.

    :attr:`pids` are the programme's PIDs: the PAT's, the PMTs it names and, from each
    PMT read, its elementary streams and PCR PID. Before the first PAT that is PID 0
    alone, then the PMT PIDs: the demuxer needs the tables before any other packet.
    Packets dropped before each PMT of the PAT was read are not counted as foreign: they
    may be the programme's.
    """

    def __init__(self) -> None:
        self._programs: Programs | None = None
        self._pmt_pids: frozenset[int] = frozenset()
        self._videos: dict[int, Videos] = {}  # PMT PID -> its video streams
        self._streams: dict[int, frozenset[int]] = {}  # PMT PID -> its elementary and PCR PIDs
        self._sections: dict[int, bytes] = {}  # PID -> the last section read there
        self._gather = _Sections()
        self._plain: set[bytes] = set()  # PID layouts of datagrams kept whole, with no table
        self._repeats: dict[int, bytes] = {}  # PID -> payload of a packet holding its table
        self._table_pids = frozenset({_PAT_PID})  # PAT and PMTs
        self._complete = False  # the PAT and each PMT it names were read
        #: The PIDs :meth:`filter` keeps.
        self.pids: frozenset[int] = self._table_pids
        #: The elementary PIDs of the video streams of every program read so far.
        self.video_pids: frozenset[int] = frozenset()

    def feed(self, data: bytes | memoryview) -> str | None:
        """Read the tables in ``data`` (whole TS packets); what changed, or None."""
        return self.filter(data).change

    def filter(self, data: bytes | memoryview) -> Filtered:
        """Read the tables in ``data`` (whole TS packets) and keep the programme's packets.

        The packets are taken in order, so a PMT or an elementary stream named by tables
        earlier in ``data`` is kept already.
        """
        data = bytes(data)
        highs, lows = data[1::TS_PACKET].translate(_PID_HIGH_BITS), data[2::TS_PACKET]
        layout = highs + lows  # the PIDs of the packets, in two runs of bytes
        if layout in self._plain:
            return Filtered(data, 0, None, False)  # the programme's packets, no table
        pids = self.pids
        packet_pids = [(high << 8) | low for high, low in zip(highs, lows, strict=True)]
        if pids.issuperset(packet_pids) and self._table_pids.isdisjoint(packet_pids):
            if len(self._plain) < _MAX_PLAIN:
                self._plain.add(layout)
            return Filtered(data, 0, None, False)
        kept: list[int] = []
        foreign = 0
        change: str | None = None
        pat = False
        for index, pid in enumerate(packet_pids):
            if pid not in pids:
                if _LAST_SI_PID < pid < _NULL_PID and self._complete:
                    foreign += 1
                continue
            kept.append(index)
            if pid not in self._table_pids:
                continue  # an elementary stream or PCR
            offset = index * TS_PACKET
            packet = data[offset : offset + TS_PACKET]
            repeat = packet[1] & 0xC0 == 0x40 and packet[3] & 0x30 == 0x10  # start, no TEI/AF
            if repeat and packet[4:] == self._repeats.get(pid):
                self._gather.clear(pid)  # the last table again (ffmpeg sends it 10 times a s)
                pat = pat or pid == _PAT_PID
                continue
            section = self._gather.feed(pid, packet)
            if section is None:
                continue
            if self._sections.get(pid) != section:  # only a new table is read
                read = self._read_pat if pid == _PAT_PID else partial(self._read_pmt, pid)
                change = read(section) or change
                pids = self.pids
            if self._sections.get(pid) == section:
                pat = pat or pid == _PAT_PID
                if packet[1] & 0x40 and packet[3] & 0x30 == 0x10:  # one packet, no adaptation
                    self._repeats[pid] = packet[4:]
        if len(kept) * TS_PACKET != len(data):
            data = b"".join(data[i * TS_PACKET : (i + 1) * TS_PACKET] for i in kept)
        return Filtered(data, foreign, change, pat)

    def carries(self, data: bytes | memoryview) -> bool:
        """Whether any packet of ``data`` is on one of the programme's :attr:`pids`."""
        pids = self.pids
        return any(
            (((high & 0x1F) << 8) | low) in pids
            for high, low in zip(data[1::TS_PACKET], data[2::TS_PACKET], strict=True)
        )

    def _update_pids(self) -> None:
        self._plain.clear()
        self.video_pids = frozenset(pid for videos in self._videos.values() for pid, _ in videos)
        self._table_pids = frozenset({_PAT_PID, *self._pmt_pids})
        self.pids = self._table_pids.union(*self._streams.values())
        self._complete = self._programs is not None and set(self._streams) >= self._pmt_pids

    def _read_pat(self, section: bytes) -> str | None:
        if not _whole_current_table(section, _PAT_TABLE):
            return None
        self._sections[_PAT_PID] = section
        programs: Programs = {}
        for at in range(8, len(section) - 4 - 3, 4):
            number = (section[at] << 8) | section[at + 1]
            if number != 0:  # program 0 points to the network table, not a PMT
                programs[number] = ((section[at + 2] & 0x1F) << 8) | section[at + 3]
        previous, self._programs = self._programs, programs
        self._pmt_pids = frozenset(programs.values())
        for pid in set(self._sections) - self._pmt_pids - {_PAT_PID}:
            self._videos.pop(pid, None)
            self._streams.pop(pid, None)
            self._sections.pop(pid, None)
            self._repeats.pop(pid, None)
            self._gather.clear(pid)
        self._update_pids()
        if previous is None or previous == programs:
            return None
        return f"PAT: {_describe_programs(previous)} -> {_describe_programs(programs)}"

    def _read_pmt(self, pmt_pid: int, section: bytes) -> str | None:
        if len(section) < 16 or not _whole_current_table(section, _PMT_TABLE):
            return None
        self._sections[pmt_pid] = section
        at = 12 + (((section[10] & 0x0F) << 8) | section[11])  # past the program descriptors
        end = len(section) - 4
        videos: list[tuple[int, int]] = []
        pids = {((section[8] & 0x1F) << 8) | section[9]} - {_NULL_PID}  # PCR_PID
        while at + 5 <= end:
            kind = section[at]
            pid = ((section[at + 1] & 0x1F) << 8) | section[at + 2]
            pids.add(pid)
            if kind in VIDEO_STREAM_TYPES:
                videos.append((pid, kind))
            at += 5 + (((section[at + 3] & 0x0F) << 8) | section[at + 4])
        self._streams[pmt_pid] = frozenset(pids)
        layout = tuple(videos)
        previous = self._videos.get(pmt_pid)
        self._videos[pmt_pid] = layout
        self._update_pids()
        if previous is None or previous == layout:
            return None
        return (
            f"PMT PID 0x{pmt_pid:04x}: {_describe_videos(previous)} -> {_describe_videos(layout)}"
        )
