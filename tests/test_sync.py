"""Alignment policies on synthetic timestamps: no threads, no sockets, no sleeping."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from syncstream.clock import (
    MPEGTS_PTS_PERIOD,
    ClockSample,
    estimate_clock_offset,
    unwrap_pts_time,
)
from syncstream.sync import Aligner, Match

PERIOD = 1 / 30
T0 = 1_700_000_000.0  # capture times are epoch seconds
LATENCY = 0.037  # a local path


@dataclass(frozen=True)
class Shot:
    """A frame as alignment sees it; arrival_mono runs with arrival_time (offset 0)."""

    source: str
    seq: int
    capture_time: float | None
    arrival_time: float

    @property
    def arrival_mono(self) -> float:
        return self.arrival_time - T0


def camera(
    name: str,
    count: int,
    *,
    phase: float = 0.0,
    delay: float = LATENCY,
    jitter: Sequence[float] = (0.0,),
    lost: Iterable[int] = (),
    stamped: bool = True,
    period: float = PERIOD,
) -> list[Shot]:
    """Frames captured every ``period`` from ``T0 + phase``, arriving ``delay`` later."""
    skip = set(lost)
    shots = []
    for k in range(count):
        if k in skip:
            continue
        capture = T0 + phase + k * period
        arrival = capture + delay + jitter[k % len(jitter)]
        shots.append(Shot(name, k, capture if stamped else None, arrival))
    return shots


def run(aligner: Aligner[Shot], *cameras: list[Shot], end: float = 10.0) -> list[Match[Shot]]:
    """Feed every frame in arrival order, polling at each arrival, then once at the end."""
    matches: list[Match[Shot]] = []
    shots = sorted((s for cam in cameras for s in cam), key=lambda s: s.arrival_time)
    for shot in shots:
        aligner.add(shot)
        matches += aligner.poll(shot.arrival_mono)
    last = shots[-1].arrival_mono if shots else 0.0
    matches += aligner.poll(last + end)
    return matches


def seqs(match: Match[Shot]) -> dict[str, int]:
    return {name: shot.seq for name, shot in match.frames.items()}


def test_nearest_pairs_by_capture_time_although_one_path_is_100ms_longer() -> None:
    aligner: Aligner[Shot] = Aligner(["a", "b"], policy="nearest", max_skew=0.02)
    a = camera("a", 60)
    b = camera("b", 60, phase=0.001, delay=LATENCY + 0.100, jitter=(0.0, 0.008, -0.006))
    matches = run(aligner, a, b)
    assert [seqs(m) for m in matches] == [{"a": k, "b": k} for k in range(60)]
    assert all(m.skew == pytest.approx(0.001, abs=1e-6) and m.clock == "sender" for m in matches)
    assert all(not m.missing for m in matches)


def test_latest_pairs_frames_captured_100ms_apart() -> None:
    aligner: Aligner[Shot] = Aligner(["a", "b"], policy="latest")
    a = camera("a", 60)
    b = camera("b", 60, phase=0.001, delay=LATENCY + 0.100)
    matches = run(aligner, a, b)
    steady = matches[5:-5]
    assert steady and all(m.skew == pytest.approx(0.099, abs=0.034) for m in steady)
    assert all(seqs(m)["a"] - seqs(m)["b"] in (2, 3) for m in steady)


def test_each_frame_is_used_once_and_sets_come_in_time_order() -> None:
    aligner: Aligner[Shot] = Aligner(["a", "b", "c"], policy="nearest", max_skew=0.02)
    matches = run(
        aligner,
        camera("a", 90),
        camera("b", 90, phase=0.004, delay=0.080, jitter=(0.0, 0.010, -0.010, 0.004)),
        camera("c", 90, phase=-0.003, delay=0.020),
    )
    assert len(matches) == 90
    times = [m.time for m in matches]
    assert times == sorted(times)
    for name in "abc":
        used = [m.frames[name].seq for m in matches]
        assert used == sorted(set(used))
        assert aligner.counts(name).used == 90 and aligner.counts(name).dropped == 0


@pytest.mark.parametrize(
    "phases",
    [(0.0, 0.5), (0.0, 0.25, 0.5, 0.75), (0.33, 0.43, 0.85, 0.42), (0.82, 0.19, 0.14, 0.57)],
)
def test_phases_spread_over_the_frame_interval_lose_no_sets(phases: tuple[float, ...]) -> None:
    # Each camera's nearest frame on its own can straddle the pivot (one a frame early,
    # another a frame late); the set must instead be the narrowest around the pivot.
    names = [f"c{i}" for i in range(len(phases))]
    aligner: Aligner[Shot] = Aligner(names, policy="nearest", max_skew=0.05)
    jitter = (0.0, 0.003, 0.001, 0.004)
    pairs = zip(names, phases, strict=True)
    cams = [camera(n, 120, phase=p * PERIOD, jitter=jitter) for n, p in pairs]
    matches = run(aligner, *cams)
    assert len(matches) >= 119
    assert sum(aligner.counts(n).dropped for n in names) <= len(names)
    # at most a sixth of a frame wider than the narrowest possible set (the shortest arc of
    # the frame interval holding every phase): earlier frames win near-ties
    ordered = sorted(p % 1 for p in phases)
    gaps = [b - a for a, b in itertools.pairwise(ordered)] + [ordered[0] + 1 - ordered[-1]]
    narrowest = (1 - max(gaps)) * PERIOD
    assert all(m.skew <= narrowest + PERIOD / 6 for m in matches[1:])


def test_clock_offsets_put_hosts_on_one_clock() -> None:
    # Host b's clock runs 2.5 s ahead of ours; the offset is estimated from round trips.
    ahead = 2.5
    samples = [
        ClockSample(sent_time=100.0 + i, rtt=rtt, remote_time=100.0 + i + rtt / 2 + ahead)
        for i, rtt in enumerate([0.004, 0.002, 0.009, 0.003])
    ]
    offset = estimate_clock_offset(samples).offset
    assert offset == pytest.approx(-ahead)
    a = camera("a", 30)
    raw_b = camera("b", 30, phase=0.002 + ahead, delay=LATENCY - ahead)  # stamped by b's clock
    mapped_b = [Shot(s.source, s.seq, s.capture_time + offset, s.arrival_time) for s in raw_b]  # type: ignore[operator]
    matches = run(Aligner(["a", "b"], max_skew=0.02), a, mapped_b)
    assert [seqs(m) for m in matches] == [{"a": k, "b": k} for k in range(30)]
    unmapped = run(Aligner(["a", "b"], max_skew=0.02, on_missing="wait"), a, raw_b)
    assert unmapped == []  # 2.5 s apart: nothing fits in max_skew


def test_lost_frames_drop_their_partners_instead_of_pairing_them_wrongly() -> None:
    aligner: Aligner[Shot] = Aligner(["a", "b"], max_skew=0.02)
    a = camera("a", 30)
    b = camera("b", 30, phase=0.001, delay=LATENCY + 0.1, lost=range(10, 14))
    matches = run(aligner, a, b)
    assert [seqs(m) for m in matches] == [{"a": k, "b": k} for k in range(30) if not 10 <= k < 14]
    assert aligner.counts("a").dropped == 4


def test_a_silent_camera_gives_partial_sets_after_max_wait() -> None:
    aligner: Aligner[Shot] = Aligner(["a", "b"], max_skew=0.02, max_wait=0.2)
    a = camera("a", 60)
    b = camera("b", 20, phase=0.001)  # dies after 20 frames
    matches = run(aligner, a, b)
    assert [seqs(m) for m in matches[:20]] == [{"a": k, "b": k} for k in range(20)]
    rest = matches[20:]
    assert [m.frames["a"].seq for m in rest] == list(range(20, 60))
    assert all(m.missing == ("b",) and list(m.frames) == ["a"] for m in rest)


def test_a_silent_camera_is_not_waited_for_once_known_silent() -> None:
    aligner: Aligner[Shot] = Aligner(["a", "b"], max_skew=0.02, max_wait=0.2)
    emitted_at: dict[int, float] = {}
    b = camera("b", 10)
    for shot in sorted([*camera("a", 60), *b], key=lambda s: s.arrival_time):
        aligner.add(shot)
        for match in aligner.poll(shot.arrival_mono):
            emitted_at[match.frames["a"].seq] = shot.arrival_mono
    a_arrivals = {s.seq: s.arrival_mono for s in camera("a", 60)}
    silent_since = b[-1].arrival_mono + PERIOD + 0.2  # max_wait beyond its frame interval
    late = [k for k in range(10, 60) if a_arrivals[k] > silent_since]
    assert late and all(emitted_at[k] == a_arrivals[k] for k in late)


def test_wait_policy_emits_only_complete_sets() -> None:
    aligner: Aligner[Shot] = Aligner(["a", "b"], max_skew=0.02, max_wait=0.2, on_missing="wait")
    matches = run(aligner, camera("a", 60), camera("b", 20, phase=0.001))
    assert len(matches) == 20 and all(not m.missing for m in matches)


def test_a_camera_never_seen_holds_sets_max_wait_after_the_others_are_up() -> None:
    aligner: Aligner[Shot] = Aligner(["a", "b"], max_wait=0.3, first_frame_wait=1.0, history=32)
    assert aligner.next_deadline(0.0) == pytest.approx(1.0)  # nobody up yet
    shots = camera("a", 28, delay=0.0)  # a delivers from 0 to 0.9 s; b never
    for shot in shots[:9]:  # up to 0.27 s
        aligner.add(shot)
        assert aligner.poll(shot.arrival_mono) == []  # b may still deliver its first frame
    assert aligner.next_deadline(0.27) == pytest.approx(0.3)  # max_wait after a was up
    matches = aligner.poll(0.3)
    assert [m.frames["a"].seq for m in matches] == list(range(9))
    assert all(m.missing == ("b",) for m in matches)
    aligner.add(shots[9])  # at 0.3 s: b turns silent
    late = [m.frames["a"].seq for m in aligner.poll(0.31)]
    assert late == [9]
    for shot in shots[10:]:  # from then on each frame makes its set at once
        aligner.add(shot)
        assert [m.frames["a"].seq for m in aligner.poll(shot.arrival_mono)] == [shot.seq]
    # a goes silent max_wait after its next frame was due
    assert aligner.next_deadline(0.9) == pytest.approx(0.9 + PERIOD + 0.3)


def test_cameras_never_seen_are_waited_for_first_frame_wait_while_not_all_are_up() -> None:
    aligner: Aligner[Shot] = Aligner(
        ["a", "b", "c"], max_wait=0.3, first_frame_wait=2.0, history=64
    )
    shots = camera("a", 60, delay=0.0)  # a up at 0; b and c never
    held = [s for s in shots if s.arrival_mono < 1.99]
    for shot in held:
        aligner.add(shot)
        assert aligner.poll(shot.arrival_mono) == []  # b and c may still come up
    matches = aligner.poll(2.0)
    assert [m.frames["a"].seq for m in matches] == [s.seq for s in held]
    assert all(m.missing == ("b", "c") for m in matches)


def test_pts_wrap_does_not_break_alignment() -> None:
    # The 33-bit PTS wraps every 26.5 hours: capture times are unwrapped against arrival.
    wrap = MPEGTS_PTS_PERIOD * math.ceil(T0 / MPEGTS_PTS_PERIOD)  # a wrap after T0
    cams = []
    for name, phase in (("a", 0.0), ("b", 0.002)):
        shots = []
        for s in camera(name, 30, phase=wrap - 0.5 - T0 + phase):
            assert s.capture_time is not None
            raw_pts = s.capture_time % MPEGTS_PTS_PERIOD
            unwrapped = unwrap_pts_time(raw_pts, s.arrival_time, MPEGTS_PTS_PERIOD)
            shots.append(Shot(name, s.seq, unwrapped, s.arrival_time))
        cams.append(shots)
    raw = [s.capture_time % MPEGTS_PTS_PERIOD for s in cams[0] if s.capture_time]
    assert raw != sorted(raw)  # the raw stamps did wrap
    aligner: Aligner[Shot] = Aligner(["a", "b"], max_skew=0.02, start_mono=cams[0][0].arrival_mono)
    matches = run(aligner, *cams)
    assert [seqs(m) for m in matches] == [{"a": k, "b": k} for k in range(30)]
    assert all(m.skew == pytest.approx(0.002, abs=1e-5) for m in matches)


def test_exact_needs_equal_timestamps() -> None:
    a = camera("a", 20)
    assert [
        seqs(m) for m in run(Aligner(["a", "b"], policy="exact"), a, camera("b", 20, delay=0.2))
    ] == [{"a": k, "b": k} for k in range(20)]
    off = run(
        Aligner(["a", "b"], policy="exact", on_missing="wait"), a, camera("b", 20, phase=0.0005)
    )
    assert off == []


def test_without_sender_stamps_it_aligns_by_arrival_and_says_so() -> None:
    aligner: Aligner[Shot] = Aligner(["a", "b"], max_skew=0.02)
    unstamped = camera("a", 30, stamped=False, delay=LATENCY + 0.010)
    matches = run(aligner, unstamped, camera("b", 30, phase=0.001, stamped=False))
    assert aligner.clock == "arrival"
    assert aligner.arrival_delay("a") == aligner.arrival_delay("b") == 0.0
    assert matches and all(m.clock == "arrival" for m in matches)
    # by arrival: a's path is 10 ms longer, b's frames are taken 1 ms later
    assert all(m.skew == pytest.approx(0.009, abs=1e-6) for m in matches)


def test_a_camera_without_stamps_goes_by_the_others_delay_in_a_mixed_group() -> None:
    # a and b carry capture times (their lowest delays: 37 ms and 45 ms); c does not
    # (MJPEG) and its path is as long as a's: it counts as captured the median delay of
    # a and b (41 ms) before it arrived, so its frames pair with those taken with them
    aligner: Aligner[Shot] = Aligner(["a", "b", "c"], max_skew=0.02)
    matches = run(
        aligner,
        camera("a", 30),
        camera("b", 30, phase=0.002, delay=0.045),
        camera("c", 30, phase=0.001, stamped=False),
    )
    assert aligner.clock == "mixed"
    assert aligner.arrival_delay("a") is None
    assert aligner.arrival_delay("c") == pytest.approx(0.041)
    full = [m for m in matches if not m.missing]
    assert len(full) >= 28 and all(m.clock == "mixed" for m in full)
    assert all(seqs(m) == {"a": k, "b": k, "c": k} for k, m in enumerate(full))
    # c's key: its arrival minus 41 ms, i.e. its capture time minus 4 ms (minus 0 ms,
    # a's delay, for the frames that came before b's first)
    settled = full[2:]
    assert all(m.offsets["c"] - m.offsets["a"] == pytest.approx(-0.003, abs=1e-6) for m in settled)
    assert all(m.skew == pytest.approx(0.005, abs=1e-6) for m in settled)


def test_a_given_arrival_delay_replaces_the_estimate() -> None:
    # c's path is 150 ms longer than the others' (a camera that buffers): told so, its
    # frames pair with those taken at the same time, not with those arriving with them
    kwargs = {"max_skew": 0.02, "max_wait": 0.5}
    cams = (camera("a", 30), camera("b", 30), camera("c", 30, delay=0.187, stamped=False))
    guessed = run(Aligner(["a", "b", "c"], **kwargs), *cams)  # type: ignore[arg-type]
    told: Aligner[Shot] = Aligner(["a", "b", "c"], arrival_delays={"c": 0.187}, **kwargs)  # type: ignore[arg-type]
    matches = run(told, *cams)
    assert told.arrival_delay("c") == 0.187
    assert all(m.frames["c"].seq == m.frames["a"].seq for m in matches if len(m.frames) == 3)
    assert sum(len(m.frames) == 3 for m in matches) >= 28
    assert all(  # guessed: c's frames are paired with frames taken 150 ms later
        m.frames["a"].seq - m.frames["c"].seq in (4, 5) for m in guessed if len(m.frames) == 3
    )
    small: Aligner[Shot] = Aligner(["a", "c"], arrival_delays={"c": 0.001}, **kwargs)  # type: ignore[arg-type]
    run(small, cams[0], cams[2])
    assert small.arrival_delay("c") == 0.001  # however close to the starting 0
    with pytest.raises(ValueError, match="unknown cameras"):
        Aligner(["a"], arrival_delays={"x": 0.1})
    with pytest.raises(ValueError, match="finite and >= 0"):
        Aligner(["a"], arrival_delays={"a": -0.1})


def test_max_skew_refuses_sets_wider_than_it() -> None:
    half = PERIOD / 2  # cameras half a frame apart: no pair closer than 16.7 ms
    narrow = run(
        Aligner(["a", "b"], max_skew=0.010, on_missing="wait"),
        camera("a", 30),
        camera("b", 30, phase=half),
    )
    assert narrow == []
    wide = run(Aligner(["a", "b"], max_skew=0.020), camera("a", 30), camera("b", 30, phase=half))
    assert len(wide) >= 29 and all(m.skew <= 0.020 for m in wide)


def test_history_bounds_the_frames_kept() -> None:
    # beyond `history`, a frame is kept while it waited less than max_wait (+0.1 s), so a
    # set waiting for a late camera still has its frames when the wait runs out
    aligner: Aligner[Shot] = Aligner(["a", "b"], history=3, max_wait=0.11)
    for shot in camera("a", 10):  # 0.3 s of frames
        aligner.add(shot)
    assert aligner.waiting("a") == 7 and aligner.counts("a").expired == 3
    stretched: Aligner[Shot] = Aligner(["a", "b"], history=3, max_wait=5.0)
    for shot in camera("a", 40):
        stretched.add(shot)
    assert stretched.waiting("a") == 24  # never more than 8 times history
    assert stretched.counts("a").expired == 16


def test_keys_going_backwards_reset_the_camera() -> None:
    aligner: Aligner[Shot] = Aligner(["a", "b"], max_skew=0.02)
    loop = camera("a", 5)
    restarted = [
        Shot("a", 5 + s.seq, s.capture_time, s.arrival_time + 1.0)
        for s in camera("a", 3, phase=-10.0)
    ]
    for shot in [*loop, *restarted]:
        aligner.add(shot)
    assert aligner.counts("a").resets == 1
    assert aligner.waiting("a") == 3


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Aligner(["a", "a"])
    with pytest.raises(ValueError, match="at least one"):
        Aligner([])
    with pytest.raises(ValueError, match="max_skew"):
        Aligner(["a"], max_skew=0)
    with pytest.raises(KeyError, match="unknown camera"):
        Aligner(["a"]).add(Shot("x", 0, None, T0))


@settings(max_examples=60, deadline=None)
@given(
    delays=st.lists(st.floats(0.0, 0.2), min_size=2, max_size=4),
    phases=st.lists(st.floats(-0.016, 0.016), min_size=4, max_size=4),
    jitter=st.lists(st.floats(-0.01, 0.01), min_size=1, max_size=6),
    lost=st.sets(st.integers(0, 39), max_size=6),
    max_skew=st.sampled_from([0.005, 0.012, 0.02, 0.05]),
)
@example(  # keys compared as epoch floats lose ~2e-7 s: compare differences
    delays=[0.0, 0.0], phases=[0.0, 0.005, 0.0, 0.0], jitter=[0.0], lost=set(), max_skew=0.005
)
def test_nearest_invariants(
    delays: list[float], phases: list[float], jitter: list[float], lost: set[int], max_skew: float
) -> None:
    names = [f"c{i}" for i in range(len(delays))]
    cams = [
        camera(n, 40, phase=phases[i], delay=d, jitter=jitter, lost=lost if i == 1 else ())
        for i, (n, d) in enumerate(zip(names, delays, strict=True))
    ]
    aligner: Aligner[Shot] = Aligner(names, max_skew=max_skew, max_wait=0.5, history=16)
    matches = run(aligner, *cams)
    times = [m.time for m in matches]
    assert times == sorted(times)
    for m in matches:
        assert m.skew <= max_skew + 1e-9
        assert set(m.frames) | set(m.missing) == set(names)
    for name in names:
        used = [m.frames[name].seq for m in matches if name in m.frames]
        assert used == sorted(set(used))  # in order, each frame at most once
        counts = aligner.counts(name)
        assert counts.used == len(used)


def test_going_over_to_capture_times_discards_frames_waiting_without_one() -> None:
    # b is an RTSP camera before its first sender report: its first frames have no capture
    # time, and the group aligns by arrival until b's frames carry one
    aligner: Aligner[Shot] = Aligner(["a", "b"], max_skew=0.02, max_wait=5.0, history=16)
    early = camera("b", 3, stamped=False)
    for shot in [*camera("a", 6), *early]:
        aligner.add(shot)
    assert aligner.clock == "mixed" and aligner.waiting("b") == 3
    for shot in camera("b", 6)[3:]:  # the first report came: b's frames carry capture times
        aligner.add(shot)
    assert aligner.clock == "sender"
    assert aligner.counts("b").discarded == 3 and aligner.waiting("b") == 3
    matches = aligner.poll(early[-1].arrival_mono + 1.0)
    assert matches and all(m.clock == "sender" for m in matches)
    assert all(f.capture_time is not None for m in matches for f in m.frames.values())
