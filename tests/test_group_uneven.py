"""Groups of cameras that are not alike, end to end: real ffmpeg senders on 127.0.0.1.

Phases spread wider than ``max_skew``, 10 fps beside 30 fps, a camera whose clock is off:
the group keeps emitting sets while its cameras deliver, and says why a frame went into
no set.
"""

from __future__ import annotations

import logging
import time

import pytest

from syncstream import Camera, FrameSet, SenderConfig, StreamGroup
from syncstream.senders import free_udp_port


def _camera(name: str, fps: float, **fields: object) -> Camera:
    sender = SenderConfig(size=(160, 120), fps=fps)
    fields = {"name": name, "sender": sender, "port": free_udp_port(), **fields}
    return Camera.model_validate(fields)


pytestmark = pytest.mark.usefixtures("no_group_threads_left")


def _read(group: StreamGroup, count: int, limit: float = 30.0) -> list[FrameSet]:
    """Read ``count`` sets; each read may wait up to 5 s (a ReadTimeout fails the test)."""
    sets: list[FrameSet] = []
    deadline = time.monotonic() + limit
    while len(sets) < count and time.monotonic() < deadline:
        sets.append(group.read(timeout=5.0))
    return sets


def test_phases_spread_wider_than_max_skew_give_partial_sets_of_every_camera() -> None:
    # Four free-running 10 fps cameras: their capture phases fall anywhere in the 100 ms
    # interval, so with max_skew 2 ms no set of all four fits: the group must go on with
    # the sets that do fit, and every camera's frames must reach them.
    cams = [_camera(f"c{i}", 10.0) for i in range(4)]
    with StreamGroup(cams, sync="nearest", max_skew=0.002) as group:
        group.read(timeout=10.0)  # every camera up
        sets = _read(group, 60)
        stats = group.stats
    assert len(sets) == 60
    assert all(fs.skew <= 0.002 + 1e-6 for fs in sets)
    seen = {name for fs in sets for name in fs}
    assert seen == {"c0", "c1", "c2", "c3"}
    assert any(fs.missing for fs in sets)
    for name, camera in stats.cameras.items():
        assert camera.used > 0, name
        assert camera.drop_reasons.get("unmatched", 0) == 0  # partial: nothing unmatched
        assert not camera.off_clock


def test_ten_fps_beside_thirty_fps_gives_sets_at_the_slow_cameras_rate() -> None:
    cams = [_camera("slow", 10.0), _camera("fast", 30.0)]
    with StreamGroup(cams, sync="nearest", max_skew=0.02) as group:
        deadline = time.monotonic() + 15.0  # both up: the slow one's first keyframe
        while not group.read(timeout=5.0).complete and time.monotonic() < deadline:
            pass
        first = group.stats.cameras["slow"].used
        sets = _read(group, 30)
        stats = group.stats
    slow_used = stats.cameras["slow"].used - first
    # every frame of the slow camera makes a set, with the fast camera's nearest frame;
    # the fast camera's other frames are overtaken, and say so
    full = [fs for fs in sets if fs.complete]
    assert len(full) >= len(sets) - 2
    assert all(fs.skew <= 0.02 for fs in full)
    assert stats.sets >= slow_used
    assert stats.cameras["fast"].drop_reasons["overtaken"] > 0
    assert stats.cameras["slow"].dropped <= 2


def test_a_camera_whose_clock_is_off_is_left_out_named_and_the_group_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # camera "odd" has its capture times 2.5 s ahead of everybody else's
    cams = [_camera("a", 30.0), _camera("b", 30.0), _camera("odd", 30.0, clock_offset=2.5)]
    caplog.set_level(logging.WARNING, logger="syncstream.group")
    with StreamGroup(cams, sync="nearest", max_skew=0.05) as group:
        sets = _read(group, 60)
        deadline = time.monotonic() + 10.0
        while not group.stats.cameras["odd"].off_clock and time.monotonic() < deadline:
            group.read(timeout=5.0)
        stats = group.stats
        later = _read(group, 30)
    assert len(sets) == 60 and len(later) == 30
    assert all(fs.missing == ("odd",) and set(fs) == {"a", "b"} for fs in later)
    odd = stats.cameras["odd"]
    assert odd.off_clock and odd.drop_reasons["clock"] > 0
    assert odd.delay is not None and odd.delay < -2.0  # frames "arrive before" capture
    assert not stats.cameras["a"].off_clock and not stats.cameras["b"].off_clock
    assert "clock off" in "\n".join(stats.lines())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("odd:") and "clock is off" in m for m in warnings)


def test_a_camera_350_ms_behind_the_others_gets_complete_sets() -> None:
    # c0's datagrams reach us 350 ms late (longer than the 8 frames of history last at
    # 30 fps, shorter than max_wait): the sets wait for it and come complete. This group
    # once gave no set at all: the waiting frames were pushed out before the wait ended.
    from syncstream.senders import LocalSender, simulated_camera_argv
    from syncstream.testing.relay import ImpairmentRelay

    ports = [free_udp_port() for _ in range(3)]
    with ImpairmentRelay(f"udp://127.0.0.1:{ports[0]}", delay=0.35, seed=1) as relay:
        cams = [Camera(name="c0", url=f"udp://127.0.0.1:{ports[0]}")]
        cams += [_camera(f"c{i}", 30.0) for i in (1, 2)]
        argv = simulated_camera_argv(relay.url, size=(160, 120), fps=30)
        sender = LocalSender(argv, name="c0").start()
        try:
            with StreamGroup(cams) as group:
                deadline = time.monotonic() + 15.0  # every camera up
                while not group.read(timeout=5.0).complete and time.monotonic() < deadline:
                    pass
                sets = _read(group, 30)
                stats = group.stats
        finally:
            sender.close()
    assert sum(fs.complete for fs in sets) >= 28
    assert all(fs.skew <= 0.05 for fs in sets)
    late = stats.cameras["c0"]
    assert late.delay is not None and late.delay > 0.3 and not late.off_clock
