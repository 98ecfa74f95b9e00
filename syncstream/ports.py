"""The UDP ports a group's cameras are read on and sent to; a port used twice is refused.

Two camera streams read on one UDP port get each other's datagrams: their MPEG-TS mix
into one broken stream. So do two senders sending to one port. Each stream of a camera
(``main`` and every role of ``Camera.streams``) is one *use*: it is read on a port (its
``port`` with a sender, or the port of its ``udp://`` URL) and its sender sends to a port
(``sender.destination`` or ``sender.outputs[role].destination`` when given, else the same
``port``). A port read by two uses, or sent to by two, is a clash. A sender sending to the
port another camera entry reads is not: that is how that entry gets its stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from .config import MAIN_ROLE, Camera, parse_udp_destination
from .errors import ConfigError

__all__ = ["PortClash", "PortUse", "check_ports", "port_clashes", "port_uses"]

Loc = tuple[int | str, ...]


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

    def describe(self) -> str:
        """``UDP port 9001 is read by camera 'a' (port) and by camera 'b' (url): ...``."""
        first, repeat = self.first, self.repeat
        return (
            f"UDP port {first.port} is {self.verb} by camera {first.camera!r} "
            f"({first.field}) and by camera {repeat.camera!r} ({repeat.field}): {self.effect}"
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
