"""LatestSlot: the newest item, what was skipped, waits that end by item, close or deadline.

A reader known to be waiting: the slot calls ``check`` under its lock just before it waits,
so a ``check`` that sets an Event tells the test the reader is about to wait, and a ``put``
(which takes the same lock) can only come after the reader is inside ``wait``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncstream.errors import ReadTimeout, StreamClosed, StreamEnded, SyncStreamError
from syncstream.slot import LatestSlot

_JOIN = 5.0


class _Reader:
    """Runs ``call`` on a thread; ``waiting`` is set once the slot is about to wait."""

    def __init__(self, call: Callable[[Callable[[], None]], object]) -> None:
        self.waiting = threading.Event()
        self.result: object = None
        self.error: SyncStreamError | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[Callable[[], None]], object]) -> None:
        try:
            self.result = call(self.waiting.set)
        except SyncStreamError as exc:  # handed to the test, which asserts on it
            self.error = exc

    def join(self) -> None:
        self._thread.join(_JOIN)
        assert not self._thread.is_alive(), "reader still waiting"


def _wait_started(reader: _Reader) -> None:
    assert reader.waiting.wait(_JOIN), "reader never waited"


def test_take_returns_each_item_once_and_counts_replaced_ones_as_skipped() -> None:
    slot: LatestSlot[str] = LatestSlot("cam0", noun="frame")
    assert slot.latest() is None and slot.seq == -1 and slot.next_seq == 0
    assert slot.put("a") == 0
    assert slot.take(timeout=0) == "a"
    assert slot.put("b") == 1 and slot.put("c") == 2  # "b" is replaced unread
    assert slot.take(timeout=0) == "c"
    with pytest.raises(ReadTimeout, match="cam0: no new frame within 0 s"):
        slot.take(timeout=0)
    assert slot.latest() == "c"  # still there, already taken
    assert (slot.seq, slot.taken, slot.skipped, slot.unread) == (2, 2, 1, False)


def test_a_waiting_take_gets_the_item_put_by_another_thread() -> None:
    slot: LatestSlot[int] = LatestSlot("cam0")
    reader = _Reader(lambda waiting: slot.take(check=waiting))
    _wait_started(reader)
    slot.put(7)
    reader.join()
    assert reader.result == 7 and reader.error is None


def test_take_times_out_with_the_detail_in_the_message() -> None:
    slot: LatestSlot[int] = LatestSlot("group", noun="frame set")
    with pytest.raises(ReadTimeout, match=r"group: no new frame set within 0.05 s \(cam0: live\)"):
        slot.take(timeout=0.05, detail=lambda: "cam0: live")


def test_check_ends_the_wait_when_the_owner_changes_under_the_shared_lock() -> None:
    cond = threading.Condition()
    ended = False

    def check() -> None:
        if ended:
            raise SyncStreamError("owner ended")

    slot: LatestSlot[int] = LatestSlot("cam0", cond=cond)
    started = threading.Event()

    def call(waiting: Callable[[], None]) -> object:
        def check_and_note() -> None:
            check()
            waiting()
            started.set()

        return slot.take(check=check_and_note)

    reader = _Reader(call)
    assert started.wait(_JOIN)
    with cond:  # the owner's state changes under its lock, and it wakes the slot's readers
        ended = True
        cond.notify_all()
    reader.join()
    assert isinstance(reader.error, SyncStreamError) and "owner ended" in str(reader.error)


def test_an_unread_item_is_returned_before_check_is_asked() -> None:
    def check() -> None:
        raise AssertionError("check called with an item ready")

    slot: LatestSlot[int] = LatestSlot("cam0")
    slot.put(1)
    assert slot.take(timeout=0, check=check) == 1


def test_close_wakes_a_waiting_reader_with_stream_closed() -> None:
    slot: LatestSlot[int] = LatestSlot("processor wall")
    reader = _Reader(lambda waiting: slot.take(check=waiting))
    _wait_started(reader)
    slot.close()
    slot.close()  # idempotent
    reader.join()
    assert isinstance(reader.error, StreamClosed)
    assert "processor wall: closed" in str(reader.error)


def test_a_draining_slot_delivers_what_is_left_after_close() -> None:
    slot: LatestSlot[int] = LatestSlot("feed")
    slot.put(1)
    slot.close()
    assert slot.get(-1, timeout=0) == 1
    assert slot.take(timeout=0) == 1
    with pytest.raises(StreamClosed):
        slot.take(timeout=0)
    with pytest.raises(StreamClosed):
        slot.get(1, timeout=None)  # no wait: closed and nothing newer


def test_a_non_draining_slot_refuses_at_once_after_close() -> None:
    slot: LatestSlot[int] = LatestSlot("output wall", drain=False)
    slot.put(1)
    slot.close()
    with pytest.raises(StreamClosed):
        slot.get(-1, timeout=0)
    with pytest.raises(StreamClosed):
        slot.take(timeout=0)
    assert slot.latest() == 1 and slot.closed


def test_get_serves_many_readers_without_taking() -> None:
    slot: LatestSlot[str] = LatestSlot("output wall", noun="picture")
    slot.put("p0")
    assert slot.get(-1, timeout=0) == "p0"
    assert slot.get(-1, timeout=0) == "p0"  # another reader
    with pytest.raises(ReadTimeout):
        slot.get(0, timeout=0)
    readers = [_Reader(lambda waiting: slot.get(0, check=waiting)) for _ in range(3)]
    for reader in readers:
        _wait_started(reader)
    slot.put("p1")
    for reader in readers:
        reader.join()
        assert reader.result == "p1"
    assert (slot.taken, slot.skipped, slot.unread) == (0, 1, True)


def test_wait_taken_holds_the_producer_until_the_item_is_taken() -> None:
    slot: LatestSlot[int] = LatestSlot("file")
    assert slot.wait_taken(timeout=0)  # nothing unread
    slot.put(0)
    assert not slot.wait_taken(timeout=0.05)
    producer_done = threading.Event()

    def produce() -> None:
        slot.wait_taken()
        slot.put(1)
        producer_done.set()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    assert slot.take(timeout=_JOIN) == 0
    assert producer_done.wait(_JOIN)
    assert slot.take(timeout=0) == 1 and slot.skipped == 0
    thread.join(_JOIN)


def test_close_ends_wait_taken() -> None:
    slot: LatestSlot[int] = LatestSlot("file")
    slot.put(0)
    ended = threading.Event()

    def produce() -> None:
        slot.wait_taken()
        ended.set()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    slot.close()
    assert ended.wait(_JOIN)
    thread.join(_JOIN)


def test_put_taken_counts_as_delivered_not_skipped() -> None:
    slot: LatestSlot[int] = LatestSlot("cam0")
    for item in range(3):
        slot.put(item, taken=True)
    assert (slot.taken, slot.skipped, slot.unread) == (3, 0, False)
    with pytest.raises(ReadTimeout):
        slot.take(timeout=0)


def test_drop_and_keep_taken() -> None:
    slot: LatestSlot[int] = LatestSlot("processor", keep_taken=False)
    assert not slot.drop()
    slot.put(1)
    assert slot.take(timeout=0) == 1
    assert slot.latest() is None  # forgotten once taken
    slot.put(2)
    assert slot.drop() and slot.skipped == 1 and slot.latest() is None
    slot.put(3)
    assert slot.drop(skipped=False) and slot.skipped == 1
    with pytest.raises(ReadTimeout):
        slot.take(timeout=0)


@dataclass
class _Oracle:
    """The slot's contract written plainly: a list of every item put and a read mark."""

    items: list[int] = field(default_factory=list)
    taken_upto: int = -1  # index of the newest item taken or dropped
    taken: int = 0
    skipped: int = 0

    def put(self, item: int, taken: bool) -> int:
        if len(self.items) - 1 > self.taken_upto:
            self.skipped += 1
        self.items.append(item)
        if taken:
            self.taken_upto = len(self.items) - 1
            self.taken += 1
        return len(self.items) - 1

    def take(self) -> int | None:
        if len(self.items) - 1 > self.taken_upto:
            self.taken_upto = len(self.items) - 1
            self.taken += 1
            return self.items[-1]
        return None

    def get(self, after: int) -> int | None:
        return self.items[-1] if len(self.items) - 1 > after else None

    def drop(self) -> bool:
        if len(self.items) - 1 > self.taken_upto:
            self.taken_upto = len(self.items) - 1
            self.skipped += 1
            return True
        return False


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 1000), st.booleans()),
        st.tuples(st.just("take"), st.just(0), st.just(False)),
        st.tuples(st.just("get"), st.integers(-1, 20), st.just(False)),
        st.tuples(st.just("drop"), st.just(0), st.just(False)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_OPS)
def test_put_take_sequences_match_the_oracle(ops: list[tuple[str, int, bool]]) -> None:
    slot: LatestSlot[int] = LatestSlot("cam0")
    oracle = _Oracle()
    for op, value, flag in ops:
        if op == "put":
            assert slot.put(value, taken=flag) == oracle.put(value, flag)
        elif op == "take":
            expected = oracle.take()
            if expected is None:
                with pytest.raises(ReadTimeout):
                    slot.take(timeout=0)
            else:
                assert slot.take(timeout=0) == expected
        elif op == "get":
            expected = oracle.get(value)
            if expected is None:
                with pytest.raises(ReadTimeout):
                    slot.get(value, timeout=0)
            else:
                assert slot.get(value, timeout=0) == expected
        else:
            assert slot.drop() == oracle.drop()
        assert slot.seq == len(oracle.items) - 1
        assert (slot.taken, slot.skipped) == (oracle.taken, oracle.skipped)
        assert slot.latest() == (oracle.items[-1] if oracle.items else None)


def test_items_yield_each_new_item_and_end_at_the_duration_without_error() -> None:
    slot: LatestSlot[int] = LatestSlot("cam0")
    slot.put(0)
    assert list(slot.items(timeout=5.0, duration=0.05)) == [0]  # then nothing new: ends
    assert list(slot.items(duration=0)) == []


def test_items_raise_read_timeout_when_no_item_comes_in_time() -> None:
    slot: LatestSlot[int] = LatestSlot("cam0", noun="frame")
    with pytest.raises(ReadTimeout, match=r"no new frame within 0\.05 s"):
        list(slot.items(timeout=0.05, duration=5.0))


def test_items_end_when_closed_or_when_check_says_ended() -> None:
    slot: LatestSlot[int] = LatestSlot("cam0", drain=False)
    waiting = threading.Event()
    seen: list[int] = []
    thread = threading.Thread(
        target=lambda: seen.extend(slot.items(timeout=_JOIN, check=waiting.set)), daemon=True
    )
    thread.start()
    assert waiting.wait(_JOIN)  # the iteration waits in the slot
    slot.close()
    thread.join(_JOIN)
    assert not thread.is_alive() and seen == []
    slot.put(1)  # left over after close: not drained
    assert list(slot.items(timeout=_JOIN)) == []

    def ended() -> None:
        raise StreamEnded("file ended")

    other: LatestSlot[int] = LatestSlot("file")
    other.put(1)
    assert list(other.items(timeout=_JOIN, check=ended)) == [1]  # the last item, then ends
