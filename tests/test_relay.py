"""ImpairmentRelay against real UDP sockets on 127.0.0.1: a plain sender and a plain receiver.

Delays are checked as lower bounds only (a datagram never leaves early); how late it arrives
depends on the machine and is not asserted.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from syncstream.errors import ConfigError, StreamClosed, SyncStreamError
from syncstream.testing.relay import ImpairmentRelay, RelayStats
from tests.conftest import free_udp_port, wait_until

#: Longest wait for anything that should happen (a guard against hanging, not a speed check).
TIMEOUT = 5.0
#: Timer granularity allowed when checking that a datagram did not leave early.
TOLERANCE = 0.001


class Collector:
    """A plain UDP socket on 127.0.0.1 read by a thread, recording (arrival_mono, payload)."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", port))
        self.port: int = self.sock.getsockname()[1]
        self._cond = threading.Condition()
        self._received: list[tuple[float, bytes]] = []
        self._thread = threading.Thread(target=self._run, name=f"test-collector:{self.port}")
        self._thread.start()

    def _run(self) -> None:
        while True:
            payload = self.sock.recv(65535)
            arrival_mono = time.monotonic()
            if not payload:  # the sentinel sent by close()
                return
            with self._cond:
                self._received.append((arrival_mono, payload))
                self._cond.notify_all()

    @property
    def received(self) -> list[tuple[float, bytes]]:
        with self._cond:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> list[tuple[float, bytes]]:
        """Wait until ``count`` datagrams arrived; return all received so far."""
        with self._cond:
            arrived = self._cond.wait_for(lambda: len(self._received) >= count, timeout)
            assert arrived, f"{len(self._received)} of {count} datagrams within {timeout} s"
            return list(self._received)

    def close(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poke:
            poke.sendto(b"", ("127.0.0.1", self.port))
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()
        self.sock.close()


@pytest.fixture
def collector() -> Iterator[Callable[..., Collector]]:
    """``collector(port=0)`` starts a Collector, closed after the test."""
    started: list[Collector] = []

    def start(port: int = 0) -> Collector:
        started.append(Collector(port))
        return started[-1]

    yield start
    for c in started:
        c.close()


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        yield sock


@pytest.fixture(autouse=True)
def no_relay_thread_left() -> Iterator[None]:
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith("syncstream-relay:")]
    assert left == []


def index_of(payload: bytes) -> int:
    return int(payload[:6])


def test_forwards_payloads_intact_and_counts(
    collector: Callable[..., Collector], sender: socket.socket
) -> None:
    target = collector()
    rng = random.Random(0)
    payloads = [rng.randbytes(size) for size in (1, 100, 1316, 8000, 65507)]
    payloads += [rng.randbytes(rng.randrange(1, 1500)) for _ in range(45)]
    with ImpairmentRelay(f"udp://127.0.0.1:{target.port}") as relay:
        assert relay.url == f"udp://127.0.0.1:{relay.port}"
        for payload in payloads:
            sender.sendto(payload, ("127.0.0.1", relay.port))
            time.sleep(0.001)  # pace the sender: the receive buffers may be small
        received = target.wait_for(len(payloads))
        wait_until(lambda: relay.stats.forwarded == len(payloads), TIMEOUT, "relay counters")
        stats = relay.stats
    assert [payload for _, payload in received] == payloads
    assert stats == RelayStats(received=50, forwarded=50, lost=0, overflowed=0, send_errors=0)


def test_tuple_target_and_start_is_idempotent(
    collector: Callable[..., Collector], sender: socket.socket
) -> None:
    target = collector()
    relay = ImpairmentRelay(("127.0.0.1", target.port), name="tuple")
    with pytest.raises(SyncStreamError, match="not started"):
        _ = relay.port
    with relay:
        assert relay.start() is relay
        threads = [t for t in threading.enumerate() if t.name == "syncstream-relay:tuple"]
        assert len(threads) == 1
        sender.sendto(b"000000 hello", ("127.0.0.1", relay.port))
        assert target.wait_for(1)[0][1] == b"000000 hello"


def test_datagrams_never_leave_before_their_delay(
    collector: Callable[..., Collector], sender: socket.socket
) -> None:
    target = collector()
    delay = 0.2
    sent_mono: list[float] = []
    with ImpairmentRelay(("127.0.0.1", target.port), delay=delay) as relay:
        for i in range(5):
            sent_mono.append(time.monotonic())
            sender.sendto(b"%06d" % i, ("127.0.0.1", relay.port))
            time.sleep(0.02)
        received = target.wait_for(5)
    for arrival_mono, payload in received:
        assert arrival_mono >= sent_mono[index_of(payload)] + delay - TOLERANCE


def send_spaced(sender: socket.socket, port: int, count: int, gap: float) -> None:
    for i in range(count):
        sender.sendto(b"%06d" % i, ("127.0.0.1", port))
        time.sleep(gap)


def test_keep_order_holds_with_large_jitter(
    collector: Callable[..., Collector], sender: socket.socket
) -> None:
    target = collector()
    # 3 ms between datagrams (more than burst_gap): each gets its own draw in +-30 ms.
    relay = ImpairmentRelay(("127.0.0.1", target.port), delay=0.03, jitter=0.03, seed=3)
    with relay:
        send_spaced(sender, relay.port, 200, 0.003)
        received = target.wait_for(200)
    assert [index_of(payload) for _, payload in received] == list(range(200))


def test_without_keep_order_a_large_jitter_reorders(
    collector: Callable[..., Collector], sender: socket.socket
) -> None:
    target = collector()
    relay = ImpairmentRelay(
        ("127.0.0.1", target.port), delay=0.03, jitter=0.03, keep_order=False, seed=3
    )
    with relay:
        send_spaced(sender, relay.port, 200, 0.003)
        received = target.wait_for(200)
        wait_until(lambda: relay.stats.forwarded == 200, TIMEOUT, "relay counters")
    order = [index_of(payload) for _, payload in received]
    assert sorted(order) == list(range(200))
    assert order != list(range(200))


def test_a_burst_shares_one_jitter_draw(
    collector: Callable[..., Collector], sender: socket.socket
) -> None:
    target = collector()
    bursts, per_burst = 6, 8
    sent_mono: dict[int, float] = {}
    # keep_order=False: the order inside a burst comes from the shared draw alone. Jitter is
    # large next to the scheduling noise of a busy machine (a late thread spreads the arrivals
    # of one burst by a few ms), and burst_gap is wide enough not to split a burst when the
    # sender is preempted in the middle of one.
    relay = ImpairmentRelay(
        ("127.0.0.1", target.port),
        delay=0.15,
        jitter=0.1,
        burst_gap=0.02,
        keep_order=False,
        seed=7,
    )
    with relay:
        for burst in range(bursts):
            payloads = [b"%06d" % (burst * per_burst + i) for i in range(per_burst)]
            for payload in payloads:  # back to back, like the datagrams of one video frame
                sent_mono[index_of(payload)] = time.monotonic()
                sender.sendto(payload, ("127.0.0.1", relay.port))
            time.sleep(0.1)
        received = target.wait_for(bursts * per_burst)
    extra: dict[int, list[float]] = {burst: [] for burst in range(bursts)}
    order: dict[int, list[int]] = {burst: [] for burst in range(bursts)}
    for arrival_mono, payload in received:
        index = index_of(payload)
        extra[index // per_burst].append(arrival_mono - sent_mono[index])
        order[index // per_burst].append(index)
    for burst in range(bursts):
        # Independent draws in +-100 ms would reorder 8 datagrams sent back to back (all 8
        # keep their order once in 8! = 40320 times): one draw keeps them in order.
        assert order[burst] == sorted(order[burst])
    # ... and the draws differ from burst to burst: the relay's jitter generator, seeded as
    # ImpairmentRelay seeds it, gives each burst its draw; the burst drawn the longest
    # delay comes out later after sending than the one drawn the shortest (they differ by
    # about a tenth of a second, far more than a busy machine's scheduling noise).
    seeder = random.Random(7)
    seeder.getrandbits(64)  # the loss generator's seed
    jitter_rng = random.Random(seeder.getrandbits(64))
    draws = [jitter_rng.uniform(-0.1, 0.1) for _ in range(bursts)]
    longest, shortest = draws.index(max(draws)), draws.index(min(draws))
    assert extra[longest][0] > extra[shortest][0]


def test_loss_is_drawn_per_datagram_from_the_seed(
    collector: Callable[..., Collector], sender: socket.socket
) -> None:
    count = 1000
    targets = [collector(), collector()]
    relays = [ImpairmentRelay(("127.0.0.1", t.port), loss=0.3, seed=1) for t in targets]
    with relays[0], relays[1]:
        for i in range(count):
            for relay in relays:
                sender.sendto(b"%06d" % i, ("127.0.0.1", relay.port))
            if i % 20 == 19:
                time.sleep(0.001)  # pace the sender: the receive buffers may be small
        wait_until(
            lambda: all(r.stats.forwarded + r.stats.lost == count for r in relays),
            TIMEOUT,
            "relay counters",
        )
        stats = [relay.stats for relay in relays]
        kept = [
            {index_of(p) for _, p in t.wait_for(s.forwarded)}
            for t, s in zip(targets, stats, strict=True)
        ]
    for s, k in zip(stats, kept, strict=True):
        assert s.received == count
        assert s.lost + len(k) == count
        assert 200 <= s.lost <= 400
    assert kept[0] == kept[1]  # the same seed drops the same datagrams


def test_loss_one_drops_everything(
    collector: Callable[..., Collector], sender: socket.socket
) -> None:
    target = collector()
    with ImpairmentRelay(("127.0.0.1", target.port), loss=1.0) as relay:
        send_spaced(sender, relay.port, 20, 0.0)
        wait_until(lambda: relay.stats.received == 20, TIMEOUT, "relay counters")
        stats = relay.stats
    assert stats == RelayStats(received=20, forwarded=0, lost=20, overflowed=0, send_errors=0)
    assert target.received == []


def test_overflow_drops_beyond_max_queue(
    collector: Callable[..., Collector], sender: socket.socket
) -> None:
    target = collector()
    with ImpairmentRelay(("127.0.0.1", target.port), delay=1.0, max_queue=5) as relay:
        send_spaced(sender, relay.port, 20, 0.0)
        wait_until(lambda: relay.stats.received == 20, TIMEOUT, "relay counters")
        assert relay.stats.overflowed == 15
        received = target.wait_for(5)
        wait_until(lambda: relay.stats.forwarded == 5, TIMEOUT, "relay counters")
        stats = relay.stats
    assert [index_of(payload) for _, payload in received] == [0, 1, 2, 3, 4]
    assert stats == RelayStats(received=20, forwarded=5, lost=0, overflowed=15, send_errors=0)


def test_survives_a_target_nobody_listens_on(
    collector: Callable[..., Collector], sender: socket.socket
) -> None:
    port = free_udp_port()
    with ImpairmentRelay(("127.0.0.1", port), name="deaf") as relay:
        sent = 0
        while relay.stats.send_errors == 0:  # loopback reports the ICMP error at once
            assert sent < 1000, "no send error reported"
            sender.sendto(b"before", ("127.0.0.1", relay.port))
            sent += 1
            time.sleep(0.005)
        target = collector(port)
        for i in range(5):
            sender.sendto(b"%06d after" % i, ("127.0.0.1", relay.port))
        wait_until(lambda: relay.stats.received == sent + 5, TIMEOUT, "relay counters")
        wait_until(
            lambda: sum(p.endswith(b"after") for _, p in target.received) == 5,
            TIMEOUT,
            "the 5 datagrams sent after the target came",
        )
        after = [p for _, p in target.received if p.endswith(b"after")]
        assert [index_of(p) for p in after] == [0, 1, 2, 3, 4]
        assert any(t.name == "syncstream-relay:deaf" for t in threading.enumerate())


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"delay": -0.1}, "delay"),
        ({"delay": math.nan}, "delay"),
        ({"jitter": -0.001}, "jitter"),
        ({"loss": 1.5}, "loss"),
        ({"loss": -0.1}, "loss"),
        ({"burst_gap": -1.0}, "burst_gap"),
        ({"max_queue": 0}, "max_queue"),
        ({"listen_port": 70000}, "listen_port"),
        ({"target": "tcp://127.0.0.1:9"}, "target"),
        ({"target": "udp://127.0.0.1"}, "target"),
        ({"target": "udp://127.0.0.1:99999"}, "target"),
        ({"target": ("127.0.0.1", 0)}, "target"),
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, object], argument: str) -> None:
    kwargs = {"target": "udp://127.0.0.1:9", **kwargs}
    with pytest.raises(ConfigError, match=argument) as info:
        ImpairmentRelay(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_close_is_idempotent_and_a_closed_relay_cannot_restart() -> None:
    relay = ImpairmentRelay("udp://127.0.0.1:9", name="closing").start()
    assert any(t.name == "syncstream-relay:closing" for t in threading.enumerate())
    relay.close()
    relay.close()
    relay.stop()
    assert not any(t.name == "syncstream-relay:closing" for t in threading.enumerate())
    with pytest.raises(StreamClosed):
        relay.start()
    never_started = ImpairmentRelay("udp://127.0.0.1:9")
    never_started.close()
    with pytest.raises(StreamClosed):
        never_started.start()
