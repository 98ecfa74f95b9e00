"""WebView: real HTTP clients, a real browser (headless Chromium) and a real StreamGroup."""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from syncstream import Camera, FrameSet, StreamClosed, StreamGroup, SyncStreamError, VideoStream
from syncstream.errors import ConfigError, WebViewError
from syncstream.frames import BGRImage, Frame
from syncstream.probe import decode_stamp
from syncstream.processors.output import ImageOutput
from syncstream.processors.web import WebView
from syncstream.processors.web.http import MAX_REQUEST_BYTES
from syncstream.senders import free_udp_port
from syncstream.testing.plugin import StampSenderFactory
from tests.conftest import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SIZE = (320, 240)  # width, height of the synthetic pictures
DEADLINE = 30.0  # seconds before a test that waits for something gives up (fails)


def _web_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("syncstream-web")]


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    yield
    assert _web_threads() == []


def _mark(image: BGRImage, index: int) -> BGRImage:
    """Write ``index`` into the top row as 12 black or white 16x16 blocks (JPEG keeps them)."""
    for bit in range(12):
        image[:16, 16 * bit : 16 * bit + 16] = 255 if index >> bit & 1 else 0
    return image


def _index(image: BGRImage) -> int:
    """The index :func:`_mark` wrote."""
    return sum(
        1 << bit for bit in range(12) if image[4:12, 16 * bit + 4 : 16 * bit + 12].mean() > 128
    )


def _picture(index: int, size: tuple[int, int] = SIZE) -> BGRImage:
    """A small picture marked with its index, brightness changing with it."""
    width, height = size
    image = np.full((height, width, 3), (index * 37) % 200 + 40, np.uint8)
    image[:, ::16] = 255 - image[:, ::16]
    return _mark(image, index)


def _noise(index: int, size: tuple[int, int] = (1280, 720)) -> BGRImage:
    """A picture that compresses badly (a big JPEG, to fill a slow client's buffers)."""
    width, height = size
    rng = np.random.default_rng(index)
    return _mark(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), index)


def _decode(data: bytes) -> BGRImage:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable JPEG/PNG"
    return image  # type: ignore[no-any-return]


def _get(view: WebView, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    host, port = view.address
    conn = http.client.HTTPConnection(host, port, timeout=DEADLINE)
    try:
        conn.request("GET", path, headers=headers)
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def _raw(view: WebView, request: bytes) -> bytes:
    """Send raw bytes, return the whole answer."""
    with socket.create_connection(view.address, timeout=DEADLINE) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _stats(view: WebView) -> dict[str, Any]:
    status, headers, body = _get(view, "/stats")
    assert status == 200 and headers["content-type"] == "application/json"
    document: dict[str, Any] = json.loads(body)
    return document


class MjpegReader:
    """A client of ``/stream.mjpg``: a part ends where the next boundary starts."""

    def __init__(
        self, view: WebView, output: str | None = None, *, camera: str | None = None
    ) -> None:
        host, port = view.address
        self.conn = http.client.HTTPConnection(host, port, timeout=DEADLINE)
        query = "" if output is None else f"?output={output}"
        query = query if camera is None else f"?camera={camera}"
        self.conn.request("GET", "/stream.mjpg" + query)
        self.reply = self.conn.getresponse()
        content_type = self.reply.getheader("Content-Type", "")
        assert self.reply.status == 200, self.reply.read()
        assert content_type.startswith("multipart/x-mixed-replace; boundary=")
        assert self.reply.getheader("Cache-Control") == "no-store"
        boundary = content_type.partition("boundary=")[2].encode()
        self.delimiter = b"\r\n--" + boundary + b"\r\n"
        self.buffer = bytearray(b"\r\n")  # the first boundary has no line end before it

    def part(self) -> tuple[dict[str, str], bytes]:
        """The next part's headers and body; ``EOFError`` when the server ended the stream."""
        start = self.buffer.find(self.delimiter)
        while start < 0 or (end := self.buffer.find(self.delimiter, start + 1)) < 0:
            chunk = self.reply.read1(1 << 16)
            if not chunk:
                raise EOFError("stream ended")
            self.buffer += chunk
            start = self.buffer.find(self.delimiter) if start < 0 else start
        part = bytes(self.buffer[start + len(self.delimiter) : end])
        del self.buffer[:end]
        head, _, body = part.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers, body

    def picture(self) -> BGRImage:
        """The next part's picture."""
        headers, body = self.part()
        assert headers == {"content-type": "image/jpeg"}
        return _decode(body)

    def close(self) -> None:
        self.reply.close()  # the response holds the socket open too
        self.conn.close()


def _stuck_client(view: WebView) -> socket.socket:
    """A client that asks for the stream and never reads: a small receive window."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(view.address)
    sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return sock


class Publisher:
    """Publishes pictures to an output from its own thread until stopped."""

    def __init__(self, output: ImageOutput, interval: float = 0.02) -> None:
        self.output = output
        self.count = 0
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="test-publisher", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.output.publish(_picture(self.count))
            self.count += 1

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


# -- routes ---------------------------------------------------------------------------------


def test_page_stats_and_snapshots_of_two_outputs() -> None:
    wall, other = ImageOutput("wall"), ImageOutput("speaker")
    wall.publish(_picture(1))
    other.publish(_picture(2, (160, 120)))
    with WebView([wall, other], title="Lab <cams>") as view:
        assert view.url == f"http://127.0.0.1:{view.address[1]}/"
        status, headers, page = _get(view, "/")
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert headers["cache-control"] == "no-store"
        assert b"<title>Lab &lt;cams&gt;</title>" in page
        assert b'["wall", "speaker"]' in page and b"stream.mjpg" in page

        status, headers, body = _get(view, "/snapshot.jpg")
        assert status == 200 and headers["content-type"] == "image/jpeg"
        assert _decode(body).shape == (240, 320, 3)
        status, _, body = _get(view, "/snapshot.jpg?output=speaker")
        assert status == 200 and _decode(body).shape == (120, 160, 3)

        stats = _stats(view)
        assert stats["group"] is None and stats["frameset"] is None
        assert list(stats["web"]["outputs"]) == ["wall", "speaker"]
        assert stats["web"]["outputs"]["wall"]["published"] == 1
        assert stats["web"]["clients"] == [] and stats["web"]["requests"] == 4


def test_a_snapshot_before_the_first_picture_is_503() -> None:
    with WebView(ImageOutput("wall")) as view:
        status, headers, body = _get(view, "/snapshot.jpg")
    assert status == 503 and headers["retry-after"] == "1" and b"no picture yet" in body


def test_the_stream_follows_the_pictures() -> None:
    output = ImageOutput("wall")
    with WebView(output) as view:
        output.publish(_picture(0))
        reader = MjpegReader(view)
        seen = []
        for index in range(8):  # in lock step: each picture is published once the last is in
            if index:
                output.publish(_picture(index), frameset_seq=100 + index)
            image = reader.picture()
            assert image.shape == (240, 320, 3)
            seen.append((_index(image), int(image[20:, 1:16].mean())))
        reader.close()
    assert [index for index, _ in seen] == list(range(8))
    # the pictures change: each one's brightness is its own (JPEG is off by a little)
    assert all(abs(mean - int(_picture(i)[20, 1, 0])) <= 3 for i, (_, mean) in enumerate(seen))


def test_syncstreams_own_mjpeg_client_reads_the_stream() -> None:
    output = ImageOutput("wall")
    with WebView(output) as view, Publisher(output):
        with VideoStream(view.url + "stream.mjpg?output=wall") as stream:
            frames = [stream.read(timeout=DEADLINE) for _ in range(5)]
    assert all(frame.image.shape == (240, 320, 3) for frame in frames)
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"GET /nothing HTTP/1.1\r\n\r\n", b"404", id="unknown-path"),
        pytest.param(b"GET /stream.mjpg?output=x HTTP/1.1\r\n\r\n", b"404", id="unknown-stream"),
        pytest.param(b"GET /snapshot.jpg?output=x HTTP/1.1\r\n\r\n", b"404", id="unknown-snap"),
        pytest.param(b"POST /stats HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"405", id="post"),
        pytest.param(b"DELETE / HTTP/1.1\r\n\r\n", b"405", id="delete"),
        pytest.param(b"GET /\r\n\r\n", b"400", id="no-version"),
        pytest.param(b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"400", id="bad-header"),
        pytest.param(
            b"GET / HTTP/1.1\r\nX-Big: " + b"a" * MAX_REQUEST_BYTES + b"\r\n\r\n",
            b"431",
            id="head-too-large",
        ),
        # a page of another site reaching a loopback view through DNS rebinding
        pytest.param(b"GET /stats HTTP/1.1\r\nHost: evil.example\r\n\r\n", b"403", id="host"),
    ],
)
def test_refused_requests(request_bytes: bytes, status: bytes) -> None:
    output = ImageOutput("wall")
    output.publish(_picture(0))
    with WebView(output) as view:
        answer = _raw(view, request_bytes)
        assert answer.startswith(b"HTTP/1.1 " + status + b" ")
        if status == b"405":
            assert b"\r\nAllow: GET\r\n" in answer
        assert _stats(view)["web"]["errors"] == 0


def test_loopback_host_names_are_served() -> None:
    output = ImageOutput("wall")
    with WebView(output) as view:
        port = view.address[1]
        for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", "[::1]:80"):
            assert _raw(view, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())[9:12] == b"200"


# -- life cycle -----------------------------------------------------------------------------


def test_a_taken_port_raises_webviewerror_naming_the_address() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        view = WebView(ImageOutput("wall"), port=port)
        with pytest.raises(WebViewError, match=f"127.0.0.1:{port}") as caught:
            view.start()
    assert isinstance(caught.value, OSError) and isinstance(caught.value.__cause__, OSError)
    view.close()


def test_life_cycle_and_bad_settings() -> None:
    output = ImageOutput("wall")
    view = WebView(output)
    with pytest.raises(SyncStreamError, match="not started"):
        _ = view.url
    assert view.start() is view.start()
    address = view.address
    assert view.stats.url == view.url
    view.close()
    view.close()
    with pytest.raises(StreamClosed):
        view.start()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=DEADLINE).close()
    for bad in ({"jpeg_quality": 0}, {"max_clients": 0}, {"client_timeout": 0.0}, {"port": -1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            WebView(output, **bad)
    with pytest.raises(ConfigError, match="two outputs"):
        WebView([output, ImageOutput("wall")])
    with pytest.raises(ConfigError, match="at least one"):
        WebView({})
    named = WebView({"main": output, "pair": SideBySide()})  # outputs or processors, by name
    assert list(named.stats.outputs) == ["main", "pair"] and named.stats.url is None


def test_close_ends_open_streams_and_stuck_clients() -> None:
    output = ImageOutput("wall")
    view = WebView(output).start()
    output.publish(_noise(0))
    reader = MjpegReader(view)
    reader.part()
    stuck = _stuck_client(view)
    for index in range(1, 30):  # enough to block the stuck client's connection in send()
        output.publish(_noise(index))
        reader.part()
    wait_until(lambda: view.stats.dropped > 0, DEADLINE, "the stuck client to drop pictures")
    view.close()  # joins every thread: the autouse fixture checks none is left
    assert _web_threads() == []
    with pytest.raises(EOFError):
        while True:
            reader.part()
    reader.close()
    stuck.close()


def test_a_closed_output_ends_its_streams_after_its_last_picture() -> None:
    output = ImageOutput("wall")
    with WebView(output) as view:
        output.publish(_picture(0))
        reader = MjpegReader(view)
        assert _index(reader.picture()) == 0
        output.publish(_picture(1))
        output.close()
        assert _index(reader.picture()) == 1
        with pytest.raises(EOFError):
            reader.part()
        reader.close()
        status, _, body = _get(view, "/snapshot.jpg")  # the last picture stays available
        assert status == 200 and _decode(body).shape == (240, 320, 3)


# -- many clients, slow clients -------------------------------------------------------------


def test_ten_clients_all_receive_pictures_encoded_once() -> None:
    output = ImageOutput("wall")
    received: dict[int, list[int]] = {}

    def watch(client: int, view: WebView) -> None:
        reader = MjpegReader(view)
        received[client] = [_index(reader.picture()) for _ in range(10)]
        reader.close()

    with WebView(output) as view, Publisher(output) as publisher:
        threads = [threading.Thread(target=watch, args=(i, view)) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = view.stats
    assert sorted(received) == list(range(10))
    for seqs in received.values():
        assert seqs == sorted(set(seqs))  # newer pictures only, never one twice
    assert stats.sent >= 100
    assert stats.outputs["wall"].encoded <= publisher.count  # once per picture at most...
    assert stats.outputs["wall"].encoded < stats.sent  # ...not once per client


def test_beyond_max_clients_connections_get_503() -> None:
    output = ImageOutput("wall")
    output.publish(_picture(0))
    with WebView(output, max_clients=2) as view:
        readers = [MjpegReader(view), MjpegReader(view)]
        for reader in readers:
            reader.part()
        status, headers, body = _get(view, "/stats")
        assert status == 503 and b"too many clients" in body and "retry-after" in headers
        readers.pop().close()
        wait_until(lambda: _get(view, "/stats")[0] == 200, DEADLINE, "a place to be free again")
        assert view.stats.refused >= 1 and len(view.stats.clients) == 1
        readers[0].close()


def test_a_stuck_client_stalls_neither_a_fast_client_nor_the_publisher() -> None:
    output = ImageOutput("wall")
    with WebView(output, client_timeout=120.0) as view:
        output.publish(_noise(0))
        fast = MjpegReader(view)
        stuck = _stuck_client(view)
        wait_until(lambda: len(view.stats.clients) == 2, DEADLINE, "both clients to stream")
        got = [_index(fast.picture())]
        published = 1
        # In lock step with the fast client: had the stuck one held up the encoder or the
        # fast one, the fast one would stop getting pictures here.
        for index in range(1, 40):
            output.publish(_noise(index))
            published += 1
            while (seq := _index(fast.picture())) < index:
                got.append(seq)
            got.append(seq)
        stats = view.stats
        clients = {c.address: c for c in stats.clients}
        slow = clients[f"127.0.0.1:{stuck.getsockname()[1]}"]
        fast.close()
        stuck.close()
    assert got == list(range(published))  # the fast client got every picture
    assert slow.sent < published and slow.dropped > 0  # the stuck one skipped, and said so
    assert slow.sent + slow.dropped <= published


def test_a_client_that_accepts_nothing_is_dropped_after_client_timeout() -> None:
    output = ImageOutput("wall")
    with WebView(output, client_timeout=0.5) as view:
        stuck = _stuck_client(view)
        index = 0

        def dropped() -> bool:
            nonlocal index
            output.publish(_noise(index))
            index += 1
            return view.stats.stalled == 1

        wait_until(dropped, DEADLINE, "the stuck client to be dropped")
        wait_until(lambda: view.stats.clients == (), DEADLINE, "the dropped client to be forgotten")
        assert view.stats.dropped > 0
        stuck.close()


# -- as a processor -------------------------------------------------------------------------


def _frameset(seq: int) -> FrameSet:
    now, mono = time.time(), time.monotonic()
    frame = Frame(
        source="door",
        seq=seq,
        width=SIZE[0],
        height=SIZE[1],
        arrival_time=now,
        arrival_mono=mono,
        capture_time=now - 0.04,
        image=_picture(seq),
    )
    return FrameSet(
        seq=seq,
        frames={"door": frame},
        missing=("hall",),
        skew=0.0,
        time=now - 0.04,
        clock="sender",
        emitted_time=now,
        emitted_mono=mono,
    )


def test_the_newest_set_is_summarised_in_stats() -> None:
    with WebView(ImageOutput("wall")) as view:
        view(_frameset(40))
        view(_frameset(41))
        summary = _stats(view)["frameset"]
    assert summary["seq"] == 41 and summary["cameras"] == ["door"]
    assert summary["missing"] == ["hall"] and summary["clock"] == "sender"
    assert summary["latency"] == pytest.approx(0.04, abs=0.01)
    assert summary["capture_time"] is not None


class SideBySide:
    """A small drawing processor: the two cameras next to each other."""

    def __init__(self) -> None:
        self.output = ImageOutput("pair")

    def __call__(self, frameset: FrameSet) -> None:
        if frameset.complete:
            pair = np.hstack([frameset["a"].image, frameset["b"].image])
            self.output.publish(pair, frameset_seq=frameset.seq)

    def close(self) -> None:
        self.output.close()


def test_a_group_with_a_web_view_streams_and_serves_its_stats(
    stamp_sender: StampSenderFactory,
) -> None:
    ports = {"a": free_udp_port(), "b": free_udp_port()}
    cams = [Camera(name=name, url=f"udp://127.0.0.1:{port}") for name, port in ports.items()]
    pair = SideBySide()
    with StreamGroup(cams) as group:
        for port in ports.values():
            stamp_sender(f"udp://127.0.0.1:{port}", size=(320, 240))
        group.add_processor(pair)
        view = WebView(pair, title="two cameras")
        group.add_processor(view)  # attach() starts it
        reader = MjpegReader(view)
        pictures = [reader.picture() for _ in range(10)]
        stats = _stats(view)
    with pytest.raises(EOFError):  # closing the group closed the view
        while True:
            reader.part()
    reader.close()
    assert all(picture.shape == (240, 640, 3) for picture in pictures)
    # each camera's pictures carry their send time in pixels: each part is a newer set
    for half in (slice(0, 320), slice(320, 640)):
        sent = [decode_stamp(picture[:, half]) for picture in pictures]
        assert sent == sorted(set(sent))
    group_stats = stats["group"]
    assert set(group_stats["cameras"]) == {"a", "b"}
    assert all(c["stream"]["state"] == "live" for c in group_stats["cameras"].values())
    assert {"SideBySide", "web"} <= set(group_stats["processors"])
    assert group_stats["sets"] >= 10 and group_stats["skew_p50"] is not None
    assert stats["frameset"]["cameras"] == ["a", "b"] and stats["frameset"]["seq"] >= 0
    assert stats["web"]["outputs"]["pair"]["width"] == 640


# -- in a real browser ----------------------------------------------------------------------


def _chromium(profile: pathlib.Path) -> Any:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(
                f"{path} is missing: the web view is tested in Debian's headless Chromium "
                "(the test command installs it: apt-get install chromium chromium-driver)",
                pytrace=False,
            )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # driver.get_log("browser")
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def _colour_picture(bgr: tuple[int, int, int]) -> BGRImage:
    image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    image[:] = bgr
    image[::20, :] = 0  # lines, so the picture is not one flat colour
    return image


def _region(png: bytes, rect: dict[str, float]) -> BGRImage:
    """The img element's rectangle of a screenshot."""
    shot = _decode(png)
    x, y = round(rect["x"]), round(rect["y"])
    return shot[y : y + round(rect["height"]), x : x + round(rect["width"])]


def test_the_page_shows_the_live_picture_and_stats_in_chromium(tmp_path: pathlib.Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    output = ImageOutput("wall")
    red, green = (30, 30, 220), (30, 200, 30)
    output.publish(_colour_picture(red))
    with WebView(output, title="browser test") as view:
        view(_frameset(41))
        driver = _chromium(tmp_path / "chromium")
        try:
            driver.get(view.url)
            assert driver.title == "browser test"
            image = driver.find_element(By.ID, "view")
            # one picture so far: it must show without waiting for a next one
            WebDriverWait(driver, DEADLINE).until(
                lambda d: d.execute_script("return arguments[0].naturalWidth", image) == SIZE[0]
            )
            first = _region(driver.get_screenshot_as_png(), image.rect)
            # scaled to its column's width, its shape kept
            assert first.shape[1] > SIZE[0]
            assert abs(first.shape[1] / first.shape[0] - SIZE[0] / SIZE[1]) < 0.02
            assert first.std() > 10  # the picture, not a blank element
            assert np.abs(first.mean(axis=(0, 1)) - np.array(red) * 18 / 20).max() < 25

            output.publish(_colour_picture(green))
            WebDriverWait(driver, DEADLINE).until(
                lambda d: _region(d.get_screenshot_as_png(), image.rect)[..., 1].mean() > 150
            )
            second = _region(driver.get_screenshot_as_png(), image.rect)
            assert np.abs(second.mean(axis=(0, 1)) - np.array(green) * 18 / 20).max() < 25

            # the stats panel shows what /stats says
            WebDriverWait(driver, DEADLINE).until(
                lambda d: d.find_element(By.ID, "web-clients").text == "1"
            )
            assert driver.find_element(By.ID, "set-seq").text == "41"
            assert driver.find_element(By.ID, "missing").text == "hall"
            stats = _stats(view)
            assert stats["frameset"]["seq"] == 41 and len(stats["web"]["clients"]) == 1
            row = driver.find_element(By.CSS_SELECTOR, "#outputs tbody tr").text
            assert row.startswith("wall 320x240")
            assert driver.find_element(By.ID, "status").text == "live"
        finally:
            driver.quit()


def test_the_page_shows_a_silent_camera_waiting_for_data_in_chromium(
    tmp_path: pathlib.Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_udp_port()  # nobody sends to it
    output = ImageOutput("wall")
    output.publish(_colour_picture((30, 30, 220)))
    with StreamGroup([Camera(name="quiet", url=f"udp://127.0.0.1:{port}")]) as group:
        view = WebView(output, title="silent camera")
        group.add_processor(view)  # attach() starts it
        driver = _chromium(tmp_path / "chromium")
        try:
            driver.get(view.url)
            waiting = f"(no data on udp port {port})"

            def row(d: Any) -> str:
                return str(d.find_element(By.CSS_SELECTOR, "#cameras tbody").text)

            WebDriverWait(driver, DEADLINE).until(lambda d: waiting in row(d))
            name, state, *_ = row(driver).split(" ", 2)
            assert name == "quiet" and state in ("connecting", "stale")
            assert driver.find_element(By.ID, "sets-per-second").text == "0.0"
        finally:
            driver.quit()
