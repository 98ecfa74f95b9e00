"""Recorder and Recording: real cameras (replayed .ts over UDP, a framed-JPEG peer) on loopback."""

from __future__ import annotations

import errno
import logging
import pathlib
import re
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import av.error
import numpy as np
import pytest
from peers import FramedJpegServer, encode_jpeg, synthetic_image

from syncstream import Camera, FrameSet, StreamEnded, StreamGroup, VideoStream
from syncstream.errors import ConfigError, RecordingError
from syncstream.frames import BGRImage, Frame
from syncstream.processors.recorder import Recorder
from syncstream.processors.recorder.packets import can_copy
from syncstream.processors.recorder.segments import PacketItem, SegmentPlan, SegmentWriter
from syncstream.recording import Recording
from syncstream.recording.index import (
    CameraLine,
    EndLine,
    FrameEntry,
    HeaderLine,
    SetLine,
    segment_path,
)
from syncstream.sources.base import EncodedPacket, PacketFormat
from syncstream.testing.plugin import TsRecorder
from tests.conftest import DATA, CameraFactory, wait_until

pytestmark = pytest.mark.timeout(60)

Summary = tuple[object, ...]


def _threads() -> list[str]:
    """syncstream's threads, but the one that starts local senders for the process's life."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("syncstream-") and not t.name.startswith("syncstream-spawner")
    ]


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    yield
    wait_until(lambda: not _threads(), 5.0, f"threads left: {_threads()}")


def _summary(fs: FrameSet) -> Summary:
    frames = tuple((n, f.seq, f.capture_time, f.pts_time) for n, f in fs.frames.items())
    return (fs.seq, frames, fs.missing, fs.skew, fs.time, fs.clock)


class Witness:
    """A processor keeping what the live group delivered: every set's numbers and times,
    and the pictures of the first ``images`` sets."""

    def __init__(self, images: int = 10) -> None:
        self.sets: dict[int, Summary] = {}
        self.images: dict[int, dict[str, BGRImage]] = {}
        self.keep = images

    def __call__(self, fs: FrameSet) -> None:
        self.sets[fs.seq] = _summary(fs)
        if len(self.images) < self.keep and fs.complete:
            self.images[fs.seq] = {name: frame.image.copy() for name, frame in fs.frames.items()}


def _read_until(group: StreamGroup, done: Callable[[], bool], limit: int = 2000) -> None:
    for _ in range(limit):
        if done():
            return
        group.read(timeout=10.0)
    raise AssertionError(f"condition not reached within {limit} frame sets")


def _mean_difference(a: BGRImage, b: BGRImage) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def _nearest(image: BGRImage, candidates: list[BGRImage]) -> int:
    differences = [_mean_difference(image, candidate) for candidate in candidates]
    assert sorted(differences)[1] > 15  # clearly one picture, not a blend
    return differences.index(min(differences))


def _segment_report(path: pathlib.Path) -> tuple[bool, int, int, float]:
    """(first packet is a keyframe, packets, frames decoded, seconds of video) of a file
    decoded on its own."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert frames and frames[0].time_base is not None
    span = float((frames[-1].pts - frames[0].pts) * frames[0].time_base)
    return packets[0].is_keyframe, len(packets), len(frames), span


# -- end to end ------------------------------------------------------------------------


def test_a_recording_replays_into_the_frame_sets_seen_live(
    replayed: CameraFactory, tmp_path: pathlib.Path
) -> None:
    cams = [replayed("door", "testsrc"), replayed("hall", "smptebars")]
    recorder, witness = Recorder(tmp_path / "rec", segment_seconds=1.0), Witness()
    group = StreamGroup(cams)
    group.add_processor(recorder)  # before start: the first frame's packets are recorded too
    group.add_processor(witness)
    with group:
        _read_until(group, lambda: recorder.stats.sets >= 90)
    stats = recorder.stats
    assert stats.error is None and not stats.recording and stats.lost_sets == 0
    assert all(c.mode == "copy" and c.dropped == 0 for c in stats.cameras.values())

    recording = Recording(tmp_path / "rec").open()
    assert recording.cameras == ("door", "hall")
    assert {n: (c.mode, c.codec) for n, c in recording.camera_lines.items()} == {
        "door": ("copy", "h264"),
        "hall": ("copy", "h264"),
    }
    assert recording.end is not None and recording.end.error is None
    assert recording.end.sets == len(recording) == stats.sets
    lines = list(recording.sets())
    replayed_sets = list(recording)
    assert recording.unavailable == 0
    assert [fs.seq for fs in replayed_sets] == [line.seq for line in lines]
    for fs, line in zip(replayed_sets, lines, strict=True):
        assert fs.missing == line.missing and list(fs) == list(line.frames)
        for name, frame in fs.frames.items():
            assert (frame.seq, frame.capture_time) == (
                line.frames[name].seq,
                line.frames[name].capture_time,
            )
    # the same sets as the live group delivered: numbers, frames, capture times, skew
    common = [fs for fs in replayed_sets if fs.seq in witness.sets]
    assert len(common) >= len(replayed_sets) // 2
    assert all(_summary(fs) == witness.sets[fs.seq] for fs in common)
    # pictures equal to the live ones, pixel for pixel: the packets were not re-encoded
    compared = 0
    for fs in replayed_sets:
        for name, image in witness.images.get(fs.seq, {}).items():
            assert np.array_equal(fs[name].image, image), (fs.seq, name)
            compared += 1
    assert compared >= 10

    # rotation by time: segments of at least 1 s of video, each decodable on its own
    for name in ("door", "hall"):
        files = recording.segments(name)
        assert len(files) >= 2
        used = [line.frames[name].segment for line in lines if name in line.frames]
        assert used == sorted(used) and set(used) <= set(range(1, len(files) + 1))
        for number, path in enumerate(files, start=1):
            assert path == segment_path(tmp_path / "rec", name, number)
            keyframe_first, packets, frames, span = _segment_report(path)
            assert keyframe_first and frames == packets
            if number < len(files):
                assert span >= 0.9


def test_segments_rotate_by_size(replayed: CameraFactory, tmp_path: pathlib.Path) -> None:
    limit = 20_000
    recorder = Recorder(tmp_path / "rec", segment_seconds=None, segment_bytes=limit)
    group = StreamGroup([replayed("door")])
    group.add_processor(recorder)
    with group:
        _read_until(group, lambda: recorder.stats.sets >= 75)
    recording = Recording(tmp_path / "rec")
    files = recording.segments("door")
    sizes = [path.stat().st_size for path in files]
    assert len(files) >= 2, sizes
    assert all(size >= 0.9 * limit for size in sizes[:-1]), sizes
    assert sum(sizes) == recorder.stats.cameras["door"].bytes
    for path in files:
        keyframe_first, packets, frames, _ = _segment_report(path)
        assert keyframe_first and frames == packets
    assert len(list(recording)) == len(recording) and recording.unavailable == 0


def test_a_camera_without_packets_is_encoded_again(
    replayed: CameraFactory, tmp_path: pathlib.Path
) -> None:
    images = [synthetic_image(i) for i in range(3)]
    recorder, witness = Recorder(tmp_path / "rec"), Witness()
    with FramedJpegServer([encode_jpeg(image) for image in images], fps=30.0) as server:
        cams = [Camera(name="jpeg", url=server.url), replayed("door")]
        group = StreamGroup(cams)
        group.add_processor(recorder)
        group.add_processor(witness)
        with group:
            _read_until(group, lambda: recorder.stats.sets >= 40)
    recording = Recording(tmp_path / "rec").open()
    lines = recording.camera_lines
    assert (lines["jpeg"].mode, lines["jpeg"].codec, lines["jpeg"].width) == ("encode", "h264", 160)
    assert lines["door"].mode == "copy"
    compared = full = 0
    clocks = {"jpeg": "arrival", "door": "sender"}
    for fs in recording:
        # the framed-JPEG camera goes by arrival, the replayed one by capture time (a set
        # missing a camera, at the start, is on the other's clock alone)
        assert fs.clocks == {name: clocks[name] for name in fs}
        assert fs.clock == ("mixed" if len(fs.clocks) == 2 else clocks[next(iter(fs))])
        full += len(fs.clocks) == 2
        live = witness.images.get(fs.seq)
        if live is None or len(fs.clocks) < 2:
            continue
        assert np.array_equal(fs["door"].image, live["door"])  # copied
        # encoded again: the same picture as live, up to coding noise
        assert _nearest(fs["jpeg"].image, images) == _nearest(live["jpeg"], images)
        assert _mean_difference(fs["jpeg"].image, live["jpeg"]) < 6.0
        compared += 1
    assert compared >= 5 and full >= 30 and recording.unavailable == 0


def test_a_full_disk_stops_the_recording_not_the_group(
    replayed: CameraFactory, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "rec"
    first = segment_path(target, "door", 1)
    first.parent.mkdir(parents=True)
    first.symlink_to("/dev/full")  # every write fails with ENOSPC
    recorder = Recorder(target)
    seen: list[int] = []
    with StreamGroup([replayed("door"), replayed("hall", "smptebars")]) as group:
        worker = group.add_processor(recorder)  # attached to a running group
        group.add_processor(lambda fs: seen.append(fs.seq), name="counter")
        with caplog.at_level(logging.ERROR):
            _read_until(group, lambda: worker.stats.errors >= 1)
        counted = len(seen)
        _read_until(group, lambda: len(seen) >= counted + 20)
        stats = worker.stats
    error = recorder.error
    assert isinstance(error, RecordingError) and error.errno == errno.ENOSPC
    assert "camera door" in str(error) and str(first) in str(error)
    assert stats.errors == 1 and stats.last_error is not None
    assert "No space left" in stats.last_error
    assert recorder.stats.recording is False and recorder.stats.lost_sets > 0
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is error]
    assert len(logged) == 1 and "processor recorder" in logged[0].getMessage()
    recording = Recording(target).open()
    assert recording.end is not None and recording.end.error == str(error)


def test_a_closed_recorder_refuses_sets_and_the_group_goes_on(
    replayed: CameraFactory, tmp_path: pathlib.Path
) -> None:
    recorder = Recorder(tmp_path / "rec")
    group = StreamGroup([replayed("door")])
    worker = group.add_processor(recorder)
    with group:
        _read_until(group, lambda: recorder.stats.sets >= 10)
        recorder.close()
        assert not [name for name in _threads() if name.startswith("syncstream-recorder")]
        with pytest.raises(RecordingError, match="closed"):
            recorder(group.read(timeout=10.0))
        _read_until(group, lambda: worker.stats.errors >= 3)
        assert group.read(timeout=10.0).complete
    assert worker.stats.last_error is not None and "closed" in worker.stats.last_error
    recording = Recording(tmp_path / "rec")
    assert recording.end is not None and recording.end.sets == len(recording) >= 10
    assert len(list(recording)) == len(recording) and recording.unavailable == 0


# -- attach and configuration --------------------------------------------------------


def _unstarted_group(name: str = "door") -> StreamGroup:
    return StreamGroup([Camera(name=name, url="udp://127.0.0.1:9")])


def test_attach_refuses_an_existing_recording_a_second_group_and_odd_names(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "index.jsonl").write_text("{}\n")
    with pytest.raises(RecordingError, match="holds a recording already"):
        _unstarted_group().add_processor(Recorder(tmp_path / "old"))
    with pytest.raises(RecordingError, match="cannot name a directory"):
        _unstarted_group("..").add_processor(Recorder(tmp_path / "dots"))
    recorder = Recorder(tmp_path / "new")
    with pytest.raises(RecordingError, match="not attached"):
        recorder(FrameSet(0, {}, ("door",), 0.0, 0.0, "arrival", 0.0, 0.0))
    _unstarted_group().add_processor(recorder)
    with pytest.raises(RecordingError, match="already attached"):
        _unstarted_group().add_processor(recorder)
    recorder.close()
    recorder.close()  # idempotent
    recording = Recording(tmp_path / "new")
    assert len(recording) == 0 and recording.end is not None and recording.end.error is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("segment_seconds", 0.0), ("segment_bytes", -1), ("queue_size", 0)],
)
def test_bad_limits_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        Recorder("unused", **{field: value})  # type: ignore[arg-type]


# -- the packet tap --------------------------------------------------------------------


def test_a_stream_hands_over_each_packet_before_its_frame() -> None:
    events: list[tuple[str, float | None]] = []
    packets: list[EncodedPacket] = []

    def on_packet(packet: EncodedPacket) -> None:
        packets.append(packet)
        events.append(("packet", packet.pts_time))

    def broken(packet: EncodedPacket) -> None:
        raise RuntimeError("listener bug")

    def on_frame(frame: Frame) -> None:
        events.append(("frame", frame.pts_time))

    stream = VideoStream(str(DATA / "testsrc_wallclock.ts"), realtime=False)
    stream.add_packet_listener(on_packet)
    stream.add_packet_listener(broken)
    stream.add_listener(on_frame, consume=True)
    with stream, pytest.raises(StreamEnded):
        stream.read(timeout=20.0)
    frames = [pts for kind, pts in events if kind == "frame"]
    assert len(frames) == len(packets) == 30  # the file holds 30 pictures
    for pts in frames:  # each frame's packet came first
        assert events.index(("packet", pts)) < events.index(("frame", pts))
    assert packets[0].is_keyframe and packets[0].format.codec == "h264"
    assert all(p.format is packets[0].format and p.time_base == Fraction(1, 90000) for p in packets)
    assert can_copy(packets[0])
    assert stream.stats.listener_errors == len(packets)


@pytest.mark.parametrize(("name", "copyable"), [("testsrc.mp4", False), ("testsrc_mpeg2.ts", True)])
def test_only_streams_mpeg_ts_can_carry_are_copied(name: str, copyable: bool) -> None:
    packets: list[EncodedPacket] = []
    stream = VideoStream(str(DATA / name), realtime=False)
    stream.add_packet_listener(packets.append)
    stream.add_listener(lambda frame: None, consume=True)
    with stream, pytest.raises(StreamEnded):
        stream.read(timeout=20.0)
    assert packets and can_copy(packets[0]) is copyable


# -- the segment writer ---------------------------------------------------------------


def _nal_units(data: bytes) -> list[bytes]:
    """The NAL units of Annex B bytes, without their start codes."""
    starts = [match.end() for match in re.finditer(b"\x00\x00\x01", data)]
    ends = [start - 3 for start in starts[1:]] + [len(data)]
    return [data[start:end].rstrip(b"\x00") for start, end in zip(starts, ends, strict=True)]


def _annex_b(units: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


@pytest.mark.parametrize("with_setup", [True, False])
def test_a_segment_decodes_on_its_own_when_the_camera_sends_its_setup_once(
    ts_recorder: TsRecorder, tmp_path: pathlib.Path, with_setup: bool
) -> None:
    # An RTSP camera's keyframes lack SPS and PPS (H.264 NAL types 7 and 8): they come once,
    # out of band, as the stream's extradata.
    with av.open(str(ts_recorder(seconds=1.0))) as container:
        stream = container.streams.video[0]
        received = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in container.demux(stream)]
    received = [item for item in received if item[0]]
    units = _nal_units(received[0][0])
    setup = _annex_b([u for u in units if u[0] & 0x1F in (7, 8)])
    assert setup and received[0][3]
    fmt = PacketFormat("h264", 320, 240, Fraction(1, 90000), setup if with_setup else b"")
    errors: list[RecordingError] = []
    writer = SegmentWriter(tmp_path, "cam", "copy", queue_size=1000, on_error=errors.append)
    writer.start()
    for data, pts, dts, keyframe in received:
        without_setup = _annex_b([u for u in _nal_units(data) if u[0] & 0x1F not in (7, 8)])
        assert writer.put(PacketItem(1, EncodedPacket(without_setup, pts, dts, keyframe, fmt)))
    writer.close()
    assert errors == [] and writer.written == len(received)
    decoded = refused = 0
    with av.open(str(segment_path(tmp_path, "cam", 1))) as container:
        for packet in container.demux(video=0):
            try:
                decoded += len(packet.decode())
            except av.error.InvalidDataError:
                refused += 1  # without SPS and PPS nothing decodes
    assert (decoded, refused > 0) == ((len(received), False) if with_setup else (0, True))


# -- segment plan (pure) ---------------------------------------------------------------


def test_segments_start_at_keyframes_after_the_time_limit() -> None:
    plan = SegmentPlan(seconds=1.0, max_bytes=None)
    assert plan.place(0.0, keyframe=False, size=100) is None  # waits for a keyframe
    placed = [plan.place(t / 10, keyframe=t % 5 == 0, size=100) for t in range(1, 31)]
    # keyframes every 0.5 s from 0.5 s: segment 1 from 0.5 s, 2 from 1.5 s, 3 from 2.5 s
    assert placed[:4] == [None] * 4
    assert placed[4:14] == [1] * 10 and placed[14:24] == [2] * 10 and placed[24:] == [3] * 6


def test_segments_cut_by_size_after_gaps_and_on_restart() -> None:
    plan = SegmentPlan(seconds=None, max_bytes=1000)
    assert plan.place(0.0, keyframe=True, size=500) == 1
    assert plan.place(0.1, keyframe=False, size=500) == 1  # 2 x 564 bytes of MPEG-TS
    assert plan.place(0.2, keyframe=False, size=10) == 1  # not a keyframe: no cut
    assert plan.place(0.3, keyframe=True, size=10) == 2
    plan.gap()  # lost packets: wait for the next keyframe, in the same segment
    assert plan.place(0.4, keyframe=False, size=10) is None
    assert plan.place(0.5, keyframe=True, size=10) == 2
    assert plan.place(0.6, keyframe=False, size=10, restart=True) is None
    assert plan.place(0.7, keyframe=True, size=10, restart=True) == 3
    plan.observe(3, 5000)  # the writer says the file is already large
    assert plan.place(0.8, keyframe=True, size=10) == 4


# -- the index (pure) ------------------------------------------------------------------


def _index_lines() -> list[str]:
    entry = FrameEntry(
        seq=4, pts_time=1.5, capture_time=10.0, arrival_time=10.1, arrival_mono=5.0, segment=1
    )
    lines: list[HeaderLine | CameraLine | SetLine | EndLine] = [
        HeaderLine(cameras=("a", "b"), start_time=9.0, segment_seconds=60.0, segment_bytes=None),
        CameraLine(camera="a", mode="copy", codec="h264", width=320, height=240),
        SetLine(
            seq=0,
            time=10.0,
            skew=0.0,
            clock="sender",
            missing=("b",),
            emitted_time=10.2,
            emitted_mono=5.1,
            frames={"a": entry},
        ),
        EndLine(sets=1, stop_time=11.0, error=None),
    ]
    return [line.model_dump_json() for line in lines]


def _write_index(directory: pathlib.Path, lines: list[str], *, newline: bool = True) -> Recording:
    directory.mkdir(exist_ok=True)
    (directory / "index.jsonl").write_text("\n".join(lines) + ("\n" if newline else ""))
    return Recording(directory)


def test_a_valid_index_is_read_line_by_line(tmp_path: pathlib.Path) -> None:
    recording = _write_index(tmp_path, _index_lines())
    assert len(recording) == 1 and recording.cameras == ("a", "b") and not recording.truncated
    (line,) = recording.sets()
    assert line.frames["a"].segment == 1 and line.missing == ("b",)
    (fs,) = list(recording)  # the segment file is absent: the frame is unavailable
    assert fs.seq == 0 and fs.missing == ("a", "b") and recording.unavailable == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ls: [ls[0], "{not json", *ls[1:]], r"index.jsonl:2: not a valid index line"),
        (lambda ls: [*ls[:2], ls[2].replace('"seq":0', '"seq":"x"'), ls[3]], r":3: .*seq"),
        (lambda ls: ls[1:], r":1: the first line must be the header"),
        (lambda ls: [ls[0].replace('"version":1', '"version":9'), *ls[1:]], "version 9"),
        (lambda ls: [*ls[:2], ls[2].replace('"missing":["b"]', '"missing":[]'), ls[3]], "once"),
        (lambda ls: [ls[0], ls[2], ls[1], ls[3]], "before its line"),
        (lambda ls: [*ls, ls[2]], "after the end line"),
        (lambda ls: [ls[0], ls[1].replace('"a"', '"c"'), *ls[2:]], "unknown camera 'c'"),
        (lambda ls: [ls[0].replace('"b"', '".."'), *ls[1:]], r":1: camera name '\.\.' cannot"),
        (lambda ls: [ls[0].replace('"b"', '"a"'), *ls[1:]], "named twice"),
    ],
)
def test_a_bad_index_line_is_a_clear_error(
    tmp_path: pathlib.Path, change: Callable[[list[str]], list[str]], message: str
) -> None:
    recording = _write_index(tmp_path, change(_index_lines()))
    with pytest.raises(RecordingError, match=message):
        recording.open()


def test_a_line_cut_short_at_the_end_is_skipped_and_a_long_line_refused(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = _index_lines()[:3]
    cut = _write_index(tmp_path / "cut", [*lines, lines[2][:40]], newline=False)
    with caplog.at_level(logging.WARNING):
        assert len(cut) == 1 and cut.truncated and cut.end is None
    assert any("cut short" in r.getMessage() for r in caplog.records)
    long = Recording(_write_index(tmp_path / "long", lines).directory, max_line_bytes=200)
    with pytest.raises(RecordingError, match=r":3: line longer than 200 bytes"):
        long.open()
    with pytest.raises(RecordingError, match=r"index\.jsonl: cannot read"):
        Recording(tmp_path / "absent").open()
