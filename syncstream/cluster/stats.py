"""The figures of a :class:`~syncstream.cluster.ClusterGroup`: a
:class:`~syncstream.stats.GroupStats` of its merged sets, with its shards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..stats import CameraStats, GroupStats
from ..stream import StreamState, StreamStats

__all__ = ["ClusterCameraStats", "ClusterStats", "ShardState", "ShardStats", "unseen_stream"]

#: ``"starting"`` until the shard first answers, ``"up"`` while it answers, ``"down"``
#: while it cannot be reached (its process or node died: Ray restarts it), ``"failed"``
#: when Ray will not restart it (its constructor raised: the error says why).
ShardState = Literal["starting", "up", "down", "failed"]


@dataclass(frozen=True, kw_only=True)
class ClusterCameraStats(CameraStats):
    """A camera of a cluster group. ``stream``, ``clock_offset`` and the sender's figures
    are as its shard last reported them (about once a second); while the shard is not
    up, ``stream.state`` is ``STALE`` and ``stream.waiting_for`` names the shard. The
    alignment figures (``used``, ``dropped``, ``offset_p50``, ...) are the driver's."""

    #: The shard (placement resource) reading the camera; "" for the unplaced shard.
    shard: str
    #: Frame records that reached the driver.
    received: int
    #: Merged sets emitted without this camera.
    missing: int


@dataclass(frozen=True)
class ShardStats:
    """One shard: a Ray actor reading the cameras placed on one node."""

    #: Its placement resource; "" for the shard of the cameras not placed.
    name: str
    cameras: tuple[str, ...]
    state: ShardState
    #: Times Ray started it again (its process or node died).
    restarts: int
    #: Its process and Ray node as it last reported them (None before its first report).
    pid: int | None
    node_id: str | None
    #: Times it was found down (its actor died, its node left, it did not answer).
    failures: int = 0
    #: Why it failed for good (``state == "failed"``), else None.
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ClusterStats(GroupStats):
    """A snapshot of a :class:`~syncstream.cluster.ClusterGroup`: the figures of its
    merged sets as in :class:`~syncstream.stats.GroupStats` (``cameras`` are
    :class:`ClusterCameraStats`; ``processors`` are the driver's by name and each shard's
    as ``"name@shard"``; ``overflow`` counts the records shards dropped unpolled and
    those the merger had no room for), and its shards."""

    shards: dict[str, ShardStats]
    #: Times a shard was found down, summed over the shards.
    shard_failures: int
    #: Poll results received, pickled (protocol 5, arrays out of band, as Ray sends them).
    bytes_received: int
    #: Polls answered by the shards.
    polls: int

    def lines(self) -> list[str]:
        """The lines of :meth:`GroupStats.lines`, then one per shard."""
        width = max([5, *(len(name) for name in self.cameras)])
        return [*super().lines(), *(_shard_line(s, width) for s in self.shards.values())]


def _shard_line(shard: ShardStats, width: int) -> str:
    label = f"@{shard.name or '(any)'}"
    node = "-" if shard.node_id is None else shard.node_id[:8]
    error = "" if shard.error is None else f"  {shard.error}"
    return (
        f"{label:<{width}} {shard.state:<8} node {node} pid {shard.pid or '-'}  "
        f"restarts {shard.restarts} failures {shard.failures}  "
        f"cameras {', '.join(shard.cameras)}{error}"
    )


def unseen_stream(name: str, state: StreamState, waiting_for: str) -> StreamStats:
    """The stream figures of a camera whose shard has not reported yet."""
    return StreamStats(
        name=name,
        state=state,
        decoded=0,
        delivered=0,
        skipped=0,
        decode_errors=0,
        rejected=0,
        reconnects=0,
        fps=0.0,
        latency_p50=None,
        latency_p95=None,
        capture_clock="arrival",
        last_error=None,
        waiting_for=waiting_for,
    )
