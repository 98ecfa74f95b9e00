"""Faults: senders killed and restarted, processors that hang, a receiver killed outright."""

from __future__ import annotations

import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from syncstream import (
    Camera,
    FrameSet,
    RestartPolicy,
    SenderConfig,
    StreamGroup,
    VideoStream,
)
from syncstream.senders import free_udp_port
from syncstream.testing.relay import ImpairmentRelay
from syncstream.testing.sshd import SshdServer
from tests.conftest import (
    Process,
    SenderFactory,
    descendants,
    processes_with,
    ssh_host,
    wait_until,
)

SMALL = SenderConfig(input="testsrc", size=(320, 240), fps=30)


@pytest.mark.timeout(60)
def test_a_sender_killed_and_started_again_is_read_again(udp_sender: SenderFactory) -> None:
    """The camera's sender dies and comes back: the other camera is delivered meanwhile, and
    the stream goes stale, reopens and delivers the new sender's frames.

    How long the camera is dark: ``benchmarks/health.py`` (a sender replaced on its port).
    """
    port_a, port_b = free_udp_port(), free_udp_port()
    udp_sender(port_a)
    victim = udp_sender(port_b)
    cams = [
        Camera(name="a", url=f"udp://127.0.0.1:{port_a}"),
        Camera(name="b", url=f"udp://127.0.0.1:{port_b}", stall_timeout=1.0),
    ]
    with StreamGroup(cams, max_wait=0.3) as group:
        wait_until(lambda: not group.read(timeout=10).missing, 15, "first complete set")
        victim.close()  # the camera goes away
        down: list[FrameSet] = []
        down_until = time.monotonic() + 2.0
        while time.monotonic() < down_until:
            down.append(group.read(timeout=2))
        udp_sender(port_b)  # and comes back: a new ffmpeg on the same port
        back = time.time()  # capture times are on our wall clock

        def fresh() -> bool:
            fs = group.read(timeout=3)
            return "b" in fs and fs["b"].capture_time is not None and fs["b"].capture_time > back

        wait_until(fresh, 15, "fresh frames of the restarted camera")
        b = group.stats.cameras["b"]
    later = [fs for fs in down if fs.time > down[0].time + 0.6]
    assert len(later) > 20  # about 30 sets/s of camera a alone
    assert all(fs.missing == ("b",) and "a" in fs for fs in later)
    assert b.stream.state.value == "live" and b.stream.reconnects >= 1  # stale, reopened


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
        wait_until(lambda: sender.restarts == 1 and sender.is_running, 5, "restart")

        def fresh() -> bool:
            fs = group.read(timeout=3)
            return "b" in fs and fs["b"].capture_time is not None and fs["b"].capture_time > killed

        wait_until(fresh, 15, "fresh frames after the restart")
        assert group.stats.cameras["b"].sender_restarts == 1  # one kill, one restart
        assert sender.restarts == 1 and sender.pid not in (None, pid)


@pytest.mark.timeout(60)
def test_a_hanging_processor_stops_neither_the_others_nor_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
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
        caplog.set_level(logging.WARNING, logger="syncstream")
    # close() returned: it gave up on the stuck worker, and said so
    assert "processor hangs: still running after" in caplog.text
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
        # ffmpeg itself, not the shell that execs it: the sender runs
        wait_until(lambda: any(_is_ffmpeg(p) for p in processes_with(marker)), 30, "sender")
        proc.kill()
        proc.wait(10)
        wait_until(lambda: not processes_with(marker), 10, "remote ffmpeg gone")
    finally:
        proc.kill()


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
        wait_until(lambda: len(processes_with(marker)) == 3, 30, "three senders")
        proc.kill()
        proc.wait(10)
        wait_until(lambda: not processes_with(marker), 5, "local ffmpeg gone")
    finally:
        proc.kill()


def _is_ffmpeg(process: Process) -> bool:
    return bool(process.argv) and pathlib.Path(process.argv[0]).name == "ffmpeg"


@pytest.mark.timeout(60)
def test_a_remote_ffmpeg_that_fails_is_reported_and_restarted_with_backoff(
    sshd: SshdServer, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    starts = tmp_path / "starts"
    failing = tmp_path / "ffmpeg-that-fails"
    failing.write_text(
        "#!/bin/sh\n"
        f"date +%s.%N >> {starts}\n"
        'timeout 1 ffmpeg "$@"\n'
        'echo "camera unplugged: /dev/video0: Input/output error" >&2\n'
        "exit 1\n"
    )
    failing.chmod(0o755)
    config = SMALL.model_copy(
        update={"ffmpeg": str(failing), "restart": RestartPolicy(delay=0.3, max_delay=5.0)}
    )
    cams = [
        Camera(name="remote", sender=config, host=ssh_host(sshd), port=free_udp_port(),
               receiver_host="127.0.0.1", stall_timeout=1.0),
    ]  # fmt: skip
    caplog.set_level(logging.INFO, logger="syncstream.senders")
    with StreamGroup(cams) as group:
        group.read(timeout=10)
        sender = group.senders["remote"]
        wait_until(lambda: sender.restarts >= 3, 20, "three restarts")
        assert group.stats.cameras["remote"].sender_restarts >= 3
        assert any("camera unplugged" in line for line in sender.stderr_tail)
    assert len(starts.read_text().split()) >= 4  # started, and restarted three times
    waits = [
        float(m.group(1))
        for m in re.finditer(r"remote: restarting ffmpeg on \S+ in ([0-9.]+) s", caplog.text)
    ]
    assert waits[:3] == [0.3, 0.6, 1.2]  # the wait doubles from RestartPolicy.delay
    assert "exited with status 1: " in caplog.text and "camera unplugged" in caplog.text


@pytest.mark.timeout(60)
def test_an_ssh_host_that_goes_away_leaves_the_other_cameras_running(
    sshd: SshdServer, caplog: pytest.LogCaptureFixture
) -> None:
    remote = Camera(name="remote", sender=SMALL, host=ssh_host(sshd, connect_timeout=2.0),
                    port=free_udp_port(), receiver_host="127.0.0.1", stall_timeout=1.0)  # fmt: skip
    local = Camera(name="local", sender=SMALL, port=free_udp_port())
    listener = [p.pid for p in processes_with(str(sshd.workdir / "sshd_config"))]
    assert len(listener) == 1
    caplog.set_level(logging.WARNING)
    with StreamGroup([local, remote], max_wait=0.3) as group:
        wait_until(lambda: not group.read(timeout=10).missing, 15, "both cameras")
        for pid in [*(p.pid for p in descendants(listener[0])), listener[0]]:  # the host is gone
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: group.read(timeout=3).missing == ("remote",), 5, "remote missing")
        later = [group.read(timeout=3) for _ in range(30)]
        assert all("local" in fs and fs.missing == ("remote",) for fs in later)
        assert group.stats.cameras["remote"].sender_running is False
    # close() returned (the test's timeout bounds it); nothing of the remote camera is left
    assert "restart on" in caplog.text and "failed" in caplog.text  # it keeps trying
    assert not processes_with(f"udp://127.0.0.1:{remote.port}")


@pytest.mark.timeout(60)
def test_loss_and_reordering_are_counted_and_frames_keep_coming(
    udp_sender: SenderFactory,
) -> None:
    """10 % of the datagrams lost and frames reordered: no crash, errors counted, frames flow."""
    port = free_udp_port()
    with ImpairmentRelay(
        f"udp://127.0.0.1:{port}", delay=0.02, jitter=0.05, loss=0.10, keep_order=False, seed=7
    ) as relay:
        udp_sender(relay.port)
        with VideoStream(f"udp://127.0.0.1:{port}", stall_timeout=3.0) as stream:
            stream.read(timeout=10)
            start = stream.stats.decoded
            end = time.monotonic() + 5
            while time.monotonic() < end:
                stream.read(timeout=3)  # never more than 3 s without a frame
            stats = stream.stats
        impaired = relay.stats
    assert 0.07 < impaired.lost / impaired.received < 0.13
    assert impaired.reordered > 0
    assert stats.decoded - start > 30  # pictures keep coming through the damage
    assert stats.decode_errors > 0 and stats.state.value in ("live", "closed")
    assert stats.reconnects == 0
