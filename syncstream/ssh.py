"""SSH sessions to sender hosts (paramiko): trusted host keys, commands, remote processes.

Host keys are checked against the user's ``~/.ssh/known_hosts`` and an optional extra file;
an unknown host is refused unless :attr:`~syncstream.SSHHost.trust_unknown_hosts` is set
(never saved to disk). Commands are argv lists, every word ``shlex.quote``-d, so no name
coming from configuration is ever parsed by the remote shell.

A remote process runs on a pseudo-terminal: when our end of the SSH connection goes away
(even when the program is SIGKILLed), sshd closes the terminal and the kernel sends SIGHUP
to the process, so no orphan keeps streaming.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Literal, NamedTuple, Self

import paramiko

from .clock import ClockOffset, ClockSample, estimate_clock_offset
from .config import SSHHost
from .errors import (
    AuthenticationFailed,
    ConfigError,
    HostKeyError,
    SSHError,
)
from .files import check_regular_file
from .lines import LineSplitter
from .socket_words import plain_socket_error

__all__ = ["CommandResult", "RemoteProcess", "SSHSession"]

logger = logging.getLogger(__name__)

_KEEPALIVE = 5  # seconds between keepalives: a dead link is noticed
_MAX_OUTPUT = 1 << 20  # cap on what run() collects from a command
_RECV_CHUNK = 65536  # output read from a remote process at a time
#: Largest known_hosts file read (bytes).
MAX_KNOWN_HOSTS_BYTES = 16 << 20
_MAX_KEY_BYTES = 1 << 20  # a private key file: a few KiB
_PID_LINE = re.compile(rb"syncstream-pid (\d+)")
# Colour codes: ffmpeg colours its log on a terminal even with TERM=dumb.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Prints the PID of the shell, which then becomes the program (exec keeps the PID).
_EXEC_WITH_PID = 'echo "syncstream-pid $$"; exec "$@"'
# Answers each line on stdin with the wall clock: bash's $EPOCHREALTIME needs no fork.
_CLOCK_LOOP_BASH = (
    'while read -r _; do t=$EPOCHREALTIME; [ -n "$t" ] || t=$(date +%s.%N); echo "$t"; done'
)
_CLOCK_LOOP = (
    f"if command -v bash >/dev/null 2>&1; then exec bash -c {shlex.quote(_CLOCK_LOOP_BASH)}; "
    "fi; while read -r _; do date +%s.%N; done"
)


def known_hosts_files(host: SSHHost) -> list[str]:
    """The known_hosts files read for ``host``: the user's (if there is one) and its own.

    Each is checked first: only a regular file of at most :data:`MAX_KNOWN_HOSTS_BYTES`
    is read (paramiko opens it by name; a FIFO would block that open for ever). Raises
    :class:`ConfigError` naming the file and what it is.
    """
    user = os.path.expanduser("~/.ssh/known_hosts")
    paths = [user] if os.path.exists(user) else []
    if host.known_hosts_file is not None:
        paths.append(os.path.expanduser(host.known_hosts_file))
    for path in paths:
        check_regular_file(path, "known_hosts file", limit=MAX_KNOWN_HOSTS_BYTES)
    return paths


def _bad_host_key(session: SSHSession, doing: str, exc: BaseException) -> str:
    host = session.host
    entry = host.hostname if host.port == 22 else f"[{host.hostname}]:{host.port}"
    where = f" -f {host.known_hosts_file}" if host.known_hosts_file else ""
    key = exc.key if isinstance(exc, paramiko.BadHostKeyException) else None
    found = f" ({key.get_name()} {key.fingerprint})" if key is not None else ""
    return (
        f"{session.name}: host key differs from the known one{found}: the host was "
        f"reinstalled or the connection is intercepted. If it is expected, remove the old "
        f"key with `ssh-keygen{where} -R '{entry}'`"
    )


def _refused(session: SSHSession, doing: str, exc: BaseException) -> str:
    return f"{session.name}: authentication refused ({exc}); tried: {session.credentials()}"


def _failed(session: SSHSession, doing: str, exc: BaseException) -> str:
    if "Error reading SSH protocol banner" in str(exc):  # paramiko's words for it
        return (
            f"{session.name}: {doing}: port {session.host.port} answers, but not as an SSH "
            "server (no SSH greeting)"
        )
    return f"{session.name}: {doing}: {str(exc) or repr(exc)}"  # EOFError() says nothing


def _no_answer(session: SSHSession, doing: str, exc: BaseException) -> str:
    """A host that does not answer, in plain words (:func:`plain_socket_error`)."""
    host = session.host
    plain = (
        None
        if isinstance(exc, SSHError)
        else plain_socket_error(
            exc, host=host.hostname, port=host.port, timeout=host.connect_timeout
        )
    )
    if plain is None:
        return _failed(session, doing, exc)
    return f"{session.name}: {doing}: {plain}"


#: paramiko's errors, and the socket's under them, as ours: the first row that matches
#: wins. Every call into paramiko runs in :meth:`SSHSession.translated`, which uses it.
#: EOFError: the peer hung up during the handshake.
_ERRORS: tuple[
    tuple[type[BaseException], type[SSHError], Callable[[SSHSession, str, BaseException], str]],
    ...,
] = (
    (paramiko.BadHostKeyException, HostKeyError, _bad_host_key),
    (paramiko.AuthenticationException, AuthenticationFailed, _refused),
    (paramiko.SSHException, SSHError, _failed),
    (OSError, SSHError, _no_answer),
    (EOFError, SSHError, _failed),
)


class CommandResult(NamedTuple):
    """What a finished remote command gave back."""

    returncode: int
    stdout: str
    stderr: str


class ServerKey(NamedTuple):
    """A host's key as its server offers it, and how it compares with the known ones."""

    kind: str  # "ssh-ed25519", ...
    fingerprint: str
    status: Literal["known", "unknown", "differs"]


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is not known, saying how to trust it."""

    def __init__(self, host: SSHHost):
        self._host = host

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        host = self._host
        fingerprint = key.fingerprint
        scan = f"ssh-keyscan -p {host.port} {host.hostname}"
        target = host.known_hosts_file or "~/.ssh/known_hosts"
        entry = host.hostname if host.port == 22 else f"[{host.hostname}]:{host.port}"
        kind = (
            "ecdsa" if key.get_name().startswith("ecdsa") else key.get_name().removeprefix("ssh-")
        )
        raise HostKeyError(
            f"{host.display_name}: host key {key.get_name()} {fingerprint} is not known. "
            f"Check the fingerprint (on the host: `ssh-keygen -lf "
            f"/etc/ssh/ssh_host_{kind}_key.pub`), then trust "
            f"it with `{scan} >> {target}`, or add this line to {target}: "
            f"`{entry} {key.get_name()} {key.get_base64()}`; or set trust_unknown_hosts=True "
            "(this session only)"
        )


class _TrustUnknownHost(paramiko.MissingHostKeyPolicy):
    """The explicit opt-in: accept an unknown host for this session only, with a warning."""

    def __init__(self, host: SSHHost):
        self._host = host

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        logger.warning(
            "%s: trusting unknown host key %s %s (trust_unknown_hosts=True; not saved)",
            self._host.display_name, key.get_name(), key.fingerprint,
        )  # fmt: skip
        client.get_host_keys().add(hostname, key.get_name(), key)


class RemoteProcess:
    """A program started on a pseudo-terminal over SSH; its PID is recorded at start.

    Output lines (stdout and stderr share the terminal) go to ``sink``, each cut at 64 KiB
    (see :class:`~syncstream.lines.LineSplitter`). Signals are sent
    with ``kill`` to the recorded PID, and only while the channel says the process runs.
    """

    def __init__(
        self,
        session: SSHSession,
        channel: paramiko.Channel,
        sink: Callable[[str], None],
        pid_timeout: float,
    ):
        self._session = session
        self._channel = channel
        self._sink = sink
        self._pid_known = threading.Event()
        self._pid = 0
        # a line is held up to MAX_LINE bytes; a longer one is cut, the rest dropped
        self._splitter = LineSplitter()
        self._reader = threading.Thread(
            target=self._read, name=f"syncstream-ssh:{session.name}", daemon=True
        )
        self._reader.start()
        if not self._pid_known.wait(pid_timeout):
            channel.close()
            raise SSHError(f"{session.name}: remote process did not report its PID")

    def _read(self) -> None:
        splitter = self._splitter
        while True:
            try:
                chunk = self._channel.recv(_RECV_CHUNK)
            except (OSError, paramiko.SSHException) as exc:
                logger.debug("%s: output channel: %s", self._session.name, exc)
                break
            if not chunk:
                break
            for raw in splitter.feed(chunk):
                self._line(raw)
        for raw in splitter.flush():
            self._line(raw)
        self._pid_known.set()  # unblock a start that waits: the process is gone

    def _line(self, raw: bytes) -> None:
        if not self._pid:
            match = _PID_LINE.search(raw)
            if match:
                self._pid = int(match.group(1))
                self._pid_known.set()
                return
        line = _ANSI_ESCAPE.sub("", raw.decode("utf-8", "replace")).strip()
        if line:
            self._sink(line)

    @property
    def pid(self) -> int:
        """The process's PID on the remote host (0 if it ended before reporting it)."""
        return self._pid

    @property
    def output_high_water(self) -> int:
        """The most bytes of output ever held waiting for a newline (at most 64 KiB)."""
        return self._splitter.high_water

    def wait(self, timeout: float | None) -> int | None:
        """Exit status once ended (-1: killed by a signal or connection lost), else None."""
        if not self._channel.status_event.wait(timeout):
            return None
        return int(self._channel.exit_status)

    def _signal(self, signal: str) -> None:
        if self._pid <= 0 or self.wait(0) is not None:
            return
        try:
            self._session.run(["kill", f"-{signal}", str(self._pid)], timeout=5.0)
        except SSHError as exc:  # connection gone: sshd hangs up the terminal instead
            logger.warning("%s: kill -%s %s failed: %s", self._session.name, signal,
                           self._pid, exc)  # fmt: skip

    def terminate(self) -> None:
        """SIGTERM to the recorded PID, while the process runs."""
        self._signal("TERM")

    def kill(self) -> None:
        """SIGKILL to the recorded PID, while the process runs."""
        self._signal("KILL")

    def release(self) -> None:
        """Close the channel (hanging up the terminal) and join the output reader."""
        if self.wait(0) is not None and self._reader is not threading.current_thread():
            # sshd may send the exit status before the last output: let the reader drain
            self._reader.join(1.0)
        self._channel.close()
        if self._reader is not threading.current_thread():
            self._reader.join(5.0)


class SSHSession:
    """One SSH connection to a sender host; several senders may share it.

    Constructing does no I/O; :meth:`connect` does, and reconnects when the link died.
    """

    def __init__(self, host: SSHHost):
        self.host = host
        self.name = host.display_name
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()  # guards the state below; never held across I/O
        self._connect_lock = threading.Lock()  # one connect at a time; close() never takes it
        self._dialing: socket.socket | None = None  # the socket of a connect in progress
        self._closed = False

    @contextmanager
    def translated(self, doing: str) -> Iterator[None]:
        """Raise paramiko's and the socket's errors inside as ours (see ``_ERRORS``), each
        naming the host and ``doing`` ("cannot connect"); our own errors pass as they are."""
        try:
            yield
        except SSHError:  # already ours (an OSError too): a refused unknown host key
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            for foreign, ours, describe in _ERRORS:
                if isinstance(exc, foreign):
                    raise ours(describe(self, doing, exc)) from exc
            raise

    def connect(self) -> Self:
        """Connect and authenticate (idempotent while the connection is alive).

        The network part runs outside the lock that :meth:`close` takes: a close during a
        connect shuts the socket being connected, and the connect raises :class:`SSHError`.
        """
        with self._connect_lock:
            with self._lock:
                if self._closed:
                    raise SSHError(f"{self.name}: session was closed")
                stale, self._client = self._client, None
                if stale is not None:
                    transport = stale.get_transport()
                    if transport is not None and transport.is_active():
                        self._client = stale
                        return self
            if stale is not None:
                stale.close()
            try:
                client = self._open_client()
            except SSHError as exc:
                if self._closed:
                    raise SSHError(f"{self.name}: session was closed while connecting") from exc
                raise
            finally:
                with self._lock:
                    self._dialing = None
            with self._lock:
                if not self._closed:
                    self._client = client
                    return self
            client.close()
            raise SSHError(f"{self.name}: session was closed while connecting")

    def _dial(self) -> socket.socket:
        """A TCP connection to the host, registered so that :meth:`close` can shut it."""
        host = self.host
        addresses = socket.getaddrinfo(host.hostname, host.port, 0, socket.SOCK_STREAM)
        error = OSError(f"no address for {host.hostname!r}")
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            with self._lock:
                closed = self._closed
                self._dialing = None if closed else sock
            if closed:
                sock.close()
                break
            try:
                sock.settimeout(host.connect_timeout)
                sock.connect(address)
            except OSError as exc:
                with self._lock:
                    self._dialing = None
                sock.close()
                error = exc
                continue
            return sock
        raise error

    def _await_greeting(self, sock: socket.socket) -> None:
        """Wait (up to ``connect_timeout``) for the server's first bytes without taking
        them, so that a port that accepts and stays silent is named as such."""
        timeout = self.host.connect_timeout
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            sock.close()
            raise SSHError(
                f"{self.name}: cannot connect: port {self.host.port} accepted the connection "
                f"but sent no SSH greeting within {timeout:g} s (not an SSH server, or "
                "overloaded)"
            ) from None
        if not first:
            sock.close()
            raise SSHError(
                f"{self.name}: cannot connect: the host closed the connection before its "
                "SSH greeting (sshd refused us: MaxStartups, tcp wrappers, or not an SSH server)"
            )

    def _open_client(self) -> paramiko.SSHClient:
        host = self.host
        client = paramiko.SSHClient()
        try:
            known_hosts_files(host)
        except ConfigError as exc:
            raise HostKeyError(f"{self.name}: cannot read known hosts: {exc}") from exc
        try:
            client.load_system_host_keys()
            if host.known_hosts_file is not None:
                client.get_host_keys().load(os.path.expanduser(host.known_hosts_file))
        except OSError as exc:
            raise HostKeyError(f"{self.name}: cannot read known hosts: {exc}") from exc
        if host.key_filename is not None:
            key_file = os.path.expanduser(host.key_filename)
            try:
                check_regular_file(key_file, "private key file", limit=_MAX_KEY_BYTES)
            except ConfigError as exc:
                raise SSHError(f"{self.name}: cannot use the key: {exc}") from exc
        policy = _TrustUnknownHost(host) if host.trust_unknown_hosts else _RefuseUnknownHost(host)
        client.set_missing_host_key_policy(policy)
        key_filename = os.path.expanduser(host.key_filename) if host.key_filename else None
        started = time.monotonic()
        try:
            with self.translated("cannot connect"):
                sock = self._dial()
                self._await_greeting(sock)
                client.connect(
                    host.hostname,
                    port=host.port,
                    sock=sock,
                    username=host.username,
                    key_filename=key_filename,
                    passphrase=host.passphrase.get_secret_value() if host.passphrase else None,
                    password=host.password.get_secret_value() if host.password else None,
                    allow_agent=host.allow_agent,
                    look_for_keys=host.look_for_keys,
                    timeout=host.connect_timeout,
                    banner_timeout=host.connect_timeout,
                    auth_timeout=host.connect_timeout,
                    channel_timeout=host.connect_timeout,
                )
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(_KEEPALIVE)
        transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
        logger.info("%s: connected in %.0f ms", self.name, (time.monotonic() - started) * 1000)
        return client

    def credentials(self) -> str:
        """What authentication offers, for messages: "key PATH, agent", never a secret."""
        tried = []
        if self.host.key_filename:
            tried.append(f"key {self.host.key_filename}")
        if self.host.allow_agent:
            tried.append("agent")
        if self.host.look_for_keys:
            tried.append("~/.ssh/id_*")
        if self.host.password:
            tried.append("password")
        return ", ".join(tried) or "nothing (no key, agent or password allowed)"

    def _transport(self) -> paramiko.Transport:
        self.connect()
        assert self._client is not None
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise SSHError(f"{self.name}: connection lost")
        return transport

    def _open_channel(self, timeout: float) -> paramiko.Channel:
        with self.translated("cannot open a channel"):
            channel = self._transport().open_session(timeout=timeout)
        channel.settimeout(timeout)
        return channel

    def run(self, argv: Sequence[str], *, timeout: float = 10.0) -> CommandResult:
        """Run a command (argv, each word quoted) to its end; raises SSHError on timeout."""
        command = shlex.join(argv)
        channel = self._open_channel(timeout)
        try:
            with self.translated(f"running {argv[0]!r} failed"):
                channel.exec_command(command)
                stdout = channel.makefile("rb").read(_MAX_OUTPUT)
                stderr = channel.makefile_stderr("rb").read(_MAX_OUTPUT)
                if not channel.status_event.wait(timeout):
                    raise SSHError(f"{self.name}: {argv[0]!r} did not finish in {timeout} s")
                status = int(channel.exit_status)
        finally:
            channel.close()
        return CommandResult(
            status, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
        )

    def start_process(self, argv: Sequence[str], sink: Callable[[str], None]) -> RemoteProcess:
        """Start ``argv`` on a pseudo-terminal; it dies with the connection (SIGHUP)."""
        command = shlex.join(["exec", "sh", "-c", _EXEC_WITH_PID, "sh", *argv])
        channel = self._open_channel(self.host.connect_timeout)
        try:
            with self.translated(f"cannot start {argv[0]!r}"):
                channel.get_pty(term="dumb", width=200, height=50)
                channel.exec_command(command)
        except BaseException:
            channel.close()
            raise
        channel.settimeout(None)
        return RemoteProcess(self, channel, sink, self.host.connect_timeout)

    def server_key(self) -> ServerKey:
        """Ask the server for its host key without logging in, and compare it with the
        known ones (:func:`known_hosts_files`); nothing is written and no session stays
        open. Raises :class:`ConfigError` for a known_hosts file that cannot be read,
        :class:`SSHError` when the key exchange fails."""
        host = self.host
        paths = known_hosts_files(host)
        with self.translated("cannot read known hosts"):
            keys = paramiko.HostKeys()
            for path in paths:
                keys.load(path)
            known = keys.lookup(
                host.hostname if host.port == 22 else f"[{host.hostname}]:{host.port}"
            )
        with self.translated("no key exchange"):
            sock = socket.create_connection(
                (host.hostname, host.port), timeout=host.connect_timeout
            )
            transport = paramiko.Transport(sock)
            try:
                if known:  # ask for a kind of key we know first
                    options = transport.get_security_options()
                    preferred = [kind for kind in options.key_types if kind in known]
                    rest = [kind for kind in options.key_types if kind not in preferred]
                    options.key_types = preferred + rest
                transport.start_client(timeout=host.connect_timeout)
                key = transport.get_remote_server_key()
            finally:
                transport.close()
        status: Literal["known", "unknown", "differs"]
        if not known:
            status = "unknown"
        else:
            status = "known" if known.get(key.get_name()) == key else "differs"
        return ServerKey(key.get_name(), key.fingerprint, status)

    def measure_clock_offset(self, rounds: int = 10) -> ClockOffset:
        """Our clock minus the host's: the round trip with the smallest RTT of ``rounds``.

        One remote shell answers every round (no process start inside the measurement).
        """
        if rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {rounds}")
        channel = self._open_channel(self.host.connect_timeout)
        samples: list[ClockSample] = []
        try:
            with self.translated("clock measurement failed"):
                clock_loop = ["exec", "env", "LC_ALL=C", "sh", "-c", _CLOCK_LOOP]
                channel.exec_command(shlex.join(clock_loop))
                replies = channel.makefile("rb")
                for round_ in range(rounds + 1):  # the first round warms up the remote shell
                    sent_time = time.time()
                    sent_mono = time.monotonic()
                    channel.sendall(b"\n")
                    line = replies.readline(64)
                    rtt = time.monotonic() - sent_mono
                    try:
                        remote_time = float(line)
                    except ValueError:
                        raise SSHError(
                            f"{self.name}: clock reply {line[:40]!r} is not a time (needs "
                            "bash or GNU date)"
                        ) from None
                    if round_:
                        samples.append(ClockSample(sent_time, rtt, remote_time))
        finally:
            channel.close()
        result = estimate_clock_offset(samples)
        logger.info(
            "%s: clock offset %+.2f ms +/- %.2f ms (best RTT %.2f ms of %d)",
            self.name, result.offset * 1e3, result.uncertainty * 1e3, result.rtt * 1e3, rounds,
        )  # fmt: skip
        return result

    def close(self) -> None:
        """Close the connection (remote processes on it get SIGHUP); idempotent."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
            if self._dialing is not None:  # a connect in progress: it fails at once
                try:
                    self._dialing.shutdown(socket.SHUT_RDWR)
                except OSError as exc:  # not connected yet, or closed meanwhile
                    logger.debug("%s: shutting the socket being connected: %s", self.name, exc)
        if client is not None:
            client.close()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
