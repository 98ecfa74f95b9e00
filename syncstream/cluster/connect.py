"""Reaching a Ray cluster: Ray imported on demand, an address checked before Ray is asked."""

from __future__ import annotations

import importlib
import logging
import socket
from types import ModuleType
from typing import Any

from ..errors import ClusterError, MissingDependency

__all__ = ["check_reachable", "connect", "import_ray"]


def import_ray() -> ModuleType:
    """The ``ray`` module; :class:`MissingDependency` naming the extra without it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise MissingDependency(
            "ClusterGroup needs Ray: pip install 'syncstream[cluster]'"
        ) from exc


def check_reachable(address: str, timeout: float) -> None:
    """Raise ClusterError unless something accepts TCP connections at ``host:port``."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"cluster address {address!r} is not host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(f"Ray cluster at {address} is unreachable: {exc}") from exc


def connect(address: str | None, timeout: float) -> tuple[Any, bool]:
    """Connect this process to the cluster at ``address`` and return ``ray`` and whether
    this call connected it (the caller then disconnects it again).

    An explicit ``host:port`` is checked first, so a wrong address fails within
    ``timeout``. A Ray already connected in this process is used as it is (None or
    ``"auto"``), or refused when it is another cluster's. Raises :class:`ClusterError`.
    """
    ray: Any = import_ray()
    explicit = address not in (None, "auto", "local")
    if explicit:
        assert address is not None
        check_reachable(address, timeout)
    if ray.is_initialized():
        connected = ray.get_runtime_context().gcs_address
        if explicit and address != connected:
            raise ClusterError(
                f"this process is connected to the Ray cluster at {connected}, not {address}"
            )
        return ray, False
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
    return ray, True
