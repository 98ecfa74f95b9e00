"""SenderFleet: the senders of a group's cameras, started and stopped together.

Cameras on the same SSH host share one connection. Hosts are connected, clocks measured
and senders started in parallel, and every camera is tried before an error is raised, so
one :class:`~syncstream.errors.GroupStartError` names all the broken cameras (like
Fabric's per-host group results); whatever did start is stopped again.

Every session and sender is registered before it connects or starts, so :meth:`close`
reaches the ones still starting, from another thread or when waiting for them is
interrupted (Ctrl-C): nothing started by the fleet outlives it.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..clock import ClockOffset
from ..config import Camera, Encoding, SenderConfig, SenderOutput, SSHHost
from ..errors import ConfigError, GroupStartError, StreamClosed
from ..ssh import SSHSession
from ..urls import parse_udp_destination
from .base import Sender
from .command import receiver_address
from .local import LocalSender
from .remote import RemoteSender

__all__ = ["SenderFleet", "sender_addresses", "sender_config_for"]

logger = logging.getLogger(__name__)
#: One line per SSH host while a group starts: connected and its clock measured, or why
#: not. The ``syncstream`` command shows these on stderr (INFO); the library adds no handler.
progress = logging.getLogger(f"{__name__}.progress")

_MAX_PARALLEL = 16
T = TypeVar("T")
K = TypeVar("K")


def sender_config_for(camera: Camera) -> SenderConfig:
    """The camera's SenderConfig with its destinations filled in from its ports.

    The main stream goes to ``camera.port``; each of ``camera.streams`` becomes an output
    of the same sender, sent to the stream's ``port`` at the same address.
    """
    config = camera.sender
    if config is None:
        raise ValueError(f"camera {camera.name!r} has no sender")
    if config.destination is not None and not camera.streams:
        return config
    if camera.receiver_host is not None:
        address = camera.receiver_host
    elif camera.host is not None:
        address = receiver_address(camera.host.hostname, camera.host.port)
    else:
        address = "127.0.0.1"
    if ":" in address:
        address = f"[{address}]"

    def destination(port: int | None, what: str) -> str:
        url = f"udp://{address}:{port}"
        parse_udp_destination(url, f"camera {camera.name!r}: {what}")
        return url

    update: dict[str, object] = {}
    if config.destination is None:
        update["destination"] = destination(camera.port, "receiver address")
    if camera.streams:
        update["outputs"] = {
            role: SenderOutput(
                destination=destination(stream.port, f"{role} stream"),
                **stream.model_dump(include=set(Encoding.model_fields)),
            )
            for role, stream in camera.streams.items()
        }
    return config.model_copy(update=update)


#: Where a local sender's datagrams come from when it sends to a loopback address.
LOOPBACK = ("127.0.0.0/8", "::1")


def sender_addresses(camera: Camera) -> tuple[str, ...]:
    """The addresses the datagrams of the camera's sender come from: its streams' default
    ``allowed_senders``. Resolves names (call it when the group starts, not before).

    A sender on ``camera.host``: every address the host name resolves to. A local one:
    loopback, and for a destination outside it (our LAN address, a multicast group) our
    address on the route there, which the kernel gives its datagrams as their source.
    """
    if camera.host is not None:
        hostname = camera.host.hostname
        try:
            infos = socket.getaddrinfo(hostname, None, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise ConfigError(f"cannot resolve sender host {hostname!r}: {exc}") from exc
        return tuple(sorted({str(info[4][0]).partition("%")[0] for info in infos}))
    config = sender_config_for(camera)
    destinations = [config.destination, *(output.destination for output in config.outputs.values())]
    addresses = list(LOOPBACK)
    for destination in destinations:
        if destination is None:
            continue
        source = receiver_address(*parse_udp_destination(destination)).partition("%")[0]
        if not ipaddress.ip_address(source).is_loopback and source not in addresses:
            addresses.append(source)
    return tuple(addresses)


def _parallel(
    items: dict[K, Callable[[], T]], cancel: Callable[[], None] | None = None
) -> dict[K, T | BaseException]:
    """Run each call on a pool; map each key to its result or the exception it raised.

    When waiting is interrupted (``KeyboardInterrupt``, any exception), the calls not
    begun are dropped and ``cancel()`` makes the running ones end soon; their threads are
    joined before the exception goes on, so no call outlives this function.
    """
    if not items:
        return {}
    pool = ThreadPoolExecutor(
        max_workers=min(_MAX_PARALLEL, len(items)), thread_name_prefix="syncstream-start"
    )
    try:
        futures = {key: pool.submit(call) for key, call in items.items()}
        results: dict[K, T | BaseException] = {}
        for key, future in futures.items():
            exc = future.exception()
            results[key] = exc if exc is not None else future.result()
        return results
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        if cancel is not None:
            cancel()
        raise
    finally:
        pool.shutdown(wait=True)


class SenderFleet:
    """Starts the senders of ``cameras`` (those with a ``sender``), one session per host.

    :meth:`connect` opens the SSH sessions and measures each host's clock offset;
    :meth:`start` starts the senders and raises :class:`GroupStartError` naming every
    camera that failed, in connect or in start. :meth:`close` stops everything, including
    what is still connecting or starting; a stopped fleet does not start again.
    """

    def __init__(self, cameras: Sequence[Camera], *, clock_rounds: int = 10) -> None:
        self.cameras = [camera for camera in cameras if camera.sender is not None]
        #: Every camera's name, senders or not: the order in which failures are named.
        self.names = [camera.name for camera in cameras]
        self.clock_rounds = clock_rounds
        self.senders: dict[str, Sender] = {}
        self.offsets: dict[str, ClockOffset] = {}
        self._sessions: dict[SSHHost, SSHSession] = {}
        self._failures: dict[str, BaseException] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self._registered: dict[str, Sender] = {}  # every sender made, before it starts

    def connect(self) -> None:
        """Open one session per host and measure its clock; failures are kept for start()."""
        hosts = {camera.host for camera in self.cameras if camera.host is not None}
        sessions = {host: SSHSession(host) for host in hosts}
        with self._lock:
            self._check_running()
            self._sessions.update(sessions)  # before connecting: close() closes them
        measured = {  # a host whose cameras all have a clock_offset given is not measured
            c.host for c in self.cameras if c.host is not None and c.clock_offset is None
        }

        def measure(session: SSHSession) -> Callable[[], ClockOffset | None]:
            def connect_and_measure() -> ClockOffset | None:
                started = time.monotonic()
                try:
                    session.connect()
                    connected_ms = (time.monotonic() - started) * 1000
                    if session.host not in measured:
                        progress.info("%s: connected in %.0f ms (clock offset given)",
                                      session.name, connected_ms)  # fmt: skip
                        return None
                    offset = session.measure_clock_offset(self.clock_rounds)
                except Exception as exc:  # raised again: the camera's failure
                    # the error raised says why, in full: here only which one
                    progress.info("%s: failed (%s)", session.name, type(exc).__name__)
                    raise
                progress.info(
                    "%s: connected in %.0f ms, clock offset %+.2f ms (+/- %.2f ms)",
                    session.name, connected_ms, offset.offset * 1000, offset.uncertainty * 1000,
                )  # fmt: skip
                return offset

            return connect_and_measure

        if sessions:
            progress.info("connecting to %d SSH host(s) and measuring their clocks: %s",
                          len(sessions), ", ".join(s.name for s in sessions.values()))  # fmt: skip

        results = _parallel(
            {host: measure(session) for host, session in sessions.items()}, self.close
        )
        with self._lock:
            self._check_running()
        for camera in self.cameras:
            if camera.host is None:
                continue
            result = results[camera.host]
            if isinstance(result, BaseException):
                self._failures[camera.name] = result
            elif result is not None:
                self.offsets[camera.name] = result

    def start(self, failed: Mapping[str, BaseException] | None = None) -> None:
        """Start every sender not failed in connect(); raise GroupStartError on any failure.

        ``failed`` are cameras that failed elsewhere (their readers, say): their senders
        are not started, and the error raised names them too, with every camera that
        failed here, in the order of the cameras given to the fleet.
        """
        failed = dict(failed or {})
        calls: dict[str, Callable[[], Sender]] = {}
        for camera in self.cameras:
            if camera.name not in self._failures and camera.name not in failed:
                calls[camera.name] = self._starter(camera)
        results = _parallel(calls, self.close)
        with self._lock:
            self._check_running()  # close() from another thread stopped all of them
            for name, result in results.items():
                if isinstance(result, BaseException):
                    self._failures[name] = result
                else:
                    self.senders[name] = result
        if self._failures or failed:
            found = {**failed, **self._failures}  # a camera's SSH error before its reader's
            order = [*self.names, *(name for name in failed if name not in self.names)]
            failures = {name: found[name] for name in order if name in found}
            for name, exc in failures.items():  # the error raised names them all
                logger.info("%s: failed to start: %s", name, exc)
            self.close()
            raise GroupStartError(failures)

    def _starter(self, camera: Camera) -> Callable[[], Sender]:
        def start() -> Sender:
            config = sender_config_for(camera)
            sender: Sender
            if camera.host is None:
                sender = LocalSender(config, name=camera.name)
            else:
                sender = RemoteSender(self._sessions[camera.host], config, name=camera.name)
            with self._lock:
                self._check_running()
                self._registered[camera.name] = sender  # before it starts: close() reaches it
            return sender.start()  # a start that fails leaves nothing running

        return start

    def _check_running(self) -> None:
        """Raise StreamClosed once close() was called (the caller holds the lock)."""
        if self._stopped:
            raise StreamClosed("the senders were stopped while starting")

    def close(self) -> None:
        """Stop every sender, started or starting (in parallel), and close the sessions.

        A sender still starting is waited for (bounded) and never started again; a session
        still connecting is closed at once (its connect fails). Idempotent.
        """
        with self._lock:
            self._stopped = True
            senders = dict(self._registered)  # kept: a stop interrupted can be done again
            self.senders = {}
            sessions = list(self._sessions.values())

        def stopper(sender: Sender) -> Callable[[], None]:
            return sender.close

        for name, result in _parallel({n: stopper(s) for n, s in senders.items()}).items():
            if isinstance(result, BaseException):
                logger.error("%s: stopping the sender failed: %s", name, result)
        for session in sessions:
            session.close()

    def stop(self) -> None:
        """Deprecated name of :meth:`close` (warns with :class:`DeprecationWarning`)."""
        warnings.warn(
            "SenderFleet.stop() is deprecated, use close()", DeprecationWarning, stacklevel=2
        )
        self.close()
