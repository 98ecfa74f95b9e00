"""The ``syncstream`` command: demo, run, check and probe as real processes."""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator

import cv2
import pytest

from syncstream.cli.console import StatusDisplay
from syncstream.cli.demo import demo_config
from syncstream.probe import StampSender
from syncstream.processors.wall import Wall
from syncstream.senders import free_udp_port
from syncstream.socket_words import plain_socket_error, plain_socket_error_in
from syncstream.testing.sshd import SshdServer
from tests.conftest import (
    SenderFactory,
    free_tcp_port,
    get_when_served,
    processes_with,
    ssh_host,
    wait_until,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "syncstream"]
SMALL = ["--size", "320x240"]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def _summary(stdout: str) -> list[str]:
    return stdout.split("summary:")[1].strip().splitlines()


# -- demo -------------------------------------------------------------------------------


def test_demo_shows_every_camera_and_writes_the_wall(tmp_path: pathlib.Path) -> None:
    png = tmp_path / "wall.png"
    size = "322x242"  # a size of this test only, to find its senders
    result = _run(
        "demo", "--cameras", "3", "--seconds", "3", "--size", size, "--snapshot", str(png)
    )
    assert result.returncode == 0, result.stderr
    summary = _summary(result.stdout)
    assert [line.split()[0] for line in summary] == ["cam1", "cam2", "cam3", "group"]
    for line in summary[:3]:
        fields = line.split()
        assert fields[1] == "live"
        assert float(fields[2]) > 20  # fps
        assert "latency p50" in line and "skew" in line and "drops" in line
    assert "sender" in summary[3] and "sets/s" in summary[3]
    picture = cv2.imread(str(png))
    assert picture is not None
    expected = Wall(["cam1", "cam2", "cam3"], tile_size=(480, 270)).size
    assert (picture.shape[1], picture.shape[0]) == expected
    assert f"snapshot: {png} ({expected[0]}x{expected[1]})" in result.stdout
    tiles = [picture[10:260, 10:470], picture[10:260, 492:952], picture[282:532, 10:470]]
    assert all(tile.std() > 20 for tile in tiles)  # pictures, not blank tiles
    assert abs(float(tiles[0].mean()) - float(tiles[1].mean())) > 1  # each its own pattern
    assert not processes_with(f"size={size}:")


def _free_udp_pair() -> int:
    """A UDP port that is free with the one above it (bound and released, both)."""
    for _ in range(20):
        base = free_udp_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise AssertionError("no two free consecutive UDP ports")


def test_demo_reads_its_cameras_on_the_ports_from_port_base() -> None:
    base = _free_udp_pair()
    assert [camera.port for camera in demo_config(2, 1.0, port_base=base).cameras] == [
        base,
        base + 1,
    ]
    result = _run(
        "demo", "--cameras", "2", "--seconds", "2", *SMALL, "--no-snapshot",
        "--port-base", str(base),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [line.split()[:2] for line in _summary(result.stdout)[:2]] == [
        ["cam1", "live"],
        ["cam2", "live"],
    ]
    crowded = _run("demo", "--cameras", "2", "--port-base", "65535")
    assert crowded.returncode == 2 and "leaves no room for 2 cameras" in crowded.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_demo_serves_the_wall_and_stops_cleanly_on_a_signal(signum: signal.Signals) -> None:
    port = free_tcp_port()
    size = {signal.SIGTERM: "324x244", signal.SIGINT: "326x246"}[signum]
    proc = subprocess.Popen(
        [*COMMAND, "demo", "--cameras", "2", "--seconds", "60", "--size", size, "--no-snapshot",
         "--serve", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/snapshot.jpg"
        jpeg = get_when_served(url, 30, lambda: proc.poll() is None)
        assert jpeg[:2] == b"\xff\xd8"
        stats = json.loads(_get(f"http://127.0.0.1:{port}/stats"))
        assert set(stats["group"]["cameras"]) == {"cam1", "cam2"}
        page = _get(f"http://127.0.0.1:{port}/").decode()
        assert "stream.mjpg" in page
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr  # it ended on the signal (communicate's timeout)
    assert f"stopped by {signum.name}" in stdout
    assert f"web view: http://127.0.0.1:{port}/" in stdout
    assert not processes_with(f"size={size}:")
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/stats", timeout=1)


def test_demo_piped_into_a_reader_that_leaves_stops_quietly() -> None:
    proc = subprocess.Popen(
        [*COMMAND, "demo", "--cameras", "2", "--seconds", "30", "--size", "332x252",
         "--no-snapshot"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert proc.stdout.readline().startswith(b"syncstream")  # like `| head -1`
        proc.stdout.close()
        proc.wait(timeout=20)
        stderr = proc.stderr.read().decode()
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "Traceback" not in stderr
    assert not processes_with("size=332x252:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cameras", "17"], "invalid choice"),
        (["--seconds", "0"], "must be positive"),
        (["--serve", "nowhere"], "127.0.0.1:8080"),
        (["--size", "big"], "640x480"),
    ],
)
def test_demo_rejects_bad_arguments(args: list[str], message: str) -> None:
    result = _run("demo", *args, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr


def test_demo_on_a_busy_web_port_fails_and_leaves_nothing() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run("demo", "--cameras", "2", "--seconds", "3", "--size", "328x248",
                      "--serve", f"127.0.0.1:{port}", "--no-snapshot")  # fmt: skip
    assert result.returncode == 1
    assert str(port) in result.stderr
    assert not processes_with("size=328x248:")


def test_logging_is_quiet_by_default_and_set_by_the_flags() -> None:
    args = ["demo", "--cameras", "1", "--seconds", "1", *SMALL, "--no-snapshot"]
    default, verbose, quiet = _run(*args), _run("-v", *args), _run("-q", *args)
    assert default.returncode == verbose.returncode == quiet.returncode == 0
    assert " INFO " not in default.stderr
    assert " INFO syncstream." in verbose.stderr
    assert quiet.stderr == ""


def test_the_library_never_configures_logging() -> None:
    code = (
        "import logging, pkgutil, importlib, syncstream\n"
        "for m in pkgutil.walk_packages(syncstream.__path__, 'syncstream.'):\n"
        "    if m.name != 'syncstream.__main__': importlib.import_module(m.name)\n"
        "root = logging.getLogger()\n"
        "own = logging.getLogger('syncstream').handlers\n"
        "print(len(root.handlers), root.level, [type(h).__name__ for h in own])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(maxsplit=2) == ["0", str(30), "['NullHandler']\n"]


def test_status_lines_are_redrawn_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    display = StatusDisplay(out, live=True)
    display.show(["cam1 a", "group a"])
    display.show(["cam1 b", "group b"])
    assert out.getvalue() == "cam1 a\ngroup a\n\x1b[2F\x1b[Jcam1 b\ngroup b\n"
    piped = io.StringIO()
    display = StatusDisplay(piped)  # not a terminal: blocks one after another
    display.show(["cam1 a"])
    display.show(["cam1 b"])
    assert piped.getvalue() == "cam1 a\n\ncam1 b\n\n"


# -- run --------------------------------------------------------------------------------


def _session_file(tmp_path: pathlib.Path, body: str) -> pathlib.Path:
    path = tmp_path / "session.toml"
    path.write_text(body)
    return path


def _local_cameras(*patterns: str) -> str:
    return "".join(
        f'[[cameras]]\nname = "{pattern}"\nport = {free_udp_port()}\n'
        f'sender = {{ input = "{pattern}", size = [330, 250] }}\n\n'
        for pattern in patterns
    )


def test_run_starts_the_session_file_with_a_recorder_and_web_view(tmp_path: pathlib.Path) -> None:
    record = tmp_path / "rec"
    config = _session_file(
        tmp_path,
        '[group]\nsync = "nearest"\n\n'
        + _local_cameras("testsrc", "smptebars")
        + f'[record]\ndirectory = "{record}"\n\n[web]\nport = 0\n\n'
        + f'[run]\nseconds = 3\nsnapshot = "{tmp_path / "wall.png"}"\n',
    )
    result = _run("run", str(config))
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in _summary(result.stdout)] == [
        "testsrc", "smptebars", "group"
    ]  # fmt: skip
    assert "web view: http://127.0.0.1:" in result.stdout
    assert (tmp_path / "wall.png").stat().st_size > 1000
    index = (record / "index.jsonl").read_text().splitlines()
    assert sum('"kind": "set"' in line or '"set"' in line for line in index) > 30
    assert sorted(p.suffix for p in record.rglob("*.ts"))[:1] == [".ts"]
    assert not processes_with("size=330x250:")


def test_run_with_the_example_session_file(tmp_path: pathlib.Path) -> None:
    text = (ROOT / "examples" / "session.toml").read_text()
    text = text.replace("port = 8080", "port = 0").replace('"wall.png"', f'"{tmp_path}/w.png"')
    for old in ("9101", "9102"):
        text = text.replace(f"port = {old}", f"port = {free_udp_port()}")
    result = _run("run", str(_session_file(tmp_path, text)), "--seconds", "2")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "w.png").exists()


BAD_FILE = """\
[group]
sync = "closest"

[hosts.cam1]
hostname = "cam1.local"
prot = 22

[[cameras]]
name = "door"
host = "cam1"
port = 9001
[cameras.sender]
input = "/dev/video0"
codec = "h265"

[[cameras]]
name = "hall"
host = "cam9"
port = 9002
sender = { input = "testsrc" }

[web]
port = 99999
"""


def test_run_reports_every_bad_field_with_its_line_and_allowed_values(
    tmp_path: pathlib.Path,
) -> None:
    path = _session_file(tmp_path, BAD_FILE)
    result = _run("run", str(path), timeout=30)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}: invalid session file"
    assert f"  {path}:2: group.sync: Input should be 'latest', 'nearest' or 'exact' " \
        "(got 'closest')" in lines  # fmt: skip
    assert any(line.startswith(f"  {path}:6: hosts.cam1.prot: unknown field; allowed: hostname,")
               for line in lines)  # fmt: skip
    assert f"  {path}:14: cameras[0].sender.codec: Input should be 'libx264' or " \
        "'mpeg2video' (got 'h265')" in lines  # fmt: skip
    assert f"  {path}:18: cameras[1].host: no [hosts.cam9] table in the file" in lines
    assert any(line.startswith(f"  {path}:23: web.port:") and "65535" in line for line in lines)
    assert len(lines) == 6  # each problem once
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[[cameras]]\nname = \"a\"\nurl = \n", "not valid TOML"),
        ("[group]\nsync = \"nearest\"\n", "cameras: required field missing"),
        ("[[cameras]]\nname = \"a\"\n", ":1: cameras[0]: camera 'a' needs a url or a sender"),
        ("[[cameras]]\nname = \"a\"\nurl = \"udp://0.0.0.0:1\"\n[[cameras]]\nname = \"a\"\n"
         "url = \"udp://0.0.0.0:2\"\n", ":2: camera name 'a' is used 2 times: line 2, line 5"),
        ("[[cameras]]\nname = \"a b\"\nurl = \"x\"\n", ":2: cameras[0].name: String should match"),
        ("cameras = []\n", ":1: cameras: List should have at least 1 item"),
        ("[[cameras]]\nname = \"a\"\nurl = \"udp://0.0.0.0:1\"\n[wall]\nenabled = false\n[web]\n",
         "[web] has nothing to show: enable [wall] or [speaker]"),
    ],
)  # fmt: skip
def test_run_refuses_a_bad_file_before_starting_anything(
    tmp_path: pathlib.Path, body: str, expected: str
) -> None:
    result = _run("run", str(_session_file(tmp_path, body)), timeout=30)
    assert result.returncode == 2
    assert expected in result.stderr


def test_run_names_a_missing_file(tmp_path: pathlib.Path) -> None:
    result = _run("run", str(tmp_path / "nope.toml"), timeout=30)
    assert result.returncode == 2
    assert "nope.toml: cannot read: No such file or directory" in result.stderr


def test_run_stops_a_remote_sender_on_sigterm(sshd: SshdServer, tmp_path: pathlib.Path) -> None:
    host = ssh_host(sshd)
    port = free_udp_port()
    config = _session_file(
        tmp_path,
        f'[hosts.lab]\nhostname = "{host.hostname}"\nport = {host.port}\n'
        f'username = "{host.username}"\nkey_filename = "{host.key_filename}"\n'
        f'known_hosts_file = "{host.known_hosts_file}"\nallow_agent = false\n'
        "look_for_keys = false\n\n"
        f'[[cameras]]\nname = "remote"\nhost = "lab"\nport = {port}\n'
        'receiver_host = "127.0.0.1"\n'
        'sender = { input = "testsrc2", size = [320, 240] }\n',
    )
    proc = subprocess.Popen(
        [*COMMAND, "run", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    marker = f"udp://127.0.0.1:{port}"
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:

        def sender_runs() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            return any("ffmpeg" in p.command for p in processes_with(marker))

        wait_until(sender_runs, 30, "the remote sender runs")
        # frames flow: a status line says the camera is live
        wait_until(
            lambda: any("live" in line for line in lines if line.split()[:1] == ["remote"]),
            30,
            "a status line of the live camera",
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        reader.join(10)
        stdout, stderr = "".join(lines), proc.stderr.read()
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "remote" in _summary(stdout)[0] and "live" in _summary(stdout)[0]
    wait_until(lambda: not processes_with(marker), 5, "the remote sender ended")


# -- check ------------------------------------------------------------------------------


def _check_file(tmp_path: pathlib.Path, host_fields: str, sender_input: str = "testsrc") -> str:
    return str(
        _session_file(
            tmp_path,
            f"[hosts.lab]\n{host_fields}\n\n"
            f'[[cameras]]\nname = "remote"\nhost = "lab"\nport = {free_udp_port()}\n'
            f'sender = {{ input = "{sender_input}" }}\n\n'
            f'[[cameras]]\nname = "here"\nport = {free_udp_port()}\n'
            'sender = { input = "smptebars" }\n',
        )
    )


def _host_fields(server: SshdServer, **overrides: object) -> str:
    host = ssh_host(server, **overrides)
    fields = {
        "hostname": host.hostname,
        "port": host.port,
        "username": host.username,
        "key_filename": host.key_filename,
        "known_hosts_file": host.known_hosts_file,
        "allow_agent": False,
        "look_for_keys": False,
        "connect_timeout": host.connect_timeout,
    }
    return "\n".join(
        f"{key} = {json.dumps(value)}" for key, value in fields.items() if value is not None
    )


def _table(stdout: str) -> dict[str, str]:
    lines = stdout.splitlines()
    return {line.split("  ")[0]: line for line in lines[2:] if line and not line[0].isspace()}


def test_check_passes_a_good_host_and_measures_its_clock(
    sshd: SshdServer, tmp_path: pathlib.Path
) -> None:
    result = _run("check", _check_file(tmp_path, _host_fields(sshd)))
    assert result.returncode == 0, result.stdout + result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header == ["host", "ssh", "host", "key", "login", "ffmpeg", "devices", "clock", "offset"]
    rows = _table(result.stdout)
    remote = rows[f"{sshd.username}@127.0.0.1:{sshd.port}"]
    assert "known ed25519" in remote
    assert "FAIL" not in remote and " ms ±" in remote
    assert "this machine" in rows and "0 (same)" in rows["this machine"]
    assert result.stdout.rstrip().endswith("all checks passed")
    assert max(len(line) for line in result.stdout.splitlines()) <= 100


def test_check_names_only_the_cameras_that_failed(sshd: SshdServer, tmp_path: pathlib.Path) -> None:
    body = (
        f"[hosts.lab]\n{_host_fields(sshd)}\n\n"
        f'[[cameras]]\nname = "good"\nhost = "lab"\nport = {free_udp_port()}\n'
        'sender = { input = "testsrc" }\n\n'
        f'[[cameras]]\nname = "bad"\nhost = "lab"\nport = {free_udp_port()}\n'
        'sender = { input = "/dev/video97" }\n'
    )
    result = _run("check", str(_session_file(tmp_path, body)))
    assert result.returncode == 1
    assert "failed: devices (cameras bad)\n" in result.stdout
    assert "bad: missing /dev/video97" in result.stdout


def test_check_names_unreadable_sources_with_their_lines(tmp_path: pathlib.Path) -> None:
    body = (
        '[[cameras]]\nname = "gone"\nurl = "/nonexistent/cam.ts"\n\n'
        '[[cameras]]\nname = "ftp"\nurl = "ftp://127.0.0.1/cam"\n\n'
        f'[[cameras]]\nname = "ok"\nurl = "{ROOT / "tests/data/testsrc.mp4"}"\n\n'
        f'[[cameras]]\nname = "udp"\nurl = "udp://127.0.0.1:{free_udp_port()}"\n'
    )
    path = _session_file(tmp_path, body)
    result = _run("check", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{path}:3: cameras[0].url: camera 'gone': no such file: /nonexistent/cam.ts" in lines
    assert any(line.startswith(f"{path}:7: cameras[1].url: camera 'ftp': unsupported source")
               for line in lines)  # fmt: skip
    assert lines[-1] == "2 cameras cannot be read"
    assert "'ok'" not in result.stdout and "'udp'" not in result.stdout


def test_check_reports_a_missing_device(sshd: SshdServer, tmp_path: pathlib.Path) -> None:
    result = _run("check", _check_file(tmp_path, _host_fields(sshd), "/dev/video97"))
    assert result.returncode == 1
    remote = _table(result.stdout)[f"{sshd.username}@127.0.0.1:{sshd.port}"]
    assert "FAIL" in remote and "FAIL remote: missing /dev/video97" in result.stdout
    assert "failed: devices (cameras remote)" in result.stdout


def test_check_reports_an_unknown_host_key_and_refused_login(
    sshd: SshdServer, tmp_path: pathlib.Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    fields = _host_fields(sshd, known_hosts_file=str(empty))
    result = _run("check", _check_file(tmp_path, fields))
    assert result.returncode == 1
    remote = _table(result.stdout)[f"{sshd.username}@127.0.0.1:{sshd.port}"]
    assert f"FAIL unknown (ssh-ed25519 {sshd.host_key_fingerprint})" in result.stdout
    assert "FAIL refused: host key not trusted" in result.stdout and "FAIL" in remote
    assert max(len(line) for line in result.stdout.splitlines() if "[" not in line[:1]) <= 100


def test_check_reports_a_refused_key_and_an_unreachable_host(
    sshd: SshdServer, tmp_path: pathlib.Path
) -> None:
    stranger = _host_fields(sshd, key_filename=str(sshd.stranger_key))
    result = _run("check", _check_file(tmp_path, stranger))
    assert result.returncode == 1
    assert "FAIL authentication refused" in result.stdout
    port = free_tcp_port()  # nothing listens there
    closed = _host_fields(sshd, port=port, connect_timeout=2.0)
    result = _run("check", _check_file(tmp_path, closed))
    assert result.returncode == 1
    remote = _table(result.stdout)[f"{sshd.username}@127.0.0.1:{port}"]
    assert "FAIL connection refused" in remote  # the words of `syncstream probe`
    assert "Connection refused" not in result.stdout


def test_socket_errors_read_the_same_for_check_and_probe() -> None:
    port = free_tcp_port()
    with pytest.raises(OSError) as refused:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert plain_socket_error(refused.value) == "connection refused"
    text = f"tcp://127.0.0.1:{port}: {refused.value}"
    assert plain_socket_error_in(text) == "connection refused"
    assert plain_socket_error(TimeoutError("timed out")) == "no answer (timed out)"
    assert plain_socket_error(socket.gaierror(socket.EAI_NONAME, "unknown")) == "host not found"


def test_check_refuses_fifos_as_known_hosts_and_key_files_without_blocking(
    sshd: SshdServer, tmp_path: pathlib.Path
) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)  # reading it would wait for ever for a writer
    result = _run("check", _check_file(tmp_path, _host_fields(sshd, known_hosts_file=str(pipe))))
    assert result.returncode == 1
    remote = _table(result.stdout)[f"{sshd.username}@127.0.0.1:{sshd.port}"]
    assert f"FAIL cannot read known hosts: {pipe}: is a FIFO (named pipe)" in result.stdout
    result = _run("check", _check_file(tmp_path, _host_fields(sshd, key_filename=str(pipe))))
    assert result.returncode == 1
    remote = _table(result.stdout)[f"{sshd.username}@127.0.0.1:{sshd.port}"]
    assert "known ed25519" in remote
    assert (
        f"FAIL cannot use the key: {pipe}: is a FIFO (named pipe); a private key" in result.stdout
    )


# -- probe ------------------------------------------------------------------------------


@pytest.fixture
def stamp_stream() -> Iterator[str]:
    port = free_udp_port()
    with StampSender(f"udp://127.0.0.1:{port}", size=(320, 240)):
        yield f"udp://127.0.0.1:{port}"


def test_probe_reports_a_stamped_sender(udp_sender: SenderFactory) -> None:
    port = free_udp_port()
    udp_sender(port)
    result = _run("probe", f"udp://127.0.0.1:{port}", "--seconds", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["codec"] == "h264"
    assert (report["width"], report["height"]) == (320, 240)
    assert report["capture_clock"] == "sender"
    assert report["frames"] > 40 and report["keyframes"] >= 1
    assert 0 < report["latency_p50"] < 0.5
    assert report["error"] is None


def test_probe_reads_the_pixel_stamp(stamp_stream: str) -> None:
    result = _run("probe", stamp_stream, "--seconds", "2")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("  ", 1) for line in result.stdout.splitlines())
    assert lines["size"].strip() == "320x240"
    stamped = lines["stamp latency p50/p95"]
    assert "stamped frames" in stamped and not stamped.strip().startswith("-")


def test_probe_counts_frame_ends_found_on_the_wire() -> None:
    """A sender with ffmpeg's default muxing (PES length 0): probe says how many frames
    were handed over as their last packet arrived, and prints the line only then."""
    port = free_udp_port()
    with StampSender(f"udp://127.0.0.1:{port}", size=(320, 240), pes_length=False):
        result = _run("probe", f"udp://127.0.0.1:{port}", "--seconds", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frame_ends_found"] >= 20
    assert report["frame_ends_found"] > 2 * report["frame_ends_waited"]
    assert report["decode_errors"] == 0


def test_probe_prints_the_frame_ends_line_only_for_unknown_lengths(stamp_stream: str) -> None:
    result = _run("probe", stamp_stream, "--seconds", "1")
    assert result.returncode == 0, result.stderr
    assert "frame ends" not in result.stdout  # the stamp sender writes PES lengths
    port = free_udp_port()
    with StampSender(f"udp://127.0.0.1:{port}", size=(320, 240), pes_length=False):
        result = _run("probe", f"udp://127.0.0.1:{port}", "--seconds", "1")
    assert result.returncode == 0, result.stderr
    line = dict(line.split("  ", 1) for line in result.stdout.splitlines())["frame ends"]
    assert re.fullmatch(r"\s*\d+ found at once, \d+ waited for the next frame", line)


def test_probe_of_a_silent_port_fails_with_a_reason() -> None:
    port = free_udp_port()
    result = _run("probe", f"udp://127.0.0.1:{port}", "--open-timeout", "1")
    assert result.returncode == 1
    error = dict(line.split(None, 1) for line in result.stdout.splitlines())["error"]
    assert error == f"no frame within 1 s: no data on udp port {port}"


def test_probe_of_a_missing_file_fails_with_a_reason(tmp_path: pathlib.Path) -> None:
    result = _run("probe", str(tmp_path / "none.ts"), "--open-timeout", "2")
    assert result.returncode == 1
    assert "error" in result.stdout


def test_probe_of_a_file_shorter_than_seconds_reports_what_it_read() -> None:
    # testsrc.mp4: 30 frames at 15 fps (2 s), probed for 30 s
    result = _run("probe", str(ROOT / "tests/data/testsrc.mp4"), "--seconds", "30", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ended"] is True and report["error"] is None
    assert report["frames"] == 30
    assert report["duration"] == pytest.approx(29 / 15, abs=0.01)
    text = _run("probe", str(ROOT / "tests/data/testsrc.mp4"), "--seconds", "30")
    assert text.returncode == 0
    lines = dict(line.split(None, 1) for line in text.stdout.splitlines())
    assert lines["duration"].endswith("(read to the end)")


def test_probe_of_a_refused_connection_says_so() -> None:
    port = free_tcp_port()  # nothing listens there
    result = _run("probe", f"tcp://127.0.0.1:{port}", "--open-timeout", "1")
    assert result.returncode == 1
    error = dict(line.split(None, 1) for line in result.stdout.splitlines())["error"]
    assert error.startswith("connection refused (no frame within 1 s")


def test_every_command_has_help() -> None:
    for command in ("demo", "run", "check", "probe"):
        result = _run(command, "--help", timeout=30)
        assert result.returncode == 0 and "usage: syncstream" in result.stdout
