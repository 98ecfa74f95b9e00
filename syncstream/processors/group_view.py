"""What a processor sees of its group: the narrow interface ``attach`` is given.

A :class:`~syncstream.StreamGroup` is one; so is anything with the same four members (a
test's stand-in, a replay). Processors depend on this, never on the group itself, so
``processors`` does not import ``group``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..frames import Frame
    from ..sources.base import EncodedPacket
    from ..stats import GroupStats

__all__ = ["FrameHistory", "GroupView"]


class FrameHistory(Protocol):
    """A camera's stream as a processor sees it: its recent frames."""

    def recent(self) -> list[Frame]:
        """The last frames, oldest first."""
        ...


class GroupView(Protocol):
    """The members of a group that processors use."""

    @property
    def names(self) -> Sequence[str]:
        """The cameras' names, in the group's order."""
        ...

    @property
    def streams(self) -> Mapping[str, FrameHistory]:
        """Each camera's main stream, by camera name."""
        ...

    @property
    def stats(self) -> GroupStats:
        """A snapshot of the group's counters."""
        ...

    def add_packet_listener(self, listener: Callable[[str, EncodedPacket], None]) -> None:
        """Call ``listener(camera_name, packet)`` for each encoded packet of a main stream."""
        ...
