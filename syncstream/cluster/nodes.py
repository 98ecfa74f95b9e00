"""The nodes of a Ray cluster and the custom resources they offer, for ``syncstream check``.

:func:`cluster_nodes` asks the cluster in a child process (``python -m
syncstream.cluster.nodes ADDRESS``): a Ray driver that cannot reach its cluster retries for
ever, and a child can be stopped when ``timeout`` is up, leaving this process untouched
(no Ray connection, no Ray threads). The child prints the nodes as one JSON line.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from ..errors import ClusterError, MissingDependency
from .group import _check_reachable

__all__ = ["NodeInfo", "cluster_nodes", "nodes_offering"]

logger = logging.getLogger(__name__)

#: Resources every Ray node has (or Ray adds itself): not placement resources.
_BUILT_IN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
_BUILT_IN_PREFIXES = ("node:", "accelerator_type:")
_MARK = "syncstream-nodes "  # the child's answer line starts with it


@dataclass(frozen=True)
class NodeInfo:
    """One node of the cluster as Ray's control store describes it."""

    #: Ray's node id (56 hex digits).
    node_id: str
    #: The node's IP address.
    address: str
    hostname: str
    alive: bool
    cpus: float
    #: Custom resources (placement ones among them): name -> amount.
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        """The first 8 digits of :attr:`node_id`, as shown in tables."""
        return self.node_id[:8]


def nodes_offering(nodes: list[NodeInfo], resource: str) -> list[NodeInfo]:
    """The alive nodes that offer ``resource`` (where a shard placed on it can start)."""
    return [node for node in nodes if node.alive and node.resources.get(resource, 0) > 0]


def cluster_nodes(
    address: str, timeout: float = 20.0, connect_timeout: float = 3.0
) -> list[NodeInfo]:
    """The nodes of the Ray cluster at ``address`` (``host:port`` or ``"auto"``).

    ``address`` is checked with a TCP connection first (``connect_timeout``); then a child
    process connects to the cluster and lists its nodes, given up after ``timeout`` s.
    Raises :class:`ClusterError` naming the address and what went wrong, and
    :class:`MissingDependency` without Ray.
    """
    if importlib.util.find_spec("ray") is None:
        raise MissingDependency("the cluster's nodes need Ray: pip install 'syncstream[cluster]'")
    if address not in ("auto", "local"):
        _check_reachable(address, connect_timeout)
    command = [sys.executable, "-m", "syncstream.cluster.nodes", address]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:  # run() killed the child
        raise ClusterError(
            f"Ray cluster at {address}: no answer within {timeout:g} s "
            "(is it a Ray cluster's address, of the same Ray version?)"
        ) from exc
    except OSError as exc:
        raise ClusterError(f"Ray cluster at {address}: cannot ask it: {exc}") from exc
    answers = [line for line in result.stdout.splitlines() if line.startswith(_MARK)]
    if result.returncode != 0 or not answers:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {result.returncode}"
        raise ClusterError(f"Ray cluster at {address}: {reason}")
    rows: list[dict[str, Any]] = json.loads(answers[-1].removeprefix(_MARK))
    return [NodeInfo(**row) for row in rows]


def _custom(resources: dict[str, float]) -> dict[str, float]:
    return {
        name: amount
        for name, amount in sorted(resources.items())
        if name not in _BUILT_IN and not name.startswith(_BUILT_IN_PREFIXES)
    }


def _ask(address: str) -> int:
    """The child's side: connect, print the nodes as one JSON line, disconnect."""
    ray: Any = importlib.import_module("ray")

    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        nodes = ray.nodes()
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ...
        print(f"cannot connect: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if ray.is_initialized():
            ray.shutdown()
    rows = [
        {
            "node_id": str(node.get("NodeID", "")),
            "address": str(node.get("NodeManagerAddress", "")),
            "hostname": str(node.get("NodeManagerHostname", "")),
            "alive": bool(node.get("Alive", False)),
            "cpus": float(node.get("Resources", {}).get("CPU", 0.0)),
            "resources": _custom(node.get("Resources", {})),
        }
        for node in nodes
    ]
    print(_MARK + json.dumps(rows), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m syncstream.cluster.nodes ADDRESS", file=sys.stderr)
        sys.exit(2)
    sys.exit(_ask(sys.argv[1]))
