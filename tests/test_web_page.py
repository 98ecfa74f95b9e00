"""The web view's page in headless Chromium: a chart per camera, the camera table, one camera
at a time, the layout at desktop and phone sizes, the icon; and the cameras' routes.

Real cameras (stamped ffmpeg senders on 127.0.0.1) in a real StreamGroup; the page is
looked at in Debian's chromium through chromedriver. Waits poll a condition with a deadline.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from test_web import (
    DEADLINE,
    MjpegReader,
    SideBySide,
    _chromium,
    _decode,
    _get,
    _region,
    _stats,
    _web_threads,
)

from syncstream import Camera, StreamGroup
from syncstream.processors.web import WebView
from syncstream.processors.web.history import ChartHistory, ChartSample
from syncstream.senders import free_udp_port
from syncstream.testing.plugin import StampSenderFactory
from tests.conftest import wait_until

SIZES = {"a": (320, 240), "b": (352, 240)}  # the same height: SideBySide stacks them
CAMERA_COLUMNS = [
    "camera",
    "state",
    "fps",
    "latency p50",
    "latency p95",
    "skew",
    "clock",
    "clock offset",
    "clock error",
    "dropped",
    "restarts",
    "reconnects",
]
FPS_COLOUR = (102, 204, 255)  # the fps line's colour (RGB) on the charts


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    yield
    assert _web_threads() == []


@pytest.fixture
def two_cameras(stamp_sender: StampSenderFactory) -> Iterator[tuple[StreamGroup, WebView]]:
    """A started group of cameras ``a`` and ``b`` (of :data:`SIZES`), side by side on the
    output ``pair``, with a web view."""
    ports = {name: free_udp_port() for name in SIZES}
    cams = [Camera(name=name, url=f"udp://127.0.0.1:{port}") for name, port in ports.items()]
    with StreamGroup(cams) as group:
        for name, port in ports.items():
            stamp_sender(f"udp://127.0.0.1:{port}", size=SIZES[name])
        pair = SideBySide()
        group.add_processor(pair)
        view = WebView(pair, title="cameras")
        group.add_processor(view)
        yield group, view


def _errors(log: list[dict[str, Any]]) -> list[str]:
    """The console's error messages (a failed request, a script error)."""
    return [str(entry["message"]) for entry in log if entry["level"] == "SEVERE"]


def _fps_line_pixels(driver: Any, camera: str) -> int:
    """Pixels of the fps line in camera ``camera``'s chart (below its label, in its band)."""
    script = """
        const canvas = document.querySelector(`.chart[data-camera="${arguments[0]}"] canvas`);
        const ratio = window.devicePixelRatio || 1;
        const top = Math.ceil(15 * ratio), bottom = Math.floor(canvas.height / 3);
        const data = canvas.getContext("2d").getImageData(0, top, canvas.width, bottom - top);
        let count = 0;
        for (let i = 0; i < data.data.length; i += 4) {
          const [r, g, b, a] = data.data.slice(i, i + 4);
          if (a > 128 && Math.abs(r - 102) < 50 && Math.abs(g - 204) < 50 && b > 200) count++;
        }
        return count;
    """
    return int(driver.execute_script(script, camera))


def _points(driver: Any, camera: str) -> int:
    element = driver.find_element("css selector", f'.chart[data-camera="{camera}"]')
    return int(element.get_attribute("data-points") or 0)


def _shown_width(driver: Any) -> int:
    return int(driver.execute_script("return document.getElementById('view').naturalWidth"))


def _set_screen(driver: Any, width: int, height: int, *, mobile: bool) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


# -- routes -----------------------------------------------------------------------------------


def test_each_camera_is_served_alone(two_cameras: tuple[StreamGroup, WebView]) -> None:
    _, view = two_cameras
    reader = MjpegReader(view, camera="b")
    pictures = [reader.picture() for _ in range(3)]
    assert all(p.shape == (SIZES["b"][1], SIZES["b"][0], 3) for p in pictures)
    stats = view.stats
    assert [c.output for c in stats.clients] == ["camera/b"]
    assert set(stats.cameras) == {"a", "b"}
    assert stats.cameras["b"].viewers == 1 and stats.cameras["b"].encoded >= 3
    assert stats.cameras["a"].viewers == 0 and stats.cameras["a"].encoded == 0
    reader.close()

    status, headers, body = _get(view, "/snapshot.jpg?camera=a")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert _decode(body).shape == (SIZES["a"][1], SIZES["a"][0], 3)
    for path in ("/stream.mjpg?camera=c", "/snapshot.jpg?camera=c"):
        status, _, body = _get(view, path)
        assert status == 404 and b"no camera named 'c'" in body
    assert _stats(view)["web"]["cameras"]["b"]["name"] == "camera/b"


def test_a_view_without_a_group_has_no_cameras() -> None:
    from syncstream.processors.output import ImageOutput

    with WebView(ImageOutput("wall")) as view:
        status, _, body = _get(view, "/snapshot.jpg?camera=a")
        assert status == 404 and b"no camera named 'a'" in body
        assert view.stats.cameras == {}
        status, headers, icon = _get(view, "/favicon.ico")
        assert status == 200 and headers["content-type"] == "image/svg+xml"
        assert icon.startswith(b"<svg") and _get(view, "/favicon.svg")[2] == icon
        status, headers, _ = _get(view, "/")
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy


# -- in a real browser ------------------------------------------------------------------------


def test_the_page_draws_a_chart_per_camera_and_the_camera_table_in_chromium(
    two_cameras: tuple[StreamGroup, WebView], tmp_path: pathlib.Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    _, view = two_cameras
    driver = _chromium(tmp_path / "chromium")
    log: list[dict[str, Any]] = []
    try:
        _set_screen(driver, 1280, 800, mobile=False)
        driver.get(view.url)
        wait = WebDriverWait(driver, DEADLINE)
        assert driver.find_element(By.ID, "status").text in ("connecting", "live")
        # a chart per camera, its lines drawn from the stats the page polls
        wait.until(lambda d: min(_points(d, "a"), _points(d, "b")) >= 3)
        assert _fps_line_pixels(driver, "a") > 0 and _fps_line_pixels(driver, "b") > 0
        before = (
            _points(driver, "a"),
            driver.execute_script(
                "return document.querySelector('.chart[data-camera=\"a\"] canvas').toDataURL()"
            ),
        )
        wait.until(lambda d: _points(d, "a") >= before[0] + 2)
        after = driver.execute_script(
            "return document.querySelector('.chart[data-camera=\"a\"] canvas').toDataURL()"
        )
        assert after != before[1]  # redrawn with the new points

        # the camera table: its columns, a row per camera with its numbers
        headers = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#cameras thead th")]
        assert headers == CAMERA_COLUMNS

        def rows(d: Any) -> list[list[str]]:  # in one call: the page rebuilds the rows
            script = """return Array.from(document.querySelectorAll("#cameras tbody tr"),
                (row) => Array.from(row.cells, (cell) => cell.textContent));"""
            found: list[list[str]] = d.execute_script(script)
            return found

        wait.until(lambda d: all(r[4].endswith(" ms") for r in rows(d)) and len(rows(d)) == 2)
        for name, row in zip(("a", "b"), rows(driver), strict=True):
            cells = dict(zip(CAMERA_COLUMNS, row, strict=True))
            assert cells["camera"] == name and cells["state"] == "live"
            assert float(cells["fps"]) > 0 and cells["latency p95"].endswith(" ms")
            assert cells["skew"][0] in "+-" and cells["clock"] == "sender"
            assert cells["clock offset"][0] in "+-" and cells["restarts"] == "-"

        # one camera at a time: its chart opens it, the selector too
        driver.find_element(By.CSS_SELECTOR, '.chart[data-camera="b"]').click()
        wait.until(lambda d: _shown_width(d) == SIZES["b"][0])
        assert driver.find_element(By.ID, "shown").text == "camera b"
        assert driver.current_url.endswith("/?camera=b")
        wait.until(lambda _: [c.output for c in view.stats.clients] == ["camera/b"])
        assert "shown" in driver.find_element(
            By.CSS_SELECTOR, '.chart[data-camera="b"]'
        ).get_attribute("class")
        Select(driver.find_element(By.ID, "output")).select_by_value("camera:a")
        wait.until(lambda d: _shown_width(d) == SIZES["a"][0])
        Select(driver.find_element(By.ID, "output")).select_by_value("output:pair")
        wait.until(lambda d: _shown_width(d) == SIZES["a"][0] + SIZES["b"][0])
        # the picture shown is the camera's: opened by its address, b's stamped picture
        driver.get(view.url + "?camera=b")
        wait.until(lambda d: _shown_width(d) == SIZES["b"][0])
        image = driver.find_element(By.ID, "view")
        shown = _region(driver.get_screenshot_as_png(), image.rect)
        assert shown.std() > 10  # the picture, not a blank element
        log = driver.get_log("browser")
    finally:
        driver.quit()
    assert _errors(log) == []


def test_the_history_of_a_camera_is_capped_to_the_window() -> None:
    history = ChartHistory(window=60.0, interval=1.0)
    assert history.max_samples == 61
    for second in range(500):  # more than eight minutes of samples
        history.add("a", ChartSample(float(second), 15.0, 0.02, None))
    assert len(history) == history.max_samples
    samples = history.document(now_mono=499.0)["a"]
    assert [s["age"] for s in samples] == [float(age) for age in range(60, -1, -1)]
    assert samples[-1] == {"age": 0.0, "fps": 15.0, "latency": 0.02, "skew": None}
    assert history.document(now_mono=600.0) == {"a": []}  # beyond the window: not drawn


def test_a_reloaded_page_draws_the_last_minute_at_once_in_chromium(
    two_cameras: tuple[StreamGroup, WebView], tmp_path: pathlib.Path
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    _, view = two_cameras

    def kept() -> dict[str, list[dict[str, Any]]]:
        status, _, body = _get(view, "/stats?history=1")
        assert status == 200
        history: dict[str, list[dict[str, Any]]] = json.loads(body)["history"]
        return history

    wait_until(lambda: min(len(s) for s in kept().values()) >= 5, DEADLINE, "5 samples each")
    history = kept()
    assert set(history) == {"a", "b"} and "history" not in _stats(view)  # asked for only
    assert all(s["fps"] > 0 and 0 <= s["age"] <= 60 for s in history["a"][-3:])
    assert len(view.history) <= 2 * view.history.max_samples
    driver = _chromium(tmp_path / "chromium")
    try:
        for _ in range(2):  # opened, then reloaded: both draw the kept minute at once
            driver.get(view.url)
            wait = WebDriverWait(driver, DEADLINE)
            # the first answer's points: the kept ones (a page of its own would have one)
            wait.until(lambda d: _points(d, "a") > 0 and _points(d, "b") > 0)
            assert min(_points(driver, "a"), _points(driver, "b")) >= 5
            assert _fps_line_pixels(driver, "a") > 0
        log = driver.get_log("browser")
    finally:
        driver.quit()
    assert _errors(log) == []


_OVERFLOW = """
    // elements reaching past the viewport's sides (a table scrolls inside its box)
    const width = document.documentElement.clientWidth, out = [];
    for (const el of document.body.querySelectorAll("*")) {
      if (el.parentElement.closest(".scroll")) continue;
      const box = el.getBoundingClientRect();
      if (box.width === 0 && box.height === 0) continue;
      if (box.left < -0.5 || box.right > width + 0.5) {
        out.push(el.tagName + "#" + el.id + " " + box.left + ".." + box.right);
      }
    }
    return [document.documentElement.scrollWidth, width, window.innerHeight, out];
"""


def _layout(driver: Any) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    scroll_width, width, height, overflowing = driver.execute_script(_OVERFLOW)
    boxes = {name: driver.find_element(By.ID, name).rect for name in ("view", "side", "charts")}
    return {
        "scroll_width": scroll_width,
        "width": width,
        "height": height,
        "overflowing": overflowing,
        **boxes,
    }


def _screenshot(driver: Any, path: pathlib.Path) -> np.ndarray[Any, Any]:
    driver.save_screenshot(str(path))
    shot = _decode(path.read_bytes())
    assert shot.std() > 10  # not blank
    return shot


def test_the_page_fills_a_desktop_window_and_a_phone_screen_in_chromium(
    two_cameras: tuple[StreamGroup, WebView], tmp_path: pathlib.Path
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    _, view = two_cameras
    driver = _chromium(tmp_path / "chromium")
    log: list[dict[str, Any]] = []
    try:
        wait = WebDriverWait(driver, DEADLINE)
        # desktop: the picture beside the charts and tables, within the window
        _set_screen(driver, 1280, 800, mobile=False)
        driver.get(view.url)
        wait.until(lambda d: _shown_width(d) > 0 and _points(d, "b") >= 2)
        desktop = _layout(driver)
        assert desktop["overflowing"] == [] and desktop["scroll_width"] <= desktop["width"]
        picture, side = desktop["view"], desktop["side"]
        assert picture["width"] >= desktop["width"] / 2
        assert picture["x"] + picture["width"] <= side["x"]  # two columns
        assert picture["y"] + picture["height"] <= desktop["height"]
        shot = _screenshot(driver, tmp_path / "desktop.png")
        assert shot.shape[:2] == (800, 1280)
        assert _region(driver.get_screenshot_as_png(), picture).std() > 10

        # a phone: one column, the picture the whole width, nothing past the sides
        _set_screen(driver, 390, 844, mobile=True)
        driver.get(view.url + "?camera=a")
        wait.until(lambda d: _shown_width(d) == SIZES["a"][0] and _points(d, "a") >= 2)
        phone = _layout(driver)
        assert phone["width"] == 390
        assert phone["overflowing"] == [] and phone["scroll_width"] <= phone["width"]
        picture, charts = phone["view"], phone["charts"]
        assert picture["width"] >= phone["width"] - 20  # fills the width, less the margins
        assert picture["height"] == pytest.approx(
            picture["width"] * SIZES["a"][1] / SIZES["a"][0], abs=2
        )
        assert charts["y"] >= picture["y"] + picture["height"]  # below it
        assert charts["width"] <= phone["width"]
        shot = _screenshot(driver, tmp_path / "phone.png")
        assert shot.shape[:2] == (844, 390)
        assert _region(driver.get_screenshot_as_png(), picture).std() > 10
        # the icon is the page's own: no request for it fails
        icon = driver.execute_script("return document.querySelector('link[rel=icon]').href")
        assert icon == view.url + "favicon.svg"
        log = driver.get_log("browser")
    finally:
        driver.quit()
    assert _errors(log) == []
    assert (tmp_path / "desktop.png").stat().st_size > 10_000
