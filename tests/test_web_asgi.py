"""The web view's ASGI app in a real ASGI server: uvicorn on 127.0.0.1, the app mounted under
a prefix in a Starlette program, real HTTP clients (httpx, raw sockets) and Chromium."""

from __future__ import annotations

import contextlib
import json
import pathlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import holds_for, wait_until
from test_web import (
    DEADLINE,
    SIZE,
    Publisher,
    _chromium,
    _colour_picture,
    _decode,
    _index,
    _noise,
    _picture,
    _region,
    _web_threads,
)

from syncstream.processors.output import ImageOutput
from syncstream.processors.web import WebView

TOKEN = "k7Qx-3vLr9Pz_a1WmT0s"
PREFIX = "/cams"


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    yield
    assert _web_threads() == []


@contextlib.contextmanager
def serving(view: WebView) -> Iterator[str]:
    """uvicorn serving a Starlette program that mounts ``view`` at :data:`PREFIX`, on a
    free 127.0.0.1 port; yields the program's base URL."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("the program's own page")

    app = Starlette(routes=[Route("/", home), Mount(PREFIX, app=view.asgi_app())])
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=2, timeout_keep_alive=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True
    )
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), DEADLINE, "uvicorn to start")
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(DEADLINE)
        sock.close()
    assert not thread.is_alive()


class Parts:
    """The JPEG parts of a streamed ``multipart/x-mixed-replace`` response."""

    def __init__(self, response: httpx.Response) -> None:
        content_type = response.headers["content-type"]
        assert content_type.startswith("multipart/x-mixed-replace; boundary=")
        boundary = content_type.partition("boundary=")[2].encode()
        self.delimiter = b"\r\n--" + boundary + b"\r\n"
        self.chunks = response.iter_raw()
        self.buffer = bytearray(b"\r\n")

    def picture(self) -> np.ndarray[Any, Any]:
        """The next part's picture; ``EOFError`` when the stream ended."""
        start = self.buffer.find(self.delimiter)
        while start < 0 or (end := self.buffer.find(self.delimiter, start + 1)) < 0:
            chunk = next(self.chunks, b"")
            if not chunk:
                raise EOFError("stream ended")
            self.buffer += chunk
            start = self.buffer.find(self.delimiter) if start < 0 else start
        part = bytes(self.buffer[start + len(self.delimiter) : end])
        del self.buffer[:end]
        head, _, body = part.partition(b"\r\n\r\n")
        assert head == b"Content-Type: image/jpeg"
        return _decode(body)


def _client(**headers: str) -> httpx.Client:
    timeout = httpx.Timeout(DEADLINE)
    return httpx.Client(timeout=timeout, headers=headers, follow_redirects=False)


def test_page_stats_snapshot_and_stream_under_a_prefix() -> None:
    output = ImageOutput("wall")
    output.publish(_picture(0))
    view = WebView(output, title="mounted", listen=False).start()
    with serving(view) as base, _client() as client:
        assert client.get(base + "/").text == "the program's own page"  # its routes stay
        assert client.get(base + PREFIX).headers["location"].endswith(PREFIX + "/")
        page = client.get(base + PREFIX + "/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert b"<title>mounted</title>" in page.content and b"stream.mjpg" in page.content
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"

        stats = client.get(base + PREFIX + "/stats")
        assert stats.headers["content-type"] == "application/json"
        document = json.loads(stats.content)
        assert document["web"]["url"] is None and list(document["web"]["outputs"]) == ["wall"]
        assert "history" not in document  # the charts' minute only when asked (no group: none)
        assert json.loads(client.get(base + PREFIX + "/stats?history=1").content)["history"] == {}
        snapshot = client.get(base + PREFIX + "/snapshot.jpg?output=wall")
        assert snapshot.headers["content-type"] == "image/jpeg"
        assert _decode(snapshot.content).shape == (SIZE[1], SIZE[0], 3)
        assert client.get(base + PREFIX + "/favicon.ico").headers["content-type"] == (
            "image/svg+xml"
        )
        for path, status in [
            ("/nothing", 404),
            ("/stream.mjpg?output=x", 404),
            ("/snapshot.jpg?camera=a", 404),
        ]:
            assert client.get(base + PREFIX + path).status_code == status
        refused = client.post(base + PREFIX + "/stats", content=b"abc")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET"

        # the stream: each part a newer picture, in lock step with the publisher
        with client.stream("GET", base + PREFIX + "/stream.mjpg") as response:
            assert response.status_code == 200
            parts = Parts(response)
            seen = [_index(parts.picture())]
            for index in range(1, 5):
                output.publish(_picture(index))
                while (latest := _index(parts.picture())) < index:
                    seen.append(latest)
                seen.append(latest)
            assert seen == list(range(5))
            (client_stats,) = view.stats.clients
            assert client_stats.output == "wall" and client_stats.sent >= 5
            view.close()  # ends the stream
            with pytest.raises(EOFError):
                while True:
                    parts.picture()
        closed = client.get(base + PREFIX + "/stats")
        assert closed.status_code == 503 and "closed" in closed.text
    assert view.stats.requests >= 9 and view.stats.errors == 0


def test_a_stream_ends_when_its_client_leaves() -> None:
    output = ImageOutput("wall")
    with WebView(output, listen=False) as view, Publisher(output), serving(view) as base:
        with _client() as client:
            for _ in range(3):  # each time: a client comes, watches, and leaves
                with client.stream("GET", base + PREFIX + "/stream.mjpg") as response:
                    parts = Parts(response)
                    parts.picture()
                    parts.picture()
                    assert len(view.stats.clients) == 1
                wait_until(lambda: view.stats.clients == (), DEADLINE, "the client forgotten")
                wait_until(lambda: view.stats.outputs["wall"].viewers == 0, DEADLINE, "no viewer")
        assert view.stats.sent >= 3 and view.stats.errors == 0


def test_credentials_host_check_and_max_clients_hold_under_asgi() -> None:
    output = ImageOutput("wall")
    output.publish(_picture(0))
    with (
        WebView(output, listen=False, token=TOKEN, max_clients=1) as view,
        serving(view) as base,
        _client() as client,
    ):
        url = base + PREFIX
        assert client.get(url + "/stats").status_code == 401
        assert client.get(url + "/stats?token=wrong-token-of-20-chars").status_code == 401
        assert client.get(url + "/favicon.ico").status_code == 200  # no secret in it
        assert client.get(url + f"/stats?token={TOKEN}").status_code == 200
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get(url + "/stats", headers=bearer).status_code == 200
        page = client.get(url + f"/?token={TOKEN}")
        cookie = page.headers["set-cookie"]
        assert f"Path={PREFIX}/;" in cookie and TOKEN not in cookie and "HttpOnly" in cookie
        # a page of another site, reaching the loopback server through DNS rebinding
        rebound = client.get(url + "/stats", headers={**bearer, "Host": "evil.example"})
        assert rebound.status_code == 403
        # one request served at once: a stream holds the place
        with client.stream("GET", url + "/stream.mjpg", headers=bearer) as response:
            parts = Parts(response)  # kept: its reader's end would close the response
            parts.picture()
            busy = client.get(url + "/stats", headers=bearer)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
        wait_until(
            lambda: client.get(url + "/stats", headers=bearer).status_code == 200,
            DEADLINE,
            "the place free again",
        )
        stats = view.stats
    assert stats.unauthorized == 2 and stats.refused >= 1


def test_a_client_that_takes_nothing_is_dropped_under_asgi() -> None:
    output = ImageOutput("wall")
    with WebView(output, listen=False, client_timeout=0.5) as view, serving(view) as base:
        port = int(base.rpartition(":")[2])
        stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", port))
        stuck.sendall(f"GET {PREFIX}/stream.mjpg HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        index = 0

        def dropped() -> bool:
            nonlocal index
            output.publish(_noise(index))
            index += 1
            return view.stats.stalled == 1

        wait_until(dropped, DEADLINE, "the stuck client to be dropped")
        wait_until(lambda: view.stats.clients == (), DEADLINE, "the dropped client forgotten")
        assert view.stats.dropped > 0
        stuck.close()


def test_the_view_serves_both_ways_with_one_set_of_counters() -> None:
    output = ImageOutput("wall")
    output.publish(_picture(0))
    view = WebView(output, listen=False)
    with serving(view) as base, _client() as client:
        before = client.get(base + PREFIX + "/stats")
        assert before.status_code == 503 and "not started" in before.text
        view.start()
        assert client.get(base + PREFIX + "/stats").status_code == 200
        view.close()
    with pytest.raises(Exception, match="listen=False"):
        _ = view.url
    both = WebView(output)  # its own server, and mounted
    with both, serving(both) as base, _client() as client:
        with client.stream("GET", base + PREFIX + "/stream.mjpg") as response:
            mounted = Parts(response)
            mounted.picture()
            with client.stream("GET", both.url + "stream.mjpg") as own:
                parts = Parts(own)
                parts.picture()
                holds_for(lambda: len(both.stats.clients) == 2, 0.2, "two clients")
        assert both.stats.requests == 2


def test_the_mounted_page_shows_the_stream_and_stats_in_chromium(tmp_path: pathlib.Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    output = ImageOutput("wall")
    red = (30, 30, 220)
    output.publish(_colour_picture(red))
    with WebView(output, listen=False, token=TOKEN) as view, serving(view) as base:
        driver = _chromium(tmp_path / "chromium")
        try:
            driver.get(f"{base}{PREFIX}/?token={TOKEN}")
            image = driver.find_element(By.ID, "view")
            wait = WebDriverWait(driver, DEADLINE)
            wait.until(
                lambda d: d.execute_script("return arguments[0].naturalWidth", image) == SIZE[0]
            )
            shown = _region(driver.get_screenshot_as_png(), image.rect)
            assert np.abs(shown.mean(axis=(0, 1)) - np.array(red) * 18 / 20).max() < 25
            wait.until(lambda d: d.find_element(By.ID, "web-clients").text == "1")
            assert driver.find_element(By.ID, "status").text == "live"
            assert TOKEN not in driver.current_url
            assert driver.current_url.startswith(f"{base}{PREFIX}/?output=wall")
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        finally:
            driver.quit()
    assert errors == []
