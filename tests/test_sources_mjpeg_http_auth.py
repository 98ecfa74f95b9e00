"""MjpegHttpSource through httpx against real local servers: Digest and Basic auth,
redirects, chunked bodies, HTTPS (see tests/peers.py for the servers and the Digest check)."""

from __future__ import annotations

import logging
import pathlib
import shutil
from contextlib import closing

import pytest
from peers import AuthScheme, MjpegServer, encode_jpeg, make_self_signed_cert, synthetic_image

from syncstream.config import StreamConfig
from syncstream.errors import SourceError
from syncstream.sources.http_client import MAX_REDIRECTS
from syncstream.sources.mjpeg_http import MjpegHttpSource

pytestmark = pytest.mark.timeout(20)

JPEGS = [encode_jpeg(synthetic_image(i)) for i in range(3)]
USER, PASSWORD = "cam", "s3cr:et pa55"
QUOTED = "cam:s3cr%3Aet%20pa55"  # the same credentials as they appear in a URL


def make_config(url: str, **overrides: float) -> StreamConfig:
    settings: dict[str, float] = {"open_timeout": 3.0, "stall_timeout": 3.0}
    settings.update(overrides)
    return StreamConfig(url=url, **settings)


def with_credentials(url: str, credentials: str = QUOTED) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{credentials}@{rest}"


def red_values(source: MjpegHttpSource, count: int) -> list[int]:
    """The red level of ``count`` frames: which synthetic picture each one is (40 + 70 i)."""
    values = []
    for _ in range(count):
        frame = source.read()
        assert (frame.width, frame.height) == (160, 120)
        values.append(int(frame.convert()[60, 80, 2]))
    return values


def picture_indexes(source: MjpegHttpSource, count: int) -> list[int]:
    return [min(range(3), key=lambda i: abs(v - (40 + 70 * i))) for v in red_values(source, count)]


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


def test_digest_auth_answers_the_challenge() -> None:
    with MjpegServer(JPEGS, auth=(USER, PASSWORD), auth_scheme="digest") as server:
        with closing(MjpegHttpSource(make_config(with_credentials(server.url)))) as source:
            assert PASSWORD not in source.name and "s3cr" not in source.name
            source.open()
            assert picture_indexes(source, 3) == [0, 1, 2]
        sent = [authorization for _, authorization in server.requests]
    assert sent[0] is None  # nothing is offered before the server asks
    assert sent[1] is not None and sent[1].startswith("Digest ")
    assert 'uri="/stream"' in sent[1] and "qop=auth" in sent[1]
    assert not any(a is not None and ("Basic" in a or "pa55" in a) for a in sent)


def test_digest_reopen_answers_at_once_with_the_next_nonce_count() -> None:
    with MjpegServer(JPEGS, auth=(USER, PASSWORD), auth_scheme="digest") as server:
        with closing(MjpegHttpSource(make_config(with_credentials(server.url)))) as source:
            source.open()
            assert picture_indexes(source, 1) == [0]
            source.open()  # a reconnect: the server checks that the nonce count went up
            assert picture_indexes(source, 1) == [0]
        sent = [authorization for _, authorization in server.requests]
    assert len(sent) == 3  # challenge, answer; then the reopen answers without a challenge
    assert sent[2] is not None and "nc=00000002" in sent[2]


def test_basic_auth_is_sent_only_when_asked() -> None:
    with MjpegServer(JPEGS, auth=(USER, PASSWORD), auth_scheme="basic") as server:
        with closing(MjpegHttpSource(make_config(with_credentials(server.url)))) as source:
            source.open()
            assert picture_indexes(source, 2) == [0, 1]
        sent = [authorization for _, authorization in server.requests]
    assert sent[0] is None and sent[1] is not None and sent[1].startswith("Basic ")


@pytest.mark.parametrize("scheme", ["digest", "basic"])
def test_wrong_password_names_authentication_and_hides_the_password(
    scheme: AuthScheme, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx's and httpcore's loggers too
    wrong = "wr0ng:Passw0rd"
    with MjpegServer(JPEGS, auth=(USER, PASSWORD), auth_scheme=scheme) as server:
        url = with_credentials(server.url, f"{USER}:{wrong.replace(':', '%3A')}")
        with (
            closing(MjpegHttpSource(make_config(url))) as source,
            pytest.raises(SourceError, match="authentication failed") as caught,
        ):
            source.open()
    error: BaseException | None = caught.value
    assert "401" in str(caught.value)
    while error is not None:  # the whole chain of causes
        assert "wr0ng" not in str(error) and "wr0ng" not in repr(error)
        error = error.__cause__ or error.__context__
    assert "wr0ng" not in caplog.text and "Passw0rd" not in caplog.text


def test_missing_credentials_say_authentication_is_required() -> None:
    with (
        MjpegServer(JPEGS, auth=(USER, PASSWORD), auth_scheme="digest") as server,
        closing(MjpegHttpSource(make_config(server.url))) as source,
        pytest.raises(SourceError, match="authentication required"),
    ):
        source.open()


def test_redirects_are_followed_with_digest_for_each_target() -> None:
    redirects = {"/old": "/older", "/older": "/stream"}
    auth = (USER, PASSWORD)
    with MjpegServer(JPEGS, auth=auth, auth_scheme="digest", redirects=redirects) as server:
        url = with_credentials(server.url_for("/old"))
        with closing(MjpegHttpSource(make_config(url))) as source:
            source.open()
            assert picture_indexes(source, 2) == [0, 1]
        answered = [(path, a) for path, a in server.requests if a is not None]
    # Every hop was authenticated for its own target (the server checks uri=).
    assert {path for path, _ in answered} == {"/old", "/older", "/stream"}
    assert all(f'uri="{path}"' in a for path, a in answered)


def test_redirect_loop_is_bounded() -> None:
    with (
        MjpegServer(JPEGS, redirects={"/a": "/b", "/b": "/a"}) as server,
        closing(MjpegHttpSource(make_config(server.url_for("/a")))) as source,
        pytest.raises(SourceError, match=f"more than {MAX_REDIRECTS} HTTP redirects"),
    ):
        source.open()
    assert len(server.requests) == MAX_REDIRECTS + 1


def test_redirect_to_another_host_gets_no_credentials() -> None:
    with MjpegServer(JPEGS, auth=(USER, PASSWORD), auth_scheme="basic") as camera:
        elsewhere = camera.url_for("/stream", host="localhost")  # same machine, another name
        with MjpegServer(JPEGS, redirects={"/old": elsewhere}) as first:
            url = with_credentials(first.url_for("/old"))
            with (
                closing(MjpegHttpSource(make_config(url))) as source,
                pytest.raises(SourceError, match="another host"),
            ):
                source.open()
        assert camera.requests and all(a is None for _, a in camera.requests)


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "scan"])
def test_chunked_transfer_encoding(content_length: bool) -> None:
    stamps = [1_700_000_000.5 + i for i in range(3)]
    with (
        MjpegServer(
            JPEGS, chunked=True, content_length=content_length, timestamps=stamps
        ) as server,
        closing(MjpegHttpSource(make_config(server.url))) as source,
    ):
        source.open()
        frames = [source.read() for _ in range(4)]
    assert [f.sender_time for f in frames] == [stamps[0], stamps[1], stamps[2], stamps[0]]
    assert (source.counters.rejected, source.counters.decode_errors) == (0, 0)


def test_chunked_stream_that_ends_is_a_source_error() -> None:
    with (
        MjpegServer(JPEGS, chunked=True, close_after=2) as server,
        closing(MjpegHttpSource(make_config(server.url))) as source,
    ):
        source.open()
        assert picture_indexes(source, 2) == [0, 1]
        with pytest.raises(SourceError, match="closed by server"):
            source.read()


def test_redirect_from_http_to_https_keeps_digest_credentials(
    tls_cert: tuple[pathlib.Path, pathlib.Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cert[0]))  # trust our test CA
    with MjpegServer(JPEGS, auth=(USER, PASSWORD), auth_scheme="digest", tls=tls_cert) as secure:
        with MjpegServer(JPEGS, redirects={"/stream": secure.url}) as plain:
            with closing(MjpegHttpSource(make_config(with_credentials(plain.url)))) as source:
                source.open()
                assert picture_indexes(source, 2) == [0, 1]
        assert any(a is not None and a.startswith("Digest ") for _, a in secure.requests)
