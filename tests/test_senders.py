"""Senders on this machine: the ffmpeg command, LocalSender's preflight, restarts and stop."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
import typing
from pathlib import Path

import pytest
from conftest import DATA, free_udp_port, processes, wait_until
from hypothesis import given
from hypothesis import strategies as st

from syncstream import (
    LocalSender,
    PreflightFailed,
    RestartPolicy,
    SenderConfig,
    SenderError,
    StreamClosed,
    VideoStream,
)
from syncstream.clock import ClockSample, estimate_clock_offset
from syncstream.config import Codec
from syncstream.errors import ConfigError
from syncstream.senders import receiver_address, sender_argv


def _config(port: int | None = None, **fields: object) -> SenderConfig:
    port = port if port is not None else free_udp_port()
    return SenderConfig.model_validate(
        {"destination": f"udp://127.0.0.1:{port}", "size": (320, 240), **fields}
    )


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    return any(p.pid == pid and p.state != "Z" for p in processes())


# -- the command -------------------------------------------------------------------------


def test_default_command_stamps_wall_clock_and_muxes_low_delay() -> None:
    argv = sender_argv(_config(5000))
    assert argv[0] == "ffmpeg"
    assert _option(argv, "-i") == "testsrc=size=320x240:rate=30.0"
    assert "-re" in argv
    filters = _option(argv, "-vf").split(",")
    assert filters == ["settb=1/90000", "setpts=RTCTIME*9/100"]
    assert _option(argv, "-c:v") == "libx264"
    assert _option(argv, "-preset") == "ultrafast"
    assert _option(argv, "-tune") == "zerolatency"
    assert _option(argv, "-g") == "30"
    assert _option(argv, "-omit_video_pes_length") == "0"
    assert _option(argv, "-mpegts_copyts") == "1"
    assert argv[-1] == "udp://127.0.0.1:5000?pkt_size=1316"


def test_device_input_keeps_the_kernel_capture_time() -> None:
    argv = sender_argv(_config(input="/dev/video2", input_format="mjpeg", fps=15))
    assert argv[argv.index("-f") : argv.index("-i") + 2] == [
        "-f", "v4l2", "-ts", "abs", "-input_format", "mjpeg",
        "-framerate", "15", "-video_size", "320x240", "-i", "/dev/video2",
    ]  # fmt: skip
    assert "setpts=RTCTIME*9/100" not in _option(argv, "-vf")
    assert "-re" not in argv


def test_file_input_loops_and_scales() -> None:
    argv = sender_argv(_config(input="/media/cam.ts", bitrate="800k", gop=10))
    assert argv[argv.index("-re") : argv.index("-i") + 2] == [
        "-re", "-stream_loop", "-1", "-i", "/media/cam.ts"
    ]  # fmt: skip
    assert _option(argv, "-vf").startswith("scale=320:240,settb=1/90000,setpts=RTCTIME")
    assert _option(argv, "-b:v") == "800k"
    assert _option(argv, "-g") == "10"
    assert "-stream_loop" not in sender_argv(_config(input="/media/cam.ts", loop=False))


def test_mpeg2video_has_no_b_frames_and_the_packet_size_is_passed() -> None:
    argv = sender_argv(_config(codec="mpeg2video", pkt_size=188 * 4))
    assert _option(argv, "-c:v") == "mpeg2video"
    assert shlex.join(["-bf", "0"]) in shlex.join(argv)
    assert shlex.join(["-flags", "+low_delay"]) in shlex.join(argv)  # else 2 frames held
    assert argv[-1].endswith("?pkt_size=752")


def test_mjpeg_is_refused_as_a_sender_codec() -> None:
    with pytest.raises(ValueError, match="'libx264' or 'mpeg2video'"):
        _config(codec="mjpeg")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("destination", "udp://127.0.0.1"),
        ("destination", "tcp://127.0.0.1:5000"),
        ("destination", "udp://127.0.0.1:70000"),
        ("destination", "udp://host name:5000"),
        ("input", "-f"),
        ("input", "/dev/video0\nid"),
        ("ffmpeg", "--help"),
        ("size", (321, 240)),
        ("pkt_size", 1300),
        ("bitrate", "2M; reboot"),
        ("input_format", "mjpeg -x"),
        ("fps", 0),
        ("unknown_field", 1),
    ],
)
def test_bad_sender_config_fails_naming_the_field(field: str, value: object) -> None:
    fields: dict[str, object] = {"destination": "udp://127.0.0.1:5000", field: value}
    with pytest.raises(ConfigError, match=field):
        SenderConfig.model_validate(fields)


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n\r"),
        min_size=1,
    )
)
def test_any_input_name_stays_one_argument_through_shell_quoting(name: str) -> None:
    path = "/dev/" + name
    argv = sender_argv(SenderConfig(destination="udp://127.0.0.1:5000", input=path))
    assert shlex.split(shlex.join(argv)) == argv
    assert _option(argv, "-i") == path


def test_receiver_address_routes_to_the_host() -> None:
    assert receiver_address("127.0.0.1") == "127.0.0.1"
    assert receiver_address("localhost") in ("127.0.0.1", "::1")
    with pytest.raises(ConfigError, match="cannot resolve"):
        receiver_address("no-such-host.invalid")


def test_clock_offset_uses_the_round_trip_with_the_smallest_rtt() -> None:
    samples = [
        ClockSample(sent_time=100.0, rtt=0.050, remote_time=90.0),
        ClockSample(sent_time=200.0, rtt=0.002, remote_time=190.5),
        ClockSample(sent_time=300.0, rtt=0.010, remote_time=290.0),
    ]
    result = estimate_clock_offset(samples)
    assert result.offset == pytest.approx(200.001 - 190.5)
    assert result.uncertainty == pytest.approx(0.001)
    assert result.rtt == pytest.approx(0.002)
    assert result.samples == 3
    with pytest.raises(ValueError, match="no clock samples"):
        estimate_clock_offset([])


# -- LocalSender -------------------------------------------------------------------------


def test_local_sender_streams_the_senders_wall_clock() -> None:
    port = free_udp_port()
    with (
        LocalSender(_config(port, clock_text=True)) as sender,
        VideoStream(f"udp://127.0.0.1:{port}") as stream,
    ):
        assert sender.is_running
        assert sender.returncode is None
        frame = stream.read(timeout=10)
        assert frame.capture_time is not None
        assert abs(frame.capture_time - time.time()) < 5
        pid = sender.pid
        assert pid is not None
    assert not sender.is_running
    assert sender.pid is None
    assert not _alive(pid)


@pytest.mark.parametrize("codec", typing.get_args(Codec))
def test_every_offered_codec_is_received_with_the_senders_clock(codec: str) -> None:
    port = free_udp_port()
    with (
        VideoStream(f"udp://127.0.0.1:{port}") as stream,
        LocalSender(_config(port, codec=codec)),
    ):
        frame = stream.read(timeout=10)
    assert (frame.width, frame.height) == (320, 240)
    assert frame.capture_time is not None and abs(frame.capture_time - time.time()) < 5
    assert stream.stats.capture_clock == "sender"


def test_preflight_names_the_missing_program_device_or_file(tmp_path: Path) -> None:
    with pytest.raises(PreflightFailed, match="ffmpeg-not-installed") as caught:
        LocalSender(_config(ffmpeg="ffmpeg-not-installed")).start()
    assert caught.value.host == "localhost"
    assert caught.value.returncode not in (None, 0)
    with pytest.raises(PreflightFailed, match="no video device '/dev/video-none'"):
        LocalSender(_config(input="/dev/video-none")).start()
    with pytest.raises(PreflightFailed, match="not readable"):
        LocalSender(_config(input=str(tmp_path / "missing.ts"))).start()


def test_an_ffmpeg_that_exits_at_start_raises_with_its_stderr(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a video\n")
    # startup_wait generous: on a loaded machine ffmpeg may take a while to give up
    sender = LocalSender(_config(input=str(junk), startup_wait=10.0))
    with pytest.raises(SenderError) as caught:
        sender.start()
    assert not isinstance(caught.value, PreflightFailed)
    assert caught.value.returncode not in (None, 0)
    assert caught.value.stderr_tail
    assert "notes.txt" in str(caught.value)
    with pytest.raises(StreamClosed):
        sender.start()


def test_killed_ffmpeg_is_restarted_and_frames_resume() -> None:
    port = free_udp_port()
    config = _config(port, restart=RestartPolicy(delay=0.1))
    with LocalSender(config) as sender, VideoStream(f"udp://127.0.0.1:{port}") as stream:
        stream.read(timeout=10)
        first_pid = sender.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        wait_until(lambda: sender.restarts == 1 and sender.is_running, 10.0, "restarted")
        assert sender.pid not in (None, first_pid)
        assert not _alive(first_pid)
        restarted_mono = time.monotonic()
        wait_until(
            lambda: stream.latest().arrival_mono > restarted_mono + 0.1,
            10.0,
            "frames after the restart",
        )
        assert sender.error is None


def test_sender_gives_up_after_max_restarts(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a video\n")
    policy = RestartPolicy(delay=0.05, max_delay=0.1, max_restarts=2)
    sender = LocalSender(_config(input=str(junk), startup_wait=0, restart=policy))
    with sender:
        wait_until(lambda: sender.error is not None, 10.0, "the sender reports an error")
        assert sender.restarts == 2
        assert not sender.is_running
        error = sender.error
        assert isinstance(error, SenderError)
        assert "gave up" in str(error)
        assert error.returncode not in (None, 0)


def test_close_is_idempotent_and_final() -> None:
    sender = LocalSender(_config())
    sender.close()  # never started: nothing to do
    with pytest.raises(StreamClosed):
        sender.start()
    running = LocalSender(_config()).start()
    pid = running.pid
    assert pid is not None
    running.close()
    running.close()
    assert not _alive(pid)
    assert running.returncode is not None


def test_stop_is_a_deprecated_name_of_close() -> None:
    running = LocalSender(_config()).start()
    pid = running.pid
    assert pid is not None
    with pytest.warns(DeprecationWarning, match=r"LocalSender\.stop\(\) is deprecated"):
        running.stop()
    assert not _alive(pid)
    with pytest.raises(StreamClosed):
        running.start()


def test_sender_that_ignores_sigterm_is_killed() -> None:
    script = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', file=sys.stderr, flush=True); time.sleep(60)"
    )
    sender = LocalSender([sys.executable, "-c", script], name="stubborn", stop_timeout=0.5)
    sender.start()
    pid = sender.pid
    assert pid is not None
    wait_until(lambda: "ready" in sender.stderr_tail, 10.0, "ready on stderr")
    sender.close()
    assert not _alive(pid)
    assert sender.returncode == -signal.SIGKILL


def test_files_from_tests_data_are_sent_in_a_loop() -> None:
    port = free_udp_port()
    config = _config(port, input=str(DATA / "testsrc_wallclock.ts"))
    with LocalSender(config), VideoStream(f"udp://127.0.0.1:{port}") as stream:
        seqs = [stream.read(timeout=10).seq for _ in range(45)]  # the file holds 30 frames
    assert seqs == sorted(seqs)


def test_argv_senders_do_not_restart() -> None:
    clean = LocalSender(["true"], name="clean").start()
    failing = LocalSender(["false"], name="failing").start()
    wait_until(lambda: clean.returncode == 0 and failing.returncode == 1, 10.0, "both ended")
    assert clean.restarts == failing.restarts == 0
    assert clean.error is None  # a clean exit is not an error
    wait_until(lambda: failing.error is not None, 10.0, "the failing sender reports an error")
    assert "restart is off" in str(failing.error)
    clean.close()
    failing.close()


def test_stderr_without_newlines_is_cut_in_the_tail() -> None:
    """8 MB of stderr on one line: the tail keeps it cut to 1000 characters."""
    flood = "{ head -c 8000000 /dev/zero | tr '\\0' x; echo; echo last words; } >&2; exit 3"
    sender = LocalSender(["sh", "-c", flood], name="flood").start()
    try:
        wait_until(lambda: sender.error is not None, 10.0, "the sender reports an error")
    finally:
        sender.close()
    tail = sender.stderr_tail
    assert tail[-1] == "last words"
    assert tail[0].startswith("x" * 1000) and "more characters]" in tail[0]
    assert sum(len(line) for line in tail) < 2200
    assert len(str(sender.error)) < 3000


def test_stop_while_starting_leaves_no_process() -> None:
    sender = LocalSender(_config(startup_wait=5.0))
    outcome: list[BaseException | None] = []

    def start() -> None:
        try:
            sender.start()
        except StreamClosed as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    starter = threading.Thread(target=start)
    starter.start()
    wait_until(lambda: bool(sender.stderr_tail) or _ffmpeg_children() != [], 10.0, "ffmpeg started")
    sender.close()
    starter.join(10)
    assert len(outcome) == 1
    assert isinstance(outcome[0], StreamClosed)
    wait_until(lambda: _ffmpeg_children() == [], 10.0, "no ffmpeg child left")


def _ffmpeg_children() -> list[int]:
    """PIDs of ffmpeg processes started by this test process."""
    return [
        p.pid
        for p in processes()
        if p.parent == os.getpid() and p.argv and Path(p.argv[0]).name == "ffmpeg"
    ]
