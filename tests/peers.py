"""Real local peers for the socket sources: an MJPEG HTTP(S) server and a framed-JPEG sender.

Both bind to 127.0.0.1 on a free port, run in daemon threads, are context managers and
serve synthetic JPEGs made here with numpy and OpenCV (nothing is downloaded).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import pathlib
import re
import secrets
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from syncstream.probe import encode_stamp
from syncstream.sources.tcp_framed import send_framed_jpeg

BOUNDARY = "syncstreamboundary"
_CHUNK = b"\x00" * 65536

MjpegHostile = Literal["endless_body", "huge_length", "huge_lengths"]
AuthScheme = Literal["basic", "digest"]
_DIGEST_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


def synthetic_image(index: int, width: int = 160, height: int = 120) -> NDArray[np.uint8]:
    """A BGR test picture: gradients in blue and green, red set by ``index``, the number drawn."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[np.newaxis, :]
    image[:, :, 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, np.newaxis]
    image[:, :, 2] = (40 + 70 * index) % 256
    cv2.putText(image, str(index), (8, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255,) * 3, 2)
    return image


def encode_jpeg(image: NDArray[np.uint8], quality: int = 90) -> bytes:
    """JPEG bytes of a BGR image."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok, "OpenCV could not encode a JPEG"
    return bytes(encoded.tobytes())


def make_self_signed_cert(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A certificate and key for 127.0.0.1 and localhost, made by the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class DigestCheck:
    """The server side of HTTP Digest authentication (RFC 7616): MD5, qop=auth.

    Each challenge carries a fresh nonce; a response must name a nonce we issued, the
    request's target as ``uri``, our realm and opaque, and a nonce count higher than the
    last one accepted for that nonce (no replays).
    """

    realm = "camera"

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.opaque = secrets.token_hex(8)
        self._nonce_counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def challenge(self) -> str:
        """A WWW-Authenticate value with a new nonce."""
        nonce = secrets.token_hex(16)
        with self._lock:
            self._nonce_counts[nonce] = 0
        return (
            f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, '
            f'nonce="{nonce}", opaque="{self.opaque}"'
        )

    def check(self, method: str, target: str, authorization: str | None) -> bool:
        """Whether ``authorization`` is a valid Digest response for this request."""
        scheme, _, rest = (authorization or "").partition(" ")
        if scheme.lower() != "digest":
            return False
        fields = {m[0].lower(): m[1] or m[2] for m in _DIGEST_FIELD.findall(rest)}
        needed = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
        if any(not fields.get(name) for name in needed):
            return False
        if (
            fields["username"] != self.user
            or fields["realm"] != self.realm
            or fields["uri"] != target
            or fields["qop"] != "auth"
            or fields.get("algorithm", "MD5").upper() != "MD5"
            or fields.get("opaque") != self.opaque
            or not re.fullmatch(r"[0-9a-fA-F]{8}", fields["nc"])
        ):
            return False
        ha1 = _md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = _md5(f"{method}:{fields['uri']}")
        expected = _md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")
        count = int(fields["nc"], 16)
        with self._lock:
            last = self._nonce_counts.get(fields["nonce"])
            if last is None or count <= last:
                return False  # a nonce we never issued, or a replayed count
            if not hmac.compare_digest(expected, fields["response"]):
                return False
            self._nonce_counts[fields["nonce"]] = count
        return True


class _PeerServer(ThreadingHTTPServer):
    daemon_threads = True
    peer: MjpegServer


class _MjpegHandler(BaseHTTPRequestHandler):
    server: _PeerServer
    timeout = 5.0  # a client that stops reading cannot block a handler for ever

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        peer = self.server.peer
        if peer.chunked:
            self.protocol_version = "HTTP/1.1"  # chunked bodies need HTTP/1.1
        authorization = self.headers.get("Authorization")
        with peer.lock:
            peer.requests.append((self.path, authorization))
        if not peer.authorized(self.command, self.path, authorization):
            self._reply(401, "WWW-Authenticate", peer.challenge())
            return
        if self.path in peer.redirects:
            self._reply(302, "Location", peer.redirects[self.path])
            return
        if self.path != peer.path:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", peer.content_type)
        self.send_header("Cache-Control", "no-cache")
        if peer.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        if not peer.content_type.startswith("multipart/"):
            self._write(b"<html><body>not a stream</body></html>")
            self._write(b"")
            return
        try:
            self._stream(peer)
            self._write(b"")  # the last chunk, when chunked
        except OSError:
            return  # the client went away: the normal end of a stream

    def _reply(self, status: int, header: str, value: str) -> None:
        self.send_response(status)
        self.send_header(header, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _write(self, data: bytes) -> None:
        """Send body bytes, as one chunk when chunked (``b""`` ends a chunked body)."""
        if self.server.peer.chunked:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        elif data:
            self.wfile.write(data)

    def _stream(self, peer: MjpegServer) -> None:
        if peer.hostile == "endless_body":
            self._write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\n".encode())
            while not peer.stopping.is_set():
                self._write(_CHUNK)
            return
        sent = 0
        while not peer.stopping.is_set():
            index = sent % max(1, len(peer.frames))
            jpeg = peer.frames[index] if peer.stamp_size is None else peer.stamped_picture(sent)
            headers = [f"--{BOUNDARY}", "Content-Type: image/jpeg"]
            if (peer.hostile == "huge_length" and sent == 0) or peer.hostile == "huge_lengths":
                headers.append(f"Content-Length: {2**40}")  # a lie: the body is normal
            elif peer.content_length:
                headers.append(f"Content-Length: {len(jpeg)}")
            if peer.timestamps is not None:
                headers.append(f"X-Timestamp: {peer.timestamps[index]:.6f}")
            self._write(("\r\n".join(headers) + "\r\n\r\n").encode() + jpeg + b"\r\n")
            sent += 1
            if sent == peer.close_after:
                return
            if sent == peer.pause_after:
                peer.stopping.wait()  # keep the connection open, send nothing
                return
            peer.stopping.wait(1.0 / peer.fps)


class MjpegServer:
    """A threaded HTTP server on 127.0.0.1 streaming ``frames`` in a loop as MJPEG.

    Options: ``content_length=False`` leaves parts without Content-Length (boundary scan);
    ``timestamps`` adds ``X-Timestamp`` (one per frame); ``close_after``/``pause_after``
    end or freeze each connection after that many parts; ``hostile`` sends an endless body
    without a boundary, or a first part (``huge_lengths``: every part) claiming a
    Content-Length of 2**40; ``content_type``
    replaces the multipart type (the body is then a small HTML page); ``auth`` requires
    these credentials, by ``auth_scheme`` (Basic, or Digest checked by :class:`DigestCheck`);
    ``redirects`` maps paths to the Location they answer with (302; after the auth check);
    ``chunked`` sends the stream with chunked transfer encoding (HTTP/1.1); ``tls`` is a
    (certificate, key) pair to serve HTTPS; ``stamp_size`` (width, height) replaces
    ``frames`` by pictures of that size painted with their capture time (the wall clock
    just before each is encoded and sent, read back by ``syncstream.probe.decode_stamp``),
    as a camera that says nothing of its clock. :attr:`requests` lists the path and
    Authorization header of every request received.
    """

    def __init__(
        self,
        frames: Sequence[bytes],
        *,
        fps: float = 50.0,
        content_length: bool = True,
        timestamps: Sequence[float] | None = None,
        close_after: int | None = None,
        pause_after: int | None = None,
        hostile: MjpegHostile | None = None,
        content_type: str = f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        path: str = "/stream",
        auth: tuple[str, str] | None = None,
        auth_scheme: AuthScheme = "basic",
        redirects: Mapping[str, str] | None = None,
        chunked: bool = False,
        tls: tuple[pathlib.Path, pathlib.Path] | None = None,
        stamp_size: tuple[int, int] | None = None,
    ) -> None:
        self.frames = list(frames)
        self.stamp_size = stamp_size
        self.fps = fps
        self.content_length = content_length
        self.timestamps = None if timestamps is None else list(timestamps)
        self.close_after = close_after
        self.pause_after = pause_after
        self.hostile = hostile
        self.content_type = content_type
        self.path = path
        self.auth = auth
        self.auth_scheme = auth_scheme
        self.redirects = dict(redirects or {})
        self.chunked = chunked
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self._digest = None if auth is None else DigestCheck(*auth)
        self.stopping = threading.Event()
        self._tls = tls
        self._server: _PeerServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The stream's URL (without credentials)."""
        return self.url_for(self.path)

    def url_for(self, path: str, host: str = "127.0.0.1") -> str:
        """The URL of ``path`` on this server (without credentials)."""
        assert self._server is not None, "server not started"
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{host}:{self._server.server_address[1]}{path}"

    def authorized(self, method: str, target: str, authorization: str | None) -> bool:
        """Whether a request may pass: no auth required, or valid credentials."""
        if self.auth is None:
            return True
        if self.auth_scheme == "digest":
            assert self._digest is not None
            return self._digest.check(method, target, authorization)
        expected = base64.b64encode(":".join(self.auth).encode()).decode()
        return authorization == f"Basic {expected}"

    def stamped_picture(self, count: int) -> bytes:
        """A JPEG of ``stamp_size`` stamped with the time now: picture number ``count``."""
        assert self.stamp_size is not None
        width, height = self.stamp_size
        luma = np.empty((height, width), np.uint8)
        luma[:] = (16 + (np.arange(width) * 4 + count * 8) % 200).astype(np.uint8)
        encode_stamp(luma, time.time())
        return encode_jpeg(cv2.cvtColor(luma, cv2.COLOR_GRAY2BGR))

    def challenge(self) -> str:
        """The WWW-Authenticate value of a 401 answer."""
        if self.auth_scheme == "digest":
            assert self._digest is not None
            return self._digest.challenge()
        return 'Basic realm="camera"'

    def __enter__(self) -> MjpegServer:
        server = _PeerServer(("127.0.0.1", 0), _MjpegHandler)
        server.peer = self
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="mjpeg-peer", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


class FramedJpegServer:
    """A TCP server on 127.0.0.1 sending each client ``frames`` in a loop, length-prefixed.

    ``close_after``/``pause_after`` end or freeze each connection after that many frames;
    ``hostile`` sends one good frame, then a length of 2**40 followed by junk.
    """

    def __init__(
        self,
        frames: Sequence[bytes],
        *,
        fps: float = 50.0,
        close_after: int | None = None,
        pause_after: int | None = None,
        hostile: bool = False,
    ) -> None:
        self.frames = list(frames)
        self.fps = fps
        self.close_after = close_after
        self.pause_after = pause_after
        self.hostile = hostile
        self.stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """``tcp://127.0.0.1:port``."""
        assert self._listener is not None, "server not started"
        return f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> FramedJpegServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.05)
        self._listener = listener
        self._start(self._accept_loop, "framed-peer")
        return self

    def _start(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(5.0)
            self._start(self._serve, "framed-peer-client", client)

    def _serve(self, client: socket.socket) -> None:
        with client:
            try:
                self._send_frames(client)
            except OSError:
                return  # the client went away: the normal end of a stream

    def _send_frames(self, client: socket.socket) -> None:
        sent = 0
        while not self.stopping.is_set():
            if self.hostile and sent == 1:
                client.sendall(struct.pack(">Q", 2**40) + _CHUNK)
                self.stopping.wait()
                return
            send_framed_jpeg(client, self.frames[sent % len(self.frames)])
            sent += 1
            if sent == self.close_after:
                return
            if sent == self.pause_after:
                self.stopping.wait()
                return
            self.stopping.wait(1.0 / self.fps)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(5)
        if self._listener is not None:
            self._listener.close()
