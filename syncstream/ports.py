"""The UDP ports a group's cameras are read on and sent to; a port used twice is refused.

Two camera streams read on one UDP port get each other's datagrams: their MPEG-TS mix
into one broken stream. So do two senders sending to one port. Each stream of a camera
(``main`` and every role of ``Camera.streams``) is one *use*: it is read on a port (its
``port`` with a sender, or the port of its ``udp://`` URL) and its sender sends to a port
(``sender.destination`` or ``sender.outputs[role].destination`` when given, else the same
``port``). A port read by two uses, or sent to by two, is a clash. A sender sending to the
port another camera entry reads is not: that is how that entry gets its stream.

A session's web view listens on a TCP port. A camera whose URL (``tcp://``, ``http://``,
``https://``, ``rtsp://``, ...) names a server on this machine (a loopback address, or the
view's own bind address) on that same port is a clash too: the view and that server cannot
both listen on it (:func:`web_port_clashes`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from .config import MAIN_ROLE, Camera
from .errors import ConfigError
from .urls import parse_udp_destination
from .validation import Loc, Where

__all__ = [
    "PortClash",
    "PortUse",
    "WebPortClash",
    "check_ports",
    "port_clashes",
    "port_uses",
    "web_port_clashes",
]


#: URL schemes of cameras read over TCP, with the port each means when a URL gives none.
_TCP_SCHEMES: dict[str, int | None] = {
    "tcp": None,
    "http": 80,
    "https": 443,
    "rtsp": 554,
    "rtsps": 322,
    "rtmp": 1935,
}


@dataclass(frozen=True)
class PortUse:
    """A UDP port one camera stream is read on (``read``) or sent to (``send``)."""

    port: int
    kind: Literal["read", "send"]
    camera: str
    index: int  # the camera's position in the group
    role: str
    loc: Loc  # the field, in the camera: ("port",), ("streams", "sub", "url"), ...

    @property
    def field(self) -> str:
        """``port``, ``streams.sub.port``, ``sender.destination``, ..."""
        return ".".join(str(part) for part in self.loc)


@dataclass(frozen=True)
class PortClash:
    """A port used by two camera streams: ``first`` in file order, then ``repeat``."""

    first: PortUse
    repeat: PortUse

    @property
    def verb(self) -> str:
        """``read`` or ``sent to``."""
        return "read" if self.first.kind == "read" else "sent to"

    @property
    def effect(self) -> str:
        """What the clash would do, and what to do about it."""
        mixed = "the two streams" if self.first.kind == "read" else "the two senders' streams"
        return f"{mixed} would mix; give each its own port"

    def describe_at(self, at: Where) -> str:
        """``FILE:LINE: cameras[1].port: UDP port 9001 is also read at FILE:LINE
        (cameras[0].port, camera 'a'): ...``, ``at`` telling where a field is."""
        first_at, first_field = at(("cameras", self.first.index, *self.first.loc))
        repeat_at, repeat_field = at(("cameras", self.repeat.index, *self.repeat.loc))
        prefix = f"{repeat_at}: " if repeat_at else ""
        camera = f"camera {self.first.camera!r}"
        first = f"{first_at} ({first_field}, {camera})" if first_at else f"{first_field} ({camera})"
        return (
            f"{prefix}{repeat_field}: UDP port {self.first.port} is also {self.verb} at "
            f"{first}: {self.effect}"
        )

    def describe(self) -> str:
        """``UDP port 9001 is read by camera 'a' (port) and by camera 'b' (url): ...``."""
        first, repeat = self.first, self.repeat
        return (
            f"UDP port {first.port} is {self.verb} by camera {first.camera!r} "
            f"({first.field}) and by camera {repeat.camera!r} ({repeat.field}): {self.effect}"
        )


@dataclass(frozen=True)
class WebPortClash:
    """The web view's TCP port (``web_host:port``), which ``camera`` is also read from on
    this machine (a use of kind ``read``, its ``loc`` the camera's URL)."""

    port: int
    web_host: str
    camera: PortUse

    @property
    def effect(self) -> str:
        """What the clash would do, and what to do about it."""
        return "the web view and that server cannot both listen on it; give [web] another port"

    def describe_at(self, at: Where) -> str:
        """``FILE:LINE: web.port: TCP port 8554 is also that of a server on this machine
        at FILE:LINE (cameras[2].url, camera 'a'): ...``, ``at`` telling where a field is."""
        web_at, web_field = at(("web", "port"))
        camera_at, camera_field = at(("cameras", self.camera.index, *self.camera.loc))
        camera = f"{camera_field}, camera {self.camera.camera!r}"
        prefix = f"{web_at}: " if web_at else ""
        return (
            f"{prefix}{web_field}: TCP port {self.port} is also that of a server on this "
            f"machine at {camera_at or 'the camera'} ({camera}): {self.effect}"
        )

    def describe(self) -> str:
        """``TCP port 8554 is the web view's ([web] port) and camera 'a''s (url): ...``."""
        camera = self.camera
        return (
            f"TCP port {self.port} is the web view's ([web] port) and that of camera "
            f"{camera.camera!r} ({camera.field}), a server on this machine: {self.effect}"
        )


def _udp_port(url: str) -> int | None:
    """The port of a ``udp://`` URL, else None."""
    try:
        parts = urlsplit(url.strip())
        if parts.scheme.lower() != "udp":
            return None
        return parts.port
    except ValueError:
        return None


def port_uses(camera: Camera, index: int = 0) -> list[PortUse]:
    """The UDP ports ``camera``'s streams are read on and sent to (repeats within one
    stream, such as a ``port`` its sender also sends to, are one use each kind)."""
    uses: list[PortUse] = []

    def add(port: int | None, kind: Literal["read", "send"], role: str, loc: Loc) -> None:
        if port is not None:
            uses.append(PortUse(port, kind, camera.name, index, role, loc))

    sender = camera.sender
    roles: list[tuple[str, Loc]] = [(MAIN_ROLE, ())]
    roles += [(role, ("streams", role)) for role in camera.streams]
    for role, base in roles:
        stream = camera.streams.get(role)
        url = camera.url if stream is None else stream.url
        port = camera.port if stream is None else stream.port
        if url is not None:
            add(_udp_port(url), "read", role, (*base, "url"))
        elif sender is not None:
            add(port, "read", role, (*base, "port"))
        if sender is None:
            continue
        explicit = sender.destination if role == MAIN_ROLE else None
        if explicit is not None:  # used as given (see senders.fleet.sender_config_for)
            add(parse_udp_destination(explicit)[1], "send", role, ("sender", "destination"))
        else:
            add(port, "send", role, (*base, "port"))
    if sender is not None and not camera.streams:  # else Camera.streams make the outputs
        for role, output in sender.outputs.items():
            port = parse_udp_destination(output.destination)[1]
            add(port, "send", role, ("sender", "outputs", role, "destination"))
    return uses


def _is_local(host: str, web_host: str) -> bool:
    """Whether ``host`` is this machine as the web view bound it: loopback, or its address."""
    if host in ("localhost", web_host.strip("[]").lower()):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def web_port_clashes(cameras: Sequence[Camera], web_host: str, port: int) -> list[WebPortClash]:
    """Each camera URL read over TCP (``tcp``, ``http(s)``, ``rtsp(s)``, ``rtmp``) from a
    server on this machine at the web view's ``port``, given or the scheme's own (80 for
    ``http``, 554 for ``rtsp``, ...); none when the view takes a free port (0)."""
    if port == 0:
        return []
    clashes = []
    for index, camera in enumerate(cameras):
        urls: list[tuple[str, Loc, str | None]] = [(MAIN_ROLE, (), camera.url)]
        urls += [(role, ("streams", role), stream.url) for role, stream in camera.streams.items()]
        for role, base, url in urls:
            try:
                parts = urlsplit((url or "").strip())
                scheme = parts.scheme.lower()
                url_port = parts.port or _TCP_SCHEMES.get(scheme)
            except ValueError:  # a port out of range: the reader says so
                continue
            host = parts.hostname
            if scheme in _TCP_SCHEMES and host and url_port == port and _is_local(host, web_host):
                use = PortUse(port, "read", camera.name, index, role, (*base, "url"))
                clashes.append(WebPortClash(port, web_host, use))
    return clashes


def port_clashes(cameras: Sequence[Camera]) -> list[PortClash]:
    """Each use of a port that another camera stream already uses the same way."""
    first: dict[tuple[str, int], PortUse] = {}
    clashes: list[PortClash] = []
    reported: set[tuple[tuple[str, str], tuple[str, str], int]] = set()
    for index, camera in enumerate(cameras):
        for use in port_uses(camera, index):
            earlier = first.setdefault((use.kind, use.port), use)
            if (earlier.camera, earlier.role) == (use.camera, use.role):
                continue
            pair = ((earlier.camera, earlier.role), (use.camera, use.role), use.port)
            if pair not in reported:  # read and sent to the same port: one clash
                reported.add(pair)
                clashes.append(PortClash(earlier, use))
    return clashes


def check_ports(cameras: Sequence[Camera]) -> None:
    """Raise :class:`ConfigError` naming both cameras of each port used twice."""
    clashes = port_clashes(cameras)
    if clashes:
        raise ConfigError("; ".join(clash.describe() for clash in clashes))
