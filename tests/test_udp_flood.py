"""A camera's UDP port under foreign traffic: the PID filter, the allow-list of senders and
the one-sender rule.

The PID filter is checked as pure logic against an oracle on generated transport
streams; the sender gate's rules with explicit times. The reader against real ffmpeg
senders on 127.0.0.1: a flood of random-PID datagrams from the camera's own address, a
sender outside the allow-list (bound to 127.0.0.2, loopback too), a second ffmpeg sending
to the same port, and the default allow-list of a group's cameras (local, and over SSH).
"""

from __future__ import annotations

import logging
import time

import pytest
from conftest import SenderFactory, free_udp_port, holds_for, ssh_host, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncstream import (
    Camera,
    ConfigError,
    Frame,
    SenderConfig,
    StreamGroup,
    StreamState,
    VideoStream,
)
from syncstream.config import StreamConfig
from syncstream.probe import StampSender, decode_stamp
from syncstream.senders.fleet import LOOPBACK, sender_addresses
from syncstream.sources.mpegts import ProgramWatch, crc32_mpeg2
from syncstream.sources.udp_senders import MIN_HANDOVER, SenderGate
from syncstream.testing.flood import UdpFlood, random_ts_datagrams
from syncstream.testing.sshd import SshdServer

pytestmark = pytest.mark.timeout(60)

TS = 188
H264, AAC = 0x1B, 0x0F


# -- generated transport streams ----------------------------------------------------------


def psi_packets(pid: int, table_id: int, body: bytes) -> list[bytes]:
    """A PSI section (with its CRC) in as many TS packets of ``pid`` as it needs."""
    length = 5 + len(body) + 4
    section = bytes([table_id, 0xB0 | length >> 8, length & 0xFF, 0, 1, 0xC1, 0, 0]) + body
    payload = b"\x00" + section + crc32_mpeg2(section).to_bytes(4, "big")  # pointer field
    packets = []
    for index, at in enumerate(range(0, len(payload), 184)):
        start = 0x40 if index == 0 else 0x00
        header = bytes([0x47, start | pid >> 8, pid & 0xFF, 0x10 | index % 16])
        packets.append((header + payload[at : at + 184]).ljust(TS, b"\xff"))
    return packets


def pat(*pmt_pids: int) -> list[bytes]:
    body = b"".join((n + 1).to_bytes(2, "big") + (0xE000 | p).to_bytes(2, "big")
                    for n, p in enumerate(pmt_pids))  # fmt: skip
    return psi_packets(0, 0x00, body)


def pmt(
    pmt_pid: int, pcr_pid: int, streams: list[tuple[int, int]], padding: int = 0
) -> list[bytes]:
    """A PMT listing ``(stream_type, pid)`` streams, each with ``padding`` descriptor bytes."""
    body = (0xE000 | pcr_pid).to_bytes(2, "big") + b"\xf0\x00"
    for kind, pid in streams:
        descriptor = bytes([0x05, padding - 2]) + b"x" * (padding - 2) if padding >= 2 else b""
        body += bytes([kind]) + (0xE000 | pid).to_bytes(2, "big")
        body += (0xF000 | len(descriptor)).to_bytes(2, "big") + descriptor
    return psi_packets(pmt_pid, 0x02, body)


def other(pid: int, start: bool, payload: bytes) -> bytes:
    """A packet of anything else: video, junk, a flood."""
    return bytes([0x47, (0x40 if start else 0) | pid >> 8, pid & 0xFF, 0x10]) + payload


def pid_of(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


Step = tuple[str, object, list[bytes]]  # (kind, meaning, packets)
# A small pool of PIDs, so that tables name PIDs that other packets use, and the other way.
_PIDS = st.sampled_from([0x0000, 0x0011, 0x0100, 0x0101, 0x0200, 0x1000, 0x1001, 0x1FFF])
_NON_PAT = _PIDS.filter(lambda pid: pid != 0)


@st.composite
def streams(draw: st.DrawFn) -> list[Step]:
    """A transport stream as steps; the oracle reads their meaning. The tables name PIDs
    of a few drawn for this stream (so that PATs, PMTs and streams meet), or others."""
    pmt_pool = draw(st.lists(_NON_PAT, min_size=1, max_size=2, unique=True))
    es_pool = draw(st.lists(_NON_PAT, min_size=1, max_size=3, unique=True))
    steps: list[Step] = []
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["pat", "pmt", "other", "other", "other"]))
        if kind == "pat":
            pmt_pids = draw(st.lists(st.sampled_from(pmt_pool) | _NON_PAT, max_size=2, unique=True))
            steps.append((kind, pmt_pids, pat(*pmt_pids)))
        elif kind == "pmt":
            pmt_pid = draw(st.sampled_from(pmt_pool) | _NON_PAT)
            pcr = draw(st.sampled_from(es_pool) | _PIDS)
            kinds = st.sampled_from([H264, AAC])
            es = draw(st.lists(st.tuples(kinds, st.sampled_from(es_pool) | _NON_PAT), max_size=4))
            padding = draw(st.sampled_from([0, 0, 60]))  # 60: the section spans 2 or 3 packets
            meaning = (pmt_pid, pcr, [pid for _, pid in es])
            steps.append((kind, meaning, pmt(pmt_pid, pcr, es, padding)))
        else:
            pid = draw(st.sampled_from([0, *pmt_pool, *es_pool]) | _PIDS | st.integers(0, 0x1FFF))
            payload = draw(st.binary(min_size=184, max_size=184))
            steps.append((kind, pid, [other(pid, draw(st.booleans()), payload)]))
    return steps


def oracle(steps: list[Step]) -> tuple[list[bytes], int]:
    """The packets a programme filter keeps, and the foreign ones it counts, told from what
    the generator meant (no parsing): PID 0, the PMT PIDs of the last PAT, the streams and
    PCR of the last PMT read on each of those; foreign once every PMT of the PAT was read."""
    pmt_pids: list[int] | None = None
    streams: dict[int, set[int]] = {}
    kept: list[bytes] = []
    foreign = 0
    for kind, meaning, packets in steps:
        wanted = {0, *(pmt_pids or [])}.union(*streams.values())
        if pid_of(packets[0]) not in wanted:
            complete = pmt_pids is not None and set(streams) >= set(pmt_pids)
            foreign += sum(complete and 0x1F < pid_of(p) < 0x1FFF for p in packets)
            continue
        kept += packets
        if kind == "pat":
            assert isinstance(meaning, list)
            pmt_pids = meaning
            streams = {pid: pids for pid, pids in streams.items() if pid in pmt_pids}
        elif kind == "pmt":
            assert isinstance(meaning, tuple)
            pmt_pid, pcr, pids = meaning
            if pmt_pids is not None and pmt_pid in pmt_pids:
                streams[pmt_pid] = ({pcr} - {0x1FFF}) | set(pids)
    return kept, foreign


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.lists(st.integers(1, 7), min_size=1))
def test_the_pid_filter_keeps_what_the_oracle_keeps(steps: list[Step], sizes: list[int]) -> None:
    stream = b"".join(b"".join(packets) for _, _, packets in steps)
    watch = ProgramWatch()
    kept, foreign, at = [], 0, 0
    for size in sizes * (len(stream) // TS + 1):  # datagrams of 1 to 7 packets
        if at >= len(stream):
            break
        result = watch.filter(stream[at : at + size * TS])
        kept += [result.data[i : i + TS] for i in range(0, len(result.data), TS)]
        foreign += result.foreign
        at += size * TS
    expected, expected_foreign = oracle(steps)
    assert [pid_of(p) for p in kept] == [pid_of(p) for p in expected]
    assert kept == expected
    assert foreign == expected_foreign


def test_a_stream_of_ffmpeg_passes_whole_and_junk_between_is_dropped() -> None:
    programme = pat(0x1000) + pmt(0x1000, 0x100, [(H264, 0x100)])
    video = [other(0x100, i == 0, bytes(184)) for i in range(5)]
    watch = ProgramWatch()
    assert watch.filter(b"".join(video)).data == b""  # before the tables: nothing but PID 0
    datagram = b"".join(programme + video)
    assert watch.filter(datagram).data == datagram  # tables first: the video is kept at once
    junk = random_ts_datagrams(1, seed=3)[0]
    mixed = b"".join(video[:2]) + junk + b"".join(video[2:])
    result = watch.filter(mixed)
    assert result.data == b"".join(video)
    assert result.foreign == sum(
        0x1F < pid_of(junk[i : i + TS]) < 0x1FFF for i in range(0, 7 * TS, TS)
    )
    assert watch.pids == {0, 0x1000, 0x100}


# -- the sender gate, as pure logic -------------------------------------------------------


def test_the_allow_list_takes_addresses_and_networks() -> None:
    gate = SenderGate(["192.0.2.7", "10.1.0.0/16", "::1"])
    assert gate.allows("192.0.2.7") and gate.allows("10.1.200.3") and gate.allows("::1")
    assert gate.allows("::ffff:10.1.0.9")  # IPv4 seen by a dual-stack socket
    assert not gate.allows("192.0.2.8") and not gate.allows("10.2.0.1")
    assert not gate.allows("127.0.0.1") and not gate.allows("not an address")
    assert SenderGate().allows("203.0.113.5")  # no list: anyone


def test_allowed_senders_are_validated_and_normalised() -> None:
    config = StreamConfig(url="udp://:9", allowed_senders=("127.0.0.1", "10.1.2.3/16", "::1"))
    assert config.allowed_senders == ("127.0.0.1/32", "10.1.0.0/16", "::1/128")
    with pytest.raises(ConfigError, match="allowed_senders"):
        StreamConfig(url="udp://:9", allowed_senders=("camera.local",))
    with pytest.raises(ConfigError, match="allowed_senders"):
        Camera(name="a", url="udp://:9", allowed_senders=("10.0.0.0/33",))


def test_the_first_sender_of_a_pat_holds_the_port_until_it_falls_silent() -> None:
    gate = SenderGate()
    first, second = ("192.0.2.1", 5000), ("192.0.2.2", 6000)
    assert gate.passed(second, 0.0, pat=False) is None and gate.holder is None
    assert gate.passed(first, 0.01, pat=True) is None and gate.holder == first
    for step in range(1, 20):  # every 40 ms
        assert gate.passed(first, 0.01 + 0.04 * step, pat=False) is None
    last = 0.01 + 0.04 * 19
    assert gate.handover == pytest.approx(max(MIN_HANDOVER, 2 * 0.04))  # twice the gap
    assert gate.rival(second, last + 0.05) == first  # the holder still sends
    assert gate.passed(second, last + 0.05, pat=True) is None  # not taken over
    assert gate.rival(first, last + 0.06) is None  # the holder is no rival of itself
    assert gate.rival(second, last + 0.5) is None  # silent long enough: the port is free
    assert gate.passed(second, last + 0.5, pat=False) is None and gate.holder == first
    assert gate.passed(second, last + 0.51, pat=True) == first and gate.holder == second


def test_a_local_sender_comes_from_loopback_and_a_remote_one_from_its_host() -> None:
    local = Camera(name="a", sender=SenderConfig(), port=9000)
    assert sender_addresses(local) == LOOPBACK
    remote = Camera(name="b", sender=SenderConfig(), port=9000, host={"hostname": "127.0.0.1"})
    assert sender_addresses(remote) == ("127.0.0.1",)


# -- real senders on loopback -------------------------------------------------------------


def _stamps(frames: list[Frame]) -> list[float]:
    return [decode_stamp(frame.image) for frame in frames]


def test_a_random_pid_flood_from_the_cameras_address_keeps_its_frames() -> None:
    """1000 datagrams/s of random-PID packets from 127.0.0.1 for 5 s: 90 % of the frames."""
    port = free_udp_port()
    frames: list[Frame] = []
    with (
        VideoStream(f"udp://127.0.0.1:{port}", name="cam") as stream,
        StampSender(f"udp://127.0.0.1:{port}", size=(320, 240), fps=25.0) as camera,
    ):
        stream.add_listener(frames.append)
        wait_until(lambda: len(frames) >= 25, 20.0, "a second of frames before the flood")
        start_time, sent_before = time.time(), camera.frames_sent
        with UdpFlood(port, rate=1000.0, seed=7) as flood:
            holds_for(lambda: stream.state is StreamState.LIVE, 5.0, "live through the flood")
        end_time, sent = time.time(), camera.frames_sent - sent_before
        count = len(frames)
        wait_until(lambda: len(frames) >= count + 3, 5.0, "the frames sent last")
        stats = stream.stats
    kept = [s for s in _stamps(frames) if start_time <= s < end_time]
    assert flood.sent >= 4000
    assert len(kept) >= 0.9 * sent, f"{len(kept)} of {sent} frames kept"
    assert 0 < stats.foreign_packets <= 7 * flood.sent
    assert stats.reconnects == 0


def test_a_sender_outside_the_allow_list_is_refused_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="syncstream.sources.udp")
    port = free_udp_port()
    frames: list[Frame] = []
    with (
        VideoStream(
            f"udp://127.0.0.1:{port}", name="cam", allowed_senders=("127.0.0.1",)
        ) as stream,
        StampSender(f"udp://127.0.0.1:{port}", size=(320, 240), fps=25.0),
    ):
        stream.add_listener(frames.append)
        wait_until(lambda: len(frames) >= 5, 20.0, "frames from the allowed sender")
        with UdpFlood(port, rate=300.0, source=("127.0.0.2", 0)) as stranger:
            wait_until(lambda: stream.stats.foreign_datagrams >= 300, 10.0, "refusals counted")
            count = len(frames)
            holds_for(lambda: stream.state is StreamState.LIVE, 1.0, "live while refusing")
            wait_until(lambda: len(frames) >= count + 10, 5.0, "frames while refusing")
        wait_until(lambda: stream.stats.foreign_datagrams == stranger.sent, 5.0, "each refused")
        stats = stream.stats
    assert stats.foreign_packets == 0  # refused before their packets were looked at
    assert stats.reconnects == 0
    assert "datagrams from 127.0.0.2 refused, not in allowed_senders (127.0.0.1/32)" in caplog.text


def test_a_second_sender_on_the_port_is_dropped_named_and_takes_over_when_the_first_stops(
    udp_sender: SenderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncstream.sources.udp")
    port = free_udp_port()
    first = udp_sender(port, size=(320, 240))
    frames: list[Frame] = []
    with VideoStream(f"udp://127.0.0.1:{port}", name="cam") as stream:
        stream.add_listener(frames.append)
        wait_until(lambda: len(frames) >= 5, 20.0, "frames of the first sender")
        udp_sender(port, size=(160, 120))  # the same PIDs and codec: it would mix in
        wait_until(lambda: stream.stats.foreign_datagrams >= 50, 15.0, "the second one dropped")
        count, errors = len(frames), stream.stats.decode_errors
        wait_until(lambda: len(frames) >= count + 30, 10.0, "frames while both send")
        mixed, errors = frames[count:], stream.stats.decode_errors - errors
        first.close()
        wait_until(lambda: frames[-1].width == 160, 15.0, "the second sender's frames")
    assert {(f.width, f.height) for f in mixed} == {(320, 240)}  # none of the second's
    assert errors == 0
    warnings = [r.getMessage() for r in caplog.records if "two senders share" in r.getMessage()]
    assert warnings and warnings[0].count("127.0.0.1:") == 3  # holder, second, dropped
    assert any("sends the stream now" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("no_group_threads_left")
def test_a_groups_cameras_take_datagrams_from_their_senders_host_only(sshd: SshdServer) -> None:
    small = SenderConfig(size=(320, 240), fps=25.0)
    cams = [
        Camera(name="local", sender=small, port=free_udp_port()),
        Camera(
            name="remote", sender=small, port=free_udp_port(), host=ssh_host(sshd),
            receiver_host="127.0.0.1",
        ),
    ]  # fmt: skip
    with StreamGroup(cams, clock_rounds=3) as group:
        group.read(timeout=15.0)
        assert group.streams["local"].config.allowed_senders == ("127.0.0.0/8", "::1/128")
        assert group.streams["remote"].config.allowed_senders == (f"{sshd.host}/32",)
        with UdpFlood(cams[1].port or 0, rate=200.0, source=("127.0.0.2", 0)):
            wait_until(
                lambda: group.stats.cameras["remote"].stream.foreign_datagrams >= 100,
                10.0,
                "the stranger refused",
            )
            sets = [group.read(timeout=5.0) for _ in range(10)]
    assert all(set(fs) == {"local", "remote"} for fs in sets[-3:])
