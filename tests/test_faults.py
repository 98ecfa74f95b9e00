"""Faults: senders killed and restarted, processors that hang, a receiver killed outright."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from syncstream import Camera, FrameSet, SenderConfig, StreamGroup
from syncstream.senders import free_udp_port
from syncstream.testing.sshd import SshdServer
from tests.conftest import SenderFactory, ssh_host

SMALL = SenderConfig(input="testsrc", size=(320, 240), fps=30)


def _processes_with(text: str) -> list[str]:
    ps = subprocess.run(
        ["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True
    )
    return [line for line in ps.stdout.splitlines() if text in line and " ps -ww " not in line]


def _wait_until(condition: object, timeout: float, what: str) -> float:
    """Poll ``condition()`` until true; the seconds it took."""
    start = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.mark.timeout(60)
def test_a_sender_killed_and_started_again_is_back_within_3_s(udp_sender: SenderFactory) -> None:
    """The camera's sender dies and comes back: the other camera is delivered meanwhile."""
    port_a, port_b = free_udp_port(), free_udp_port()
    udp_sender(port_a)
    victim = udp_sender(port_b)
    cams = [
        Camera(name="a", url=f"udp://127.0.0.1:{port_a}"),
        Camera(name="b", url=f"udp://127.0.0.1:{port_b}", stall_timeout=1.0),
    ]
    with StreamGroup(cams, max_wait=0.3) as group:
        _wait_until(lambda: not group.read(timeout=10).missing, 15, "first complete set")
        victim.stop()  # the camera goes away
        down: list[FrameSet] = []
        down_until = time.monotonic() + 2.0
        while time.monotonic() < down_until:
            down.append(group.read(timeout=2))
        udp_sender(port_b)  # and comes back: a new ffmpeg on the same port
        back = time.monotonic()

        def fresh() -> bool:
            fs = group.read(timeout=3)
            return "b" in fs and fs["b"].capture_time is not None and fs["b"].capture_time > back

        took = _wait_until(fresh, 3.0, "fresh frames of the restarted camera")
    later = [fs for fs in down if fs.time > down[0].time + 0.6]
    assert len(later) > 20  # about 30 sets/s of camera a alone
    assert all(fs.missing == ("b",) and "a" in fs for fs in later)
    assert took < 3.0


@pytest.mark.timeout(60)
def test_a_sender_group_restarts_a_killed_ffmpeg() -> None:
    """An ffmpeg started by the group and killed (-9) is restarted; frames come back."""
    cams = [
        Camera(name="a", sender=SMALL, port=free_udp_port()),
        Camera(name="b", sender=SMALL, port=free_udp_port(), stall_timeout=1.0),
    ]
    with StreamGroup(cams, max_wait=0.3) as group:
        group.read(timeout=15)
        sender = group.senders["b"]
        pid = sender.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.time()
        _wait_until(lambda: sender.restarts == 1 and sender.is_running, 5, "restart")

        def fresh() -> bool:
            fs = group.read(timeout=3)
            return "b" in fs and fs["b"].capture_time is not None and fs["b"].capture_time > killed

        took = _wait_until(fresh, 5.0, "fresh frames after the restart")
        assert group.stats.cameras["b"].sender_restarts == 1
    assert took < 3.0 + sender.restart_policy.delay


@pytest.mark.timeout(60)
def test_a_hanging_processor_stops_neither_the_others_nor_close() -> None:
    release = threading.Event()
    counted: list[int] = []

    def hangs(fs: FrameSet) -> None:
        release.wait(60)  # a processor stuck on I/O that never returns

    def raises(fs: FrameSet) -> None:
        raise RuntimeError("broken")

    with StreamGroup([Camera(name="a", sender=SMALL, port=free_udp_port())]) as group:
        hung = group.add_processor(hangs, name="hangs")
        broken = group.add_processor(raises, name="raises")
        group.add_processor(lambda fs: counted.append(fs.seq), name="counts")
        sets = [group.read(timeout=10) for _ in range(45)]
        assert hung.stats.processed == 0 and hung.stats.skipped > 30
        assert broken.stats.errors > 30
        closing = time.monotonic()
    assert time.monotonic() - closing < 10  # close() gives up on the stuck worker
    release.set()
    assert len(counted) > 30 and counted == sorted(counted)
    assert sets[-1].seq - sets[0].seq >= 44


@pytest.mark.timeout(90)
def test_a_killed_receiver_leaves_no_sender_behind(
    sshd: SshdServer, tmp_path: pathlib.Path
) -> None:
    """SIGKILL to `syncstream run`: the remote ffmpeg dies with the SSH connection."""
    host = ssh_host(sshd)
    port = free_udp_port()
    config = tmp_path / "session.toml"
    config.write_text(
        f'[hosts.lab]\nhostname = "{host.hostname}"\nport = {host.port}\n'
        f'username = "{host.username}"\nkey_filename = "{host.key_filename}"\n'
        f'known_hosts_file = "{host.known_hosts_file}"\nallow_agent = false\n'
        "look_for_keys = false\n\n"
        f'[[cameras]]\nname = "remote"\nhost = "lab"\nport = {port}\n'
        'receiver_host = "127.0.0.1"\nsender = { input = "testsrc2", size = [336, 256] }\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncstream", "run", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    marker = f"udp://127.0.0.1:{port}"
    try:
        _wait_until(lambda: any("ffmpeg" in p for p in _processes_with(marker)), 30, "sender")
        time.sleep(1)
        proc.kill()
        proc.wait(10)
        took = _wait_until(lambda: not _processes_with(marker), 10, "remote ffmpeg gone")
    finally:
        proc.kill()
    assert took < 10


@pytest.mark.timeout(60)
def test_a_killed_receiver_leaves_no_local_sender_behind() -> None:
    """SIGKILL to the demo: its local ffmpeg senders get SIGTERM (parent death) and end."""
    size = "342x262"
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncstream", "demo", "--cameras", "3", "--seconds", "60",
         "--size", size, "--no-snapshot"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    marker = f"size={size}:"
    try:
        _wait_until(lambda: len(_processes_with(marker)) == 3, 30, "three senders")
        proc.kill()
        proc.wait(10)
        took = _wait_until(lambda: not _processes_with(marker), 5, "local ffmpeg gone")
    finally:
        proc.kill()
    assert took < 5
