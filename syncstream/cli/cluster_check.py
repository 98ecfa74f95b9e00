"""``syncstream check FILE`` of a session with ``[cluster]``: the nodes and the placement.

Two tables: the cluster's nodes (id, address, alive, CPUs, custom resources), and for each
placement resource its cameras and the alive nodes that offer it. A resource no alive node
offers fails: a shard placed on it could never start, so its cameras never deliver.
Nothing is started on the cluster; the nodes are asked in a child process
(:func:`~syncstream.cluster.nodes.cluster_nodes`).
"""

from __future__ import annotations

import sys
from typing import TextIO

from ..errors import SyncStreamError
from ..session_config import SessionConfig
from .check import write_table

__all__ = ["NODE_COLUMNS", "PLACEMENT_COLUMNS", "TIMEOUT", "run_cluster_check"]

#: Seconds allowed to connect to the cluster and list its nodes.
TIMEOUT = 20.0
NODE_COLUMNS = ("node", "address", "alive", "CPUs", "resources")
PLACEMENT_COLUMNS = ("resource", "cameras", "nodes")
_WIDTH = 100  # the tables fit this many columns
_ANY = "(any)"  # the row of cameras without placement


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _amount(value: float) -> str:
    return f"{value:g}"


def run_cluster_check(config: SessionConfig, out: TextIO = sys.stdout) -> int:
    """Print the nodes and the placement of ``config``'s cluster.

    Exit status 0 when every placement resource is offered by an alive node, 1 when one is
    not or the cluster cannot be asked (a line on stderr says why).
    """
    from ..cluster.nodes import cluster_nodes, nodes_offering

    cluster = config.cluster
    assert cluster is not None
    try:
        nodes = cluster_nodes(cluster.address, TIMEOUT, cluster.connect_timeout)
    except SyncStreamError as exc:  # ClusterError, MissingDependency
        print(f"syncstream: {exc}", file=sys.stderr)
        return 1
    alive = [node for node in nodes if node.alive]
    out.write(f"cluster {cluster.address}: {len(nodes)} nodes, {len(alive)} alive\n")
    fixed = 8 + 2 + 15 + 2 + 5 + 2 + 4 + 2  # node, address (IPv4), alive, CPUs and gaps
    rows = [
        [
            node.short_id,
            _fit(node.address, 15),
            "yes" if node.alive else "no",
            _amount(node.cpus),
            _fit(
                ", ".join(f"{name}={_amount(n)}" for name, n in node.resources.items()) or "-",
                _WIDTH - fixed,
            ),
        ]
        for node in nodes
    ]
    write_table(NODE_COLUMNS, rows, out)

    cameras: dict[str, list[str]] = {}
    for camera in config.cameras:
        cameras.setdefault(cluster.placement.get(camera.name, ""), []).append(camera.name)
    failed: list[str] = []
    rows = []
    for resource, names in cameras.items():
        offering = nodes_offering(nodes, resource) if resource else alive
        if offering:
            shown = ", ".join(node.short_id for node in offering)
            where = shown if resource else f"any of {len(offering)} alive: {shown}"
        else:
            failed.append(resource)
            where = "FAIL no alive node offers it" if resource else "FAIL no alive node"
        rows.append([_fit(resource or _ANY, 20), _fit(", ".join(names), 30), _fit(where, 44)])
    out.write("\n")
    write_table(PLACEMENT_COLUMNS, rows, out)
    for resource in failed:
        listed = ", ".join(cameras[resource])
        if resource:
            out.write(
                f"{resource}: no alive node offers it: cameras {listed} could never start "
                f"(ray start ... --resources='{{\"{resource}\": 1}}' on their node)\n"
            )
        else:
            out.write(f"no alive node: cameras {listed} could never start\n")
    out.write(
        "all placements offered\n"
        if not failed
        else f"{len(failed)} of {len(rows)} placements not offered\n"
    )
    return 1 if failed else 0
