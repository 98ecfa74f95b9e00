"""Cameras sharded over a Ray cluster, their frames merged by capture time in the driver.

An optional extra (``pip install 'syncstream[cluster]'``): ``import syncstream`` never
imports this package or Ray; Ray is imported when a :class:`ClusterGroup` starts.
See docs/cluster.md.
"""

from __future__ import annotations

from .frames import FrameRecord, PictureMode, RemoteFrame
from .group import ClusterGroup
from .shard import ProcessorFactory
from .stats import ClusterCameraStats, ClusterStats, ShardState, ShardStats

__all__ = [
    "ClusterCameraStats",
    "ClusterGroup",
    "ClusterStats",
    "FrameRecord",
    "PictureMode",
    "ProcessorFactory",
    "RemoteFrame",
    "ShardState",
    "ShardStats",
]
