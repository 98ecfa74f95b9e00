"""Camera clock health: the clock error of each stream, its warning and ``clock_fix``.

The estimator (a sliding-window minimum) is tested pure, against the plain minimum over
the window. End to end, real ffmpeg senders on 127.0.0.1 play cameras whose clock is off:
a ``clock_offset`` given on the camera shifts its capture times exactly as a wrong clock
would.
"""

from __future__ import annotations

import io
import json
import logging
import pathlib
import re
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncstream import Camera, FrameSet, SenderConfig, StreamGroup, VideoStream
from syncstream.cli.probe import ProbeReport, print_report
from syncstream.clock import LowerEnvelope
from syncstream.processors.output import ImageOutput
from syncstream.processors.web import WebView
from syncstream.senders import free_udp_port
from tests.conftest import SenderFactory

# -- the estimator, pure -----------------------------------------------------------------


@given(
    window=st.floats(0.01, 5.0),
    max_samples=st.integers(1, 20),
    samples=st.lists(
        st.tuples(st.floats(0.0, 1.0), st.floats(-1e4, 1e4, allow_nan=False)),
        min_size=1,
        max_size=80,
    ),
)
def test_the_lower_envelope_is_the_minimum_over_its_window(
    window: float, max_samples: int, samples: list[tuple[float, float]]
) -> None:
    envelope = LowerEnvelope(window, max_samples)
    assert envelope.value is None
    seen: list[tuple[float, float]] = []
    now = 0.0
    for step, value in samples:
        now += step
        seen.append((now, value))
        kept = [v for t, v in seen[-max_samples:] if t >= now - window]
        assert envelope.add(now, value) == min(kept)
        assert envelope.value == min(kept)


def test_the_lower_envelope_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError):
        LowerEnvelope(0.0, 10)
    with pytest.raises(ValueError):
        LowerEnvelope(1.0, 0)


def test_the_clock_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="clock_fix"):
        VideoStream("udp://127.0.0.1:9", clock_fix="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clock_warning"):
        VideoStream("udp://127.0.0.1:9", clock_warning=0.0)


def test_the_probe_report_shows_the_clock_error() -> None:
    out = io.StringIO()
    for error in (-2.5, 0.004, None):
        print_report(ProbeReport(url="udp://127.0.0.1:9", clock_error=error), out)
    lines = out.getvalue().splitlines()
    rows = [line.split(None, 2)[2].strip() for line in lines if line.startswith("clock error")]
    assert rows == ["-2.500 s (off: beyond ±1 s)", "+0.004 s", "-"]


# -- one stream, real senders -----------------------------------------------------------


def _wait_for_clock_error(stream: VideoStream, limit: float = 10.0) -> float:
    """Read frames until the stream has measured its clock error; return it."""
    deadline = time.monotonic() + limit
    while stream.stats.clock_error is None and time.monotonic() < deadline:
        stream.read(timeout=5.0)
    error = stream.stats.clock_error
    assert error is not None, stream.stats
    return error


def test_a_right_clock_has_a_small_clock_error_and_no_warning(
    udp_sender: SenderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_udp_port()
    udp_sender(port, size=(160, 120))
    caplog.set_level(logging.INFO, logger="syncstream.stream")
    with VideoStream(f"udp://127.0.0.1:{port}", name="right") as stream:
        error = _wait_for_clock_error(stream)
        frames = [stream.read(timeout=5.0) for _ in range(10)]
        stats = stream.stats
    assert 0.0 <= error < 0.5  # the path delay alone
    assert stats.capture_clock == "sender"
    assert all(frame.capture_time is not None for frame in frames)
    assert "clock" not in caplog.text


def test_a_clock_an_hour_off_is_measured_although_auto_refuses_it(
    udp_sender: SenderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # clock_offset -3600: the sender's capture times read an hour early, far beyond
    # clock_tolerance, so "auto" refuses them; the error is measured all the same
    port = free_udp_port()
    udp_sender(port, size=(160, 120))
    caplog.set_level(logging.WARNING, logger="syncstream.stream")
    url = f"udp://127.0.0.1:{port}"
    with VideoStream(url, name="hour", clock_offset=-3600.0) as stream:
        error = _wait_for_clock_error(stream)
        frame = stream.read(timeout=5.0)
        stats = stream.stats
    assert 3600.0 <= error < 3600.5
    assert frame.capture_time is None and stats.capture_clock == "arrival"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once, not once per frame
    assert warnings[0].startswith("hour:") and "clock_warning" in warnings[0]
    assert "behind ours" in warnings[0] and "refused" in warnings[0]


def test_clock_fix_correct_puts_a_clock_an_hour_off_just_before_arrival(
    udp_sender: SenderFactory,
) -> None:
    port = free_udp_port()
    udp_sender(port, size=(160, 120))
    url = f"udp://127.0.0.1:{port}"
    with VideoStream(url, name="hour", clock_offset=-3600.0, clock_fix="correct") as stream:
        _wait_for_clock_error(stream)
        frames = [stream.read(timeout=5.0) for _ in range(20)]
        stats = stream.stats
    assert stats.capture_clock == "corrected"
    for frame in frames:
        assert frame.capture_time is not None
        # the fastest frame of the window counts as captured when it arrived
        assert 0.0 <= frame.arrival_time - frame.capture_time < 0.5


# -- a group with a camera whose clock is off ---------------------------------------------


def _cameras(**odd: object) -> list[Camera]:
    """Camera "good", and camera "odd" whose capture times are 2.5 s ahead of ours."""
    cameras = []
    for name, fields in (("good", {}), ("odd", {"clock_offset": 2.5, **odd})):
        sender = SenderConfig(size=(160, 120), fps=30.0)
        values = {"name": name, "sender": sender, "port": free_udp_port(), **fields}
        cameras.append(Camera.model_validate(values))
    return cameras


def _read_until_complete(group: StreamGroup, limit: float = 15.0) -> FrameSet:
    deadline = time.monotonic() + limit
    frameset = group.read(timeout=5.0)
    while not frameset.complete and time.monotonic() < deadline:
        frameset = group.read(timeout=5.0)
    return frameset


def _stream_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "syncstream.stream"
    ]


@pytest.mark.usefixtures("no_group_threads_left")
def test_a_camera_whose_clock_is_off_is_measured_named_and_the_group_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="syncstream")
    with StreamGroup(_cameras()) as group:
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and (
            not group.stats.cameras["odd"].off_clock
            or group.stats.cameras["good"].stream.clock_error is None
        ):
            group.read(timeout=5.0)
        later = [group.read(timeout=5.0) for _ in range(30)]  # never silent
        stats = group.stats
    odd, good = stats.cameras["odd"], stats.cameras["good"]
    assert odd.stream.clock_error is not None and -2.5 <= odd.stream.clock_error < -2.0
    assert good.stream.clock_error is not None and 0.0 <= good.stream.clock_error < 0.5
    assert odd.off_clock and not good.off_clock
    assert all("good" in frameset for frameset in later)
    line = next(line for line in stats.lines() if line.startswith("odd "))
    assert re.search(r"clock error -2\.\d\d s  clock off", line), line
    warnings = _stream_warnings(caplog)
    assert [m for m in warnings if m.startswith("odd:")], warnings
    assert "ahead of ours" in warnings[0] and "clock_fix" in warnings[0]
    assert not [m for m in warnings if m.startswith("good:")]


@pytest.mark.usefixtures("no_group_threads_left")
def test_clock_fix_correct_gives_complete_sets_with_a_camera_whose_clock_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="syncstream")
    with StreamGroup(_cameras(clock_fix="correct")) as group:
        assert _read_until_complete(group).complete
        sets = [group.read(timeout=5.0) for _ in range(30)]
        stats = group.stats
    odd = stats.cameras["odd"]
    assert odd.stream.capture_clock == "corrected" and not odd.off_clock
    assert odd.stream.clock_error is not None and -2.5 <= odd.stream.clock_error < -2.0
    assert stats.clock == "sender"  # the other camera keeps its own capture times
    assert sum(frameset.complete for frameset in sets) >= 27
    assert odd.drop_reasons.get("clock", 0) == 0
    warnings = [m for m in _stream_warnings(caplog) if m.startswith("odd:")]
    assert len(warnings) == 1 and "corrected" in warnings[0]


@pytest.mark.usefixtures("no_group_threads_left")
def test_clock_fix_arrival_gives_complete_sets_with_a_camera_whose_clock_is_off() -> None:
    with StreamGroup(_cameras(clock_fix="arrival")) as group:
        assert _read_until_complete(group).complete
        sets = [group.read(timeout=5.0) for _ in range(30)]
        stats = group.stats
    odd = stats.cameras["odd"]
    assert odd.stream.capture_clock == "arrival" and not odd.off_clock
    assert odd.stream.clock_error is not None and -2.5 <= odd.stream.clock_error < -2.0
    # odd goes by arrival minus good's delay (arrival minus capture time), good by its
    # capture times: one clock, and each set says which camera went by which
    good = stats.cameras["good"]
    assert stats.clock == "mixed" and good.arrival_delay is None
    assert good.delay is not None and odd.arrival_delay is not None
    assert abs(odd.arrival_delay - good.delay) <= 0.01  # it follows the estimate
    complete = [frameset for frameset in sets if frameset.complete]
    assert len(complete) >= 27
    assert all(fs.clocks == {"good": "sender", "odd": "arrival"} for fs in complete)
    assert all(fs.clock == "mixed" and fs.capture_time == fs.time for fs in complete)


@pytest.mark.usefixtures("no_group_threads_left")
def test_the_web_page_shows_each_cameras_clock_error_in_chromium(
    tmp_path: pathlib.Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_web import _chromium

    output = ImageOutput("wall")
    output.publish(np.zeros((120, 160, 3), np.uint8))
    with StreamGroup(_cameras()) as group:
        view = WebView(output, title="clocks")
        group.add_processor(view)  # attach() starts it
        driver = _chromium(tmp_path / "chromium")
        try:
            driver.get(view.url)

            def rows(d: Any) -> dict[str, str]:
                body = d.find_element(By.CSS_SELECTOR, "#cameras tbody").text
                return {line.split(" ", 1)[0]: line for line in str(body).splitlines()}

            def shown(d: Any) -> bool:
                found = rows(d)
                return "(off)" in found.get("odd", "") and " ms " in found.get("good", "")

            WebDriverWait(driver, 30.0).until(shown)
            found = rows(driver)
            header = driver.find_element(By.CSS_SELECTOR, "#cameras thead").text
        finally:
            driver.quit()
    assert "clock error" in header
    assert re.search(r" -2\.\d\d s \(off\) ", found["odd"]), found
    assert re.search(r" \+\d+\.\d ms \d", found["good"]), found


# -- syncstream probe ----------------------------------------------------------------------


def test_probe_reports_the_clock_error(udp_sender: SenderFactory) -> None:
    port = free_udp_port()
    udp_sender(port, size=(160, 120))
    command = [sys.executable, "-m", "syncstream", "probe", f"udp://127.0.0.1:{port}"]
    result = subprocess.run(
        [*command, "--seconds", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["clock_error"] is not None and 0.0 <= report["clock_error"] < 0.5
    assert not any("clock" in note for note in report["notes"])
