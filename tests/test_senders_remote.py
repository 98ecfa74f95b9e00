"""RemoteSender and SSHSession against a real OpenSSH server on 127.0.0.1.

The "remote" host is this machine, reached through a throwaway sshd: remote PIDs are
local PIDs, so the tests can look them up, kill them and list processes with ``ps``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DATA,
    Process,
    alive,
    free_tcp_port,
    free_udp_port,
    processes,
    processes_with,
    ssh_host,
    wait_until,
)

from syncstream import (
    AuthenticationFailed,
    Frame,
    HostKeyError,
    PreflightFailed,
    RemoteSender,
    RestartPolicy,
    SenderConfig,
    SenderError,
    SSHError,
    SSHHost,
    SSHSession,
    StreamClosed,
    SyncStreamError,
    VideoStream,
)
from syncstream.testing.sshd import SshdServer, ssh_agent, sshd_unavailable_reason, start_sshd

VIDEO = DATA / "testsrc_wallclock.ts"

#: How far a frame's capture time may be from our clock: same machine, a few frames of delay.
CAPTURE_SLACK = 3.0
#: Generous bound for things that should happen at once (frames, restarts, processes ending).
DEADLINE = 15.0


def _config(port: int, **overrides: Any) -> SenderConfig:
    """A small sender to udp://127.0.0.1:port; start failures are not what most tests check."""
    fields: dict[str, Any] = {
        "destination": f"udp://127.0.0.1:{port}",
        "size": (320, 240),
        "startup_wait": 0.2,
    }
    fields.update(overrides)
    return SenderConfig(**fields)


def _live_frames(stream: VideoStream, count: int) -> list[Frame]:
    """Read ``count`` frames, each stamped by the sender with a capture time near now."""
    frames: list[Frame] = []
    for _ in range(count):
        frame = stream.read(timeout=DEADLINE)
        now = time.time()
        assert frame.capture_time is not None, f"{stream.name}: frame without capture time"
        assert abs(now - frame.capture_time) < CAPTURE_SLACK, (now, frame.capture_time)
        frames.append(frame)
    return frames


def _frame_captured_after(stream: VideoStream, moment: float) -> Frame:
    """The first frame read whose capture time is later than ``moment`` (our clock)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        frame = stream.read(timeout=max(0.1, deadline - time.monotonic()))
        if frame.capture_time is not None and frame.capture_time > moment:
            return frame
        assert time.monotonic() < deadline, f"no frame captured after {moment}"


def _ffmpeg_processes(destination: str) -> list[Process]:
    """The ffmpeg processes (or shells starting one) whose arguments hold ``destination``."""
    return [p for p in processes_with(destination) if "ffmpeg" in p.command]


def _is_ffmpeg(pid: int, destination: str) -> bool:
    """True while ``pid`` runs ffmpeg itself (not the shell that execs it) to ``destination``."""
    argv = next((p.argv for p in processes() if p.pid == pid), ())
    return bool(argv) and Path(argv[0]).name == "ffmpeg" and any(destination in a for a in argv)


def _wait_for_ffmpeg(pid: int, destination: str) -> None:
    """Wait until the recorded PID is ffmpeg: the shell that reported it execs ffmpeg."""
    wait_until(lambda: _is_ffmpeg(pid, destination), 5.0, f"pid {pid} runs ffmpeg")


def _assert_no_ffmpeg_left(pid: int, destination: str) -> None:
    wait_until(lambda: not alive(pid), 5.0, f"remote ffmpeg pid {pid} gone")
    assert _ffmpeg_processes(destination) == []


def _known_hosts_state() -> tuple[bytes, int] | None:
    """Content and mtime of ~/.ssh/known_hosts, None when there is none."""
    path = Path.home() / ".ssh" / "known_hosts"
    try:
        return path.read_bytes(), path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _keygen(path: Path) -> str:
    """A fresh ed25519 key pair at ``path``; returns the public key's base64 blob."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path.with_suffix(".pub").read_text().split()[1]


def _error_in_thread(call: Callable[[], object], seconds: float) -> SyncStreamError | None:
    """Run ``call`` in a thread: the SyncStreamError it raised, or None; fail if it hangs."""
    outcome: list[SyncStreamError | None] = []

    def run() -> None:
        try:
            call()
        except SyncStreamError as exc:  # handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still blocked after {seconds:g} s")
    assert outcome, "raised something other than a SyncStreamError (see the thread's traceback)"
    return outcome[0]


@contextlib.contextmanager
def _silent_tcp_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never says anything."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in accepted:
            conn.close()


@pytest.fixture
def bare_sshd(tmp_path: Path) -> Iterator[SshdServer]:
    """An sshd whose sessions get a PATH holding only ``sh``: no ffmpeg there."""
    reason = sshd_unavailable_reason()
    if reason is not None:
        pytest.fail(f"{reason} (the test command installs openssh-server)")
    bin_dir = tmp_path / "bin without ffmpeg"
    bin_dir.mkdir()
    sh = shutil.which("sh")
    assert sh is not None
    (bin_dir / "sh").symlink_to(sh)
    with start_sshd(tmp_path / "nopath", session_path=str(bin_dir)) as server:
        yield server


# -- streaming ---------------------------------------------------------------------------


def test_frames_from_two_remote_senders(sshd: SshdServer) -> None:
    own_port, shared_port = free_udp_port(), free_udp_port()
    session = SSHSession(ssh_host(sshd))
    own = RemoteSender(ssh_host(sshd), _config(own_port))
    shared = RemoteSender(session, _config(shared_port))
    try:
        with (
            VideoStream(f"udp://127.0.0.1:{own_port}") as own_stream,
            VideoStream(f"udp://127.0.0.1:{shared_port}") as shared_stream,
        ):
            own.start()
            shared.start()
            own_frames = _live_frames(own_stream, 5)
            shared_frames = _live_frames(shared_stream, 5)
        assert all(f.image.shape == (240, 320, 3) for f in own_frames + shared_frames)
        assert own.is_running and shared.is_running
        assert own.pid != shared.pid
        assert own.host == shared.host == f"{sshd.username}@{sshd.host}:{sshd.port}"
        shared.close()
        # a session passed in belongs to the caller: stopping the sender leaves it open
        assert session.run(["echo", "still open"]).stdout == "still open\n"
    finally:
        own.close()
        shared.close()
        session.close()


# -- host keys ---------------------------------------------------------------------------


def test_unknown_host_is_refused_unless_trusted(
    sshd: SshdServer, caplog: pytest.LogCaptureFixture
) -> None:
    before = _known_hosts_state()
    with pytest.raises(HostKeyError) as refused:
        SSHSession(ssh_host(sshd, known_hosts_file=None)).connect()
    assert "ssh-keyscan" in str(refused.value)
    assert sshd.host_key_fingerprint in str(refused.value)

    with caplog.at_level(logging.WARNING, logger="syncstream.ssh"):
        with SSHSession(ssh_host(sshd, known_hosts_file=None, trust_unknown_hosts=True)) as ssh:
            assert ssh.run(["echo", "trusted"]).stdout == "trusted\n"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(sshd.host_key_fingerprint in message for message in warnings), warnings
    assert _known_hosts_state() == before


def test_changed_host_key_is_refused(sshd: SshdServer, tmp_path: Path) -> None:
    blob = _keygen(tmp_path / "impostor")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} ssh-ed25519 {blob}\n")
    with pytest.raises(HostKeyError, match="differs"):
        SSHSession(ssh_host(sshd, known_hosts_file=str(known_hosts))).connect()


# -- authentication ----------------------------------------------------------------------


def test_bad_key_and_wrong_password_are_refused(sshd: SshdServer) -> None:
    with pytest.raises(AuthenticationFailed) as refused:
        SSHSession(ssh_host(sshd, key_filename=str(sshd.stranger_key))).connect()
    assert isinstance(refused.value, PermissionError)
    assert isinstance(refused.value, SyncStreamError)
    assert str(sshd.stranger_key) in str(refused.value)  # says what was tried

    with pytest.raises(AuthenticationFailed, match="password"):
        SSHSession(ssh_host(sshd, key_filename=None, password="wrong")).connect()


def test_agent_authentication(
    sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ssh_agent(tmp_path / "agent", [sshd.user_key]) as sock:
        monkeypatch.setenv("SSH_AUTH_SOCK", sock)
        with SSHSession(ssh_host(sshd, key_filename=None, allow_agent=True)) as session:
            result = session.run(["echo", "hi"])
    assert result.returncode == 0
    assert result.stdout == "hi\n"


# -- connection errors -------------------------------------------------------------------


def test_closed_port_is_an_ssh_error(sshd: SshdServer) -> None:
    with pytest.raises(SSHError, match="cannot connect"):
        SSHSession(ssh_host(sshd, port=free_tcp_port())).connect()


def test_server_without_banner_times_out(sshd: SshdServer) -> None:
    with _silent_tcp_server() as port:
        session = SSHSession(ssh_host(sshd, port=port, connect_timeout=1))
        error = _error_in_thread(session.connect, DEADLINE)
    assert isinstance(error, SSHError), error
    assert not isinstance(error, (HostKeyError, AuthenticationFailed))


def _blackhole_host(port: int) -> SSHHost:
    """A host whose connect would only end by its (long) timeout."""
    return SSHHost(
        hostname="127.0.0.1", port=port, connect_timeout=25.0, allow_agent=False,
        look_for_keys=False, trust_unknown_hosts=True,
    )  # fmt: skip


def _connect_in_thread(session: SSHSession) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            session.connect()
        except SSHError as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    return thread, errors


def _syn_sent_to(port: int) -> bool:
    """Whether a TCP connect to 127.0.0.1:``port`` waits for the peer's SYN-ACK."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return any(row[2] == f"0100007F:{port:04X}" and row[3] == "02" for row in rows)


def test_close_during_the_ssh_handshake_ends_the_connect() -> None:
    """A peer that accepts and never speaks: close() shuts the socket, connect() fails."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(DEADLINE)
        session = SSHSession(_blackhole_host(listener.getsockname()[1]))
        thread, errors = _connect_in_thread(session)
        peer, _ = listener.accept()  # the TCP connect is done: SSH waits for the banner
        with peer:
            session.close()
            wait_until(lambda: not thread.is_alive(), DEADLINE, "connect ends after close")
    assert len(errors) == 1 and "closed while connecting" in str(errors[0]), errors


def test_close_during_the_tcp_connect_ends_the_connect() -> None:
    """A listener whose backlog is full drops SYNs: close() ends the connect in SYN-SENT."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # holds one connection, never accepted
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        session = SSHSession(_blackhole_host(port))
        thread, errors = _connect_in_thread(session)
        wait_until(lambda: _syn_sent_to(port), DEADLINE, "the connect waits in SYN-SENT")
        session.close()
        wait_until(lambda: not thread.is_alive(), DEADLINE, "connect ends after close")
    assert len(errors) == 1 and "closed while connecting" in str(errors[0]), errors


# -- preflight ---------------------------------------------------------------------------


def test_missing_ffmpeg_fails_preflight(bare_sshd: SshdServer) -> None:
    host = ssh_host(bare_sshd)
    with SSHSession(host) as session:  # the check itself can run: sh is there
        assert session.run(["sh", "-c", "echo sh works"]).stdout == "sh works\n"
    sender = RemoteSender(host, _config(free_udp_port()))
    try:
        with pytest.raises(PreflightFailed) as failed:
            sender.start()
    finally:
        sender.close()
    message = str(failed.value)
    assert f"{bare_sshd.host}:{bare_sshd.port}" in message
    assert "ffmpeg" in message
    assert failed.value.returncode not in (None, 0)


def test_ffmpeg_path_that_does_not_exist_fails_preflight(sshd: SshdServer) -> None:
    sender = RemoteSender(ssh_host(sshd), _config(free_udp_port(), ffmpeg="/opt/nope/ffmpeg"))
    try:
        with pytest.raises(PreflightFailed, match="/opt/nope/ffmpeg") as failed:
            sender.start()
    finally:
        sender.close()
    assert f"{sshd.host}:{sshd.port}" in str(failed.value)
    assert failed.value.returncode not in (None, 0)
    assert not sender.is_running


def test_shell_metacharacters_in_device_name_are_not_run(sshd: SshdServer, tmp_path: Path) -> None:
    marker = tmp_path / "injected"
    sender = RemoteSender(
        ssh_host(sshd), _config(free_udp_port(), input=f"/dev/video0; touch {marker}")
    )
    try:
        with pytest.raises(PreflightFailed, match="no video device"):
            sender.start()
    finally:
        sender.close()
    assert not marker.exists()


def test_file_name_full_of_shell_metacharacters_streams(sshd: SshdServer, tmp_path: Path) -> None:
    ran_x, ran_y = tmp_path / "ran-x", tmp_path / "ran-y"
    # The absolute paths inside the name make it span directories: create them.
    name = f"cam $(touch {ran_x}); `touch {ran_y}` 'q' \"dq\" * $HOME.ts"
    video = tmp_path / name
    assert str(video) == f"{tmp_path}/{name}"
    video.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(VIDEO, video)
    port = free_udp_port()
    with VideoStream(f"udp://127.0.0.1:{port}") as stream:
        with RemoteSender(ssh_host(sshd), _config(port, input=str(video))) as sender:
            assert sender.is_running
            _live_frames(stream, 3)
    assert not ran_x.exists()
    assert not ran_y.exists()


# -- stopping ----------------------------------------------------------------------------


def test_stop_leaves_no_ffmpeg(sshd: SshdServer) -> None:
    port = free_udp_port()
    destination = f"udp://127.0.0.1:{port}"
    sender = RemoteSender(ssh_host(sshd), _config(port))
    try:
        sender.start()
        pid = sender.pid
        assert pid is not None
        _wait_for_ffmpeg(pid, destination)
        assert len(_ffmpeg_processes(destination)) == 1
        sender.close()
        _assert_no_ffmpeg_left(pid, destination)
        assert not sender.is_running
        assert sender.pid is None
        sender.close()  # idempotent
        with pytest.raises(StreamClosed):
            sender.start()
    finally:
        sender.close()

    port = free_udp_port()
    destination = f"udp://127.0.0.1:{port}"
    with RemoteSender(ssh_host(sshd), _config(port)) as sender:
        pid = sender.pid
        assert pid is not None and alive(pid)
    _assert_no_ffmpeg_left(pid, destination)


_RECEIVER = """
import sys, time
from syncstream import RemoteSender, SenderConfig, SSHHost
host = SSHHost.model_validate_json(sys.argv[1])
config = SenderConfig.model_validate_json(sys.argv[2])
sender = RemoteSender(host, config).start()
print(sender.pid, flush=True)
time.sleep(120)
"""


def test_receiver_killed_leaves_no_ffmpeg(sshd: SshdServer) -> None:
    port = free_udp_port()
    destination = f"udp://127.0.0.1:{port}"
    config = _config(port)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _RECEIVER,
            ssh_host(sshd).model_dump_json(),
            config.model_dump_json(),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = 0
    try:
        assert child.stdout is not None and child.stderr is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)
        line = child.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            child.kill()
            pytest.fail(f"receiver did not report a pid: {line!r} {child.stderr.read()}")
        pid = int(line)
        _wait_for_ffmpeg(pid, destination)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # sshd hangs up the terminal when the connection drops: ffmpeg gets SIGHUP
        _assert_no_ffmpeg_left(pid, destination)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        if pid and _is_ffmpeg(pid, destination):
            os.kill(pid, signal.SIGKILL)


# -- restarts and start failures ---------------------------------------------------------


def test_killed_ffmpeg_is_restarted(sshd: SshdServer) -> None:
    port = free_udp_port()
    destination = f"udp://127.0.0.1:{port}"
    config = _config(port, restart=RestartPolicy(delay=0.2))
    with VideoStream(destination) as stream:
        with RemoteSender(ssh_host(sshd), config) as sender:
            _live_frames(stream, 2)
            first = sender.pid
            assert first is not None
            _wait_for_ffmpeg(first, destination)
            os.kill(first, signal.SIGKILL)
            wait_until(lambda: sender.restarts == 1, DEADLINE, "one restart")
            restarted_at = time.time()
            second = sender.pid
            assert second is not None and second != first
            _wait_for_ffmpeg(second, destination)
            assert not alive(first)
            # the same receiver keeps going with frames of the new process
            frame = _frame_captured_after(stream, restarted_at)
            assert frame.capture_time is not None
            assert abs(time.time() - frame.capture_time) < CAPTURE_SLACK
            assert sender.is_running
            assert sender.restarts == 1
            assert sender.error is None
    _assert_no_ffmpeg_left(second, destination)


def test_killed_ffmpeg_without_restart_gives_up(sshd: SshdServer) -> None:
    port = free_udp_port()
    config = _config(port, restart=RestartPolicy(enabled=False))
    with RemoteSender(ssh_host(sshd), config) as sender:
        pid = sender.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: sender.error is not None, DEADLINE, "sender gives up")
        assert isinstance(sender.error, SenderError)
        assert not sender.is_running
        assert sender.returncode is not None
        assert sender.pid is None
        assert sender.restarts == 0


def test_input_that_is_not_video_fails_at_start(sshd: SshdServer, tmp_path: Path) -> None:
    # not .txt: ffmpeg's tty demuxer plays text files with that extension as video
    text = tmp_path / "not-a-video.ts"
    text.write_text("this is not a video\n" * 50)
    # startup_wait is how long start() watches ffmpeg; it returns as soon as ffmpeg exits
    sender = RemoteSender(
        ssh_host(sshd), _config(free_udp_port(), input=str(text), startup_wait=10.0)
    )
    try:
        with pytest.raises(SenderError) as failed:
            sender.start()
    finally:
        sender.close()
    assert not isinstance(failed.value, PreflightFailed)
    assert failed.value.returncode is not None
    tail = failed.value.stderr_tail
    assert any("Invalid data" in line for line in tail), tail
    assert not any("\x1b" in line for line in tail), tail  # no terminal colour codes
    assert f"{sshd.host}:{sshd.port}" in str(failed.value)
    assert not sender.is_running


#: 8 MB on one line of stderr, then a short line; the exit status says all was written.
FLOOD = "{ head -c 8000000 /dev/zero | tr '\\0' x; echo; echo last words; } >&2; exit 3"


def test_output_without_newlines_is_held_and_kept_bounded(
    sshd: SshdServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A remote program writing 8 MB without a newline: the reader holds 64 KiB of it at
    most (the rest of the line is dropped, not re-split), stderr_tail and the logs get
    the line cut to 1000 characters."""
    caplog.set_level(logging.DEBUG, logger="syncstream")
    lines: list[str] = []
    with SSHSession(ssh_host(sshd)) as session:
        process = session.start_process(["sh", "-c", FLOOD], lines.append)
        assert process.wait(DEADLINE) == 3
        process.release()
    assert process.output_high_water <= 64 * 1024
    assert lines[-1] == "last words"
    assert len(lines) == 2 and lines[0].endswith(" [... line cut at 65536 bytes]")
    assert len(lines[0]) < 64 * 1024 + 40

    sender = RemoteSender(ssh_host(sshd), ["sh", "-c", FLOOD], name="flood")
    with sender:
        wait_until(lambda: sender.error is not None, DEADLINE, "the sender gives up")
    tail = sender.stderr_tail
    assert tail[-1] == "last words"
    assert tail[0].startswith("x" * 1000) and tail[0].endswith(" more characters]")
    assert sum(len(line) for line in tail) < 2200
    assert sender.error is not None and len(str(sender.error)) < 3000
    assert any("exited with status 3" in r.getMessage() for r in caplog.records)
    assert max(len(r.getMessage()) for r in caplog.records) < 3000


# -- clocks ------------------------------------------------------------------------------


def test_clock_offset_of_loopback_host_is_zero(sshd: SshdServer) -> None:
    with SSHSession(ssh_host(sshd)) as session:
        measured = session.measure_clock_offset(rounds=8)
    assert measured.samples == 8
    assert measured.uncertainty > 0
    assert measured.rtt == pytest.approx(2 * measured.uncertainty)
    # same machine, same clock: the true offset is 0, within the measured bound
    assert abs(measured.offset) <= measured.uncertainty + 0.005

    sender = RemoteSender(ssh_host(sshd), _config(free_udp_port()))
    try:
        via_sender = sender.clock_offset(rounds=3)
    finally:
        sender.close()
    assert via_sender.samples == 3
    assert abs(via_sender.offset) <= via_sender.uncertainty + 0.005
