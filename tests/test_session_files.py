"""Session files and other files the user names: only regular files, of bounded size, read
without blocking; a UDP port used twice in a session (or a group) is refused by name."""

from __future__ import annotations

import os
import pathlib
import re
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from syncstream import Camera, SenderConfig, StreamGroup
from syncstream.config import CameraStream
from syncstream.errors import ConfigError, RecordingError
from syncstream.files import read_regular_file
from syncstream.recording import Recording
from syncstream.session_config import MAX_SESSION_BYTES, SessionConfig, load_session_config

pytestmark = pytest.mark.timeout(30)  # a blocking open would hang: the timeout says so

COMMAND = [sys.executable, "-m", "syncstream"]
GOOD = '[[cameras]]\nname = "door"\nport = 9101\nsender = { input = "testsrc" }\n'


@pytest.fixture
def short_dir() -> Iterator[pathlib.Path]:
    """A directory with a short path: an AF_UNIX socket path has at most 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="ss-") as name:
        yield pathlib.Path(name)


def _block_device() -> str | None:
    for entry in sorted(pathlib.Path("/dev").iterdir()):
        try:
            if stat.S_ISBLK(entry.stat().st_mode):
                return str(entry)
        except OSError:
            continue
    return None


def _special(kind: str, directory: pathlib.Path) -> tuple[str, list[socket.socket]]:
    """A path of ``kind`` (and sockets to close afterwards)."""
    path = directory / "session.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "fifo-via-symlink":
        os.mkfifo(directory / "pipe")
        path.symlink_to(directory / "pipe")
    elif kind == "socket":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        return str(path), [listener]
    elif kind == "directory":
        path.mkdir()
    elif kind == "block-device":
        device = _block_device()
        if device is None:
            pytest.skip("no block device in /dev")
        return device, []
    else:
        return kind, []  # /dev/zero, /dev/null, ...
    return str(path), []


KINDS = {
    "fifo": "a FIFO (named pipe)",
    "fifo-via-symlink": "a FIFO (named pipe)",
    "socket": "a socket",
    "directory": "a directory",
    "/dev/zero": "a character device",
    "/dev/null": "a character device",
    "block-device": "a block device",
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_session_file_that_is_not_a_regular_file_is_refused_unread(
    kind: str, short_dir: pathlib.Path
) -> None:
    path, sockets = _special(kind, short_dir)
    try:
        with pytest.raises(ConfigError) as info:
            load_session_config(path)
    finally:
        for sock in sockets:
            sock.close()
    assert str(info.value) == f"{path}: is {KINDS[kind]}; a session file must be a regular file"


def test_a_fifo_with_a_writer_is_refused_and_its_writer_left_waiting(
    short_dir: pathlib.Path,
) -> None:
    """A FIFO someone writes into forever is not read from either (no byte is taken)."""
    pipe = short_dir / "session.toml"
    os.mkfifo(pipe)
    fd = os.open(pipe, os.O_RDWR | os.O_NONBLOCK)  # a writer (and reader) holding it open
    try:
        os.write(fd, GOOD.encode())
        with pytest.raises(ConfigError, match="FIFO"):
            load_session_config(pipe)
        assert os.read(fd, 1 << 16) == GOOD.encode()  # still all there
    finally:
        os.close(fd)


def test_session_files_are_capped_in_size(tmp_path: pathlib.Path) -> None:
    padded = tmp_path / "padded.toml"
    comment = "# " + "x" * 1021 + "\n"  # 1 KiB lines
    body = GOOD + comment * ((MAX_SESSION_BYTES - len(GOOD)) // len(comment))
    padded.write_text(body + "#" * (MAX_SESSION_BYTES - len(body) - 1) + "\n")
    assert padded.stat().st_size == MAX_SESSION_BYTES
    assert load_session_config(padded).cameras[0].name == "door"  # at the cap: read
    big = tmp_path / "big.toml"
    big.write_bytes(padded.read_bytes() + b"\n")
    with pytest.raises(ConfigError) as info:
        load_session_config(big)
    assert str(info.value) == (
        f"{big}: {MAX_SESSION_BYTES + 1} bytes, over the 1 MiB a session file may have"
    )


def test_a_file_longer_than_its_stat_says_is_refused_at_the_cap() -> None:
    """As a file growing while it is read: /proc files say 0 bytes and hold more."""
    maps = pathlib.Path("/proc/self/maps")
    assert maps.stat().st_size == 0 and stat.S_ISREG(maps.stat().st_mode)
    with pytest.raises(ConfigError) as info:
        read_regular_file(maps, "session file", limit=100)
    assert str(info.value) == "/proc/self/maps: over the 100 bytes a session file may have"


def test_a_recording_whose_index_is_a_fifo_is_refused(short_dir: pathlib.Path) -> None:
    os.mkfifo(short_dir / "index.jsonl")
    with pytest.raises(RecordingError, match=r"index.jsonl: is a FIFO \(named pipe\)"):
        list(Recording(short_dir))


def test_the_cli_refuses_special_files_at_once(short_dir: pathlib.Path) -> None:
    os.mkfifo(short_dir / "pipe.toml")
    for command, path in (("run", "/dev/zero"), ("check", str(short_dir / "pipe.toml"))):
        result = subprocess.run(
            [*COMMAND, command, path], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 2
        assert result.stderr.startswith(f"{path}: is a "), result.stderr
        assert "a session file must be a regular file" in result.stderr


# -- ports used twice -----------------------------------------------------------------


def _cameras(*tables: str) -> str:
    return "\n".join(f'[[cameras]]\nname = "cam{i}"\n{table}\n' for i, table in enumerate(tables))


SENDER = 'sender = { input = "testsrc" }'
CLASHES = {
    "two-ports": (_cameras(f"port = 9001\n{SENDER}", f"port = 9001\n{SENDER}"), (3, 8), "port"),
    "port-and-url": (
        _cameras(f"port = 9001\n{SENDER}", 'url = "udp://0.0.0.0:9001"'),
        (3, 8),
        "url",
    ),
    "two-urls": (
        _cameras('url = "udp://127.0.0.1:9001"', 'url = "udp://@:9001?buffer_size=65536"'),
        (3, 7),
        "url",
    ),
    "main-and-own-sub": (
        _cameras(f"port = 9001\n{SENDER}\nstreams.sub = {{ port = 9001, fps = 10 }}"),
        (3, 5),
        "streams.sub.port",
    ),
    "subs-in-tables": (
        _cameras(
            f"port = 9001\n{SENDER}\n[cameras.streams.sub]\nport = 9101",
            f"port = 9002\n{SENDER}\n[cameras.streams.sub]\nport = 9101",
        ),
        (6, 13),
        "streams.sub.port",
    ),
    "url-and-sub-url": (
        _cameras(
            'url = "udp://239.1.1.1:5000"',
            'url = "rtsp://10.0.0.9/main"\nstreams.sub = { url = "udp://239.1.1.2:5000" }',
        ),
        (3, 8),
        "streams.sub.url",
    ),
    "two-senders-one-destination": (
        _cameras(
            'url = "udp://127.0.0.1:9001"\nsender = { destination = "udp://10.0.0.5:7000" }',
            'url = "udp://127.0.0.1:9002"\nsender = { destination = "udp://10.0.0.5:7000" }',
        ),
        (4, 9),
        "sender.destination",
    ),
}


@pytest.mark.parametrize("case", list(CLASHES))
def test_a_port_used_twice_is_refused_with_the_lines_of_both(
    case: str, tmp_path: pathlib.Path
) -> None:
    text, (first, repeat), field = CLASHES[case]
    path = tmp_path / "session.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_session_config(path)
    lines = str(info.value).split("\n")
    assert lines[0] == f"{path}: invalid session file"
    assert len(lines) == 2, lines  # one clash, once (read and sent to the same port)
    match = re.match(rf"  {path}:(\d+): cameras\[(\d)\]\.{re.escape(field)}: UDP port ", lines[1])
    assert match is not None, lines[1]
    assert int(match.group(1)) == repeat
    assert f" at {path}:{first} (cameras[0]." in lines[1]
    assert "camera 'cam0'" in lines[1] and "would mix" in lines[1]


NOT_CLASHES = {
    "rtsp-cameras-of-one-recorder": _cameras(
        'url = "rtsp://10.0.0.9:554/ch1"', 'url = "rtsp://10.0.0.9:554/ch2"'
    ),
    "a-sender-feeding-another-entry": _cameras(
        'url = "udp://127.0.0.1:9001"\nsender = { destination = "udp://127.0.0.1:9001", '
        'outputs = { sub = { destination = "udp://127.0.0.1:9101", size = [160, 120] } } }',
        'url = "udp://127.0.0.1:9101"',
    ),
    "web-port-on-tcp": _cameras(f"port = 8080\n{SENDER}") + "\n[web]\nport = 8080\n",
    "web-port-and-a-camera-elsewhere": _cameras('url = "rtsp://10.0.0.9:8080/main"')
    + "\n[web]\nport = 8080\n",
    "web-port-and-a-udp-url": _cameras('url = "udp://127.0.0.1:8080"') + "\n[web]\nport = 8080\n",
    "web-port-and-another-local-port": _cameras('url = "http://127.0.0.1:8081/video"')
    + "\n[web]\nport = 8080\n",
    "web-on-a-free-port": _cameras('url = "http://127.0.0.1/video"') + "\n[web]\nport = 0\n",
}


@pytest.mark.parametrize("case", list(NOT_CLASHES))
def test_ports_that_do_not_clash_are_accepted(case: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "session.toml"
    path.write_text(NOT_CLASHES[case])
    assert load_session_config(path).cameras


WEB = "\n[web]\nport = 8554\n"  # after the cameras: an empty line, [web], its port
WEB_CLASHES = {
    "rtsp-on-loopback": (_cameras('url = "rtsp://127.0.0.1:8554/cam"'), WEB, 3, "url"),
    "a-role-on-ipv6-loopback": (
        _cameras('url = "rtsp://10.0.0.9/main"\nstreams.sub = { url = "rtsp://[::1]:8554/s" }'),
        WEB,
        4,
        "streams.sub.url",
    ),
    "http-on-its-default-port": (
        _cameras('url = "http://localhost/video.mjpg"'),
        "\n[web]\nport = 80\n",
        3,
        "url",
    ),
    "tcp-at-the-bind-address": (
        _cameras('url = "tcp://192.0.2.10:8554"'),
        '\n[web]\nport = 8554\nhost = "192.0.2.10"\n',
        3,
        "url",
    ),
    "the-default-web-port": (
        _cameras('url = "http://127.0.0.1:8080/video"'),
        "\n[web]\njpeg_quality = 70\n",
        3,
        "url",
    ),
}


@pytest.mark.parametrize("case", list(WEB_CLASHES))
def test_the_web_port_on_a_local_camera_server_is_refused_with_both_lines(
    case: str, tmp_path: pathlib.Path
) -> None:
    cameras, web, camera_line, field = WEB_CLASHES[case]
    path = tmp_path / "session.toml"
    path.write_text(cameras + web)
    web_line = cameras.count("\n") + (3 if "port" in web else 2)  # its port, or [web]
    with pytest.raises(ConfigError) as info:
        load_session_config(path)
    lines = str(info.value).split("\n")
    assert lines[0] == f"{path}: invalid session file"
    assert len(lines) == 2, lines
    match = re.match(rf"  {path}:(\d+): web\.port: TCP port (\d+) is also ", lines[1])
    assert match is not None, lines[1]
    assert int(match.group(1)) == web_line
    assert f" at {path}:{camera_line} (cameras[0].{field}, camera 'cam0'): " in lines[1]
    assert lines[1].endswith("give [web] another port")


def test_a_udp_clash_and_a_web_port_clash_are_both_reported(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "session.toml"
    path.write_text(
        _cameras(f"port = 9001\n{SENDER}", f"port = 9001\n{SENDER}", 'url = "tcp://[::1]:8554"')
        + WEB
    )
    with pytest.raises(ConfigError) as info:
        load_session_config(path)
    lines = str(info.value).split("\n")
    assert len(lines) == 3, lines
    assert lines[1].startswith(f"  {path}:8: cameras[1].port: UDP port 9001 is also read at ")
    assert lines[2].startswith(f"  {path}:16: web.port: TCP port 8554 is also that of a ")
    assert f"at {path}:13 (cameras[2].url, camera 'cam2')" in lines[2]


def test_a_session_built_in_code_refuses_the_web_port_on_a_local_camera() -> None:
    cameras = [{"name": "door", "url": "rtsp://localhost:8554/door"}]
    expected = "TCP port 8554 is the web view's ([web] port) and that of camera 'door' (url)"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        SessionConfig.model_validate({"cameras": cameras, "web": {"port": 8554}})
    # the same URL with the view on a free port, or on another one, is fine
    assert SessionConfig.model_validate({"cameras": cameras, "web": {"port": 0}}).web
    assert SessionConfig.model_validate({"cameras": cameras, "web": {"port": 8555}}).web


def test_a_session_built_in_code_refuses_a_port_used_twice() -> None:
    cameras = [
        {"name": "door", "port": 9001, "sender": {}},
        {"name": "hall", "url": "udp://127.0.0.1:9001"},
    ]
    with pytest.raises(ConfigError, match="UDP port 9001 is read by camera 'door'"):
        SessionConfig.model_validate({"cameras": cameras})


def test_a_group_refuses_two_cameras_on_one_port_naming_both() -> None:
    cameras = [
        Camera(name="door", port=9001, sender=SenderConfig()),
        Camera(
            name="hall",
            port=9002,
            sender=SenderConfig(),
            streams={"sub": CameraStream(port=9001, size=(320, 240))},
        ),
    ]
    with pytest.raises(ConfigError) as info:
        StreamGroup(cameras)
    assert str(info.value) == (
        "UDP port 9001 is read by camera 'door' (port) and by camera 'hall' "
        "(streams.sub.port): the two streams would mix; give each its own port"
    )
    with pytest.raises(ConfigError, match="camera 'cam0' \\(url\\) and by camera 'cam1'"):
        StreamGroup(["udp://127.0.0.1:9005", "udp://0.0.0.0:9005"])


def test_run_and_check_report_a_port_used_twice(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "session.toml"
    path.write_text(_cameras(f"port = 9001\n{SENDER}", f"port = 9001\n{SENDER}"))
    for command in ("run", "check"):
        result = subprocess.run(
            [*COMMAND, command, str(path)], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"{path}: invalid session file",
            f"  {path}:8: cameras[1].port: UDP port 9001 is also read at {path}:3 "
            "(cameras[0].port, camera 'cam0'): the two streams would mix; give each its own "
            "port",
        ]
        assert result.stdout == ""
