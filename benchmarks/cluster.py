"""Cluster: frame sets of cameras read on two Ray nodes, against one local StreamGroup.

``--cameras`` (8) simulated cameras, each one of our ffmpeg senders
(:class:`~syncstream.LocalSender`: x264 ultrafast/zerolatency, ``--size`` 640x480 at 30 fps,
stamped with the wall clock) on 127.0.0.1, started once for the whole run. Two receivers
take turns on the same streams, their order alternating from round to round:

- ``local``: one :class:`~syncstream.StreamGroup` of every camera in this process;
- ``cluster``: a :class:`~syncstream.cluster.ClusterGroup` on a two-node Ray cluster
  started once for the run (``ray.cluster_utils.Cluster``, both nodes on 127.0.0.1): the
  first half of the cameras placed on ``node_a`` (the head), the other half on ``node_b``,
  by custom resource. Each node's shard decodes its cameras; the sets are merged in this
  process (the driver).

Both align with the same ``sync="nearest"`` and ``--max-skew``, and neither converts
pictures (no processor; the shards send timestamps only). After the first complete set and
``--warmup`` seconds, ``--seconds`` are measured; this process reads every set as a
program would (``read()`` in a loop):

- **sets/s**: complete sets taken by the program per second; **complete/s**: complete sets
  the group made (``stats.sets - stats.partial``: more than the program took when it
  skipped some); **emitted/s**: all sets the group made, partial ones included (a camera
  missing: its frame came too late or was lost);
- **skew, latency** p50/p95 over the complete sets taken: ``fs.skew``, and ``fs.latency``
  (the set emitted minus its earliest capture time; the nodes share this machine's clock).
  **Merge latency** is the cluster's latency minus the local group's in the same round;
- **bytes/set**: ``stats.bytes_received`` (the pickled poll results the shards sent the
  driver) over the sets emitted in the window; **polls/set**: ``stats.polls`` (answered
  polls, each result with its own fields besides its records) over the same sets;
- **CPU**, in cores (this machine has ``os.cpu_count()``): the whole machine's busy time
  (``/proc/stat``); of it, this process (the driver, or the local group's readers), the
  rest of its process tree (the Ray cluster: GCS, raylets, workers, the shards: idle
  during ``local`` rounds, still running), the senders, and **other** (whatever else runs
  on the machine).

On a machine with few cores the senders' encoders, the decoders and Ray compete: the
script reports what it measures; ``--cameras`` and ``--size`` run it smaller.

Run: ``python3 benchmarks/cluster.py`` (``--rounds 3``, ``--seconds 10``, ``--warmup 2``,
``--cameras 8``, ``--size 640x480``, ``--max-skew 0.05``, ``--json``). Needs ffmpeg and
the cluster extra (``pip install 'syncstream[cluster]'``). Every sender, the cluster's
processes and the groups are stopped at the end, on Ctrl-C and on SIGTERM too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import pathlib
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

from scale import machine_busy, pid_cpu

from syncstream import Camera, FrameSet, ReadTimeout, SenderConfig, StreamGroup
from syncstream.cluster import ClusterGroup
from syncstream.senders import LocalSender, free_udp_port

FPS = 30.0
NODES = ("node_a", "node_b")
_OPEN_WAIT = 60.0  # s for a group's first complete set (a shard starts a Ray worker first)


@dataclass(frozen=True)
class Feed:
    """A simulated camera: its sender, where it sends, and the node that reads it."""

    name: str
    url: str
    node: str
    sender: LocalSender


@dataclass
class Measure:
    """One receiver's window. CPU figures are in cores."""

    receiver: str
    sets_per_s: float
    complete_per_s: float
    emitted_per_s: float
    skew_p50_ms: float | None
    skew_p95_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    bytes_per_set: float | None
    polls_per_set: float | None
    machine_cpu: float
    driver_cpu: float
    tree_cpu: float
    senders_cpu: float
    other_cpu: float


# -- CPU ---------------------------------------------------------------------------------


def descendants(root: int) -> set[int]:
    """The ids of every process below ``root`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])  # after the name: state, ppid
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass(frozen=True)
class Clocks:
    """Monotonic time and the CPU counters (seconds), at one instant."""

    mono: float
    machine: float
    driver: float
    tree: dict[int, float]  # this process's descendants but the senders, by pid
    senders: float

    @classmethod
    def now(cls, feeds: list[Feed]) -> Clocks:
        """Read them; the senders are left out of the tree and counted apart."""
        sender_pids = {pid for feed in feeds if (pid := feed.sender.pid) is not None}
        tree = descendants(os.getpid()) - sender_pids
        return cls(
            mono=time.monotonic(),
            machine=machine_busy(),
            driver=time.process_time(),
            tree={pid: pid_cpu(pid) for pid in tree},
            senders=sum(pid_cpu(pid) for pid in sender_pids),
        )


def cpu_fields(before: Clocks, after: Clocks) -> dict[str, float]:
    """Cores used between two readings; a process that started in between counts whole."""
    seconds = after.mono - before.mono
    tree = sum(cpu - before.tree.get(pid, 0.0) for pid, cpu in after.tree.items() if cpu > 0)
    machine = (after.machine - before.machine) / seconds
    driver = (after.driver - before.driver) / seconds
    senders = (after.senders - before.senders) / seconds
    return {
        "machine_cpu": machine,
        "driver_cpu": driver,
        "tree_cpu": tree / seconds,
        "senders_cpu": senders,
        "other_cpu": max(0.0, machine - driver - tree / seconds - senders),
    }


# -- one window --------------------------------------------------------------------------


def _percentile_ms(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * 1000, 1)


def _first_complete(group: StreamGroup | ClusterGroup, receiver: str) -> None:
    deadline = time.monotonic() + _OPEN_WAIT
    while True:
        left = deadline - time.monotonic()
        try:
            if left > 0 and group.read(timeout=left).complete:
                return
        except ReadTimeout:
            pass
        if time.monotonic() >= deadline:
            stats = group.stats
            said = stats.lines() if hasattr(stats, "lines") else [repr(stats)]
            lines = "\n".join(f"  {line}" for line in said)
            raise RuntimeError(f"{receiver}: no complete set within {_OPEN_WAIT:.0f} s\n{lines}")


def _per_set(stats_before: object, stats: object, field: str, sets: int) -> float | None:
    """How much a counter of a cluster's stats grew per set (None: a local group's stats)."""
    before, after = getattr(stats_before, field, None), getattr(stats, field, None)
    return None if before is None or after is None else (after - before) / max(1, sets)


def measure(
    group: StreamGroup | ClusterGroup,
    receiver: str,
    feeds: list[Feed],
    warmup: float,
    seconds: float,
) -> Measure:
    """Read ``group``'s sets as a program would: ``warmup`` s, then ``seconds`` measured."""
    _first_complete(group, receiver)
    end = time.monotonic() + warmup
    while (left := end - time.monotonic()) > 0:
        with contextlib.suppress(ReadTimeout):
            group.read(timeout=left)
    stats_before, before = group.stats, Clocks.now(feeds)
    taken: list[FrameSet] = []
    end = before.mono + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            fs = group.read(timeout=left)
        except ReadTimeout:
            break
        if fs.complete:
            taken.append(fs)
    after, stats = Clocks.now(feeds), group.stats
    window = after.mono - before.mono
    emitted = stats.sets - stats_before.sets
    return Measure(
        receiver=receiver,
        sets_per_s=len(taken) / window,
        complete_per_s=(emitted - stats.partial + stats_before.partial) / window,
        emitted_per_s=emitted / window,
        skew_p50_ms=_percentile_ms([fs.skew for fs in taken], 0.5),
        skew_p95_ms=_percentile_ms([fs.skew for fs in taken], 0.95),
        latency_p50_ms=_percentile_ms([fs.latency for fs in taken], 0.5),
        latency_p95_ms=_percentile_ms([fs.latency for fs in taken], 0.95),
        bytes_per_set=_per_set(stats_before, stats, "bytes_received", emitted),
        polls_per_set=_per_set(stats_before, stats, "polls", emitted),
        **cpu_fields(before, after),
    )


# -- the setup ---------------------------------------------------------------------------


def start_feeds(stack: contextlib.ExitStack, count: int, size: tuple[int, int]) -> list[Feed]:
    """Start ``count`` senders on 127.0.0.1, the first half placed on node_a."""
    feeds: list[Feed] = []
    ports: set[int] = set()
    for index in range(count):
        port = free_udp_port()
        while port in ports:  # nothing binds it until a receiver opens it
            port = free_udp_port()
        ports.add(port)
        url = f"udp://127.0.0.1:{port}"
        config = SenderConfig(destination=url, size=size, fps=FPS)
        sender = stack.enter_context(LocalSender(config, name=f"c{index}"))
        feeds.append(Feed(f"c{index}", url, NODES[index * len(NODES) // count], sender))
    return feeds


def start_cluster(stack: contextlib.ExitStack) -> Any:
    """Two Ray nodes on 127.0.0.1 (node_a the head), this process their driver."""
    # read when Ray is imported: a driver connecting to 127.0.0.1 stays on loopback (else
    # Ray swaps 127.0.0.1 for the machine's outward address, where the nodes do not listen)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray = importlib.import_module("ray")
    cluster_utils = importlib.import_module("ray.cluster_utils")
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = cluster_utils.Cluster(shutdown_at_exit=True)
    stack.callback(cluster.shutdown)
    cluster.add_node(**node, resources={NODES[0]: 1})
    cluster.add_node(**node, resources={NODES[1]: 1})
    cluster.wait_for_nodes(timeout=120)
    cluster.connect()
    stack.callback(ray.shutdown)
    return cluster


def run_local(feeds: list[Feed], args: argparse.Namespace) -> Measure:
    """One StreamGroup of every camera, in this process."""
    cams = [Camera(name=f.name, url=f.url) for f in feeds]
    with StreamGroup(cams, sync="nearest", max_skew=args.max_skew) as group:
        return measure(group, "local", feeds, args.warmup, args.seconds)


def run_cluster(feeds: list[Feed], args: argparse.Namespace, cluster: Any) -> Measure:
    """A ClusterGroup: half the cameras read on each node, merged here."""
    cams = [Camera(name=f.name, url=f.url) for f in feeds]
    placement = {f.name: f.node for f in feeds}
    with ClusterGroup(
        cams,
        address=cluster.address,
        placement=placement,
        sync="nearest",
        max_skew=args.max_skew,
    ) as group:
        return measure(group, "cluster", feeds, args.warmup, args.seconds)


# -- signals and report ------------------------------------------------------------------


class Signals:
    """SIGINT, SIGTERM and SIGHUP unwind once like Ctrl-C, so that everything is stopped;
    once stopping has begun (:meth:`stopping`), they are ignored, so that it finishes."""

    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self._stopping = False
        self._previous: dict[int, Any] = {}

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return
        self._stopping = True
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def install(self) -> None:
        """Handle the signals (again: ``ray.init`` installs its own SIGTERM handler)."""
        for sig in self.HANDLED:
            previous = signal.signal(sig, self._interrupt)
            self._previous.setdefault(sig, previous)

    def stopping(self) -> None:
        """From now on the signals are ignored: everything is being stopped."""
        self._stopping = True

    def __enter__(self) -> Signals:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(rounds: list[dict[str, Measure]]) -> dict[str, dict[str, float | None]]:
    """Medians over rounds per receiver, and the merge latency (cluster minus local)."""
    summary: dict[str, dict[str, float | None]] = {}
    for name in ("local", "cluster"):
        rows = [asdict(r[name]) for r in rounds]
        keys = [k for k in rows[0] if k != "receiver"]
        summary[name] = {k: _median([row[k] for row in rows]) for k in keys}
    for key in ("latency_p50_ms", "latency_p95_ms"):
        diffs: list[float | None] = []
        for r in rounds:
            local, cluster = getattr(r["local"], key), getattr(r["cluster"], key)
            diffs.append(None if local is None or cluster is None else cluster - local)
        summary["cluster"][f"merge_{key}"] = _median(diffs)
    return summary


def _fmt(value: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


#: The table's columns: heading, Measure field, format, width.
COLUMNS = (
    ("sets/s", "sets_per_s", ".1f", 6),
    ("complete/s", "complete_per_s", ".1f", 10),
    ("emitted/s", "emitted_per_s", ".1f", 9),
    ("skew p50", "skew_p50_ms", ".1f", 8),
    ("p95", "skew_p95_ms", ".1f", 5),
    ("lat p50", "latency_p50_ms", ".1f", 7),
    ("p95", "latency_p95_ms", ".1f", 6),
    ("bytes/set", "bytes_per_set", ".0f", 9),
    ("polls/set", "polls_per_set", ".2f", 9),
    ("| machine", "machine_cpu", ".2f", 9),
    ("driver", "driver_cpu", ".2f", 6),
    ("ray", "tree_cpu", ".2f", 5),
    ("senders", "senders_cpu", ".2f", 7),
    ("other", "other_cpu", ".2f", 5),
)


def print_table(summary: dict[str, dict[str, float | None]]) -> None:
    """A row per receiver, then the merge latency."""
    print(" ".join([f"{'receiver':<8}", *(f"{head:>{width}}" for head, _, _, width in COLUMNS)]))
    for name, row in summary.items():
        cells = (_fmt(row[key], spec, width) for _, key, spec, width in COLUMNS)
        print(" ".join([f"{name:<8}", *cells]))
    cluster = summary["cluster"]
    print(f"merge latency (cluster minus local, same round): "
          f"p50 {_signed(cluster['merge_latency_p50_ms'])} ms, "
          f"p95 {_signed(cluster['merge_latency_p95_ms'])} ms")  # fmt: skip


def round_line(index: int, m: Measure) -> str:
    """One round's figures of one receiver, as they come."""
    return (f"round {index + 1} {m.receiver:<7} {m.sets_per_s:5.1f} sets/s "
            f"(complete {m.complete_per_s:5.1f}, emitted {m.emitted_per_s:5.1f}) "
            f"skew p50 {m.skew_p50_ms} p95 {m.skew_p95_ms} ms "
            f"lat p50 {m.latency_p50_ms} p95 {m.latency_p95_ms} ms "
            f"bytes/set {_fmt(m.bytes_per_set, '.0f', 0)} "
            f"polls/set {_fmt(m.polls_per_set, '.2f', 0)} cpu machine {m.machine_cpu:.2f} "
            f"driver {m.driver_cpu:.2f} ray {m.tree_cpu:.2f} senders {m.senders_cpu:.2f} "
            f"other {m.other_cpu:.2f}")  # fmt: skip


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main() -> int:
    """Start the senders and the cluster, run both receivers ``--rounds`` times, interleaved."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=8, help="half on each node")
    parser.add_argument("--size", type=_size, default=(640, 480), help="WIDTHxHEIGHT")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per receiver")
    parser.add_argument("--warmup", type=float, default=2.0, help="after the first set")
    parser.add_argument("--max-skew", type=float, default=0.05, help="both groups' max_skew")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.cameras < len(NODES):
        parser.error(f"--cameras: at least {len(NODES)}, one per node")

    rounds: list[dict[str, Measure]] = []
    try:
        with Signals() as signals, contextlib.ExitStack() as stack:
            try:
                began = time.monotonic()
                feeds = start_feeds(stack, args.cameras, args.size)
                cluster = start_cluster(stack)
                signals.install()  # again: ray.init installed its own SIGTERM handler
                print(f"{args.cameras} senders and a 2-node cluster started in "
                      f"{time.monotonic() - began:.0f} s", file=sys.stderr)  # fmt: skip
                for index in range(args.rounds):
                    order = ("local", "cluster") if index % 2 == 0 else ("cluster", "local")
                    measures: dict[str, Measure] = {}
                    for name in order:
                        if name == "local":
                            m = run_local(feeds, args)
                        else:
                            m = run_cluster(feeds, args, cluster)
                        measures[name] = m
                        print(round_line(index, m), file=sys.stderr)
                    rounds.append(measures)
            finally:
                signals.stopping()  # the stack stops the cluster and the senders, uninterrupted
    except KeyboardInterrupt:
        print("interrupted; every sender and the cluster stopped", file=sys.stderr)
        return 130

    summary = summarize(rounds)
    if args.json:
        print(json.dumps({"cameras": args.cameras, "size": args.size, "rounds": args.rounds,
                          "seconds": args.seconds, "summary": summary}))  # fmt: skip
        return 0
    width, height = args.size
    print(f"{args.cameras} cameras {width}x{height}@{FPS:g} (x264 senders on 127.0.0.1), "
          f"{len(NODES)} Ray nodes of {args.cameras // len(NODES)}+ cameras; "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(f"medians over {args.rounds} rounds of {args.seconds:g} s; skew and latency in ms; "
          "CPU in cores")  # fmt: skip
    print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
