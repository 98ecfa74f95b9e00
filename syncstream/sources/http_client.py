"""HTTP(S) GET requests through httpx over interruptible connections, for the MJPEG source.

httpx and httpcore speak the protocol: Basic and Digest authentication, TLS, redirects,
chunked and read-until-close bodies. Their sockets are :class:`BufferedConnection` objects
(through httpcore's network-backend interface), so every blocking step waits at most
``POLL_INTERVAL`` seconds and ends on an interrupt or when the current :class:`Deadline`
passes; httpx's own timeouts are off. httpx's and httpcore's errors become ``SourceError``
in one place, :func:`translate_http_errors`.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from collections.abc import Generator, Iterable, Iterator

import httpcore
import httpx

from ..errors import SourceError, SyncStreamError
from .connection import BufferedConnection, Deadline, ReceiveBuffer

__all__ = [
    "MAX_ERROR_BODY_BYTES",
    "MAX_REDIRECTS",
    "ChallengeAuth",
    "HttpBody",
    "HttpClient",
    "translate_http_errors",
]

logger = logging.getLogger(__name__)

#: Redirects followed before giving up.
MAX_REDIRECTS = 5
#: Largest body of a response other than 200 (a 401 page, say) that is read (bytes).
MAX_ERROR_BODY_BYTES = 64 * 1024

#: httpx's and httpcore's errors and what they become; the first entry that matches wins.
#: Socket errors, timeouts and interrupts never reach httpx as its own types: the
#: connections below it raise ``SourceError`` themselves, which passes through unchanged.
_HTTP_ERRORS: tuple[tuple[type[Exception], type[SourceError], str], ...] = (
    (httpx.UnsupportedProtocol, SourceError, "unsupported URL"),
    (httpcore.UnsupportedProtocol, SourceError, "unsupported URL"),
    (httpx.RemoteProtocolError, SourceError, "broken HTTP response"),
    (httpcore.RemoteProtocolError, SourceError, "broken HTTP response"),
    (httpx.LocalProtocolError, SourceError, "cannot send the HTTP request"),
    (httpcore.LocalProtocolError, SourceError, "cannot send the HTTP request"),
    (httpx.ProtocolError, SourceError, "HTTP protocol error"),  # a bad Digest challenge
    (httpx.HTTPError, SourceError, "HTTP request failed"),
    (httpcore.ProtocolError, SourceError, "HTTP protocol error"),
    (httpcore.NetworkError, SourceError, "HTTP connection failed"),
    (httpcore.TimeoutException, SourceError, "HTTP request timed out"),
)
_FOREIGN = tuple(foreign for foreign, _, _ in _HTTP_ERRORS)


@contextlib.contextmanager
def translate_http_errors(name: str) -> Iterator[None]:
    """Raise httpx's and httpcore's errors inside the block as ``SourceError``."""
    try:
        yield
    except _FOREIGN as exc:
        for foreign, error, what in _HTTP_ERRORS:
            if isinstance(exc, foreign):
                raise error(f"{name}: {what}: {exc}") from exc
        raise  # unreachable: _FOREIGN holds exactly the table's types


class _SlicedStream(httpcore.NetworkStream):
    """httpcore's view of a :class:`BufferedConnection`, bounded by the backend's deadline."""

    def __init__(self, conn: BufferedConnection, backend: _SlicedBackend) -> None:
        self._conn = conn
        self._backend = backend

    # ``timeout`` is httpx's, which is off: the backend's deadline bounds every step.
    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._conn.recv(max_bytes, self._backend.deadline)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._conn.send(buffer, self._backend.deadline)

    def close(self) -> None:
        self._conn.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self._conn.start_tls(ssl_context, server_hostname or "", self._backend.deadline)
        return self

    def get_extra_info(self, info: str) -> object:
        # httpcore asks whether an idle kept-alive connection was closed by the server.
        return self._conn.readable() if info == "is_readable" else None


class _SlicedBackend(httpcore.NetworkBackend):
    """Opens :class:`BufferedConnection` sockets that obey :attr:`deadline` and the interrupt."""

    def __init__(self, name: str, interrupted: threading.Event, deadline: Deadline) -> None:
        self.name = name
        #: Bounds the current step: the open timeout, then each read's stall timeout.
        self.deadline = deadline
        self._interrupted = interrupted

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        conn = BufferedConnection(self.name, self._interrupted)
        conn.connect(host, port, self.deadline)
        return _SlicedStream(conn, self)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise SourceError(f"{self.name}: Unix sockets are not supported")

    def sleep(self, seconds: float) -> None:
        self._interrupted.wait(seconds)


class _Body(httpx.SyncByteStream):
    """A response body from httpcore; capped at ``limit`` bytes when one is given."""

    def __init__(self, chunks: Iterable[bytes], name: str, limit: int | None) -> None:
        self._chunks = chunks
        self._name = name
        self._limit = limit

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self._chunks:
            received += len(chunk)
            if self._limit is not None and received > self._limit:
                raise SourceError(f"{self._name}: HTTP error body over {self._limit} bytes")
            yield chunk

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class _SlicedTransport(httpx.BaseTransport):
    """httpx's transport over httpcore's connection pool with :class:`_SlicedBackend`."""

    def __init__(self, backend: _SlicedBackend, tls: ssl.SSLContext) -> None:
        self._name = backend.name
        self._pool = httpcore.ConnectionPool(ssl_context=tls, network_backend=backend)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        url = request.url
        response = self._pool.handle_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        assert isinstance(response.stream, Iterable)
        # Only the 200 stream is long; a body httpx reads whole (a 401 page) is capped.
        limit = None if response.status == 200 else MAX_ERROR_BODY_BYTES
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, self._name, limit),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class ChallengeAuth(httpx.Auth):
    """Answers the server's challenge: Digest when it offers Digest, else Basic.

    The first request goes out without credentials, so a password is never sent as Basic
    to a server that did not ask for it. Later requests (a reopen) answer at once: Digest
    with the last challenge (httpx counts the nonce uses), or Basic if the server asked for it.
    """

    def __init__(self, username: str, password: str) -> None:
        self._basic = httpx.BasicAuth(username, password)
        self._digest = httpx.DigestAuth(username, password)
        self._basic_asked = False

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._basic_asked:
            yield next(self._basic.auth_flow(request))
            return
        digest = self._digest.auth_flow(request)
        response = yield next(digest)  # bare, or with Digest once a challenge is known
        if response.status_code != 401:
            return
        offered = {
            value.strip().partition(" ")[0].lower()
            for value in response.headers.get_list("www-authenticate")
        }
        if "digest" in offered:
            try:
                yield digest.send(response)
            except StopIteration:
                return
            except (KeyError, ValueError, NotImplementedError) as exc:  # not a usable challenge
                # Only the type: the text may hold the user name and the computed response.
                what = type(exc).__name__
                raise httpx.ProtocolError(f"unusable Digest challenge ({what})") from None
        elif "basic" in offered:
            self._basic_asked = True
            yield next(self._basic.auth_flow(request))


def _keeps_credentials(first: httpx.URL, url: httpx.URL) -> bool:
    """Credentials follow a redirect to the same host, never from https down to http."""
    return url.host == first.host and not (first.scheme == "https" and url.scheme == "http")


class HttpClient:
    """One httpx client whose connections obey :attr:`deadline` and an interrupt flag."""

    def __init__(self, name: str, interrupted: threading.Event, deadline: Deadline) -> None:
        self.name = name
        self._backend = _SlicedBackend(name, interrupted, deadline)
        self._client = httpx.Client(
            transport=_SlicedTransport(self._backend, ssl.create_default_context()),
            timeout=httpx.Timeout(None),
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def deadline(self) -> Deadline:
        """What bounds the current blocking step."""
        return self._backend.deadline

    @deadline.setter
    def deadline(self, deadline: Deadline) -> None:
        self._backend.deadline = deadline

    def get(
        self, url: httpx.URL, headers: dict[str, str], auth: httpx.Auth | None
    ) -> httpx.Response:
        """GET ``url`` and return the response with its body unread, after redirects.

        ``auth`` answers challenges from ``url``'s host (see :func:`_keeps_credentials`).
        """
        request = self._client.build_request("GET", url, headers=headers)
        for _ in range(MAX_REDIRECTS + 1):
            hop_auth = auth if _keeps_credentials(url, request.url) else None
            if hop_auth is None:
                request.headers.pop("Authorization", None)
            with translate_http_errors(self.name):
                response = self._client.send(request, auth=hop_auth, stream=True)
            if response.next_request is None:
                return response
            response.close()
            request = response.next_request
            shown = request.url.copy_with(userinfo=b"")
            logger.info("%s: HTTP %d, redirected to %s", self.name, response.status_code, shown)
        raise SourceError(f"{self.name}: more than {MAX_REDIRECTS} HTTP redirects")

    def close(self) -> None:
        """Close the client and its connections; idempotent."""
        self._client.close()


class HttpBody(ReceiveBuffer):
    """The body of a streaming response, as a :class:`ReceiveBuffer` for a parser.

    It owns the response and its client. After an error it is closed: a later
    :meth:`fill` raises ``SourceError``.
    """

    def __init__(self, client: HttpClient, response: httpx.Response) -> None:
        super().__init__(client.name)
        self._client: HttpClient | None = client
        self._response = response
        self._chunks = response.iter_raw()

    def fill(self, deadline: Deadline) -> None:
        """Append the next bytes of the body (at least one) to :attr:`buffer`."""
        client = self._client
        if client is None:
            raise SourceError(f"{self.name}: connection is closed")
        client.deadline = deadline
        try:
            with translate_http_errors(self.name):
                chunk = next(self._chunks, None)
        except SyncStreamError:
            self.close()
            raise
        if chunk is None:
            self.close()
            raise SourceError(f"{self.name}: connection closed by server")
        self._append(chunk)

    def close(self) -> None:
        """Close the response and its connection; idempotent."""
        client, self._client = self._client, None
        super().close()
        if client is not None:
            self._response.close()
            client.close()
