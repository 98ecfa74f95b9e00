"""ClusterGroup on a real local Ray cluster: two nodes on 127.0.0.1, each with its own
custom resource, real ffmpeg senders read on the nodes, sets merged in the test process."""

from __future__ import annotations

import contextlib
import functools
import json
import pathlib
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from syncstream import (
    Camera,
    ClusterError,
    ConfigError,
    FrameSet,
    SenderConfig,
    StreamClosed,
    StreamGroup,
    SyncStreamError,
)
from syncstream.config import SenderOutput
from syncstream.processors import Recorder, Wall
from syncstream.recording import Recording
from syncstream.senders import LocalSender, free_udp_port
from syncstream.stats import GroupStats
from syncstream.stream import StreamState
from tests.conftest import processes_with, wait_until
from tests.ray_cluster import add_node, two_node_cluster  # before Ray: keeps it on loopback

ray = pytest.importorskip("ray", reason="the cluster extra: pip install 'syncstream[cluster]'")

from syncstream.cluster import ClusterGroup, ClusterStats, RemoteFrame  # noqa: E402

# the shard processors of this module go to the nodes by value: their Ray workers cannot
# import a test module
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

TINY = SenderConfig(size=(160, 120), fps=30.0)  # small: a loaded machine keeps up
# Deadlines, generous for a loaded machine: a shard starts in a new Ray worker process
# (a few seconds, much more while other programs take the CPUs)
STARTED = 90.0
SOON = 30.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two Ray nodes on loopback (node_a is the head), this process their driver."""
    with two_node_cluster(connect=True) as local:
        yield local


def _cameras(names: Sequence[str]) -> list[Camera]:
    return [Camera(name=name, sender=TINY, port=free_udp_port()) for name in names]


def _node_with(resource: str) -> str:
    """The id of the live Ray node that has ``resource``."""
    (node,) = [n for n in ray.nodes() if n["Alive"] and resource in n["Resources"]]
    return str(node["NodeID"])


def _complete_sets(group: ClusterGroup, count: int, timeout: float) -> list[FrameSet]:
    found: list[FrameSet] = []

    def enough() -> bool:
        fs = group.read(timeout=timeout)
        if fs.complete:
            found.append(fs)
        return len(found) >= count

    try:
        wait_until(enough, timeout, f"{count} complete sets")
    except AssertionError as exc:  # what the group saw, to tell why
        raise AssertionError("\n".join([str(exc), *group.stats.lines()])) from None
    return found


class CaptureTimes:
    """A processor keeping the capture times of each complete set, in camera order."""

    uses_pictures = False

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.sets: list[tuple[float, ...]] = []

    def __call__(self, frameset: FrameSet) -> None:
        times = [frameset.frames[n].capture_time for n in self.names if n in frameset]
        if len(times) == len(self.names) and None not in times:
            self.sets.append(tuple(t for t in times if t is not None))


class NodeProbe:
    """A shard processor: notes the Ray node it runs on and the cameras of its sets, and
    writes them to ``<directory>/probe-<shard>.json`` when closed."""

    uses_pictures = False

    def __init__(self, directory: str, shard: str) -> None:
        self.path = pathlib.Path(directory, f"probe-{shard}.json")
        self.node = ray.get_runtime_context().get_node_id()
        self.cameras: set[str] = set()

    def __call__(self, frameset: FrameSet) -> None:
        self.cameras.update(frameset.frames)

    def close(self) -> None:
        found = {"node": self.node, "cameras": sorted(self.cameras)}
        self.path.write_text(json.dumps(found))


def _recorder(directory: str, shard: str) -> Recorder:
    return Recorder(pathlib.Path(directory, shard), segment_seconds=2.0)


def _broken(shard: str) -> Recorder:
    raise ValueError(f"{shard}: no such lens")


def test_import_syncstream_needs_no_ray() -> None:
    code = "import sys, syncstream, syncstream.cluster; print('ray' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_bad_cluster_settings_are_refused_before_anything_starts(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="placement"):
        ClusterGroup(_cameras(["x"]), placement={"nobody": "node_a"})
    with pytest.raises(ConfigError, match="pictures"):
        ClusterGroup(_cameras(["x"]), pictures="huge")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_skew"):
        ClusterGroup(_cameras(["x"]), max_skew=-1.0)
    with pytest.raises(ConfigError, match="shard_processors"):
        ClusterGroup(_cameras(["x"]), shard_processors={"rec": "not a factory"})  # type: ignore[dict-item]
    group = ClusterGroup(_cameras(["x"]))  # packets stay on the nodes: record there
    with pytest.raises(ConfigError, match="shard_processors"):
        group.add_packet_listener(lambda name, packet: None)
    recorder = Recorder(tmp_path / "rec")
    with pytest.raises(ConfigError, match="shard_processors"):
        group.add_processor(recorder)
    recorder.close()


@pytest.mark.timeout(60)  # a start that hangs fails here, not at the suite's limit
def test_an_unreachable_address_raises_cluster_error_naming_it() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    group = ClusterGroup(_cameras(["x"]), address=address, connect_timeout=2.0)
    pattern = f"^Ray cluster at {re.escape(address)} is unreachable: "
    with pytest.raises(ClusterError, match=pattern) as caught:
        group.start()
    assert isinstance(caught.value, ConnectionError)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)  # the refusal, chained
    with pytest.raises(StreamClosed):  # the failed start closed the group
        group.start()
    with pytest.raises(ClusterError, match="cluster address 'nowhere' is not host:port"):
        ClusterGroup(_cameras(["y"]), address="nowhere").start()


def test_merged_sets_pair_frames_as_one_local_group_does(cluster: Any) -> None:
    """One ffmpeg per camera sends the same frames (same capture times) to two ports: the
    cluster reads one copy on the nodes, a StreamGroup here the other; where both made a
    set of a frame, the sets hold the same frames.

    Nearly everywhere: at a near tie (two sets of the same frames but one, whose spreads
    differ by less than a sixth of a frame interval: the cameras' phases spread evenly over
    it), which one the aligner picks depends on which frames had arrived when it decided;
    so does the first set after the start, and, on a loaded machine, the odd set of either
    group. So at most one set in ten may differ (idle, few do: near ties, the first set);
    a cluster pairing frames otherwise than a local group would differ in most."""
    placement = {"a1": "node_a", "a2": "node_a", "b1": "node_b"}
    names = list(placement)
    ports = {name: (free_udp_port(), free_udp_port()) for name in names}
    senders = [
        LocalSender(
            TINY.model_copy(
                update={
                    "destination": f"udp://127.0.0.1:{to_cluster}",
                    "outputs": {"copy": SenderOutput(destination=f"udp://127.0.0.1:{to_local}")},
                }
            ),
            name=f"sender-{name}",
        )
        for name, (to_cluster, to_local) in ports.items()
    ]
    remote = [Camera(name=n, url=f"udp://127.0.0.1:{ports[n][0]}") for n in names]
    here = [Camera(name=n, url=f"udp://127.0.0.1:{ports[n][1]}") for n in names]
    merged, local = CaptureTimes(names), CaptureTimes(names)

    def compared() -> tuple[int, int]:
        """Cluster sets equal to the local set(s) sharing a frame with them, and the others."""
        by_frame = {
            (n, t): times for times in list(local.sets) for n, t in zip(names, times, strict=True)
        }
        equal = differ = 0
        for times in list(merged.sets):
            same = {by_frame[n, t] for n, t in zip(names, times, strict=True) if (n, t) in by_frame}
            equal += same == {times}
            differ += bool(same - {times})
        return equal, differ

    def agree() -> bool:
        equal, differ = compared()
        return equal >= 30 and differ * 10 <= equal

    with contextlib.ExitStack() as stack:
        group = ClusterGroup(remote, address=cluster.address, placement=placement, max_skew=0.05)
        group.add_processor(merged, name="capture-times")
        stack.enter_context(group)
        reference = StreamGroup(here, max_skew=0.05)
        reference.add_processor(local)
        stack.enter_context(reference)
        for sender in senders:
            stack.enter_context(sender)
        wait_until(agree, STARTED, "30 cluster sets as the local group made them")
        fs = group.read(timeout=SOON)
        stats = group.stats
    assert agree(), compared()
    assert isinstance(fs["b1"], RemoteFrame) and fs["b1"].shard == "node_b"
    with pytest.raises(SyncStreamError, match="no picture"):
        _ = fs["b1"].image
    for times in merged.sets:  # each set within max_skew, each frame in one set
        assert max(times) - min(times) <= 0.05
    for column in zip(*merged.sets, strict=True):
        assert len(set(column)) == len(column)
    assert isinstance(stats, GroupStats) and isinstance(stats, ClusterStats)
    assert stats.clock == "sender" and stats.sets >= 30 and stats.sets_per_second > 0
    assert stats.skew_p50 is not None and stats.skew_p95 is not None
    assert stats.latency_p50 is not None and stats.latency_p50 > 0
    assert stats.processors["capture-times"].processed >= 30
    assert {n: c.shard for n, c in stats.cameras.items()} == placement  # type: ignore[attr-defined]
    assert all(c.used >= 30 and c.stream.state is StreamState.LIVE for c in stats.cameras.values())
    assert set(stats.shards) == {"node_a", "node_b"} and stats.shard_failures == 0
    assert stats.shards["node_b"].node_id == _node_with("node_b")
    assert stats.polls > 0 and stats.bytes_received > stats.polls
    assert any(line.startswith("@node_b") for line in stats.lines())


def test_processors_run_on_their_shards_node_and_on_merged_sets_in_the_driver(
    cluster: Any, tmp_path: pathlib.Path
) -> None:
    placement = {"a1": "node_a", "b1": "node_b", "b2": "node_b"}
    shard_processors = {
        "probe": functools.partial(NodeProbe, str(tmp_path)),
        "record": functools.partial(_recorder, str(tmp_path)),
        "broken": _broken,
    }
    wall = Wall(tile_size=(160, 120), labels=False)  # tiles of the sub pictures' size
    larger = SenderConfig(size=(320, 240), fps=30.0)  # its sub picture is shrunk
    cameras = [Camera(name="a1", sender=larger, port=free_udp_port()), *_cameras(["b1", "b2"])]
    sizes = {"a1": (240, 320, 3), "b1": (120, 160, 3), "b2": (120, 160, 3)}
    with ClusterGroup(
        cameras,
        address=cluster.address,
        placement=placement,
        pictures="sub",
        shard_processors=shard_processors,
    ) as group:
        group.add_processor(wall)
        fs = _complete_sets(group, 3, STARTED)[-1]
        picture = wall.compose(fs)
        wait_until(lambda: wall.output.latest() is not None, SOON, "a picture of the wall")

        def reported() -> bool:  # the shards report their processors about once a second
            found = group.stats.processors
            names = [f"{p}@{s}" for p in ("probe", "record") for s in ("node_a", "node_b")]
            return all(n in found and found[n].processed >= 1 for n in names)

        wait_until(reported, SOON, "the shards' processors at work")
        stats = group.stats
        group.close(timeout=SOON)  # the shards close their processors: the files are done
    for name in placement:  # each tile is the camera's sub picture: at most 160 wide
        x, y, w, h = wall.tile_rect(name)
        assert fs[name].image.shape == (120, 160, 3) and fs[name].width == sizes[name][1]
        assert np.array_equal(picture[y : y + h, x : x + w], fs[name].image)
    assert wall.output.latest().image.shape == (*reversed(wall.size), 3)  # type: ignore[union-attr]
    assert stats.processors["wall"].processed >= 1
    for shard in ("node_a", "node_b"):
        assert stats.processors[f"probe@{shard}"].errors == 0
        assert stats.processors[f"record@{shard}"].running
        broken = stats.processors[f"broken@{shard}"]  # its factory raised: the rest went on
        assert (
            broken.errors == 1 and not broken.running and "no such lens" in str(broken.last_error)
        )
        assert stats.shards[shard].node_id == _node_with(shard)
        cameras = sorted(n for n, s in placement.items() if s == shard)
        probe = json.loads((tmp_path / f"probe-{shard}.json").read_text())
        assert probe == {"node": _node_with(shard), "cameras": cameras}
        with Recording(tmp_path / shard) as recording:  # written by the node, on its disk
            assert list(recording.cameras) == cameras
            first = next(iter(recording))
            assert sorted(first) == cameras
            assert all(first[n].image.shape == sizes[n] for n in cameras)  # whole pictures


def test_a_shard_that_cannot_start_fails_alone(cluster: Any) -> None:
    missing = SenderConfig(size=(160, 120), ffmpeg="/nonexistent/ffmpeg")
    cameras = [*_cameras(["ok"]), Camera(name="bad", sender=missing, port=free_udp_port())]
    with ClusterGroup(
        cameras,
        address=cluster.address,
        placement={"ok": "node_a", "bad": "node_b"},
        first_frame_wait=1.0,  # "bad" never delivers: sets without it soon
    ) as group:
        wait_until(lambda: group.stats.shards["node_b"].state == "failed", STARTED, "failed")
        failed = group.stats.shards["node_b"]  # the shard's GroupStartError, on one line
        assert failed.error is not None and failed.error.startswith(
            "syncstream.errors.GroupStartError: 1 camera(s) failed to start: bad: "
        )
        assert "/nonexistent/ffmpeg" in failed.error

        def ok_alone() -> bool:
            fs = group.read(timeout=SOON)
            return "ok" in fs and fs.missing == ("bad",)

        wait_until(ok_alone, STARTED, "sets of the camera whose shard started")
        assert group.stats.cameras["bad"].stream.state is StreamState.FAILED
        assert not group.wait(timeout=0.1)  # one camera still delivers: not ended


def test_a_closed_group_refuses_read_at_once_even_with_a_set_waiting(cluster: Any) -> None:
    """As a StreamGroup: the set left unread when close() ran is not handed out."""
    with ClusterGroup(
        _cameras(["a1"]), address=cluster.address, placement={"a1": "node_a"}
    ) as group:
        group.read(timeout=STARTED)  # live

        def waiting() -> bool:  # a set put and neither taken nor replaced
            stats = group.stats
            return stats.sets > stats.delivered + stats.skipped

        wait_until(waiting, SOON, "a set waits unread")
    assert waiting()  # still there after close(): read() refuses it all the same
    with pytest.raises(StreamClosed, match="cluster group"):
        group.read(timeout=0)
    with pytest.raises(StreamClosed):
        group.read(timeout=SOON)  # no wait either
    assert list(group) == [] and group.wait(timeout=0)


def test_a_dead_node_leaves_its_cameras_missing_until_a_node_replaces_it(cluster: Any) -> None:
    """Runs last: it replaces the fixture's node_b."""
    placement = {"a1": "node_a", "b1": "node_b"}
    cameras = _cameras(list(placement))
    b1_sender = f"udp://127.0.0.1:{cameras[1].port}"
    with ClusterGroup(
        cameras, address=cluster.address, placement=placement, max_skew=0.05
    ) as group:
        _complete_sets(group, 3, STARTED)
        before = group.stats.shards["node_b"]
        (node,) = [n for n in cluster.worker_nodes if n.node_id == before.node_id]
        cluster.remove_node(node)

        def a1_only() -> bool:  # a1 in every set; reads never wait longer than a timeout
            fs = group.read(timeout=SOON)
            assert "a1" in fs, f"set {fs.seq} without a1"
            return fs.missing == ("b1",)

        wait_until(a1_only, SOON, "sets without the dead node's camera")
        wait_until(lambda: group.stats.shards["node_b"].state == "down", SOON, "shard down")
        down = group.stats.cameras["b1"].stream
        assert down.state is StreamState.STALE and down.waiting_for == "shard node_b is down"
        for _ in range(10):
            a1_only()
        new = add_node(cluster, "node_b")
        back = _complete_sets(group, 3, STARTED)
        # the dead node's sender went with it: one ffmpeg sends b1's stream
        wait_until(lambda: len(processes_with(b1_sender)) == 1, SOON, "one sender of b1")
        live = StreamState.LIVE  # as the new shard reports it, within a second or so
        wait_until(lambda: group.stats.cameras["b1"].stream.state is live, SOON, "b1 live")
        stats = group.stats
    after = stats.shards["node_b"]
    assert after.state == "up" and after.restarts >= 1 and after.failures >= 1
    assert after.node_id == new.node_id != before.node_id and after.pid != before.pid
    assert stats.shards["node_a"].failures == 0 and stats.shard_failures == after.failures
    assert stats.cameras["b1"].missing >= 10  # type: ignore[attr-defined]
    assert all(fs.complete for fs in back)
    wait_until(lambda: not processes_with(b1_sender), SOON, "b1's sender gone after close")
