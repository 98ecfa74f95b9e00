"""MPEG-TS program tables (PAT, PMT): which PIDs carry video, and when that changes.

FFmpeg's demuxer keeps the programs and streams it found when it was opened. A sender
restarted on the same port with other PIDs sends packets of a stream the reader never
selected, which the demuxer drops without a word; one restarted with another codec on
the same PID is still decoded with the first codec. :class:`ProgramWatch` reads the PAT
and the PMTs of each datagram before FFmpeg sees it and says when the video layout
changed, so that the UDP reader can open a new demuxer at once.
"""

from __future__ import annotations

from functools import partial

__all__ = ["VIDEO_STREAM_TYPES", "ProgramWatch", "crc32_mpeg2"]

TS_PACKET = 188
_PAT_PID = 0x0000
_PAT_TABLE = 0x00
_PMT_TABLE = 0x02

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


def _section(packet: bytes) -> bytes | None:
    """The PSI section that starts and ends in one TS ``packet``, or None.

    A section spread over several packets is not followed (ffmpeg's PAT and PMT fit in
    one, as do those of cameras with a handful of streams).
    """
    if packet[1] & 0x80 or not packet[1] & 0x40:  # transport error, or no section start
        return None
    control = (packet[3] >> 4) & 0x3
    if not control & 0x1:  # no payload
        return None
    start = 4 + (1 + packet[4] if control & 0x2 else 0)
    if start >= TS_PACKET:
        return None
    start += 1 + packet[start]  # pointer_field
    if start + 3 > TS_PACKET:
        return None
    length = ((packet[start + 1] & 0x0F) << 8) | packet[start + 2]
    end = start + 3 + length
    if length < 9 or end > TS_PACKET:
        return None
    return packet[start:end]


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


def _describe_programs(programs: Programs) -> str:
    if not programs:
        return "no program"
    return ", ".join(f"program {n} on PMT PID 0x{pid:04x}" for n, pid in sorted(programs.items()))


def _describe_videos(videos: Videos) -> str:
    if not videos:
        return "no video"
    return ", ".join(f"PID 0x{pid:04x} {VIDEO_STREAM_TYPES[kind]}" for pid, kind in videos)


class ProgramWatch:
    """Follows the PAT and PMTs of a transport stream; reports changes of its video layout.

    The first PAT and PMTs establish the layout. Afterwards :meth:`feed` describes the
    change when the PAT lists other programs or PMT PIDs, or a PMT lists other video
    streams (elementary PID or ``stream_type``), and takes the new layout as the
    reference. A new table version with the same layout is no change: FFmpeg follows
    that itself. Sections with a wrong CRC, spread over several packets or split in
    several sections are ignored.
    """

    def __init__(self) -> None:
        self._programs: Programs | None = None
        self._pmt_pids: frozenset[int] = frozenset()
        self._videos: dict[int, Videos] = {}  # PMT PID -> its video streams
        self._sections: dict[int, bytes] = {}  # PID -> the last section read there

    def feed(self, data: bytes | memoryview) -> str | None:
        """Read the tables in ``data`` (whole TS packets); what changed, or None."""
        change: str | None = None
        for offset in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
            pid = ((data[offset + 1] & 0x1F) << 8) | data[offset + 2]
            if pid != _PAT_PID and pid not in self._pmt_pids:
                continue
            section = _section(bytes(data[offset : offset + TS_PACKET]))
            if section is None or self._sections.get(pid) == section:
                continue  # tables repeat ten times a second: only a new one is parsed
            read = self._read_pat if pid == _PAT_PID else partial(self._read_pmt, pid)
            change = read(section) or change
        return change

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
        for pid in set(self._videos) - self._pmt_pids:
            del self._videos[pid]
            self._sections.pop(pid, None)
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
        while at + 5 <= end:
            kind = section[at]
            if kind in VIDEO_STREAM_TYPES:
                videos.append((((section[at + 1] & 0x1F) << 8) | section[at + 2], kind))
            at += 5 + (((section[at + 3] & 0x0F) << 8) | section[at + 4])
        layout = tuple(videos)
        previous = self._videos.get(pmt_pid)
        self._videos[pmt_pid] = layout
        if previous is None or previous == layout:
            return None
        return (
            f"PMT PID 0x{pmt_pid:04x}: {_describe_videos(previous)} -> {_describe_videos(layout)}"
        )
