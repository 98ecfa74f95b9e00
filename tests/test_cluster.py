"""ClusterGroup on a real local Ray cluster: two nodes on 127.0.0.1, each with its own
custom resource, real ffmpeg senders read on the nodes, sets merged in the test process."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from syncstream import Camera, ClusterError, ConfigError, FrameSet, SenderConfig, SyncStreamError
from syncstream.senders import free_udp_port
from tests.conftest import processes_with, wait_until

# read when Ray is imported: a driver connecting to 127.0.0.1 stays on loopback (else Ray
# swaps 127.0.0.1 for the machine's outward address, where the test nodes do not listen)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray", reason="the cluster extra: pip install 'syncstream[cluster]'")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from syncstream.cluster import ClusterGroup  # noqa: E402

SMALL = SenderConfig(size=(320, 240), fps=30.0)
PLACEMENT = {"a1": "node_a", "a2": "node_a", "b1": "node_b", "b2": "node_b"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two Ray nodes on loopback (node_a is the head), this process their driver."""
    local = cluster_utils.Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={
            "num_cpus": 1,
            "node_ip_address": "127.0.0.1",
            "resources": {"node_a": 1},
            "include_dashboard": False,
        },
    )
    try:
        local.add_node(num_cpus=1, node_ip_address="127.0.0.1", resources={"node_b": 1})
        local.wait_for_nodes(timeout=60)
        yield local
    finally:
        ray.shutdown()
        local.shutdown()


def _cameras(names: list[str]) -> list[Camera]:
    return [Camera(name=name, sender=SMALL, port=free_udp_port()) for name in names]


def _complete_sets(group: ClusterGroup, count: int, timeout: float) -> list[FrameSet]:
    found: list[FrameSet] = []

    def enough() -> bool:
        fs = group.read(timeout=timeout)
        if fs.complete:
            found.append(fs)
        return len(found) >= count

    wait_until(enough, timeout, f"{count} complete sets")
    return found


def test_import_syncstream_needs_no_ray() -> None:
    code = "import sys, syncstream, syncstream.cluster; print('ray' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_bad_cluster_settings_are_refused_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match="placement"):
        ClusterGroup(_cameras(["x"]), placement={"nobody": "node_a"})
    with pytest.raises(ConfigError, match="pictures"):
        ClusterGroup(_cameras(["x"]), pictures="huge")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_skew"):
        ClusterGroup(_cameras(["x"]), max_skew=-1.0)


def test_an_unreachable_address_raises_cluster_error() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    group = ClusterGroup(_cameras(["x"]), address=f"127.0.0.1:{port}", connect_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(ClusterError, match="unreachable"):
        group.start()
    assert time.monotonic() - started < 10.0  # a bound on hanging, not a speed figure
    with pytest.raises(ClusterError, match="not host:port"):
        ClusterGroup(_cameras(["y"]), address="nowhere").start()


def test_cameras_on_two_nodes_merge_into_sets_by_capture_time(cluster: Any) -> None:
    max_skew = 0.05  # four cameras at 30 fps: the nearest frames lie within a frame interval
    with ClusterGroup(
        _cameras(list(PLACEMENT)),
        address=cluster.address,
        placement=PLACEMENT,
        sync="nearest",
        max_skew=max_skew,
    ) as group:
        sets = _complete_sets(group, 20, 40.0)
        stats = group.stats
    for fs in sets:
        assert list(fs) == list(PLACEMENT) and fs.clock == "sender"
        times = [fs[name].capture_time for name in fs]
        assert all(t is not None for t in times)
        spread = max(t for t in times if t is not None) - min(t for t in times if t is not None)
        assert spread == pytest.approx(fs.skew) and fs.skew <= max_skew
    for earlier, later in itertools.pairwise(sets):  # each frame in one set
        assert all(later[name].capture_time > earlier[name].capture_time for name in PLACEMENT)  # type: ignore[operator]
    frame = sets[0]["b1"]
    assert frame.width == 320 and frame.height == 240 and frame.shard == "node_b"  # type: ignore[attr-defined]
    with pytest.raises(SyncStreamError, match="no picture"):
        _ = frame.image
    assert stats.sets >= 20 and stats.shard_failures == 0
    assert {name: cam.shard for name, cam in stats.cameras.items()} == PLACEMENT
    assert all(cam.used >= 20 and cam.received >= cam.used for cam in stats.cameras.values())


def test_a_killed_shard_leaves_its_cameras_missing_until_it_restarts(cluster: Any) -> None:
    placement = {"a1": "node_a", "b1": "node_b"}
    cameras = _cameras(list(placement))
    b1_sender = f"udp://127.0.0.1:{cameras[1].port}"
    with ClusterGroup(
        cameras,
        address=cluster.address,
        placement=placement,
        pictures="sub",
        max_skew=0.05,
    ) as group:
        first = _complete_sets(group, 3, 40.0)[-1]
        assert first["a1"].image.shape == (120, 160, 3)  # shrunk to 160 pixels wide
        shard = group.shards["node_b"]
        pid = ray.get(shard.pid.remote(), timeout=10)
        ray.kill(shard, no_restart=False)

        def b1_missing() -> bool:
            fs = group.read(timeout=10.0)
            return fs.missing == ("b1",) and "a1" in fs

        wait_until(b1_missing, 20.0, "sets without the killed shard's camera")
        wait_until(lambda: group.stats.shard_failures >= 1, 20.0, "the shard found down")
        back = _complete_sets(group, 3, 40.0)
        assert ray.get(shard.pid.remote(), timeout=10) != pid  # a new process reads b1
        # the dead shard's sender went with it: one ffmpeg sends b1's stream
        wait_until(lambda: len(processes_with(b1_sender)) == 1, 10.0, "one sender of b1")
        stats = group.stats
    assert all(fs["b1"].capture_time > first["b1"].capture_time for fs in back)  # type: ignore[operator]
    assert stats.shard_failures >= 1 and stats.cameras["b1"].missing >= 1
    assert stats.cameras["b1"].state == "live"
    wait_until(lambda: not processes_with(b1_sender), 10.0, "b1's sender gone after close")
