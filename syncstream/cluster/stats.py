"""The figures of a :class:`~syncstream.cluster.ClusterGroup`: its sets, shards, cameras."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ClusterCameraStats", "ClusterStats"]


@dataclass
class ClusterCameraStats:
    """What reached the driver of one camera, and what alignment did with it."""

    name: str
    #: The shard (placement resource) reading the camera; "" for the unplaced shard.
    shard: str
    #: Frame records received from the shard.
    received: int
    used: int
    dropped: int
    #: Sets emitted without this camera.
    missing: int
    #: The camera's stream state on its shard at the last poll ("live", ...), or "down"
    #: while its shard cannot be reached.
    state: str


@dataclass
class ClusterStats:
    """A snapshot of a :class:`ClusterGroup`'s counters."""

    sets: int
    partial: int
    delivered: int
    skipped: int
    #: Records shards dropped because the driver polled too slowly, plus records the
    #: merger's inbox had no room for.
    overflow: int
    #: Times a shard was found down (its actor died, its node left).
    shard_failures: int
    cameras: dict[str, ClusterCameraStats] = field(default_factory=dict)
