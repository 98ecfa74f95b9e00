"""The examples as real processes: what each prints, writes and serves, and how it stops.

Every test gives its simulated cameras a size of its own, so that ``ps`` can tell whether
the ffmpeg processes of that test are gone once the example has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import cv2
import numpy as np
import pytest

from syncstream.processors.wall import Wall
from syncstream.senders import free_udp_port
from syncstream.testing.sshd import SshdServer
from tests.conftest import free_tcp_port, get_when_served, processes_with

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: The examples import this checkout's syncstream, whatever is installed.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
DEADLINE = 30.0


def _run(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=ENV,
    )


def _start(script: str, *args: str) -> subprocess.Popen[str]:
    """The example in a session of its own: a signal to its group is a terminal's Ctrl-C."""
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=ENV,
        start_new_session=True,
    )


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def _wait_for(url: str, proc: subprocess.Popen[str]) -> bytes:
    """GET ``url`` until it answers 200 (the first picture), while ``proc`` runs."""
    return get_when_served(url, DEADLINE, lambda: proc.poll() is None)


def _stop_by_sigterm(proc: subprocess.Popen[str]) -> str:
    """Stop an example with SIGTERM; its whole output once it said so and exited with 0."""
    assert proc.stdout is not None and proc.stderr is not None
    proc.send_signal(signal.SIGTERM)
    # the rest until it exits; communicate() would lose what was read ahead
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    proc.wait(10)
    assert proc.returncode == 0, stderr
    assert "stopped by SIGTERM" in stdout
    return stdout


def _jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"\xff\xd8"
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None
    return picture.shape[1], picture.shape[0]


def _status(stdout: str, camera: str) -> list[str]:
    """The status lines of ``camera`` (``GroupStats.lines()``), one per second."""
    return [line for line in stdout.splitlines() if line.split()[:1] == [camera]]


# -- cctv_wall ---------------------------------------------------------------------------


def test_cctv_wall_snapshot_shows_every_camera_in_its_tile(tmp_path: pathlib.Path) -> None:
    png = tmp_path / "wall.png"
    size = "330x250"
    result = _run("cctv_wall.py", "--local", "--cameras", "3", "--seconds", "3",
                  "--size", size, "--snapshot", str(png))  # fmt: skip
    assert result.returncode == 0, result.stderr
    wall = Wall(["cam1", "cam2", "cam3"], tile_size=(480, 270))
    width, height = wall.size
    assert wall.grid == (2, 2)
    assert f"wall: 2x2 tiles, {width}x{height} pixels" in result.stdout
    assert f"snapshot: {png} ({width}x{height})" in result.stdout
    assert "stopped after 3 s" in result.stdout
    for camera in ("cam1", "cam2", "cam3"):
        lines = _status(result.stdout, camera)
        assert len(lines) >= 2 and "live" in lines[-1] and "restarts 0" in lines[-1]
    assert "sets/s" in _status(result.stdout, "group")[-1]

    picture = cv2.imread(str(png))
    assert picture is not None and (picture.shape[1], picture.shape[0]) == (width, height)
    middles = []
    for camera in wall.cameras:
        x, y, w, h = wall.tile_rect(camera)
        middles.append(picture[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4])
    assert all(float(middle.std()) > 20 for middle in middles)  # pictures, not blank tiles
    for i in range(3):
        for j in range(i + 1, 3):  # each camera its own test pattern
            assert float(cv2.absdiff(middles[i], middles[j]).mean()) > 10
    x, y, w, h = wall.tile_rect("cam3")
    assert picture[y : y + h, x + w + wall.gap :].max() == 0  # the fourth cell stays empty
    assert not processes_with(f"size={size}:")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_cctv_wall_serves_the_wall_and_stops_cleanly_on_a_signal(signum: signal.Signals) -> None:
    port = free_tcp_port()
    size = {signal.SIGTERM: "332x252", signal.SIGINT: "334x254"}[signum]
    proc = _start("cctv_wall.py", "--local", "--cameras", "2", "--size", size,
                  "--serve", f"127.0.0.1:{port}")  # fmt: skip
    try:
        jpeg = _wait_for(f"http://127.0.0.1:{port}/snapshot.jpg", proc)
        assert _jpeg_size(jpeg) == Wall(["cam1", "cam2"], tile_size=(480, 270)).size
        stats = json.loads(_get(f"http://127.0.0.1:{port}/stats"))
        assert set(stats["group"]["cameras"]) == {"cam1", "cam2"}
        if signum == signal.SIGINT:  # Ctrl-C in a terminal: the local ffmpegs get it too
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == 0, stderr
    assert f"web view: http://127.0.0.1:{port}/" in stdout
    assert ("stopped by SIGTERM" if signum == signal.SIGTERM else "stopped by Ctrl-C") in stdout
    assert "Traceback" not in stderr
    assert not processes_with(f"size={size}:")
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/stats", timeout=1)


def _free_udp_range(count: int) -> int:
    """A port P with P, P+1, ... P+count-1 all free on 127.0.0.1 (bound and let go)."""
    for _ in range(50):
        base = free_udp_port()
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise AssertionError(f"no {count} free UDP ports in a row")


def test_cctv_wall_reads_its_cameras_on_the_port_base() -> None:
    base = _free_udp_range(2)
    size = "348x268"
    proc = _start("cctv_wall.py", "--local", "--cameras", "2", "--size", size,
                  "--seconds", "30", "--port-base", str(base))  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        live: set[str] = set()
        for line in proc.stdout:  # a status line per camera each second
            if line.split()[:2] in (["cam1", "live"], ["cam2", "live"]):
                live.add(line.split()[0])
            if live == {"cam1", "cam2"}:
                break
        assert live == {"cam1", "cam2"}, "the example ended before both cameras were live"
        # frames came through base and base + 1: each sender sends there, each port is
        # held by the example's receiver while it runs
        senders = [p.command for p in processes_with(f"size={size}:")]
        for port in (base, base + 1):
            assert sum(f"udp://127.0.0.1:{port}" in command for command in senders) == 1
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(OSError):
                sock.bind(("127.0.0.1", port))
        _stop_by_sigterm(proc)
    finally:
        proc.kill()
        proc.wait(10)
    assert not processes_with(f"size={size}:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cam1.local"], "give 2 to 16 camera hosts"),
        (["a", "b", "--local"], "not both"),
        (["--local", "--cameras", "17"], "invalid choice"),
        (["a", "pi@b:port"], "[user@]host[:port]"),
        (["--local", "--size", "331x250"], "even"),
    ],
)
def test_cctv_wall_rejects_bad_arguments(args: list[str], message: str) -> None:
    result = _run("cctv_wall.py", *args, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr


def test_cctv_wall_names_an_unreachable_host() -> None:
    result = _run("cctv_wall.py", "127.0.0.1:1", "nobody@127.0.0.1:1", "--input", "testsrc",
                  "--seconds", "5", timeout=30)  # fmt: skip
    assert result.returncode == 1
    # every camera named with its host and why it failed; no camera ever ran
    assert "cctv_wall: 2 camera(s) failed to start:\n" in result.stderr
    assert "  127.0.0.1: SSHError: 127.0.0.1:1: cannot connect" in result.stderr
    assert "  127.0.0.1-2: SSHError: nobody@127.0.0.1:1: cannot connect" in result.stderr
    assert not _status(result.stdout, "group")


def test_cctv_wall_starts_ffmpeg_over_ssh_and_stops_it(
    sshd: SshdServer, tmp_path: pathlib.Path
) -> None:
    png = tmp_path / "wall.png"
    size = "336x256"
    target = f"{sshd.username}@{sshd.host}:{sshd.port}"
    result = _run("cctv_wall.py", target, target, "--input", "testsrc", "--size", size,
                  "--key", str(sshd.user_key), "--trust-unknown-hosts", "--seconds", "3",
                  "--snapshot", str(png))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^{re.escape(target)}: clock offset [+-]\d+\.\d+ ms", result.stdout, re.M)
    assert "trusting unknown host key" in result.stderr  # the opt-in is logged
    for camera in (sshd.host, f"{sshd.host}-2"):  # a host given twice: two cameras on it
        assert f"{camera}: testsrc 336x256@30 on {target}" in result.stdout
        assert "live" in _status(result.stdout, camera)[-1]
    picture = cv2.imread(str(png))
    assert picture is not None
    assert (picture.shape[1], picture.shape[0]) == Wall(["a", "b"], tile_size=(480, 270)).size
    assert not processes_with(f"size={size}:")


# -- speaker_view ------------------------------------------------------------------------


def test_speaker_view_finds_no_speaker_in_test_patterns(tmp_path: pathlib.Path) -> None:
    png = tmp_path / "speaker.png"
    port = free_tcp_port()
    size = "338x258"
    proc = _start("speaker_view.py", "--local", "--size", size, "--seconds", "4",
                  "--serve", f"127.0.0.1:{port}", "--snapshot", str(png))  # fmt: skip
    try:
        view = _wait_for(f"http://127.0.0.1:{port}/snapshot.jpg?output=speaker", proc)
        wall = _wait_for(f"http://127.0.0.1:{port}/snapshot.jpg?output=wall", proc)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == 0, stderr
    assert _jpeg_size(view) == (320, 320)
    assert _jpeg_size(wall) == Wall(["cam1", "cam2"], tile_size=(480, 270)).size
    lines = [line for line in stdout.splitlines() if line.startswith("speaker: ")]
    assert len(lines) >= 3
    for line in lines:
        if "waiting" not in line:
            assert "no speaker (no face in any camera)" in line
            assert "cam1 0.0000 (0 faces)" in line and "cam2 0.0000 (0 faces)" in line
    analysed = re.search(r"^sets analysed: (\d+) \(no speaker 100%\)$", stdout, re.M)
    assert analysed and int(analysed.group(1)) > 0
    assert f"snapshot: {png} (320x320)" in stdout
    picture = cv2.imread(str(png))
    assert picture is not None and picture.shape == (320, 320, 3)
    assert float(picture.mean()) < 60  # the dark "no speaker" picture, not a face
    assert not processes_with(f"size={size}:")


def test_speaker_view_searches_the_sub_streams_of_dual_stream_cameras() -> None:
    size = "342x262"
    proc = _start("speaker_view.py", "--local", "--size", size, "--sub", "160x120",
                  "--seconds", "4")  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=40)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == 0, stderr
    lines = [line for line in stdout.splitlines() if line.startswith("speaker: ")]
    analysed = [line for line in lines if "waiting" not in line]
    assert analysed and all(line.endswith("(searched: sub)") for line in analysed)
    assert not processes_with(f"size={size}:")
    bad = subprocess.run([sys.executable, str(EXAMPLES / "speaker_view.py"), "udp://:1", "--sub",
                          "160x120"], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert bad.returncode == 2 and "--sub goes with --local" in bad.stderr


# -- record_and_replay -------------------------------------------------------------------


def _summary_numbers(stdout: str) -> tuple[int, int, dict[str, tuple[int, int]]]:
    recorded = re.search(r"^sets recorded: (\d+) ", stdout, re.M)
    replayed = re.search(r"^sets replayed: (\d+)", stdout, re.M)
    assert recorded and replayed, stdout
    frames = {
        name: (int(indexed), int(decoded))
        for name, indexed, decoded in re.findall(r"^  (cam\d): (\d+) / (\d+)  ", stdout, re.M)
    }
    return int(recorded.group(1)), int(replayed.group(1)), frames


def test_record_and_replay_replays_every_recorded_set(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "rec"
    size = "340x260"
    result = _run("record_and_replay.py", "--local", "--size", size, "--seconds", "3",
                  "--segment-seconds", "1", "--directory", str(directory))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"to {directory}" in result.stdout
    recorded, replayed, frames = _summary_numbers(result.stdout)
    assert recorded == replayed > 10
    assert set(frames) == {"cam1", "cam2"}
    assert all(indexed == decoded > 10 for indexed, decoded in frames.values())
    assert "copy h264 340x260" in result.stdout
    skews = re.search(r"^median skew: recorded ([\d.]+) ms, replayed ([\d.]+) ms$",
                      result.stdout, re.M)  # fmt: skip
    assert skews and skews.group(1) == skews.group(2)
    assert (directory / "index.jsonl").is_file()
    for camera in ("cam1", "cam2"):
        segments = sorted((directory / camera).glob(f"{camera}-*.ts"))
        assert len(segments) >= 2  # a new file each second of video
        for segment in segments:
            listed = f"  {camera}/{segment.name}  {segment.stat().st_size} bytes"
            assert listed in result.stdout
    assert not processes_with(f"size={size}:")


def test_record_and_replay_stops_recording_on_sigterm_and_still_replays(
    tmp_path: pathlib.Path,
) -> None:
    size = "342x262"
    proc = _start("record_and_replay.py", "--local", "--size", size, "--seconds", "60",
                  "--directory", str(tmp_path / "rec"))  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        for line in proc.stdout:  # a line each second while it records
            if re.match(r"recording: [1-9]\d* sets", line):
                break
        stdout = _stop_by_sigterm(proc)
    finally:
        proc.kill()
        proc.wait(10)
    recorded, replayed, _ = _summary_numbers(stdout)
    assert recorded == replayed > 0
    assert not processes_with(f"size={size}:")


def test_record_and_replay_refuses_a_directory_holding_a_recording(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "index.jsonl").write_text("")
    size = "344x264"
    result = _run("record_and_replay.py", "--local", "--size", size,
                  "--directory", str(tmp_path), timeout=30)  # fmt: skip
    assert result.returncode == 1
    assert "holds a recording already" in result.stderr
    assert (tmp_path / "index.jsonl").read_text() == ""
    assert not processes_with(f"size={size}:")
