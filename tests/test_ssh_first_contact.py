"""First contact with an SSH host: what the user reads when a host is new, silent or away.

Against a real OpenSSH server (syncstream/testing/sshd.py) with an empty known_hosts file,
and real sockets for the hosts that do not answer.
"""

from __future__ import annotations

import pathlib
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from syncstream.config import SSHHost
from syncstream.errors import HostKeyError, SSHError
from syncstream.senders import free_udp_port
from syncstream.ssh import SSHSession
from syncstream.testing.sshd import SshdServer
from tests.conftest import free_tcp_port, ssh_host

COMMAND = [sys.executable, "-m", "syncstream"]


def _session_file(tmp_path: pathlib.Path, host: SSHHost, seconds: float = 2) -> pathlib.Path:
    fields = {
        "hostname": host.hostname,
        "port": host.port,
        "username": host.username,
        "key_filename": host.key_filename,
        "known_hosts_file": host.known_hosts_file,
        "connect_timeout": host.connect_timeout,
    }
    lines = [f"{key} = {value!r}".replace("'", '"') for key, value in fields.items() if value]
    path = tmp_path / "session.toml"
    path.write_text(
        "[hosts.lab]\n" + "\n".join(lines) + "\nallow_agent = false\nlook_for_keys = false\n\n"
        f'[[cameras]]\nname = "remote"\nhost = "lab"\nport = {free_udp_port()}\n'
        'receiver_host = "127.0.0.1"\n'
        'sender = { input = "testsrc2", size = [320, 240] }\n\n'
        f"[wall]\nenabled = false\n\n[run]\nseconds = {seconds}\n"
    )
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


@pytest.fixture
def empty_known_hosts(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "known_hosts"
    path.write_text("")
    return path


def test_an_unknown_host_key_says_how_to_trust_it_and_the_line_works(
    sshd: SshdServer, empty_known_hosts: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    host = ssh_host(sshd, known_hosts_file=str(empty_known_hosts))
    result = _run("run", str(_session_file(tmp_path, host)))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    scan = f"`ssh-keyscan -p {sshd.port} 127.0.0.1 >> {empty_known_hosts}`"
    assert scan in result.stderr
    assert f"ssh-ed25519 {sshd.host_key_fingerprint} is not known" in result.stderr
    assert f"syncstream: {host.display_name}: failed (HostKeyError)" in result.stderr.splitlines()
    # the known_hosts line offered, once added, is what the server's key is
    line = re.search(r"add this line to \S+: `([^`]+)`", result.stderr)
    assert line is not None and line.group(1).startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    empty_known_hosts.write_text(line.group(1) + "\n")
    with SSHSession(host) as session:
        assert session.run(["echo", "trusted"]).stdout == "trusted\n"


def test_a_host_connecting_gets_one_progress_line_on_stderr(
    sshd: SshdServer, tmp_path: pathlib.Path
) -> None:
    host = ssh_host(sshd)
    result = _run("run", str(_session_file(tmp_path, host, seconds=1)))
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("syncstream: ")]
    assert progress[0] == (
        f"syncstream: connecting to 1 SSH host(s) and measuring their clocks: {host.display_name}"
    )
    assert re.fullmatch(
        rf"syncstream: {re.escape(host.display_name)}: connected in \d+ ms, clock offset "
        r"[+-]\d+\.\d\d ms \(\+/- \d+\.\d\d ms\)",
        progress[1],
    )
    assert len(progress) == 2 and "SSH host(s)" not in result.stdout
    quiet = _run("-q", "run", str(_session_file(tmp_path, host, seconds=1)))
    assert quiet.returncode == 0 and "connected in" not in quiet.stderr


def test_a_refused_port_is_said_plainly_in_one_line(tmp_path: pathlib.Path) -> None:
    port = free_tcp_port()
    host = SSHHost(hostname="127.0.0.1", port=port, connect_timeout=2.0)
    result = _run("run", str(_session_file(tmp_path, host)))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        f"  remote: SSHError: 127.0.0.1:{port}: cannot connect: connection refused: nothing "
        f"listens on port {port}" in result.stderr.splitlines()
    )


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def test_a_port_that_accepts_and_stays_silent_is_named(silent_port: int) -> None:
    host = SSHHost(hostname="127.0.0.1", port=silent_port, connect_timeout=1.0)
    with pytest.raises(SSHError) as silent:
        SSHSession(host).connect()
    assert str(silent.value) == (
        f"127.0.0.1:{silent_port}: cannot connect: port {silent_port} accepted the connection "
        "but sent no SSH greeting within 1 s (not an SSH server, or overloaded)"
    )


def test_a_port_that_answers_but_not_as_ssh_is_named() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer_as_http() -> None:
            peer, _ = server.accept()
            with peer:
                peer.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        web = threading.Thread(target=answer_as_http, name="http-peer")
        web.start()
        host = SSHHost(hostname="127.0.0.1", port=port, connect_timeout=2.0)
        with pytest.raises(SSHError) as wrong:
            SSHSession(host).connect()
        web.join(5)
    assert str(wrong.value) == (
        f"127.0.0.1:{port}: cannot connect: port {port} answers, but not as an SSH server "
        "(no SSH greeting)"
    )


def test_the_unknown_host_error_is_a_host_key_error_naming_the_file(
    sshd: SshdServer, empty_known_hosts: pathlib.Path
) -> None:
    host = ssh_host(sshd, known_hosts_file=str(empty_known_hosts))
    with pytest.raises(HostKeyError) as refused:
        SSHSession(host).connect()
    message = str(refused.value)
    assert f">> {empty_known_hosts}`" in message
    assert "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" in message
