"""Dual-stream cameras: a main and a sub stream from one ffmpeg, aligned by role."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from syncstream import (
    Camera,
    ConfigError,
    Frame,
    FrameSet,
    LocalSender,
    SenderConfig,
    StreamGroup,
    VideoStream,
)
from syncstream.config import CameraStream
from syncstream.senders import free_udp_port, sender_argv
from syncstream.senders.fleet import sender_config_for
from syncstream.testing.sshd import SshdServer
from tests.conftest import alive as _alive
from tests.conftest import processes, ssh_host, wait_until

MAIN = SenderConfig(size=(320, 240), fps=30.0)
SUB = {"size": (160, 120), "fps": 10.0}


def _dual(name: str, pattern: str = "testsrc", camera: dict[str, object] | None = None,
          **sub: object) -> Camera:  # fmt: skip
    return Camera.model_validate({
        "name": name,
        "sender": MAIN.model_copy(update={"input": pattern}),
        "port": free_udp_port(),
        "streams": {"sub": CameraStream.model_validate({"port": free_udp_port(), **SUB, **sub})},
        **(camera or {}),
    })  # fmt: skip


def _cmdline(pid: int) -> list[str]:
    [process] = [process for process in processes() if process.pid == pid]
    return list(process.argv)


# -- configuration ----------------------------------------------------------------------


def test_a_camera_declares_further_streams_by_role() -> None:
    cam = _dual("door")
    assert cam.roles == ("main", "sub")
    sub_port = cam.streams["sub"].port
    assert cam.listen_url_for("sub") == f"udp://127.0.0.1:{sub_port}"
    assert cam.listen_url_for("main") == cam.listen_url == f"udp://127.0.0.1:{cam.port}"
    with pytest.raises(KeyError, match="no 'zoom' stream"):
        cam.listen_url_for("zoom")
    ip_camera = Camera(
        name="ip", url="rtsp://cam/main", streams={"sub": CameraStream(url="rtsp://cam/sub")}
    )
    assert ip_camera.listen_url_for("sub") == "rtsp://cam/sub"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"streams": {"main": {"port": 9}}}, "role 'main' is the camera's own stream"),
        ({"streams": {"Sub 1": {"port": 9}}}, "lower-case letters"),
        ({"streams": {"sub": {}}}, "stream 'sub' needs a port"),
        ({"streams": {"sub": {"port": 9, "fps": 60}}}, "fps 60 is above the sender's 30"),
        ({"streams": {"sub": {"port": 9, "size": (161, 120)}}}, "even numbers"),
        ({"streams": {"sub": {"port": 9, "codec": "mjpeg"}}}, "'libx264' or 'mpeg2video'"),
        (
            {
                "streams": {"sub": {"port": 9}},
                "sender": {"outputs": {"sub": {"destination": "udp://127.0.0.1:9"}}},
            },
            "not both",
        ),
        (
            {"sender": None, "port": None, "url": "udp://:1", "streams": {"sub": {}}},
            "stream 'sub' needs a url",
        ),
        (
            {"sender": None, "url": "udp://:1", "streams": {"sub": {"url": "x", "size": (2, 2)}}},
            "need the camera's sender",
        ),
    ],
)
def test_bad_streams_are_refused_naming_the_role(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"name": "door", "sender": {}, "port": 9000}
    if fields.get("sender", {}) is None:
        del base["port"]  # a camera that streams already has no port
    with pytest.raises(ConfigError, match=message):
        Camera.model_validate({**base, **fields})


def test_the_group_gives_one_sender_every_stream_of_its_camera() -> None:
    cam = _dual("door", codec="mpeg2video", bitrate="300k")
    config = sender_config_for(cam)
    assert config.destination == f"udp://127.0.0.1:{cam.port}"
    (role, output), *others = config.outputs.items()
    assert role == "sub" and not others
    assert output.destination == f"udp://127.0.0.1:{cam.streams['sub'].port}"
    assert (output.size, output.fps, output.codec, output.bitrate) == (
        (160, 120),
        10.0,
        "mpeg2video",
        "300k",
    )
    remote = cam.model_copy(update={"receiver_host": "10.1.2.3"})
    assert sender_config_for(remote).outputs["sub"].destination.startswith("udp://10.1.2.3:")


# -- the command ------------------------------------------------------------------------


def _option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == option]


def test_one_ffmpeg_reads_the_input_once_and_stamps_before_splitting() -> None:
    config = sender_config_for(_dual("door", codec="mpeg2video"))
    argv = sender_argv(config)
    assert argv.count("-i") == 1
    (graph,) = _option_values(argv, "-filter_complex")
    stamp, main, sub = graph.split(";")
    # the capture time is set once, so every output carries the same PTS for a frame
    assert stamp == "[0:v]settb=1/90000,setpts=RTCTIME*9/100,split=2[s0][s1]"
    assert main == "[s0]null[v0]"
    assert sub.startswith("[s1]select=") and sub.endswith(",scale=160:120[v1]")
    assert _option_values(argv, "-map") == ["[v0]", "[v1]"]
    assert _option_values(argv, "-c:v") == ["libx264", "mpeg2video"]
    assert _option_values(argv, "-g") == ["30", "10"]  # a keyframe a second in each
    urls = [arg for arg in argv if arg.startswith("udp://")]
    assert urls == [f"{config.destination}?pkt_size=1316",
                    f"{config.outputs['sub'].destination}?pkt_size=1316"]  # fmt: skip
    assert "-vf" not in argv and "-vf" in sender_argv(
        MAIN.model_copy(update={"destination": urls[0]})
    )


def test_an_output_at_the_input_rate_takes_every_frame() -> None:
    cam = _dual("door", fps=None, size=None)
    (graph,) = _option_values(sender_argv(sender_config_for(cam)), "-filter_complex")
    assert graph.split(";")[2] == "[s1]null[v1]"


# -- end to end -------------------------------------------------------------------------


def test_main_and_sub_frames_of_one_sender_share_capture_times() -> None:
    cam = _dual("door")  # libx264 keeps 90 kHz stamps (MPEG-2 rounds to its frame rate)
    config = sender_config_for(cam)
    got: dict[str, list[tuple[float | None, int, int, str]]] = {"main": [], "sub": []}
    lock = threading.Lock()

    def keep(role: str) -> object:
        def listener(frame: object) -> None:
            with lock:
                got[role].append((frame.capture_time, frame.width, frame.height, frame.role))  # type: ignore[attr-defined]

        return listener

    with (
        VideoStream(cam.listen_url_for("main"), name="door") as main,
        VideoStream(cam.listen_url_for("sub"), name="door", role="sub") as sub,
    ):
        main.add_listener(keep("main"))  # type: ignore[arg-type]
        sub.add_listener(keep("sub"))  # type: ignore[arg-type]
        with LocalSender(config, name="door") as sender:
            pid = sender.pid
            assert pid is not None
            wait_until(lambda: len(got["sub"]) >= 30, 15.0, "30 sub frames")
        assert sub.latest().source == "door" and sub.name == "door:sub"
    assert not _alive(pid)
    with lock:
        mains, subs = list(got["main"]), list(got["sub"])
    assert len(subs) >= 30
    assert {(w, h, role) for _, w, h, role in mains} == {(320, 240, "main")}
    assert {(w, h, role) for _, w, h, role in subs} == {(160, 120, "sub")}
    main_times = {t for t, *_ in mains}
    sub_times = [t for t, *_ in subs]
    assert all(t is not None for t in sub_times)
    # every sub frame is a main frame scaled down: the very same capture time
    assert all(t in main_times for t in sub_times[:-2])  # the newest may precede its main
    # about a third of the frames: 10 of 30 per second
    steps = sorted(b - a for a, b in itertools.pairwise(sub_times) if a and b)
    assert 0.09 < steps[len(steps) // 2] < 0.11


@pytest.fixture
def group() -> Iterator[StreamGroup]:
    cams = [_dual("door"), _dual("hall", "smptebars"), Camera(
        name="yard", sender=MAIN.model_copy(update={"input": "testsrc2"}), port=free_udp_port()
    )]  # fmt: skip
    with StreamGroup(cams, max_skew=0.05) as group:
        yield group


def test_sets_align_per_role_and_processors_get_the_role_they_ask_for(
    group: StreamGroup,
) -> None:
    assert group.roles == ("main", "sub")
    main_frames: dict[tuple[str, float | None], int] = {}
    lock = threading.Lock()

    def keep_main(frame: Frame) -> None:  # every frame each main stream decodes
        with lock:
            main_frames[frame.source, frame.capture_time] = frame.width

    for name in ("door", "hall"):
        group.streams[name].add_listener(keep_main)

    def every_main(fs: FrameSet) -> None:
        pass

    class OnSub:
        role = "sub"

        def __init__(self) -> None:
            self.sets: list[FrameSet] = []

        def __call__(self, fs: FrameSet) -> None:
            self.sets.append(fs)

    on_sub = OnSub()
    group.add_processor(every_main)
    sub_worker = group.add_processor(on_sub)
    with pytest.raises(ValueError, match="no camera has a 'zoom' stream"):
        group.add_processor(lambda fs: None, role="zoom")
    with pytest.raises(ValueError, match="roles: \\['main', 'sub'\\]"):
        group.read(role="zoom")
    sub_sets = [group.read(timeout=15.0, role="sub") for _ in range(12)]
    main_sets = [group.read(timeout=15.0) for _ in range(5)]
    wait_until(lambda: bool(on_sub.sets), 10.0, "the sub processor got a set")
    stats = group.stats
    # one ffmpeg per camera, sending both streams
    assert set(group.senders) == {"door", "hall", "yard"}
    door = group.senders["door"]
    assert door.pid is not None
    argv = _cmdline(door.pid)
    assert argv.count("-map") == 2 and argv.count("-i") == 1

    assert all(fs.role == "main" for fs in main_sets)
    assert all(fs.role == "sub" and fs.complete for fs in sub_sets)
    for fs in sub_sets:
        assert (fs["door"].role, fs["door"].width) == ("sub", 160)
        assert (fs["hall"].role, fs["hall"].width) == ("sub", 160)
        assert (fs["yard"].role, fs["yard"].width) == ("main", 320)  # no sub stream: main
    # sets of each role are numbered on their own, and the sub sets come at the sub rate
    assert [fs.seq for fs in sub_sets] == sorted({fs.seq for fs in sub_sets})
    assert stats.role == "main" and set(stats.roles) == {"sub"}
    sub_stats = stats.roles["sub"]
    assert sub_stats.role == "sub" and sub_stats.sets >= 12
    assert stats.sets > 2 * sub_stats.sets
    # the sub streams keep the wall clock's tenths: a set per sub frame (0.1 s apart in
    # capture time), none refused for skew, frames of different cameras within about one
    # main frame interval (the rate on our clock: benchmarks/roles.py)
    steps = sorted(
        (b["door"].capture_time - a["door"].capture_time) / (b.seq - a.seq)  # type: ignore[operator]
        for a, b in itertools.pairwise(sub_sets)
        if b.seq > a.seq
    )
    assert steps and 0.09 < steps[len(steps) // 2] < 0.11
    assert sub_stats.partial == 0 and sub_stats.skew_p50 is not None
    assert sub_stats.skew_p50 < 0.04
    assert [line.split()[0] for line in stats.lines()[-2:]] == ["group", "group:sub"]
    assert set(sub_stats.processors) == {sub_worker.name}
    assert set(stats.processors) == {"every_main", sub_worker.name}
    assert sub_stats.cameras["door"].stream.name == "door:sub"
    assert sub_stats.cameras["yard"].stream.name == "yard"
    assert group.streams_of("sub")["door"].name == "door:sub"
    assert group.streams["door"].name == "door"
    # a sub frame is the main frame of the same capture, scaled down
    assert on_sub.sets and all(fs.role == "sub" for fs in on_sub.sets)
    with lock:
        for fs in sub_sets[1:]:
            for name in ("door", "hall"):
                assert main_frames.get((name, fs[name].capture_time)) == 320


def test_a_processor_asking_for_a_role_nobody_has_gets_main_sets() -> None:
    cams = [Camera(name="a", sender=MAIN, port=free_udp_port())]
    seen: list[str] = []

    class WantsSub:
        role = "sub"

        def __call__(self, fs: FrameSet) -> None:
            seen.append(fs.role)

    with StreamGroup(cams) as group:
        assert group.roles == ("main",)
        group.add_processor(WantsSub())
        group.read(timeout=15.0)
        wait_until(lambda: bool(seen), 10.0, "the processor got a set")
    assert seen and set(seen) == {"main"}


def test_a_remote_dual_stream_camera_is_one_sender_and_stops_cleanly(sshd: SshdServer) -> None:
    cam = _dual("far", camera={"host": ssh_host(sshd), "receiver_host": "127.0.0.1"})
    with StreamGroup([cam]) as group:
        main = group.read(timeout=20.0)
        sub = group.read(timeout=20.0, role="sub")
        pid = group.senders["far"].pid
        assert pid is not None and _cmdline(pid).count("-map") == 2
    assert main["far"].width == 320 and sub["far"].width == 160
    assert main["far"].capture_time is not None and sub["far"].capture_time is not None
    wait_until(lambda: not _alive(pid), 5.0, f"remote ffmpeg {pid} gone")
