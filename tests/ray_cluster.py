"""A real local Ray cluster for the cluster tests: nodes on 127.0.0.1 only.

Importing this module sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read when Ray is
imported, so import it before Ray): a driver connecting to 127.0.0.1 then stays on
loopback, where Ray would otherwise swap 127.0.0.1 for the machine's outward address, on
which the test nodes do not listen.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

#: The environment setting that keeps a Ray driver on loopback (set here for this process).
RAY_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
os.environ.update(RAY_LOOPBACK)

LOOPBACK = "127.0.0.1"
_INSTALL = "the cluster extra: pip install 'syncstream[cluster]'"


def add_node(cluster: Any, resource: str) -> Any:
    """Add a node on loopback with one CPU and ``resource``; returns Ray's node."""
    return cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK, resources={resource: 1})


@contextlib.contextmanager
def two_node_cluster(*, connect: bool) -> Iterator[Any]:
    """Two Ray nodes on loopback, the head with resource ``node_a``, the other ``node_b``
    (a ``ray.cluster_utils.Cluster``). ``connect``: this process is their driver (else
    only programs it starts connect, to ``cluster.address``). Skips without Ray."""
    cluster_utils: Any = pytest.importorskip("ray.cluster_utils", reason=_INSTALL)
    local = cluster_utils.Cluster(
        initialize_head=True,
        connect=connect,
        head_node_args={
            "num_cpus": 1,
            "node_ip_address": LOOPBACK,
            "resources": {"node_a": 1},
            "include_dashboard": False,
        },
    )
    try:
        add_node(local, "node_b")
        local.wait_for_nodes(timeout=60)
        yield local
    finally:
        if connect:
            import ray  # imported by cluster_utils above

            ray.shutdown()
        local.shutdown()
