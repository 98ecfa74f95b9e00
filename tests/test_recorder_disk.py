"""Recorder on a real full disk (a small tmpfs), and recordings cut by a crash.

The full disk is a tmpfs of 2 MiB mounted for the test (root needed, as in CI), filled
with a file so that a few hundred KiB stay free: the recorder's writes then fail with the
kernel's own ENOSPC.
"""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from conftest import CameraFactory
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_recorder import _read_until

from syncstream import Camera, FrameSet, StreamGroup
from syncstream.errors import RecordingError
from syncstream.processors.recorder import Recorder
from syncstream.recording import Recording
from syncstream.recording.index import (
    INDEX_NAME,
    CameraLine,
    FrameEntry,
    HeaderLine,
    SetLine,
    parse_index_line,
)
from syncstream.recording.writer import END_ERROR_CHARS, IndexWriter

pytestmark = pytest.mark.timeout(60)

_TS_PACKET = 188


@pytest.fixture
def small_disk(tmp_path: pathlib.Path) -> Iterator[Callable[[int], pathlib.Path]]:
    """``small_disk(free)``: a 2 MiB tmpfs, mounted for the test, filled but ``free`` bytes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the CI runs the tests as root)")
    mounted: list[pathlib.Path] = []

    def disk(free: int) -> pathlib.Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        argv = ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(point)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        if result.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs as root: {result.stderr.strip()}")
        mounted.append(point)
        _fill(point / "filler", _free_bytes(point) - free)
        return point

    yield disk
    for point in mounted:
        done = subprocess.run(["umount", str(point)], capture_output=True, check=False)
        if done.returncode != 0:  # still in use: detach it now, freed when released
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def _free_bytes(path: pathlib.Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def _fill(path: pathlib.Path, size: int) -> None:
    with path.open("wb") as file:
        file.write(bytes(max(0, size)))


def _index_lines(directory: pathlib.Path) -> list[bytes]:
    """The index's lines; asserts that it ends with a whole line."""
    data = (directory / INDEX_NAME).read_bytes()
    assert data.endswith(b"\n"), data[-200:]
    return data.splitlines()


class Counter:
    """A processor counting the sets it was given, and those with every camera."""

    def __init__(self) -> None:
        self.sets = 0
        self.complete = 0

    def __call__(self, fs: FrameSet) -> None:
        self.sets += 1
        self.complete += fs.complete


# -- a real full disk --------------------------------------------------------------------


# a guard against a hang, not a speed figure: filling the disk takes ~10 s on a quiet
# machine and several times that on a loaded one
@pytest.mark.timeout(180)
@pytest.mark.parametrize("full", ["all", "index", "segments"])
def test_a_full_disk_stops_the_recording_cleanly_and_the_group_goes_on(
    replayed: CameraFactory,
    small_disk: Callable[[int], pathlib.Path],
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
    full: str,
) -> None:
    """What is on the full disk: ``all``; the ``index`` (the camera folders link to a
    roomy disk); the ``segments`` (the recording is on a roomy disk, the folders link to
    the full one)."""
    disk = small_disk(150_000 if full == "index" else 320_000)
    roomy, small = (tmp_path, disk) if full == "segments" else (disk, tmp_path)
    target = roomy / "rec"
    if full != "all":
        target.mkdir()
        for name in ("door", "hall"):
            (small / name).mkdir()
            (target / name).symlink_to(small / name)
    recorder, counter = Recorder(target, segment_seconds=1.0), Counter()
    group = StreamGroup([replayed("door"), replayed("hall", "smptebars")])
    worker = group.add_processor(recorder)
    group.add_processor(counter, name="counter")
    with caplog.at_level(logging.INFO), group:
        _read_until(group, lambda: worker.stats.errors >= 1)
        stopped = counter.complete
        # the cameras go on: complete sets keep coming, to the group and its processors
        _read_until(group, lambda: counter.complete >= stopped + 30)
        assert group.read(timeout=10.0).complete
        processors = group.stats.processors
    error = recorder.error
    assert isinstance(error, RecordingError) and error.errno == errno.ENOSPC
    assert "No space left" in str(error)
    if full != "all":
        assert (INDEX_NAME in str(error)) is (full == "index")
    # reported through the group's stats and log, once
    stats = processors["recorder"]
    assert stats.errors == 1 and stats.last_error is not None
    assert "No space left" in stats.last_error
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is error]
    assert len(logged) == 1 and "processor recorder" in logged[0].getMessage()
    assert processors["counter"].errors == 0

    # the count of recorded sets is what reads back, and every set given is counted
    final = recorder.stats
    assert final.recording is False and final.error == str(error)
    assert final.sets > 0 and final.lost_sets > 0
    assert worker.stats.processed == final.sets + final.lost_sets
    lines = _index_lines(target)  # whole lines only, the last one the end line
    assert all(parse_index_line(line) for line in lines)
    recording = Recording(target).open()
    assert recording.end is not None and recording.end.error == str(error)
    assert recording.end.sets == len(recording) == final.sets
    assert not recording.truncated and parse_index_line(lines[-1]) == recording.end
    replay = list(recording)
    assert len(replay) == final.sets
    assert sum(fs.complete for fs in replay) >= final.sets // 2
    # the segments end at a whole MPEG-TS packet, and the reserve is gone
    for name in ("door", "hall"):
        sizes = [path.stat().st_size for path in recording.segments(name)]
        assert sizes and all(size % _TS_PACKET == 0 for size in sizes), sizes
    assert not (target / "index.reserve").exists()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("syncstream-recorder")]


def _set_line(seq: int) -> SetLine:
    entry = FrameEntry(
        seq=seq, pts_time=1.5, capture_time=10.0, arrival_time=10.1, arrival_mono=5.0, segment=1
    )
    return SetLine(
        seq=seq,
        time=10.0 + seq,
        skew=0.0,
        clock="sender",
        missing=(),
        emitted_time=10.2,
        emitted_mono=5.1,
        frames={"a": entry},
    )


def test_the_end_line_goes_into_the_reserve_when_the_disk_is_full(
    small_disk: Callable[[int], pathlib.Path], caplog: pytest.LogCaptureFixture
) -> None:
    disk = small_disk(200_000)
    errors: list[RecordingError] = []
    writer = IndexWriter(disk / INDEX_NAME, flush_interval=60.0, on_error=errors.append)
    writer.open(HeaderLine(cameras=("a",), start_time=1.0, segment_seconds=1.0, segment_bytes=None))
    writer.write(CameraLine(camera="a", mode="copy", codec="h264", width=2, height=2))
    assert (disk / "index.reserve").stat().st_size == 64 * 1024
    _fill(disk / "more", _free_bytes(disk))  # nothing free: the index has its last page left
    failure: RecordingError | None = None
    seq = 0
    while failure is None:
        writer.write(_set_line(seq))
        seq += 1
        try:
            writer.flush()
        except RecordingError as exc:
            failure = exc
    assert failure.errno == errno.ENOSPC and writer.lost_sets == 1
    assert writer.sets == seq - 1 > 0
    with pytest.raises(RecordingError) as raised:
        writer.write(_set_line(seq))
    assert raised.value is failure
    reason = "x" * (END_ERROR_CHARS + 10)  # longer than the room any set line left
    with caplog.at_level(logging.INFO), pytest.raises(RecordingError) as closing:
        writer.close(error=reason)
    assert closing.value is failure and errors == []  # the thread never failed itself
    assert any("using the reserve" in r.getMessage() for r in caplog.records)
    recording = Recording(disk).open()
    assert recording.end == writer.end and recording.end is not None
    assert recording.end.error is not None and len(recording.end.error) == END_ERROR_CHARS
    assert len(recording) == recording.end.sets == writer.sets
    assert [line.seq for line in recording.sets()] == list(range(writer.sets))
    assert not (disk / "index.reserve").exists()


def test_a_file_size_limit_cuts_the_index_at_a_whole_line_and_ends_it(
    tmp_path: pathlib.Path,
) -> None:
    """EFBIG: the kernel refuses to grow a file past RLIMIT_FSIZE (set in a child). The
    limit leaves 110 bytes after 300 set lines: no room for the end line with its whole
    error (the reserve does not help here), room for it with the errno's text only."""
    header = HeaderLine(cameras=("a",), start_time=1.0, segment_seconds=1.0, segment_bytes=None)
    camera = CameraLine(camera="a", mode="copy", codec="h264", width=2, height=2)
    lines = [header, camera, *(_set_line(seq) for seq in range(400))]
    texts = [line.model_dump_json() + "\n" for line in lines]
    limit = sum(len(text) for text in texts[:302]) + 110
    (tmp_path / "lines").write_text("".join(texts[1:]))
    script = f"""
import resource, sys
from syncstream.errors import RecordingError
from syncstream.recording.index import HeaderLine, parse_index_line
from syncstream.recording.writer import IndexWriter
folder = sys.argv[1]
lines = [parse_index_line(text) for text in open(folder + "/lines")]
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))  # Python ignores SIGXFSZ
writer = IndexWriter(folder + "/rec/index.jsonl", flush_interval=60.0)
writer.open(HeaderLine.model_validate_json({texts[0]!r}))
try:
    for line in lines:
        writer.write(line)
        writer.flush()
except RecordingError as exc:
    print("write", exc.errno)
try:
    writer.close()
except RecordingError as exc:
    print("close", exc.errno)
print("sets", writer.sets)
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = dict(line.split() for line in done.stdout.splitlines())
    assert report["write"] == report["close"] == str(errno.EFBIG)
    assert report["sets"] == "300"
    data = (tmp_path / "rec" / INDEX_NAME).read_bytes()
    assert data.startswith("".join(texts[:302]).encode()) and data.endswith(b"\n")
    recording = Recording(tmp_path / "rec").open()
    assert len(recording) == 300 and not recording.truncated
    assert recording.end is not None and recording.end.sets == 300
    assert recording.end.error == f"[Errno {errno.EFBIG}] {os.strerror(errno.EFBIG)}"


# -- a recording cut by a crash ------------------------------------------------------------


def _record(directory: pathlib.Path, cameras: list[Camera], sets: int) -> None:
    recorder = Recorder(directory, segment_seconds=1.0)
    group = StreamGroup(cameras)
    group.add_processor(recorder)
    with group:
        _read_until(group, lambda: recorder.stats.sets >= sets)


def _whole_lines(data: bytes) -> tuple[list[bytes], bool]:
    """The lines of an index cut to ``data`` that a reader keeps, and whether a partial
    line was left over."""
    lines = data.split(b"\n")
    whole, rest = lines[:-1], lines[-1]
    if rest:
        try:
            parse_index_line(rest)
        except RecordingError:
            return whole, True
        whole.append(rest)  # only its newline was lost
    return whole, False


def test_an_index_cut_anywhere_reads_back_its_whole_lines(
    replayed: CameraFactory, tmp_path: pathlib.Path
) -> None:
    source = tmp_path / "rec"
    _record(source, [replayed("door"), replayed("hall", "smptebars")], 40)
    full = (source / INDEX_NAME).read_bytes()
    cut_dir = tmp_path / "cut"
    cut_dir.mkdir()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cut=st.integers(0, len(full)))
    @example(cut=0)
    @example(cut=full.index(b"\n") // 2)
    @example(cut=len(full) - 1)
    @example(cut=len(full))
    def check(cut: int) -> None:
        data = full[:cut]
        (cut_dir / INDEX_NAME).write_bytes(data)
        whole, partial = _whole_lines(data)
        recording = Recording(cut_dir)
        if not whole:  # cut within the header: no recording, a documented RecordingError
            with pytest.raises(RecordingError, match="no header line"):
                recording.open()
            return
        parsed = [parse_index_line(line) for line in whole]
        expected = [line.seq for line in parsed if isinstance(line, SetLine)]
        assert [line.seq for line in recording.sets()] == expected
        assert len(recording) == len(expected)
        assert recording.truncated is partial
        assert (recording.end is None) is (cut < len(full) - 1)

    check()


def test_a_recording_killed_mid_write_replays_up_to_its_cuts(
    replayed: CameraFactory, tmp_path: pathlib.Path
) -> None:
    """The index and a segment cut within a line and a packet, as a killed recorder leaves
    them: the replay yields every whole set line; the frames past the segment's cut are
    missing from their sets, all the others are there."""
    source = tmp_path / "rec"
    _record(source, [replayed("door")], 75)
    full = (source / INDEX_NAME).read_bytes()
    first = source / "door" / "door-000001.ts"
    assert (source / "door" / "door-000002.ts").exists()
    for fraction in (0.5, 0.97):
        target = tmp_path / f"cut{fraction}"
        shutil.copytree(source, target)
        start = full.rfind(b"\n", 0, int(len(full) * fraction)) + 1
        index_cut = (start + full.index(b"\n", start)) // 2  # within a line
        (target / INDEX_NAME).write_bytes(full[:index_cut])
        size = first.stat().st_size
        segment_cut = size * 3 // 4 + 77  # within an MPEG-TS packet
        (target / "door" / first.name).write_bytes(first.read_bytes()[:segment_cut])
        whole, partial = _whole_lines(full[:index_cut])
        lines = [line for line in map(parse_index_line, whole) if isinstance(line, SetLine)]
        recording = Recording(target).open()
        assert partial and recording.truncated and recording.end is None
        replay = list(recording)
        assert [fs.seq for fs in replay] == [line.seq for line in lines]
        entries = [(fs, line.frames.get("door")) for fs, line in zip(replay, lines, strict=True)]
        stored = [(fs, e.segment) for fs, e in entries if e is not None and e.segment is not None]
        assert recording.unavailable == sum(1 for fs, _ in stored if fs.missing)
        assert all(not fs.missing for fs, segment in stored if segment > 1)
        in_cut = [not fs.missing for fs, segment in stored if segment == 1]
        assert True in in_cut and False in in_cut  # frames before the cut, none after
        assert in_cut == sorted(in_cut, reverse=True)
