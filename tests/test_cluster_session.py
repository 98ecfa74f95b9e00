"""Session files with ``[cluster]``: parsed and refused with lines, ``syncstream check``
listing a real local Ray cluster's nodes, and ``syncstream run`` reading cameras on its two
nodes (real ffmpeg senders started by the shards) into one wall and per-node recordings."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import cv2
import pytest

from syncstream.cluster.nodes import cluster_nodes
from syncstream.errors import ClusterError, ConfigError
from syncstream.processors.wall import Wall
from syncstream.recording import Recording
from syncstream.recording.index import INDEX_NAME
from syncstream.senders import free_udp_port
from syncstream.session import ShardRecorder
from syncstream.session_config import RecordSettings, load_session_config
from tests.conftest import free_tcp_port, get_when_served, processes_with, wait_until
from tests.ray_cluster import RAY_LOOPBACK, two_node_cluster  # before Ray: keeps it on loopback

COMMAND = [sys.executable, "-m", "syncstream"]
ENV = {**os.environ, **RAY_LOOPBACK}  # the commands run below stay on loopback too
SENDER = 'sender = { input = "testsrc", size = [320, 240] }'


def _cameras(*names: str) -> str:
    return "".join(
        f'[[cameras]]\nname = "{name}"\nport = {free_udp_port()}\n{SENDER}\n\n' for name in names
    )


def _write(directory: pathlib.Path, text: str) -> pathlib.Path:
    path = directory / "site.toml"
    path.write_text(text)
    return path


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        stdin=subprocess.DEVNULL,
    )


def _closed_port() -> int:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the [cluster] table (no cluster needed) --------------------------------------------


def test_a_cluster_session_file_is_parsed(tmp_path: pathlib.Path) -> None:
    text = _cameras("a1", "b1", "c1") + (
        '[cluster]\naddress = "10.0.0.1:6379"\nmax_restarts = 3\npoll_timeout = 1.5\n'
        '[cluster.placement]\na1 = "node_a"\nb1 = "node_b"\n'
    )
    config = load_session_config(_write(tmp_path, text))
    cluster = config.cluster
    assert cluster is not None
    assert cluster.address == "10.0.0.1:6379" and cluster.placement == {
        "a1": "node_a",
        "b1": "node_b",
    }
    assert (cluster.max_restarts, cluster.poll_timeout, cluster.pictures) == (3, 1.5, None)
    assert config.cluster_pictures == "sub"  # the wall is on: small pictures
    quiet = load_session_config(_write(tmp_path, text + "[wall]\nenabled = false\n"))
    assert quiet.cluster_pictures == "none"
    full = load_session_config(_write(tmp_path, text.replace("max_", 'pictures = "full"\nmax_')))
    assert full.cluster_pictures == "full"


BAD = {
    # case: (tables after the cameras, line of the problem from there on, its path, message)
    "unknown-camera": (
        '[cluster]\naddress = "h:6379"\n[cluster.placement]\na1 = "node_a"\nzz = "node_b"\n',
        5,
        "cluster.placement.zz",
        "no camera named 'zz' in [[cameras]]",
    ),
    "unknown-camera-inline": (
        '[cluster]\naddress = "h:6379"\nplacement = { zz = "node_b" }\n',
        3,
        "cluster.placement.zz",
        "no camera named 'zz'",
    ),
    "empty-resource": (
        '[cluster]\naddress = "h:6379"\n[cluster.placement]\na1 = ""\n',
        4,
        "cluster.placement.a1",
        "at least 1 character",
    ),
    "no-address": ("[cluster]\nmax_restarts = 2\n", 1, "cluster.address", "required field"),
    "unknown-field": (
        '[cluster]\naddress = "h:6379"\nretries = 3\n',
        3,
        "cluster.retries",
        "unknown field; allowed: address, placement, pictures",
    ),
    "bad-pictures": (
        '[cluster]\naddress = "h:6379"\npictures = "half"\n',
        3,
        "cluster.pictures",
        "'none', 'sub' or 'full'",
    ),
    "no-pictures-for-the-wall": (
        '[cluster]\naddress = "h:6379"\npictures = "none"\n',
        3,
        "cluster.pictures",
        "leaves the wall nothing to show",
    ),
    "speaker": (
        '[speaker]\nhold = 3\n\n[cluster]\naddress = "h:6379"\n',
        1,
        "speaker",
        "not with [cluster]: the speaker view needs every camera's whole pictures",
    ),
    "restarts": (
        '[cluster]\naddress = "h:6379"\nmax_restarts = -5\n',
        3,
        "cluster.max_restarts",
        ">= -1",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_cluster_table_is_refused_with_its_line(case: str, tmp_path: pathlib.Path) -> None:
    tables, line, field, message = BAD[case]
    cameras = _cameras("a1", "b1")
    path = _write(tmp_path, cameras + tables)
    with pytest.raises(ConfigError) as info:
        load_session_config(path)
    lines = str(info.value).split("\n")
    assert lines[0] == f"{path}: invalid session file"
    assert len(lines) == 2, lines
    expected = f"  {path}:{cameras.count(chr(10)) + line}: {field}: "
    assert lines[1].startswith(expected), lines[1]
    assert message.replace(">=", "greater than or equal to") in lines[1]


def test_a_cluster_session_imports_no_ray_and_without_it_says_what_to_install(
    tmp_path: pathlib.Path,
) -> None:
    path = _write(tmp_path, _cameras("a1") + f'[cluster]\naddress = "127.0.0.1:{_closed_port()}"\n')
    # a session is made without Ray; starting it (run) and check need it: ray hidden here
    code = (
        "import sys\n"
        "from syncstream.session import Session\n"
        f"Session.from_file({str(path)!r})\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
        "sys.modules['ray'] = None  # as if the extra were not installed\n"
        "from syncstream.cli import main\n"
        f"codes = [main([command, {str(path)!r}]) for command in ('run', 'check')]\n"
        "print(codes)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[1, 1]"
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines  # one line each, no traceback
    assert all("pip install 'syncstream[cluster]'" in line for line in lines), lines


def test_the_shard_recorder_pickles_and_gives_each_life_its_folder(tmp_path: pathlib.Path) -> None:
    factory = pickle.loads(
        pickle.dumps(ShardRecorder(str(tmp_path), RecordSettings(directory="x")))
    )
    first = factory("node_a")
    assert first.directory == tmp_path / "node_a"
    assert factory("").directory == tmp_path / "unplaced"
    (tmp_path / "node_a").mkdir()
    (tmp_path / "node_a" / INDEX_NAME).write_text("")  # the first life's recording
    assert factory("node_a").directory == tmp_path / "node_a.2"


def test_check_of_an_unreachable_cluster_is_one_line_and_a_failure(tmp_path: pathlib.Path) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    path = _write(tmp_path, _cameras("a1") + f'[cluster]\naddress = "{address}"\n')
    result = _run("check", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"syncstream: Ray cluster at {address} is unreachable: [Errno 111] Connection refused"
    ]


def test_a_server_that_is_not_ray_is_given_up_after_the_timeout() -> None:
    pytest.importorskip("ray", reason="the cluster extra: pip install 'syncstream[cluster]'")
    with socket.socket() as server:  # accepts TCP connections, answers nothing
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(ClusterError, match=f"Ray cluster at {address}: no answer within 3 s"):
            cluster_nodes(address, timeout=3.0)
    assert not processes_with(f"syncstream.cluster.nodes {address}")  # the child was ended


# -- on a local cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    """Two Ray nodes on loopback with resources node_a and node_b; the commands under test
    are their drivers (this process does not connect)."""
    with two_node_cluster(connect=False) as local:
        yield str(local.address)


def test_check_lists_the_nodes_and_flags_a_resource_no_node_offers(
    cluster_address: str, tmp_path: pathlib.Path
) -> None:
    text = _cameras("a1", "b1", "c1", "d1") + (
        f'[cluster]\naddress = "{cluster_address}"\n'
        '[cluster.placement]\na1 = "node_a"\nb1 = "node_b"\nc1 = "node_c"\n'
    )
    result = _run("check", str(_write(tmp_path, text)))
    assert result.returncode == 1, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == f"cluster {cluster_address}: 2 nodes, 2 alive"
    assert out[1].split() == ["node", "address", "alive", "CPUs", "resources"]
    nodes = {line.split()[-1]: line.split() for line in out[3:5]}
    assert set(nodes) == {"node_a=1", "node_b=1"}
    for row in nodes.values():
        assert re.fullmatch(r"[0-9a-f]{8}", row[0]) and row[1:4] == ["127.0.0.1", "yes", "1"]
    placement = {line.split()[0]: line for line in out[8:12]}
    assert placement["node_a"].split()[1:] == ["a1", nodes["node_a=1"][0]]
    assert placement["node_b"].split()[1:] == ["b1", nodes["node_b=1"][0]]
    assert placement["node_c"].split()[1:] == ["c1", "FAIL", "no", "alive", "node", "offers", "it"]
    assert placement["(any)"].split()[1:4] == ["d1", "any", "of"]
    assert "node_c: no alive node offers it: cameras c1 could never start" in out[12]
    assert out[-1] == "1 of 4 placements not offered"
    assert all(len(line) <= 100 for line in out[:12])  # the tables


def test_run_reads_cameras_on_two_nodes_into_a_wall_and_per_node_recordings(
    cluster_address: str, tmp_path: pathlib.Path
) -> None:
    cameras = _cameras("a1", "a2", "b1")
    ports = [int(port) for port in re.findall(r"port = (\d+)", cameras)]
    png, recording, web = tmp_path / "wall.png", tmp_path / "rec", free_tcp_port()
    text = cameras + (
        '[group]\non_missing = "wait"\n\n'  # complete sets only: "partial 0" says all were
        "[wall]\ntile_size = [320, 180]\n\n"
        f'[record]\ndirectory = "{recording}"\n\n'
        f"[web]\nport = {web}\n\n"
        f'[run]\nseconds = 60\nsnapshot = "{png}"\n\n'  # stopped by SIGTERM before
        f'[cluster]\naddress = "{cluster_address}"\n'
        'placement = { a1 = "node_a", a2 = "node_a", b1 = "node_b" }\n'
    )
    proc = subprocess.Popen(
        [*COMMAND, "run", str(_write(tmp_path, text))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        stdin=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{web}"
        jpeg = get_when_served(f"{base}/snapshot.jpg", 40, lambda: proc.poll() is None)
        assert jpeg[:2] == b"\xff\xd8"  # the wall, served by the driver

        def sets() -> int:
            stats = json.loads(get_when_served(f"{base}/stats", 10, lambda: proc.poll() is None))
            assert set(stats["group"]["cameras"]) == {"a1", "a2", "b1"}
            return int(stats["group"]["sets"])

        wait_until(lambda: sets() >= 30, 40, "30 sets merged from both nodes")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped by SIGTERM" in stdout
    summary = stdout.split("summary:")[1]
    found = re.search(r"^group .* sets (\d+) partial (\d+)$", summary, re.MULTILINE)
    assert found is not None, summary
    assert int(found.group(1)) >= 30 and int(found.group(2)) == 0
    assert re.search(r"^@node_a +up .*cameras a1, a2$", summary, re.MULTILINE), summary
    assert re.search(r"^@node_b +up .*cameras b1$", summary, re.MULTILINE), summary

    wall = Wall(["a1", "a2", "b1"], tile_size=(320, 180))
    picture = cv2.imread(str(png))
    assert picture is not None and (picture.shape[1], picture.shape[0]) == wall.size
    for name in wall.cameras:  # each tile a camera's (shrunk) picture, not NO SIGNAL
        x, y, w, h = wall.tile_rect(name)
        assert picture[y : y + h, x : x + w].std() > 20, name

    for shard, names in (("node_a", ("a1", "a2")), ("node_b", ("b1",))):
        recorded = Recording(recording / shard)
        assert recorded.cameras == names
        assert len(recorded) > 0 and recorded.end is not None  # closed cleanly
        for name in names:
            segments = recorded.segments(name)
            assert segments and segments[0].stat().st_size > 0
    assert sorted(p.name for p in recording.iterdir()) == ["node_a", "node_b"]
    for port in ports:  # the shards' senders stopped with the session
        wait_until(lambda port=port: not processes_with(f"127.0.0.1:{port}"), 10.0, "no sender")
