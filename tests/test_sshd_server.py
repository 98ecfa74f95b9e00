"""Self-tests for syncstream.testing.sshd: the throwaway sshd and ssh-agent really work."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from syncstream.testing import sshd as sshd_server
from syncstream.testing.sshd import SshdServer, ssh_agent, sshd_unavailable_reason, start_sshd

_REASON = sshd_unavailable_reason()
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdServer]:
    """A running server with default settings."""
    with start_sshd(tmp_path / "sshd") as server:
        yield server


def run_ssh(server: SshdServer, key: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` on ``server`` with the OpenSSH client, authenticating with ``key`` only."""
    return subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(key),
            "-o",
            f"UserKnownHostsFile={server.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-p",
            str(server.port),
            f"{server.username}@{server.host}",
            command,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def paramiko_exec(server: SshdServer, command: str, **connect_kwargs: Any) -> str:
    """Run ``command`` through paramiko, checking the host key strictly; return its stdout."""
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(server.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            server.host,
            port=server.port,
            username=server.username,
            timeout=10,
            banner_timeout=10,
            auth_timeout=10,
            **connect_kwargs,
        )
        _stdin, stdout, _stderr = client.exec_command(command, timeout=10)
        out = stdout.read().decode()
        assert stdout.channel.recv_exit_status() == 0
        return out
    finally:
        client.close()


def test_server_files(sshd: SshdServer) -> None:
    assert sshd.host == "127.0.0.1"
    line = sshd.known_hosts.read_text()
    assert line.count("\n") == 1
    assert line.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAA")
    listed = subprocess.run(
        ["ssh-keygen", "-lf", str(sshd.known_hosts)],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    assert sshd.host_key_fingerprint.startswith("SHA256:")
    assert listed.split()[1] == sshd.host_key_fingerprint
    assert (sshd.workdir / "authorized_keys").stat().st_mode & 0o777 == 0o600
    assert f"Server listening on 127.0.0.1 port {sshd.port}." in sshd.log_text()


def test_openssh_client_with_user_key(sshd: SshdServer) -> None:
    result = run_ssh(sshd, sshd.user_key, "echo ok")
    assert result.returncode == 0, result.stderr + sshd.log_text()
    assert result.stdout == "ok\n"
    assert "Accepted publickey" in sshd.log_text()


def test_stranger_key_is_refused(sshd: SshdServer) -> None:
    result = run_ssh(sshd, sshd.stranger_key, "echo ok")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Permission denied" in result.stderr


def test_session_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "remote bin"
    bin_dir.mkdir()
    with start_sshd(tmp_path / "sshd", session_path=str(bin_dir)) as server:
        result = run_ssh(server, server.user_key, 'echo "$PATH"')
        assert result.returncode == 0, result.stderr + server.log_text()
        assert result.stdout == f"{bin_dir}\n"
        out = paramiko_exec(
            server,
            'echo "$PATH"',
            key_filename=str(server.user_key),
            allow_agent=False,
            look_for_keys=False,
        )
        assert out == f"{bin_dir}\n"


def test_paramiko_with_key_file(sshd: SshdServer) -> None:
    out = paramiko_exec(
        sshd,
        "echo hi",
        key_filename=str(sshd.user_key),
        allow_agent=False,
        look_for_keys=False,
    )
    assert out.strip() == "hi"


def test_paramiko_rejects_unknown_host_key(sshd: SshdServer, tmp_path: Path) -> None:
    client = paramiko.SSHClient()
    other = tmp_path / "other_known_hosts"
    other.write_text(sshd.known_hosts.read_text().replace(f":{sshd.port} ", ":1 "))
    client.load_host_keys(str(other))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
            client.connect(
                sshd.host,
                port=sshd.port,
                username=sshd.username,
                key_filename=str(sshd.user_key),
                allow_agent=False,
                look_for_keys=False,
                timeout=10,
            )
    finally:
        client.close()


def test_paramiko_through_agent(
    sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ssh_agent(tmp_path / "agent", [sshd.user_key]) as sock:
        assert Path(sock).is_socket()
        monkeypatch.setenv("SSH_AUTH_SOCK", sock)
        out = paramiko_exec(sshd, "echo hi", allow_agent=True, look_for_keys=False)
        assert out.strip() == "hi"
    assert not Path(sock).exists()


def test_agent_socket_stays_short(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with ssh_agent(deep, []) as sock:
        assert len(sock.encode()) <= 100
        assert Path(sock).is_socket()
        assert Path(sock).parent.name.startswith("ss-agent-")
    assert not Path(sock).parent.exists()


def test_server_stops(tmp_path: Path) -> None:
    with start_sshd(tmp_path / "sshd") as server:
        port = server.port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_retries_when_port_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        real_free_port = sshd_server._free_port
        handed_out: list[int] = []

        def taken_first(host: str) -> int:
            handed_out.append(taken if not handed_out else real_free_port(host))
            return handed_out[-1]

        monkeypatch.setattr(sshd_server, "_free_port", taken_first)
        with start_sshd(tmp_path / "sshd") as server:
            assert handed_out == [taken, server.port]
            assert "Address already in use" in server.log_text()
            assert run_ssh(server, server.user_key, "echo ok").stdout == "ok\n"


def test_gives_up_when_port_always_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        monkeypatch.setattr(sshd_server, "_free_port", lambda host: taken)
        with pytest.raises(RuntimeError, match="Address already in use"):
            with start_sshd(tmp_path / "sshd"):
                pass
