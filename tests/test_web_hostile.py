"""WebView against hostile clients: slowloris, connection floods, missing or wrong credentials.

Real sockets on 127.0.0.1 against a running view; the attackers connect from other loopback
addresses (127.0.0.2 and up, all local on Linux) so the per-address cap can tell them from
the legitimate client. Counts are asserted, never speeds.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import pathlib
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import wait_until
from test_web import (
    DEADLINE,
    SIZE,
    MjpegReader,
    Publisher,
    _chromium,
    _colour_picture,
    _get,
    _picture,
    _raw,
    _region,
    _web_threads,
)

from syncstream.errors import ConfigError
from syncstream.processors.output import ImageOutput
from syncstream.processors.web import WebView
from syncstream.processors.web.limits import address_key
from syncstream.session_config import WebSettings, load_session_config
from syncstream.testing.slowloris import Slowloris

TOKEN = "k7Qx-3vLr9Pz_a1WmT0s"  # 20 visible ASCII characters
USER, PASSWORD = "operator", "correct horse"


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    yield
    assert _web_threads() == []


def _connect(view: WebView, source: str) -> socket.socket:
    """A connection to ``view`` from the loopback address ``source``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(view.address)
    return sock


def _answer(sock: socket.socket, timeout: float = DEADLINE) -> bytes:
    """Everything the server sends until it closes (a reset ends it too)."""
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class _Watcher:
    """Reads ``/stream.mjpg`` on its own thread, counting the pictures."""

    def __init__(self, view: WebView) -> None:
        self.reader = MjpegReader(view)
        self.pictures = 0
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="test-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                self.reader.picture()
                self.pictures += 1
        except EOFError:
            pass
        except Exception as exc:  # noqa: BLE001 - kept for the test to assert there is none
            self.error = exc

    def close(self) -> None:
        self.reader.close()
        self._thread.join(DEADLINE)


# -- slow clients ---------------------------------------------------------------------------


def test_100_dripping_connections_starve_neither_stats_nor_the_stream() -> None:
    output = ImageOutput("wall")
    with WebView(output) as view, Publisher(output, interval=0.05):  # default limits
        watcher = _Watcher(view)
        wait_until(lambda: watcher.pictures >= 2, DEADLINE, "the stream's first pictures")
        with Slowloris(view.address[1], count=100, per_source=10) as dripper:
            wait_until(lambda: view.stats.connections >= 101, DEADLINE, "100 dripping")
            answered = threads_seen = 0
            # until every first dripping connection has met its head deadline (5 s)
            while view.stats.timed_out < 100:
                status, _, body = _get(view, "/stats")
                assert status == 200 and b'"web"' in body
                answered += 1
                threads_seen = max(threads_seen, len(_web_threads()))
                seen = watcher.pictures
                wait_until(lambda s=seen: watcher.pictures >= s + 2, 10.0, "stream pictures")
            # they all met it at once: the dripper reads the answers on its next round
            wait_until(lambda: dripper.answers_408 >= 1, DEADLINE, "a 408 read by a dripper")
            stats = view.stats
        watcher.close()
    assert watcher.error is None
    assert answered >= 10  # every /stats of the legitimate client answered, all along
    assert stats.timed_out >= 100 and dripper.answers_408 >= 1
    # (reconnecting drippers may meet the per-address cap: refused, which is fine)
    assert stats.evicted == stats.errors == 0
    # the loop, two workers, the encoder and one stream: no thread per dripping connection
    assert threads_seen <= 5


def test_a_client_dripping_its_request_is_dropped_at_the_head_deadline() -> None:
    output = ImageOutput("wall")
    output.publish(_picture(0))
    with WebView(output, head_timeout=1.0, client_timeout=60.0) as view:
        dripping = _connect(view, "127.0.0.2")
        silent = _connect(view, "127.0.0.2")
        dripping.settimeout(0.2)
        answer = b""
        for byte in Slowloris.HEAD + b"a" * 400:  # 80 s of drip at most: the deadline is 1 s
            try:
                dripping.send(bytes([byte]))
                answer = dripping.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # the server closed: its answer was read before
                break
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert _answer(silent).startswith(b"HTTP/1.1 408 ")
        wait_until(lambda: view.stats.connections == 0, DEADLINE, "both connections closed")
        assert view.stats.timed_out == 2 and view.stats.requests == 0
        assert _get(view, "/snapshot.jpg")[0] == 200  # a prompt client is served
        dripping.close()
        silent.close()


# -- connection caps ------------------------------------------------------------------------


def test_connections_beyond_the_per_address_cap_are_refused() -> None:
    output = ImageOutput("wall")
    with WebView(output, max_connections_per_address=3) as view:
        idle = [_connect(view, "127.0.0.2") for _ in range(3)]
        wait_until(lambda: view.stats.connections == 3, DEADLINE, "three connections")
        extra = _connect(view, "127.0.0.2")
        extra.sendall(b"GET /stats HTTP/1.1\r\n\r\n")
        answer = _answer(extra)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503 ")  # closed at once
        assert view.stats.refused == 1
        other = _connect(view, "127.0.0.3")  # another address is served
        other.sendall(b"GET /stats HTTP/1.1\r\n\r\n")
        assert _answer(other).startswith(b"HTTP/1.1 200 ")
        assert _get(view, "/stats")[0] == 200
        idle.pop().close()
        wait_until(lambda: view.stats.connections == 2, DEADLINE, "a place to be free")
        again = _connect(view, "127.0.0.2")
        again.sendall(b"GET /stats HTTP/1.1\r\n\r\n")
        assert _answer(again).startswith(b"HTTP/1.1 200 ")
        assert view.stats.refused == 1
        for sock in (*idle, extra, other, again):
            sock.close()


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("127.0.0.2", "127.0.0.2"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 on a dual-stack socket
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),  # one subscriber's network
        ("2001:db8:1:2:bbbb::9%eth0", "2001:db8:1:2::/64"),
        ("not an address", "not an address"),
    ],
)
def test_addresses_are_counted_by_host_or_ipv6_network(host: str, key: str) -> None:
    assert address_key(host) == key


def test_at_the_total_cap_the_oldest_waiting_connection_makes_room() -> None:
    output = ImageOutput("wall")
    output.publish(_picture(0))
    limits = {"max_connections": 10, "max_connections_per_address": 10, "head_timeout": 60.0}
    with WebView(output, **limits) as view:
        idle = [_connect(view, f"127.0.0.{2 + i % 5}") for i in range(10)]
        for round_ in range(3):  # each request takes the place of the oldest idle one
            wait_until(lambda: view.stats.connections == 10, DEADLINE, "ten connections")
            status, _, _ = _get(view, "/stats")
            assert status == 200
            assert _answer(idle[round_]).startswith(b"HTTP/1.1 408 ")
            wait_until(lambda: view.stats.connections == 9, DEADLINE, "the request's gone")
            idle.append(_connect(view, "127.0.0.2"))
        assert view.stats.evicted == 3 and view.stats.refused == view.stats.timed_out == 0
        for sock in idle:
            sock.close()
        # when every connection is served (streams), a new one is refused instead
        wait_until(lambda: view.stats.connections == 0, DEADLINE, "the idle ones gone")
    with WebView(output, max_connections=2) as view:
        readers = [MjpegReader(view), MjpegReader(view)]
        for reader in readers:
            reader.part()
        sock = _connect(view, "127.0.0.2")
        sock.sendall(b"GET /stats HTTP/1.1\r\n\r\n")
        answer = _answer(sock)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503 ")
        assert view.stats.refused == 1 and view.stats.evicted == 0
        sock.close()
        for reader in readers:
            reader.close()


# -- authentication -------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_token_lets_requests_in_and_nothing_else_does(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    output = ImageOutput("wall")
    output.publish(_picture(0))
    with WebView(output, token=TOKEN) as view:
        for path, headers in [
            ("/stats", {}),
            ("/stats?token=wrong-token-of-20-chars", {}),
            (f"/stats?token={TOKEN}x", {}),
            ("/stats", {"Authorization": "Bearer nope"}),
            ("/stats", {"Authorization": _basic(USER, TOKEN)}),
            ("/snapshot.jpg", {"Cookie": f"syncstream-{view.address[1]}=forged"}),
            ("/", {}),
        ]:
            status, answer_headers, _ = _get(view, path, **headers)
            assert status == 401, path
            assert answer_headers["www-authenticate"] == 'Bearer realm="syncstream"'
        assert view.stats.unauthorized == 7

        assert _get(view, f"/stats?token={TOKEN}")[0] == 200
        assert _get(view, "/stats", Authorization=f"Bearer {TOKEN}")[0] == 200
        status, headers, page = _get(view, f"/?token={TOKEN}")
        assert status == 200 and b"stream.mjpg" in page
        cookie = headers["set-cookie"].partition(";")[0]
        assert cookie.startswith(f"syncstream-{view.address[1]}=") and TOKEN not in cookie
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        assert _get(view, "/snapshot.jpg", Cookie=f"other=1; {cookie}")[0] == 200
        assert view.stats.unauthorized == 7
        assert TOKEN not in repr(view)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert any("no valid credentials" in record.getMessage() for record in caplog.records)


def test_basic_authentication(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    output = ImageOutput("wall")
    with WebView(output, username=USER, password=PASSWORD) as view:
        for authorization in [
            None,
            _basic(USER, "wrong"),
            _basic("someone", PASSWORD),
            _basic(USER, PASSWORD)[:-2],  # not base64
            "Basic " + base64.b64encode(USER.encode()).decode(),  # no colon
            f"Bearer {PASSWORD}",
        ]:
            headers = {} if authorization is None else {"Authorization": authorization}
            status, answer_headers, _ = _get(view, "/stats", **headers)
            assert status == 401
            challenge = answer_headers["www-authenticate"]
            assert challenge == 'Basic realm="syncstream", charset="UTF-8"'
        assert _get(view, "/stats", Authorization=_basic(USER, PASSWORD))[0] == 200
        assert view.stats.unauthorized == 6
        assert PASSWORD not in repr(view)
    with WebView(output, token=TOKEN, username=USER, password=PASSWORD) as view:  # either
        assert _get(view, "/stats", Authorization=_basic(USER, PASSWORD))[0] == 200
        assert _get(view, "/stats", Authorization=f"Bearer {TOKEN}")[0] == 200
        answer = _raw(view, b"GET /stats HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 401 ")
        assert b'\r\nWWW-Authenticate: Basic realm="syncstream", charset="UTF-8"\r\n' in answer
        assert b'\r\nWWW-Authenticate: Bearer realm="syncstream"\r\n' in answer
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"token": "short-token"}, id="short-token"),
        pytest.param({"token": "a token with spaces in it"}, id="spaces"),
        pytest.param({"username": USER}, id="no-password"),
        pytest.param({"password": "secret-password"}, id="no-username"),
        pytest.param({"username": "a:b", "password": "secret-password"}, id="colon"),
        pytest.param({"username": USER, "password": ""}, id="empty-password"),
    ],
)
def test_bad_credentials_are_refused_by_the_view_and_the_session_file(
    credentials: dict[str, str], tmp_path: pathlib.Path
) -> None:
    with pytest.raises(ConfigError) as raised:
        WebView(ImageOutput("wall"), **credentials)
    session = tmp_path / "session.toml"
    web = "".join(f"{name} = {json.dumps(value)}\n" for name, value in credentials.items())
    session.write_text(f'[[cameras]]\nname = "a"\nurl = "udp://127.0.0.1:9001"\n[web]\n{web}')
    with pytest.raises(ConfigError, match=r"session.toml:\d+: web: ") as refused:
        load_session_config(session)
    for secret in (credentials.get("token"), credentials.get("password")):
        if secret:
            assert secret not in str(raised.value) and secret not in str(refused.value)


def test_the_session_files_web_settings_are_the_views_options() -> None:
    import inspect

    options = inspect.signature(WebView).parameters
    for name, field in WebSettings.model_fields.items():
        assert name in options, name
        if name != "port":  # a session's page has a fixed address; 0 picks one
            assert field.default == options[name].default, name
    settings = WebSettings(token=TOKEN, username=USER, password=PASSWORD)
    assert TOKEN not in repr(settings) and PASSWORD not in repr(settings)


def test_an_exposed_view_without_credentials_warns_once_naming_its_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    output = ImageOutput("wall")
    with caplog.at_level(logging.WARNING, logger="syncstream.processors.web"):
        with WebView(output):  # loopback: no warning
            pass
        assert not caplog.records
        with WebView(output, host="0.0.0.0", token=TOKEN):  # with a token
            pass
        assert not caplog.records
        view = WebView(output, host="0.0.0.0")  # the case warned about
        view.start()
        view.start()
        view.close()
    warnings = [r.getMessage() for r in caplog.records if "without authentication" in r.message]
    assert len(warnings) == 1 and f"0.0.0.0:{view.address[1]}" in warnings[0]


def test_the_page_opened_with_a_token_shows_the_stream_in_chromium(
    tmp_path: pathlib.Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    output = ImageOutput("wall")
    red = (30, 30, 220)
    output.publish(_colour_picture(red))
    with WebView(output, title="token test", token=TOKEN) as view:
        driver = _chromium(tmp_path / "chromium")
        try:
            driver.get(view.url)  # without the token: refused
            assert "authentication required" in driver.find_element(By.TAG_NAME, "body").text
            driver.get(f"{view.url}?token={TOKEN}")
            assert driver.title == "token test"
            image = driver.find_element(By.ID, "view")
            WebDriverWait(driver, DEADLINE).until(
                lambda d: d.execute_script("return arguments[0].naturalWidth", image) == SIZE[0]
            )
            shown = _region(driver.get_screenshot_as_png(), image.rect)
            assert np.abs(shown.mean(axis=(0, 1)) - np.array(red) * 18 / 20).max() < 25
            # the stats panel's requests get through too (the cookie), and the token has
            # left the address bar
            WebDriverWait(driver, DEADLINE).until(
                lambda d: d.find_element(By.ID, "web-clients").text == "1"
            )
            assert driver.find_element(By.ID, "status").text == "live"
            assert TOKEN not in driver.current_url
            stats = view.stats
        finally:
            driver.quit()
    # the first page (and perhaps its icon) refused, then one stream let in
    assert stats.unauthorized >= 1 and len(stats.clients) == 1
