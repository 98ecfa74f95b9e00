"""One group of an RTSP camera with sender reports, a syncstream UDP sender and an MJPEG
camera: one clock for all three, and each set says which clock each camera went by.

Every camera paints its capture time into its pictures (tests/rtsp_server.py ``--stamp``,
:class:`~syncstream.probe.StampSender`, the MJPEG peer's ``stamp_size``), so the sets are
checked against the instants the pictures were really taken.
"""

from __future__ import annotations

import statistics

import pytest
from conftest import free_udp_port, wait_until
from peers import MjpegServer
from rtsp_fixture import rtsp_server, rtsp_server_available

from syncstream import Camera, FrameSet, StreamGroup
from syncstream.probe import StampSender, decode_stamp

SIZE = (320, 240)
#: Complete sets checked once the RTSP camera's sender report is in.
SETS = 40
#: The capture times of the stamped cameras agree with their pixels within this, p95 (s).
CAPTURE_ERROR = 0.005


def _require_server() -> None:
    reason = rtsp_server_available()
    if reason is not None:
        pytest.fail(f"RTSP test server unavailable ({reason}); scripts/setup.sh --test installs it")


def _mixed_sets(group: StreamGroup) -> list[FrameSet]:
    """SETS complete sets, read once the RTSP camera's frames carry capture times."""
    sets: list[FrameSet] = []

    def collected() -> bool:
        fs = group.read(timeout=5.0)
        if fs.complete and fs.clocks["rtsp"] == "sender":
            sets.append(fs)
        return len(sets) >= SETS

    wait_until(collected, 45.0, f"{SETS} complete sets with the RTSP camera on its clock")
    return sets


@pytest.mark.usefixtures("no_group_threads_left")
def test_rtsp_udp_and_mjpeg_cameras_on_one_clock() -> None:
    _require_server()
    port = free_udp_port()
    max_skew = 0.05
    with (
        rtsp_server(width=SIZE[0], height=SIZE[1], fps=25, extra_args=["--stamp"]) as rtsp_url,
        MjpegServer([], fps=25.0, stamp_size=SIZE) as mjpeg,
        StampSender(f"udp://127.0.0.1:{port}", size=SIZE, fps=25.0),
    ):
        cameras = [
            Camera(name="rtsp", url=rtsp_url, rtsp_transport="tcp"),
            Camera(name="udp", url=f"udp://127.0.0.1:{port}"),
            Camera(name="mjpeg", url=mjpeg.url),
        ]
        with StreamGroup(cameras, max_skew=max_skew) as group:
            sets = _mixed_sets(group)
            stats = group.stats
    assert stats.clock == "mixed"
    assert any("by arrival - " in line for line in stats.lines() if line.startswith("mjpeg"))
    udp, rtsp, mjpeg_stats = (stats.cameras[n] for n in ("udp", "rtsp", "mjpeg"))
    assert udp.arrival_delay is None and rtsp.arrival_delay is None
    assert udp.delay is not None and rtsp.delay is not None
    assert mjpeg_stats.arrival_delay is not None
    # the MJPEG camera counts as captured the median delay of the others before it arrived
    low, high = sorted((udp.delay, rtsp.delay))
    assert low - 0.01 <= mjpeg_stats.arrival_delay <= high + 0.01

    errors = []
    for fs in sets:
        assert fs.clock == "mixed" and fs.capture_time == fs.time
        assert fs.clocks == {"rtsp": "sender", "udp": "sender", "mjpeg": "arrival"}
        taken = {name: decode_stamp(frame.image) for name, frame in fs.frames.items()}
        for name in ("rtsp", "udp"):  # on their own clocks: their capture times are true
            capture = fs[name].capture_time
            assert capture is not None
            errors.append(abs(capture - taken[name]))
        # the RTSP camera's frames take ~40 ms longer to come than the UDP sender's, yet
        # they pair by capture time: within max_skew of each other in truth
        assert abs(taken["rtsp"] - taken["udp"]) <= max_skew + 2 * max(errors[-2:])
        assert fs.skew <= max_skew
    # to a few ms (a loaded machine may delay a sender between painting and stamping)
    assert statistics.quantiles(errors, n=20)[-1] < CAPTURE_ERROR, sorted(errors)[-5:]
    # the MJPEG camera's frames went by arrival minus its arrival delay: how far they were
    # from the others in truth is the set's own offset plus the error of that estimate
    true_delay = statistics.median(
        fs["mjpeg"].arrival_time - decode_stamp(fs["mjpeg"].image) for fs in sets
    )
    estimate_error = abs(mjpeg_stats.arrival_delay - true_delay)
    for fs in sets:
        taken = [decode_stamp(frame.image) for frame in fs.frames.values()]
        assert max(taken) - min(taken) <= max_skew + estimate_error + 0.01
