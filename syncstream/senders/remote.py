"""RemoteSender: ffmpeg on a camera host, started and watched over SSH."""

from __future__ import annotations

from collections.abc import Sequence

from ..clock import ClockOffset
from ..config import RestartPolicy, SenderConfig, SSHHost
from ..ssh import SSHSession
from .base import LineSink, ProcessHandle, Sender

__all__ = ["RemoteSender"]


class RemoteSender(Sender):
    """An ffmpeg process on an SSH host, with the same interface as :class:`LocalSender`.

    ``host`` is an :class:`~syncstream.SSHHost` (the sender opens and closes its own
    connection) or an :class:`~syncstream.ssh.SSHSession` shared by several senders (left
    open on stop). The process runs on a pseudo-terminal and ends with the connection, so
    a receiver that dies, even by SIGKILL, leaves nothing streaming.
    """

    def __init__(
        self,
        host: SSHHost | SSHSession,
        command: SenderConfig | Sequence[str],
        *,
        name: str | None = None,
        restart: RestartPolicy | None = None,
        stop_timeout: float | None = None,
    ):
        self._owns_session = isinstance(host, SSHHost)
        self.session = SSHSession(host) if isinstance(host, SSHHost) else host
        super().__init__(command, name=name, restart=restart, stop_timeout=stop_timeout)
        self.host = self.session.name
        if name is None:
            self.name = f"{self.session.host.hostname}>{self.name}"

    def _run_check(self, argv: list[str]) -> tuple[int, list[str]]:
        result = self.session.connect().run(argv)
        return result.returncode, (result.stdout + result.stderr).splitlines()

    def _spawn(self, sink: LineSink) -> ProcessHandle:
        return self.session.connect().start_process(self.argv, sink)

    def _release(self) -> None:
        if self._owns_session:
            self.session.close()

    def clock_offset(self, rounds: int = 10) -> ClockOffset:
        """Our clock minus this host's clock (see :meth:`SSHSession.measure_clock_offset`)."""
        return self.session.connect().measure_clock_offset(rounds)
