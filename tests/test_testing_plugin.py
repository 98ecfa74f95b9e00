"""The pytest plugin (syncstream.testing.plugin) and the replay it is built on, end to end.

The fixtures are used as a user's tests use them: registered by the ``pytest11`` entry
point, not imported. Recordings and replays run real ffmpeg processes on loopback.
"""

from __future__ import annotations

import itertools
import pathlib
import time
from fractions import Fraction

import av
import pytest

from syncstream import ConfigError, Frame, SenderError, StreamClosed, VideoStream
from syncstream.clock import MPEGTS_PTS_PERIOD, unwrap_pts_time
from syncstream.probe import decode_stamp
from syncstream.senders import free_udp_port
from syncstream.testing.plugin import (
    StampSenderFactory,
    TsRecorder,
    TsReplayFactory,
    UdpRelayFactory,
)
from syncstream.testing.replay import TsReplay, record_test_pattern

pytest_plugins = ["pytester"]

PTS_HZ = 90_000
PTS_MODULUS = 2**33
FIXTURES = ("ts_recorder", "ts_replay", "udp_relay", "stamp_sender")


def file_pts_ticks(path: pathlib.Path) -> tuple[list[int], tuple[int, int]]:
    """Every frame's PTS in 90 kHz ticks, and the picture size, decoded from a file."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert frames, f"{path} holds no frame"
    ticks = []
    for frame in frames:
        assert frame.pts is not None and frame.time_base == Fraction(1, PTS_HZ)
        ticks.append(int(frame.pts))
    return ticks, (frames[0].width, frames[0].height)


def read_frames(stream: VideoStream, *, until_span: float, limit: int = 300) -> list[Frame]:
    """Frames until their capture times span ``until_span`` seconds (all must carry one)."""
    frames: list[Frame] = []
    while len(frames) < limit:
        frame = stream.read(timeout=5.0)
        assert frame.capture_time is not None, f"frame {frame.seq} has no capture time"
        frames.append(frame)
        first = frames[0].capture_time
        assert first is not None
        if frame.capture_time - first >= until_span:
            break
    return frames


# -- recording -------------------------------------------------------------------------


def test_recording_has_its_frames_size_and_wall_clock_stamps(ts_recorder: TsRecorder) -> None:
    before = time.time()
    path = ts_recorder(seconds=1.0, size=(160, 120), fps=25.0)
    after = time.time()
    assert path.suffix == ".ts" and path.is_file()
    ticks, size = file_pts_ticks(path)
    assert abs(len(ticks) - 25) <= 1
    assert size == (160, 120)
    # Evenly spaced at the frame rate, starting at the wall clock of the recording.
    assert all(later - earlier == PTS_HZ // 25 for earlier, later in itertools.pairwise(ticks))
    first = unwrap_pts_time(ticks[0] / PTS_HZ, before, MPEGTS_PTS_PERIOD)
    assert before - 0.001 <= first <= after


def test_recorder_keeps_earlier_recordings_of_the_same_name(ts_recorder: TsRecorder) -> None:
    first = ts_recorder(seconds=0.2, name="cam")
    second = ts_recorder(seconds=0.2, name="cam")
    assert first != second and first.is_file() and second.is_file()


def test_recording_failure_carries_ffmpeg_stderr(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SenderError, match="exited with status") as failed:
        record_test_pattern(tmp_path / "no-such-dir" / "x.ts", seconds=0.2)
    assert failed.value.stderr_tail
    with pytest.raises(SenderError, match="cannot run"):
        record_test_pattern(tmp_path / "x.ts", ffmpeg=str(tmp_path / "no-ffmpeg"))
    with pytest.raises(ConfigError, match="pattern"):
        record_test_pattern(tmp_path / "x.ts", pattern="testsrc,drawbox")


# -- replay ----------------------------------------------------------------------------


def test_replay_is_received_like_a_live_camera_and_loops(
    ts_recorder: TsRecorder, ts_replay: TsReplayFactory
) -> None:
    path = ts_recorder(seconds=1.0)
    replay = ts_replay(path)
    assert replay.is_running and replay.pid is not None
    assert replay.url.startswith("udp://127.0.0.1:")
    start_time = replay.start_time
    assert start_time is not None
    with VideoStream(replay.url) as stream:
        frames = read_frames(stream, until_span=1.5)  # longer than the file: it looped
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    for frame in frames:
        assert frame.capture_time is not None
        assert frame.capture_time >= start_time
        assert 0.0 <= frame.arrival_time - frame.capture_time <= 1.0
    assert frames[-1].capture_time is not None and frames[-1].capture_time - start_time > 1.0
    assert replay.is_running and replay.error is None


def test_replay_without_restamp_keeps_the_recorded_stamps(
    ts_recorder: TsRecorder, ts_replay: TsReplayFactory
) -> None:
    recorded_from = time.time()
    path = ts_recorder(seconds=1.0, fps=25.0)
    recorded_until = time.time()
    ticks, _ = file_pts_ticks(path)
    duration_ticks = len(ticks) * PTS_HZ // 25
    offsets = {tick - ticks[0] for tick in ticks}
    time.sleep(0.5)  # so that the recorded stamps lie clearly in the past
    replay_from = time.time()
    replay = ts_replay(path, restamp=False)
    assert replay.start_time is None
    with VideoStream(replay.url, capture_clock="sender") as stream:
        frames = read_frames(stream, until_span=1.5)
    for frame in frames:
        assert frame.capture_time is not None and frame.pts_time is not None
        # Each pass over the file adds the file's duration; otherwise the stamps are the
        # recorded ones, to the 90 kHz tick.
        since_first = (round(frame.pts_time * PTS_HZ) - ticks[0]) % PTS_MODULUS
        passes, offset = divmod(since_first, duration_ticks)
        assert offset in offsets
        recorded_at = frame.capture_time - passes * duration_ticks / PTS_HZ
        assert recorded_from - 0.001 <= recorded_at <= recorded_until + 1.0
        assert frame.arrival_time - frame.capture_time >= replay_from - recorded_until


def test_replay_through_the_relay(
    ts_recorder: TsRecorder, ts_replay: TsReplayFactory, udp_relay: UdpRelayFactory
) -> None:
    path = ts_recorder(seconds=1.0)
    receiver = f"udp://127.0.0.1:{free_udp_port()}"
    relay = udp_relay(receiver, delay=0.05, jitter=0.01, loss=0.0, seed=1)
    replay = ts_replay(path, port=relay.port)
    assert replay.url == relay.url
    with VideoStream(receiver) as stream:
        frames = [stream.read(timeout=5.0) for _ in range(10)]
    assert all(frame.capture_time is not None for frame in frames)
    stats = relay.stats
    assert stats.received > 0 and stats.forwarded > 0 and stats.lost == 0


def test_stamp_sender_pictures_carry_their_send_time(stamp_sender: StampSenderFactory) -> None:
    url = f"udp://127.0.0.1:{free_udp_port()}"
    sender = stamp_sender(url)
    with VideoStream(url) as stream:
        frames = [stream.read(timeout=5.0) for _ in range(5)]
    for frame in frames:
        assert frame.image.shape == (240, 320, 3)
        assert decode_stamp(frame.image) <= frame.arrival_time
    assert sender.error is None


def test_replay_of_a_missing_file_fails_clearly(
    tmp_path: pathlib.Path, ts_replay: TsReplayFactory
) -> None:
    missing = tmp_path / "missing.ts"
    with pytest.raises(FileNotFoundError, match="no recording to replay") as failed:
        ts_replay(missing)
    assert failed.value.filename == str(missing)


@pytest.mark.parametrize(
    "url",
    [
        "tcp://127.0.0.1:5000",
        "udp://127.0.0.1",
        "udp://127.0.0.1:0",
        "udp://127.0.0.1:70000",
        "udp://127.0.0.1:5000?pkt_size=1316",
        "udp://user@127.0.0.1:5000",
        "127.0.0.1:5000",
    ],
)
def test_replay_refuses_a_url_other_than_udp_host_port(tmp_path: pathlib.Path, url: str) -> None:
    with pytest.raises(ConfigError, match="udp://host:port"):
        TsReplay(tmp_path / "x.ts", url)


def test_replay_constructor_does_no_io_and_a_stopped_replay_cannot_restart(
    tmp_path: pathlib.Path,
) -> None:
    replay = TsReplay(tmp_path / "not-yet.ts", "udp://127.0.0.1:5000", pkt_size=188)
    assert replay.pid is None and not replay.is_running and replay.argv is None
    with pytest.raises(ConfigError, match="pkt_size"):
        TsReplay(tmp_path / "x.ts", "udp://127.0.0.1:5000", pkt_size=1000)
    replay.close()
    with pytest.raises(StreamClosed):
        replay.start()


# -- the plugin as pytest sees it --------------------------------------------------------


def test_entry_point_registers_the_fixtures(pytester: pytest.Pytester) -> None:
    listed = pytester.runpytest("--fixtures")
    text = listed.stdout.str()
    assert "fixtures defined from syncstream.testing.plugin" in text
    for name in FIXTURES:
        assert f"{name} -- " in text
    disabled = pytester.runpytest("-p", "no:syncstream", "--fixtures").stdout.str()
    assert not any(f"{name} -- " in disabled for name in FIXTURES)


def test_fixtures_fail_clearly_without_ffmpeg(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_uses_replay(ts_replay):\n    pass\n")
    monkeypatch.setenv("PATH", str(pytester.path / "empty-bin"))
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ffmpeg command-line program is required*"])
