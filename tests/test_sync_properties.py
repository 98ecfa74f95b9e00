"""Alignment proved on random camera groups, against brute-force oracles.

Each example is a group of 2-4 cameras at random rates (1-60 fps, mixed), capture phases,
path delays, jitter, loss, clock offsets, silences and keys going backwards, run through
an :class:`~syncstream.sync.Aligner` the way the group's alignment thread runs it: a poll
at every arrival and at every deadline the aligner names. The invariants hold for every
policy; the oracles (exhaustive searches over all frames) say what the best sets were and
whether a camera was left out of a set although it had a frame that fitted.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from syncstream.config import MissingPolicy, SyncPolicy
from syncstream.sync import Aligner, Match
from tests.test_sync import T0, Shot

EPS = 1e-6  # epoch-second floats round at ~2e-7 s


@dataclass(frozen=True)
class Cam:
    """How one simulated camera captures and delivers."""

    fps: float
    phase: float  # fraction of a frame interval
    delay: float  # path delay, s
    jitter: tuple[float, ...] = (0.0,)
    lost: frozenset[int] = frozenset()
    clock_offset: float = 0.0  # added to its capture times: a clock that is off
    silence: tuple[float, float] | None = None  # (from, to) seconds: delivers nothing
    backwards: frozenset[int] = frozenset()  # frames whose key goes one interval back
    # seconds from which its frames carry capture times (an RTSP camera's first sender
    # report); None: never (an MJPEG camera)
    stamped_from: float | None = 0.0

    def shots(self, name: str, seconds: float) -> list[Shot]:
        period = 1 / self.fps
        out = []
        for k in range(int(seconds * self.fps)):
            capture = self.phase * period + k * period
            if k in self.lost:
                continue
            if self.silence is not None and self.silence[0] <= capture < self.silence[1]:
                continue
            stamp = capture - period if k in self.backwards else capture
            arrival = capture + self.delay + self.jitter[k % len(self.jitter)]
            stamped = self.stamped_from is not None and capture >= self.stamped_from
            taken = T0 + stamp + self.clock_offset if stamped else None
            out.append(Shot(name, k, taken, T0 + arrival))
        return sorted(out, key=lambda s: s.arrival_time)  # a camera's frames come in order


@dataclass
class Run:
    """What an aligner did with a scenario."""

    matches: list[Match[Shot]] = field(default_factory=list)
    emitted_at: list[float] = field(default_factory=list)  # arrival_mono-clock poll time
    max_waiting: int = 0
    max_waiting_bytes: dict[str, int] = field(default_factory=dict)  # by camera
    keys: dict[tuple[str, int], float] = field(default_factory=dict)  # when last seen
    # per set, how often Aligner.clock had changed when it was emitted: a camera's frames
    # starting or stopping to carry capture times move the others' arrival delays, and
    # sets may then go back in time once
    clock_changes: list[int] = field(default_factory=list)

    def key(self, shot: Shot) -> float:
        """The key the aligner gave ``shot`` when it went into a set (or, if it never
        did, when it was added): a waiting frame without capture time moves with its
        camera's arrival delay."""
        return self.keys[(shot.source, shot.seq)]


def drive(aligner: Aligner[Shot], shots: list[Shot], tail: float = 5.0) -> Run:
    """Feed ``shots`` in arrival order, polling at each arrival and at each deadline the
    aligner names in between (as StreamGroup's alignment thread does), then ``tail`` s on."""
    run = Run()
    names = aligner.names

    changes = 0

    def poll(now: float) -> None:
        for match in aligner.poll(now):
            for shot in match.frames.values():
                run.keys[(shot.source, shot.seq)] = aligner.key(shot)
            run.matches.append(match)
            run.emitted_at.append(now)
            run.clock_changes.append(changes)
        run.max_waiting = max(run.max_waiting, *(aligner.waiting(n) for n in names))
        for n in names:
            held = aligner.waiting_bytes(n)
            run.max_waiting_bytes[n] = max(run.max_waiting_bytes.get(n, 0), held)

    now = 0.0
    ordered = sorted(shots, key=lambda s: s.arrival_time)
    end = (ordered[-1].arrival_mono if ordered else 0.0) + tail
    for shot in [*ordered, None]:
        until = shot.arrival_mono if shot is not None else end
        while (deadline := aligner.next_deadline(now)) is not None and deadline <= until:
            now = deadline
            poll(now)
        if shot is None:
            break
        now = max(now, shot.arrival_mono)
        clock = aligner.clock
        aligner.add(shot)
        changes += aligner.clock != clock
        run.keys[(shot.source, shot.seq)] = aligner.key(shot)
        poll(now)
    poll(end)
    return run


# -- oracles ------------------------------------------------------------------------------


def greedy_full_sets(frames: dict[str, list[float]], tol: float) -> int:
    """The most disjoint full sets within ``tol``, in time order (each camera's frames in
    order): repeatedly the feasible set whose latest key is smallest, each camera taking
    its earliest frame in the window. Optimal by an exchange argument, and checked
    against :func:`exhaustive_full_sets` below."""
    cursor = {name: 0 for name in frames}
    count = 0
    while True:
        best_high = None
        for high in sorted({k for name, keys in frames.items() for k in keys[cursor[name] :]}):
            if all(
                any(high - tol - EPS <= k <= high + EPS for k in keys[cursor[name] :])
                for name, keys in frames.items()
            ):
                best_high = high
                break
        if best_high is None:
            return count
        for name, keys in frames.items():
            i = cursor[name]
            while keys[i] < best_high - tol - EPS:
                i += 1
            cursor[name] = i + 1
        count += 1


def exhaustive_full_sets(frames: dict[str, list[float]], tol: float) -> int:
    """The same count by trying every choice (small inputs only)."""
    names = list(frames)

    def best(cursor: tuple[int, ...]) -> int:
        top = 0
        choices = [range(cursor[i], len(frames[n])) for i, n in enumerate(names)]
        for pick in itertools.product(*choices):
            keys = [frames[n][j] for n, j in zip(names, pick, strict=True)]
            if max(keys) - min(keys) <= tol + EPS:
                top = max(top, 1 + best(tuple(j + 1 for j in pick)))
        return top

    return best(tuple(0 for _ in names))


def first_fitting_frame_left_out(
    aligner: Aligner[Shot], shots: list[Shot], run: Run, tol: float
) -> str | None:
    """Brute force over every partial set: a missing camera's frame that had arrived when
    the set was emitted, went into no set, comes after that camera's last used frame and
    after the previous set's earliest frame, and fits the set within ``tol``.

    Frames that arrived before every camera delivered its second frame are passed over:
    until then the aligner does not know the cameras' intervals, holds sets for the
    first frames, and ``history`` may push frames out meanwhile. So are those that
    arrived after a camera delivered its last: a faster camera's frame is dropped as
    overtaken when a slower camera's next frame is due, and at the end it never comes.
    """
    arrivals: dict[str, list[float]] = {}
    for shot in sorted(shots, key=lambda s: s.arrival_mono):
        arrivals.setdefault(shot.source, []).append(shot.arrival_mono)
    settled = max(times[1] if len(times) > 1 else math.inf for times in arrivals.values())
    ending = min(times[-1] for times in arrivals.values())
    used = {(m_name, f.seq) for m in run.matches for m_name, f in m.frames.items()}
    last_used: dict[str, float] = {}
    previous_low = -math.inf
    for match, at in zip(run.matches, run.emitted_at, strict=True):
        keys = [run.key(f) for f in match.frames.values()]
        for name in match.missing:
            for shot in shots:
                if shot.source != name or (name, shot.seq) in used or shot.arrival_mono > at:
                    continue
                if not settled < shot.arrival_mono < ending:
                    continue
                k = run.key(shot)
                if k <= last_used.get(name, -math.inf) or k < previous_low:
                    continue
                if max(*keys, k) - min(*keys, k) <= tol - EPS:
                    return f"{name} frame {shot.seq} fits the set of {sorted(match.frames)}"
        for name, f in match.frames.items():
            last_used[name] = run.key(f)
        previous_low = min(keys)
    return None


# -- scenarios ----------------------------------------------------------------------------

RATES = st.sampled_from([1.0, 5.0, 10.0, 12.5, 15.0, 24.0, 25.0, 30.0, 50.0, 60.0])


@st.composite
def cams(draw: st.DrawFn, *, benign: bool = False) -> Cam:
    """A camera; ``benign``: right clock, steady delivery, a short path."""
    jitter = draw(st.lists(st.floats(0.0, 0.008), min_size=1, max_size=5))
    if benign:
        return Cam(
            fps=draw(RATES),
            phase=draw(st.floats(0.0, 0.999)),
            delay=draw(st.floats(0.0, 0.08)),
            jitter=tuple(jitter),
        )
    return Cam(
        fps=draw(RATES),
        phase=draw(st.floats(0.0, 0.999)),
        delay=draw(st.floats(0.0, 0.3)),
        jitter=tuple(jitter),
        lost=frozenset(draw(st.sets(st.integers(0, 120), max_size=8))),
        clock_offset=draw(st.one_of(st.just(0.0), st.floats(-0.04, 0.04), st.floats(-3.0, 3.0))),
        silence=draw(
            st.one_of(st.none(), st.tuples(st.floats(0.2, 1.5), st.floats(0.3, 1.2))).map(
                lambda t: None if t is None else (t[0], t[0] + t[1])
            )
        ),
        backwards=frozenset(draw(st.sets(st.integers(1, 60), max_size=2))),
        stamped_from=draw(st.sampled_from([0.0, 0.0, 0.0, None, 0.7])),
    )


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make(
    n: int, policy: SyncPolicy, on_missing: MissingPolicy, max_skew: float | None,
    max_wait: float, history: int,
) -> Aligner[Shot]:  # fmt: skip
    return Aligner(
        [f"c{i}" for i in range(n)],
        policy=policy,
        max_skew=max_skew,
        max_wait=max_wait,
        on_missing=on_missing,
        history=history,
        first_frame_wait=1.0,
    )


def tolerance(aligner: Aligner[Shot], max_skew: float | None, exact: float = 1e-4) -> float:
    if aligner.policy == "exact":
        return exact
    if aligner.policy == "nearest" and max_skew is not None:
        return max_skew
    return math.inf


# -- invariants, every policy -------------------------------------------------------------


@SETTINGS
@given(
    group=st.lists(cams(), min_size=2, max_size=4),
    policy=st.sampled_from(["nearest", "latest", "exact"]),
    on_missing=st.sampled_from(["partial", "wait"]),
    max_skew=st.sampled_from([0.005, 0.02, 0.05, 0.1, None]),
    max_wait=st.sampled_from([0.2, 0.5]),
    history=st.sampled_from([2, 8, 16]),
)
def test_invariants_hold_for_any_group(
    group: list[Cam],
    policy: SyncPolicy,
    on_missing: MissingPolicy,
    max_skew: float | None,
    max_wait: float,
    history: int,
) -> None:
    aligner = make(len(group), policy, on_missing, max_skew, max_wait, history)
    shots = [s for i, cam in enumerate(group) for s in cam.shots(f"c{i}", 2.5)]
    run = drive(aligner, shots)
    tol = tolerance(aligner, max_skew)
    names = aligner.names
    # memory stays bounded: no camera ever holds more than 8 x `history` waiting frames,
    # and no more than `history` of those waited longer than max_wait (+0.1 s)
    assert run.max_waiting <= 8 * history
    seen: set[tuple[str, int]] = set()
    for match in run.matches:
        assert match.frames, "a set has a frame"
        assert set(match.frames) | set(match.missing) == set(names)
        assert not set(match.frames) & set(match.missing)
        keys = [run.key(f) for f in match.frames.values()]
        assert math.isclose(match.skew, max(keys) - min(keys), abs_tol=EPS)
        assert match.skew <= tol + EPS  # nearest/exact: within the tolerance
        if on_missing == "wait":
            assert not match.missing
        for name, f in match.frames.items():
            assert (name, f.seq) not in seen, "a frame is used at most once"
            seen.add((name, f.seq))
    for name in names:
        used = [m.frames[name].seq for m in run.matches if name in m.frames]
        assert used == sorted(used), "a camera's frames go into sets in order"
        counts = aligner.counts(name)
        added = sum(1 for s in shots if s.source == name)
        # every frame is used once, dropped with a reason, or still waiting
        assert counts.used == len(used)
        assert counts.used + counts.dropped + aligner.waiting(name) == added
    if policy != "latest":
        for _, epoch in itertools.groupby(
            zip(run.clock_changes, run.matches, strict=True), lambda p: p[0]
        ):
            lows = [min(run.key(f) for f in m.frames.values()) for _, m in epoch]
            assert lows == sorted(lows), "sets come in the order of their earliest frame"


@SETTINGS
@given(
    group=st.lists(cams(), min_size=2, max_size=4),
    policy=st.sampled_from(["nearest", "latest", "exact"]),
    on_missing=st.sampled_from(["partial", "wait"]),
    max_wait=st.sampled_from([0.2, 0.5]),
    history=st.sampled_from([2, 8, 16]),
    sizes=st.lists(st.lists(st.integers(1, 100), min_size=1, max_size=5), min_size=4, max_size=4),
    budget=st.integers(1, 600),
)
def test_waiting_bytes_never_exceed_the_budget_plus_one_frame(
    group: list[Cam],
    policy: SyncPolicy,
    on_missing: MissingPolicy,
    max_wait: float,
    history: int,
    sizes: list[list[int]],
    budget: int,
) -> None:
    """Frames of varying sizes (``Frame.nbytes``) under a byte budget per camera: what a
    camera's waiting frames hold stays within the budget, or is its one newest frame."""

    def size(shot: Shot) -> int:
        cycle = sizes[int(shot.source[1:])]
        return cycle[shot.seq % len(cycle)]

    names = [f"c{i}" for i in range(len(group))]
    aligner = Aligner(
        names,
        policy=policy,
        max_wait=max_wait,
        on_missing=on_missing,
        history=history,
        first_frame_wait=1.0,
        frame_bytes=size,
        max_bytes=budget,
    )
    shots = [s for i, cam in enumerate(group) for s in cam.shots(f"c{i}", 2.5)]
    run = drive(aligner, shots)
    for name in names:
        largest = max(sizes[int(name[1:])])
        assert run.max_waiting_bytes[name] <= max(budget, largest) <= budget + largest
        counts = aligner.counts(name)
        added = sum(1 for s in shots if s.source == name)
        assert counts.used + counts.dropped + aligner.waiting(name) == added
    if budget < min(min(c) for c in sizes[: len(group)]):  # one frame at most waits
        assert run.max_waiting <= 1


# -- oracles: no starvation, the best full sets, nobody left out ---------------------------


@SETTINGS
@given(
    group=st.lists(cams(benign=True), min_size=2, max_size=4),
    max_skew=st.sampled_from([0.005, 0.02, 0.05, 0.1]),
)
@example(  # four cameras at 10 fps, phases 0/25/50/75 ms: no full set fits in 50 ms
    group=[Cam(fps=10.0, phase=p, delay=0.037) for p in (0.0, 0.25, 0.5, 0.75)], max_skew=0.05
)
@example(  # 10 fps beside 30 fps
    group=[Cam(fps=10.0, phase=0.0, delay=0.03), Cam(fps=30.0, phase=0.4, delay=0.01)],
    max_skew=0.02,
)
# counterexamples found on the way, kept: each failed once
@example(  # 1 fps beside 24 fps: taken for silent between frames before its interval was known
    group=[Cam(fps=1.0, phase=0.0, delay=0.0625), Cam(fps=24.0, phase=0.0, delay=0.0)],
    max_skew=0.005,
)
@example(  # the frames at start outlived history while sets waited for first frames
    group=[Cam(fps=1.0, phase=0.0, delay=0.0), Cam(fps=10.0, phase=0.0, delay=0.0),
           Cam(fps=50.0, phase=0.0, delay=0.0)],
    max_skew=0.005,
)  # fmt: skip
@example(  # a silent camera's frame still waiting was left out of the set it fitted
    group=[Cam(fps=1.0, phase=0.78125, delay=0.0), Cam(fps=5.0, phase=0.0, delay=0.0)],
    max_skew=0.02,
)
@example(  # a camera's clock was judged while it was silent, and its frame dropped
    group=[Cam(fps=1.0, phase=0.0, delay=0.0),
           Cam(fps=1.0, phase=0.0, delay=0.0, jitter=(0.0078125,)),
           Cam(fps=1.0, phase=0.25, delay=0.0, jitter=(0.0078125,))],
    max_skew=0.005,
)  # fmt: skip
@example(
    group=[Cam(fps=1.0, phase=0.96875, delay=0.0625), Cam(fps=1.0, phase=0.0, delay=0.0)],
    max_skew=0.005,
)
@example(  # a frame of a two-camera set was dropped as overtaken by a slower camera
    group=[Cam(fps=1.0, phase=0.0, delay=0.0), Cam(fps=10.0, phase=0.0, delay=0.0),
           Cam(fps=1.0, phase=0.5, delay=0.0)],
    max_skew=0.005,
)  # fmt: skip
@example(  # a set exactly max_skew wide: the oracle counts only sets clearly within it
    group=[Cam(fps=1.0, phase=0.0, delay=0.0), Cam(fps=12.5, phase=0.5625, delay=0.0)],
    max_skew=0.005,
)
@example(  # a frame was dropped as overtaken while a camera that would join was awaited
    group=[Cam(fps=1.0, phase=0.0, delay=0.0), Cam(fps=1.0, phase=0.5234375, delay=0.0),
           Cam(fps=12.5, phase=0.0, delay=0.0)],
    max_skew=0.005,
)  # fmt: skip
@example(  # narrowing kept the earlier frames although only the later ones fitted max_skew
    group=[Cam(fps=1.0, phase=0.78125, delay=0.0), Cam(fps=5.0, phase=0.0, delay=0.0),
           Cam(fps=12.5, phase=0.3125, delay=0.0)],
    max_skew=0.05,
)  # fmt: skip
@example(  # 24 and 25 fps beating: frames older than a full set, which made a partial set
    # of two cameras, were dropped as overtaken
    group=[Cam(fps=24.0, phase=0.0, delay=0.0625), Cam(fps=24.0, phase=0.625, delay=0.0),
           Cam(fps=25.0, phase=0.0, delay=0.0)],
    max_skew=0.02,
)  # fmt: skip
@example(  # 24 fps three times beside 25 fps: 69 full sets where 72 were possible
    group=[Cam(fps=24.0, phase=0.0, delay=0.0), Cam(fps=24.0, phase=0.75, delay=0.0625),
           Cam(fps=24.0, phase=0.375, delay=0.0), Cam(fps=25.0, phase=0.0, delay=0.0)],
    max_skew=0.05,
)  # fmt: skip
@example(  # three 12.5 fps cameras beside 1 fps: their sets of three were dropped as
    # overtaken for a whole second, waiting for the slow camera's next frame
    group=[Cam(fps=1.0, phase=0.0, delay=0.0), Cam(fps=12.5, phase=0.0, delay=0.0),
           Cam(fps=12.5, phase=0.0, delay=0.078125), Cam(fps=12.5, phase=0.875, delay=0.0)],
    max_skew=0.02,
)  # fmt: skip
def test_steady_cameras_never_starve_and_nobody_is_left_out(
    group: list[Cam], max_skew: float
) -> None:
    aligner = make(len(group), "nearest", "partial", max_skew, 0.5, 64)  # covers max_wait
    # a camera slower than 1 / max_wait is taken for silent until its interval is known
    # (its second frame): give the slowest enough frames to be judged on
    seconds = max(3.0, 8 / min(cam.fps for cam in group))
    shots = [s for i, cam in enumerate(group) for s in cam.shots(f"c{i}", seconds)]
    run = drive(aligner, shots)
    # no starvation: every frame of the slowest camera goes into a set
    slowest = min(range(len(group)), key=lambda i: group[i].fps)
    slow_frames = sum(1 for s in shots if s.source == f"c{slowest}")
    assert aligner.counts(f"c{slowest}").used >= slow_frames - 2
    assert len(run.matches) >= slow_frames - 2
    # a camera is left out of a set only when it had no frame that fitted
    assert first_fitting_frame_left_out(aligner, shots, run, max_skew) is None
    # full sets: as many as the best choice over all frames allows
    frames = {
        name: sorted(s.capture_time for s in shots if s.source == name and s.capture_time)
        for name in aligner.names
    }
    full = sum(1 for m in run.matches if not m.missing)
    # an offline choice over all frames (clearly within max_skew) finds at most 5 % more:
    # deciding online, and preferring earlier frames on near-ties, the aligner can miss a
    # few where rates beat (24 beside 25 fps)
    best = greedy_full_sets(frames, max_skew - EPS)
    assert full >= 0.95 * best - 2


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(
        st.lists(st.floats(0.0, 0.5), min_size=1, max_size=5).map(sorted),
        min_size=2,
        max_size=3,
    ),
    tol=st.sampled_from([0.02, 0.05, 0.1]),
)
def test_the_full_set_oracle_is_exhaustive_search(frames: list[list[float]], tol: float) -> None:
    named = {f"c{i}": keys for i, keys in enumerate(frames)}
    assert greedy_full_sets(named, tol) == exhaustive_full_sets(named, tol)


@SETTINGS
@given(
    good=st.lists(cams(benign=True), min_size=2, max_size=3),
    offset=st.one_of(st.floats(-3.0, -0.7), st.floats(0.7, 3.0)),
    policy=st.sampled_from(["nearest", "exact"]),
)
@example(  # one interval off at 1 fps: its frames still fall on the others' instants
    good=[Cam(fps=1.0, phase=0.5, delay=0.0), Cam(fps=1.0, phase=0.5, delay=0.0)],
    offset=1.0,
    policy="nearest",
)
def test_a_camera_whose_clock_is_off_never_silences_the_group(
    good: list[Cam], offset: float, policy: SyncPolicy
) -> None:
    bad = Cam(fps=good[0].fps, phase=0.3, delay=0.02, clock_offset=offset)
    group = [*good, bad]
    aligner = make(len(group), policy, "partial", 0.05, 0.5, 8)
    shots = [s for i, cam in enumerate(group) for s in cam.shots(f"c{i}", 3.0)]
    run = drive(aligner, shots)
    odd = f"c{len(good)}"
    slowest = min(good, key=lambda c: c.fps)
    # the others keep their rate; the camera whose clock is off is named as missing and
    # its frames are dropped because of its clock
    assert len(run.matches) >= int(3.0 * slowest.fps) - 2
    assert sum(1 for m in run.matches if odd in m.frames) <= 2
    counts = aligner.counts(odd)
    assert counts.clock > 0 and counts.clock >= counts.dropped - 2


# -- cameras without capture times ---------------------------------------------------------


@SETTINGS
@given(
    group=st.lists(cams(benign=True), min_size=2, max_size=4),
    unstamped=st.sets(st.integers(0, 3), min_size=1, max_size=3),
    delay=st.floats(0.0, 0.3),
    max_skew=st.sampled_from([0.005, 0.02, 0.05]),
)
# counterexample found on the way, kept: the camera without capture times always had a
# frame waiting (none fitted a set before its arrival delay was known), so it never moved
@example(
    group=[Cam(fps=10.0, phase=0.5, delay=0.0), Cam(fps=5.0, phase=0.0, delay=0.0)],
    unstamped={1},
    delay=0.25,
    max_skew=0.005,
)
def test_cameras_without_capture_times_go_on_the_others_clock(
    group: list[Cam], unstamped: set[int], delay: float, max_skew: float
) -> None:
    # every path is as long: a camera without capture times counts as captured the
    # stamped cameras' delay before it arrived, which is when it was captured
    assume(unstamped & set(range(len(group))) and not set(range(len(group))) <= unstamped)
    group = [
        replace(cam, delay=delay, jitter=(0.0,), stamped_from=None if i in unstamped else 0.0)
        for i, cam in enumerate(group)
    ]
    aligner = make(len(group), "nearest", "partial", max_skew, 0.5, 64)
    seconds = max(3.0, 8 / min(cam.fps for cam in group))
    shots = [s for i, cam in enumerate(group) for s in cam.shots(f"c{i}", seconds)]
    run = drive(aligner, shots)
    assert aligner.clock == "mixed"
    taken = {(s.source, s.seq): T0 + (s.arrival_time - T0) - delay for s in shots}
    # a camera's arrival delay follows the estimate: after the first stamped frame, once
    # the frames keyed before it had time to go into sets
    stamped_first = min(s.arrival_mono for s in shots if s.capture_time is not None)
    settled = stamped_first + 0.5 + 2 / min(cam.fps for cam in group)
    for match in run.matches:
        names = sorted(match.frames)
        assert match.clock == ("sender" if all(int(n[1:]) not in unstamped for n in names)
                               else "arrival" if all(int(n[1:]) in unstamped for n in names)
                               else "mixed")  # fmt: skip
        if all(f.arrival_mono > settled for f in match.frames.values()):
            # the keys are the capture times, to the 2 ms the arrival delay may lag by
            for name, f in match.frames.items():
                assert abs(run.key(f) - taken[(name, f.seq)]) <= 0.002 + EPS
    # and the sets are as many as by capture times
    frames = {
        name: sorted(taken[(s.source, s.seq)] for s in shots if s.source == name)
        for name in aligner.names
    }
    full = sum(1 for m in run.matches if not m.missing)
    assert full >= 0.95 * greedy_full_sets(frames, max_skew - 0.002 - EPS) - 3
