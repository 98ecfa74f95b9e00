"""A throwaway OpenSSH server (and ssh-agent) on 127.0.0.1, for tests of remote senders.

Everything -- host key, user keys, ``authorized_keys``, ``known_hosts``,
``sshd_config``, pid file and log -- lives in a directory the caller passes
in; the machine's own SSH configuration (``/etc/ssh``, ``~/.ssh``) is neither
read nor written.  The server runs as the current user and only lets that
user in, with public-key (or password) authentication.

Example::

    with start_sshd(tmp_path) as server:
        subprocess.run(
            ["ssh", "-F", "/dev/null", "-i", str(server.user_key),
             "-o", f"UserKnownHostsFile={server.known_hosts}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             "-p", str(server.port), f"{server.username}@{server.host}", "echo ok"],
            check=True,
        )

Notes on this machine's OpenSSH (9.2, Debian 12):

* as root, sshd refuses to start without its privilege-separation directory
  ``/run/sshd`` (``Missing privilege separation directory``); it is created
  if missing, the one thing outside the work directory that is touched;
* ``SetEnv PATH=...`` in ``sshd_config`` does reach the session, but the
  user's shell runs its rc files *before* the command -- bash sources
  ``~/.bashrc`` for commands run by sshd -- and those may rewrite PATH (root's
  ``~/.bashrc`` here prepends pyenv and cargo directories).  So with
  ``session_path`` the session's ``HOME`` is also pointed at an empty
  directory in the work directory, and the user's rc files are not found.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SSHD", "SshdServer", "ssh_agent", "sshd_unavailable_reason", "start_sshd"]

#: The OpenSSH server binary.  sshd must be started by absolute path (it
#: re-executes itself for every connection).
SSHD = "/usr/sbin/sshd"

#: Interval between readiness polls, and the time a server/agent gets to come up.
_POLL_INTERVAL = 0.05
_START_TIMEOUT = 10.0
#: How many ports are tried when sshd exits early (e.g. the port was taken).
_START_ATTEMPTS = 3
#: Time sshd / ssh-agent get to exit after SIGTERM before they are killed.
_STOP_TIMEOUT = 5.0
#: Longest agent socket path used as is; a Unix socket path must fit in 108
#: bytes (104 on BSD/macOS), with some room to spare.
_MAX_SOCKET_PATH = 100
#: Files start_sshd creates in its work directory.
_SSHD_FILES = (
    "host_ed25519",
    "user_ed25519",
    "stranger_ed25519",
    "authorized_keys",
    "known_hosts",
    "sshd_config",
    "sshd.log",
)


@dataclass(frozen=True)
class SshdServer:
    """A running sshd started by :func:`start_sshd`, and how to reach it."""

    #: Address the server listens on (always ``127.0.0.1``).
    host: str
    #: TCP port the server listens on.
    port: int
    #: The only user allowed in: the user running the tests.
    username: str
    #: Private ed25519 key (no passphrase) listed in the server's authorized_keys.
    user_key: Path
    #: Private ed25519 key (no passphrase) that the server does *not* accept.
    stranger_key: Path
    #: known_hosts file holding exactly ``[127.0.0.1]:PORT ssh-ed25519 AAAA...``.
    known_hosts: Path
    #: The host key's fingerprint as ``ssh-keygen -lf`` prints it: ``SHA256:...``.
    host_key_fingerprint: str
    #: sshd's log (its stderr, LogLevel VERBOSE), including per-connection children.
    log_path: Path
    #: Directory holding the server's keys, configuration and log.
    workdir: Path

    def log_text(self) -> str:
        """Return sshd's log so far (empty if there is none yet)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def sshd_unavailable_reason() -> str | None:
    """Why :func:`start_sshd` cannot work here, or None if sshd and ssh-keygen are present."""
    if not os.access(SSHD, os.X_OK):
        return f"OpenSSH server not installed ({SSHD} missing; Debian package openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen not found on PATH (Debian package openssh-client)"
    return None


def _run(argv: Sequence[str], *, env: dict[str, str] | None = None) -> str:
    """Run a short helper command; return its stdout, or raise RuntimeError with its output."""
    proc = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed with exit status {proc.returncode}:\n"
            f"{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


def _keygen(path: Path) -> None:
    """Create an ed25519 key pair without passphrase at ``path`` and ``path.pub``."""
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)])


def _quote(value: str) -> str:
    """Quote one sshd_config argument (so paths may contain spaces)."""
    if any(c in value for c in '"\\\n\r'):
        raise ValueError(f"cannot put {value!r} into sshd_config")
    return f'"{value}"'


def _free_port(host: str) -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ssh(host: str, port: int, timeout: float) -> bool:
    """True if a TCP connection to host:port succeeds and the peer sends an SSH-2.0 banner."""
    banner = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            while len(banner) < len(b"SSH-2.0"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                banner += chunk
    except OSError:
        return False
    return banner.startswith(b"SSH-2.0")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc``, then SIGKILL it if it has not exited within _STOP_TIMEOUT."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _sshd_config(
    *,
    host: str,
    port: int,
    workdir: Path,
    username: str,
    session_path: str | None,
) -> str:
    """Text of an sshd_config that keeps everything in ``workdir``."""
    lines = [
        f"ListenAddress {host}:{port}",
        f"HostKey {_quote(str(workdir / 'host_ed25519'))}",
        f"PidFile {_quote(str(workdir / 'sshd.pid'))}",
        # % starts a token in AuthorizedKeysFile; %% is a literal percent sign.
        f"AuthorizedKeysFile {_quote(str(workdir / 'authorized_keys').replace('%', '%%'))}",
        "StrictModes no",
        "UsePAM no",
        "PermitRootLogin yes",
        "PubkeyAuthentication yes",
        "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no",
        "UseDNS no",
        "PrintMotd no",
        "MaxSessions 64",
        "MaxStartups 64",
        "LogLevel VERBOSE",
        f"AllowUsers {username}",
    ]
    if session_path is not None:
        # Only the first SetEnv line counts, so both variables go on one line.  HOME
        # points at an empty directory so that the user's shell rc files (which run
        # before the command and may rewrite PATH) are not found.
        home = workdir / "home"
        lines.append(f"SetEnv {_quote('PATH=' + session_path)} {_quote(f'HOME={home}')}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def start_sshd(workdir: Path, *, session_path: str | None = None) -> Iterator[SshdServer]:
    """Run an sshd on 127.0.0.1 with fresh keys in ``workdir``; yield how to reach it.

    ``workdir`` is created if needed and must not hold files from an earlier
    server.  With ``session_path``, commands run in SSH sessions get exactly
    ``PATH=session_path`` (and ``HOME=workdir/home``, an empty directory, so the
    user's shell rc files cannot change PATH; interactive *login* shells still
    read /etc/profile).  sshd is stopped when the block exits; children it
    forked for connections that are still open end with those connections.

    Raises RuntimeError (with sshd's log) if the server does not come up.
    """
    host = "127.0.0.1"
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in _SSHD_FILES:
        if (workdir / name).exists():
            raise FileExistsError(f"start_sshd needs a fresh workdir; {workdir / name} exists")

    host_key = workdir / "host_ed25519"
    user_key = workdir / "user_ed25519"
    stranger_key = workdir / "stranger_ed25519"
    for key in (host_key, user_key, stranger_key):
        _keygen(key)
    authorized_keys = workdir / "authorized_keys"
    authorized_keys.write_text(user_key.with_suffix(".pub").read_text())
    authorized_keys.chmod(0o600)
    host_pub = host_key.with_suffix(".pub")
    key_type, key_blob = host_pub.read_text().split()[:2]
    fingerprint = _run(["ssh-keygen", "-lf", str(host_pub)]).split()[1]
    if session_path is not None:
        (workdir / "home").mkdir(exist_ok=True)

    if os.geteuid() == 0:
        # sshd running as root insists on its privilege-separation (chroot) directory.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    username = getpass.getuser()
    config = workdir / "sshd_config"
    log_path = workdir / "sshd.log"
    log_path.write_bytes(b"")
    proc: subprocess.Popen[bytes] | None = None
    port = 0
    for _attempt in range(_START_ATTEMPTS):
        port = _free_port(host)
        config.write_text(
            _sshd_config(
                host=host,
                port=port,
                workdir=workdir,
                username=username,
                session_path=session_path,
            )
        )
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        if _wait_for_sshd(proc, host, port, log_path):
            break
        proc = None  # it exited early: try another port
    if proc is None:
        raise RuntimeError(
            f"sshd did not start in {_START_ATTEMPTS} attempts; its log:\n"
            f"{log_path.read_text(errors='replace')}"
        )

    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[{host}]:{port} {key_type} {key_blob}\n")
    try:
        yield SshdServer(
            host=host,
            port=port,
            username=username,
            user_key=user_key,
            stranger_key=stranger_key,
            known_hosts=known_hosts,
            host_key_fingerprint=fingerprint,
            log_path=log_path,
            workdir=workdir,
        )
    finally:
        _stop(proc)


def _wait_for_sshd(proc: subprocess.Popen[bytes], host: str, port: int, log_path: Path) -> bool:
    """Wait until ``proc`` serves SSH on host:port (True) or has exited (False).

    "Serves" means sshd itself logged that it listens on the port -- so a
    different server that happens to hold the port does not count -- and a
    connection to it gets an SSH-2.0 banner.  Raises RuntimeError (after
    stopping sshd) if neither happens within _START_TIMEOUT.
    """
    listening = f"Server listening on {host} port {port}."
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if proc.poll() is not None:
            return False
        if listening in log_path.read_text(errors="replace") and _answers_ssh(host, port, 2.0):
            return True
        if time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(
                f"sshd did not answer on {host}:{port} within {_START_TIMEOUT:g} s; its log:\n"
                f"{log_path.read_text(errors='replace')}"
            )
        time.sleep(_POLL_INTERVAL)


@contextlib.contextmanager
def ssh_agent(workdir: Path, keys: Sequence[Path]) -> Iterator[str]:
    """Run an ssh-agent holding ``keys``; yield its socket path (for SSH_AUTH_SOCK).

    The socket is ``workdir/agent.sock``, or, if that path would be too long for
    a Unix socket, one in a short-lived ``/tmp/ss-agent-*`` directory.
    ``os.environ`` is not changed.  The agent is stopped when the block exits.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sock_dir = workdir
    made_dir: str | None = None
    if len(os.fsencode(workdir / "agent.sock")) > _MAX_SOCKET_PATH:
        made_dir = tempfile.mkdtemp(prefix="ss-agent-")
        sock_dir = Path(made_dir)
    sock = sock_dir / "agent.sock"
    log_path = workdir / "ssh-agent.log"
    try:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                ["ssh-agent", "-D", "-a", str(sock)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            deadline = time.monotonic() + _START_TIMEOUT
            while not sock.is_socket():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"ssh-agent did not create {sock} (exit status {proc.poll()}); its log:\n"
                        f"{log_path.read_text(errors='replace')}"
                    )
                time.sleep(_POLL_INTERVAL)
            env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
            for key in keys:
                _run(["ssh-add", str(key)], env=env)
            yield str(sock)
        finally:
            _stop(proc)
    finally:
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)
