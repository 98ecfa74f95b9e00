"""Hostile input: fuzzed MJPEG parts, TCP frames, session files and PTS; garbage datagrams
into a UDP port; truncated and corrupted ``.ts`` files.

Every case ends in frames, in refusals that are counted, or in a ``SyncStreamError``:
never another exception type, never a hang (each test has a timeout), never unbounded
memory (buffer high-water marks and tracemalloc peaks against the size caps).

The socket sources are reached below :class:`BufferedConnection`: ``connect()`` is pointed
at one end of an ``AF_UNIX``/``SOCK_SEQPACKET`` socketpair whose other end sends the bytes
under test. A SEQPACKET ``recv()`` returns one record, so the split points that hypothesis
chooses are exactly the points where the parser gets more data: deterministic, no timing.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import pathlib
import random
import socket
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager

import cv2
import numpy as np
import pytest
from conftest import DATA, SenderFactory, free_udp_port, wait_until
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from peers import encode_jpeg, synthetic_image
from pydantic import ValidationError

from syncstream import (
    Camera,
    Frame,
    StreamEnded,
    StreamFailed,
    StreamState,
    StreamStats,
    VideoStream,
)
from syncstream.clock import MPEGTS_PTS_PERIOD, plausible_capture_time, unwrap_pts_time
from syncstream.config import StreamConfig
from syncstream.errors import (
    ConfigError,
    FrameDecodeError,
    PictureTooLarge,
    SourceError,
    SyncStreamError,
)
from syncstream.session_config import SessionConfig, load_session_config
from syncstream.sources.base import SourceFrame
from syncstream.sources.connection import (
    POLL_INTERVAL,
    BufferedConnection,
    Deadline,
    decode_jpeg_frame,
    jpeg_size,
)
from syncstream.sources.mjpeg_http import MAX_HEADER_BYTES, MjpegHttpSource
from syncstream.sources.tcp_framed import TcpFramedSource

CAP = 64 * 1024  # max_frame_bytes of the fuzzed sources: small, so that caps are reached
RECORD = 65536  # what BufferedConnection asks recv() for: the largest record we send
TOKEN = b"fuzzboundary"
# Pictures of different widths, so a frame says which part it came from without a compare.
JPEGS = [encode_jpeg(synthetic_image(i, width=16 * (i + 2), height=16)) for i in range(3)]
WIDTHS = [16 * (i + 2) for i in range(3)]
SEED_SESSION = (pathlib.Path(__file__).parents[1] / "examples" / "session.toml").read_text()
TS_FILE = (DATA / "testsrc_wallclock.ts").read_bytes()  # 30 frames, 320x240
MAX_PIXELS: int = StreamConfig.model_fields["max_pixels"].default  # 8K UHD


# -- feeding the socket sources -----------------------------------------------------------


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (taken modulo its length), no record over ``RECORD``, none empty."""
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    return [p[i : i + RECORD] for p in pieces for i in range(0, len(p), RECORD)]


@contextmanager
def peer_sending(chunks: Sequence[bytes]) -> Iterator[None]:
    """While active, sources "connect" to a peer that sends ``chunks`` (one per recv), then EOF.

    A chunk of up to ``RECORD`` bytes is one SEQPACKET record; an empty record would read
    as EOF, so callers pass none (see :func:`split`).
    """
    assert all(0 < len(chunk) <= RECORD for chunk in chunks)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.settimeout(10.0)

    def connect(
        self: BufferedConnection, host: str, port: int, deadline: Deadline, tls: object = None
    ) -> None:
        ours.settimeout(POLL_INTERVAL)  # as a connected TCP socket is
        self._sock = ours

    def send() -> None:
        try:
            for chunk in chunks:
                theirs.sendall(chunk)
            theirs.shutdown(socket.SHUT_WR)
        except OSError:
            return  # the source dropped the connection before reading everything

    sender = threading.Thread(target=send, name="hostile-peer", daemon=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BufferedConnection, "connect", connect)
        sender.start()
        try:
            yield
        finally:
            ours.close()  # a source that stopped reading: the sender gets EPIPE
            sender.join(10.0)
            theirs.close()
    assert not sender.is_alive()


def drain(
    source: MjpegHttpSource | TcpFramedSource, limit: int = 256
) -> tuple[list[SourceFrame], SyncStreamError | None]:
    """Open ``source`` and read until it raises; any exception but a SyncStreamError escapes."""
    frames: list[SourceFrame] = []
    try:
        source.open()
        while len(frames) < limit:
            frames.append(source.read())
    except SyncStreamError as exc:
        return frames, exc
    return frames, None


def source_config(url: str) -> StreamConfig:
    # The timeouts only bound a parser that stopped consuming: every feed ends in EOF.
    return StreamConfig(url=url, max_frame_bytes=CAP, open_timeout=5.0, stall_timeout=5.0)


def decoded_width(body: bytes) -> int | None:
    """Oracle: the width OpenCV decodes ``body`` to, None when it refuses it."""
    if not body:
        return None
    image = cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if image is None or image.ndim != 3 else int(image.shape[1])


# -- MJPEG over HTTP ----------------------------------------------------------------------

MJPEG_URL = "http://camera.invalid/stream"
BAD_LENGTHS = [
    str(CAP + 1), str(2**40), "9" * 5000, "\u00b2", "1\u00b9", "-1", "+5",
    "1e3", "0x10", "12abc", "", "1 2",
]  # fmt: skip
FUNNY_STAMPS = ["nan", "inf", "-inf", "1e999", "abc", "", "\u00b2", "1_0", "0x1p3"]


@dataclasses.dataclass(frozen=True)
class Part:
    """One multipart part: its body, how its Content-Length is written, its X-Timestamp."""

    body: bytes
    length: str | None  # "exact", "padded" (5000 leading zeros), None (none) or refused
    stamp: str | None
    newline: bytes  # line ends in this part: CRLF, or LF as some cameras send
    padding: bytes  # transport padding after the boundary

    def encode(self) -> bytes:
        nl = self.newline
        out = b"--" + TOKEN + self.padding + nl + b"Content-Type: image/jpeg" + nl
        if self.length is not None:
            value = {"exact": "", "padded": "0" * 5000}.get(self.length)
            value = self.length if value is None else value + str(len(self.body))
            out += b"Content-Length: " + value.encode("latin-1") + nl
        if self.stamp is not None:
            out += b"X-Timestamp: " + self.stamp.encode("latin-1") + nl
        return out + nl + self.body + nl

    @property
    def refused(self) -> bool:
        """Over the cap or with a Content-Length that is not a number: skipped and counted."""
        if self.length is None:  # read up to "\r\n--" and the boundary: the cap plus 4
            return len(self.body) + len(self.newline) + 2 > CAP + 4
        return self.length not in ("exact", "padded") or len(self.body) > CAP


def undecodable(data: bytes) -> bool:
    return decoded_width(data) is None


junk = st.binary(max_size=200).filter(lambda b: TOKEN not in b and undecodable(b))
# Inside a body read by its Content-Length, a boundary line is just data.
junk_with_boundaries = st.lists(
    st.one_of(junk, st.just(b"\r\n--" + TOKEN + b"\r\n"), st.just(b"--" + TOKEN + b"--\r\n")),
    max_size=4,
).map(b"".join)
stamps = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(FUNNY_STAMPS),
)


@st.composite
def parts(draw: st.DrawFn) -> Part:
    length = draw(st.sampled_from(["exact", "padded", None, *BAD_LENGTHS]))
    kind = draw(st.sampled_from(["jpeg", "junk"] * 4 + ["near-cap"]))
    if kind == "jpeg":
        body = JPEGS[draw(st.integers(0, len(JPEGS) - 1))]
    elif kind == "junk":
        body = draw(junk_with_boundaries if length in ("exact", "padded") else junk)
    else:  # a picture padded to around the cap (decoders ignore bytes after its end)
        size = CAP + draw(st.integers(-8, 8))
        body = JPEGS[0] + bytes(size - len(JPEGS[0]))
        if length not in ("exact", "padded"):
            length = None  # skipping over a refused length would be over the cap too
    return Part(
        body=body,
        length=length,
        stamp=draw(stamps),
        newline=draw(st.sampled_from([b"\r\n", b"\n"])),
        padding=draw(st.sampled_from([b"", b"  ", b"\t"])),
    )


def mjpeg_head(boundary: str = TOKEN.decode(), status: str = "200") -> bytes:
    return (
        f"HTTP/1.0 {status} OK\r\nServer: fuzz\r\n"
        f"Content-Type: multipart/x-mixed-replace; boundary={boundary}\r\n\r\n"
    ).encode("latin-1")


def mjpeg_stream(parts: Sequence[Part], boundary: str, preamble: bytes) -> bytes:
    """A whole response: head, preamble, parts, the closing delimiter."""
    body = b"".join(part.encode() for part in parts)
    return mjpeg_head(boundary) + preamble + body + b"--" + TOKEN + b"--\r\n"


def expected_stamp(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


boundary_spellings = st.sampled_from(
    [TOKEN.decode(), "--" + TOKEN.decode(), '"' + TOKEN.decode() + '"']
)
cut_lists = st.lists(st.integers(min_value=0, max_value=2**20), max_size=40)


@pytest.mark.timeout(60)
@settings(max_examples=250, deadline=None)
@given(
    parts=st.lists(parts(), max_size=8),
    boundary=boundary_spellings,
    preamble=junk,
    cuts=cut_lists,
)
def test_mjpeg_well_formed_stream_yields_every_picture_at_any_split(
    parts: list[Part], boundary: str, preamble: bytes, cuts: list[int]
) -> None:
    """Decodable parts become frames in order, others are counted, wherever reads split."""
    data = mjpeg_stream(parts, boundary, preamble)
    source = MjpegHttpSource(source_config(MJPEG_URL))
    with peer_sending(split(data, cuts)), closing(source):
        frames, error = drain(source)
    kept = [p for p in parts if not p.refused]
    decoded = [(decoded_width(p.body), expected_stamp(p.stamp)) for p in kept]
    assert [(f.width, f.sender_time) for f in frames] == [d for d in decoded if d[0] is not None]
    assert source.counters.decode_errors == sum(d[0] is None for d in decoded)
    assert source.counters.rejected == len(parts) - len(kept)
    assert isinstance(error, SourceError) and "ended the multipart stream" in str(error)


HOSTILE_INSERTS = [
    TOKEN, b"--" + TOKEN + b"\r\n", b"--" + TOKEN + b"--\r\n", b"\r\n\r\n", b"\n", b"\r",
    b"Content-Length: 99999999999999\r\n", b"Content-Length: \xb2\r\n",
    b"Content-Length: " + b"7" * 5000 + b"\r\n", b"X-Timestamp: nan\r\n",
    b"\xff\xd8", b"\xff\xd9", b"\x00" * 300, b"x" * (MAX_HEADER_BYTES + 10),
]  # fmt: skip
mutations = st.lists(
    st.one_of(
        st.tuples(
            st.just("insert"),
            st.integers(min_value=0),
            st.one_of(st.binary(max_size=64), st.sampled_from(HOSTILE_INSERTS)),
        ),
        st.tuples(st.just("delete"), st.integers(min_value=0), st.integers(1, 300)),
        st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(1, 255)),
        st.tuples(st.just("truncate"), st.integers(min_value=0), st.just(0)),
    ),
    max_size=6,
)


def mutate(data: bytes, edits: Sequence[tuple[str, int, object]]) -> bytes:
    """Apply insertions, deletions, bit flips and truncations at positions modulo the length."""
    buf = bytearray(data)
    for kind, position, arg in edits:
        at = position % (len(buf) + 1)
        if kind == "insert":
            assert isinstance(arg, bytes)
            buf[at:at] = arg
        elif kind == "delete":
            assert isinstance(arg, int)
            del buf[at : at + arg]
        elif kind == "flip" and at < len(buf):
            assert isinstance(arg, int)
            buf[at] ^= arg
        elif kind == "truncate":
            del buf[at:]
    return bytes(buf)


statuses = st.one_of(
    st.just("200"),
    st.sampled_from(["\u00b200", "2\u00b90", "9" * 5000, "0200", "-200", "20", "", "200 200"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=6),
)
content_types = st.one_of(
    st.just(f"multipart/x-mixed-replace; boundary={TOKEN.decode()}"),
    st.sampled_from(
        [
            "multipart/x-mixed-replace",
            "multipart/x-mixed-replace; boundary=",
            "multipart/x-mixed-replace; boundary=--",
            'multipart/x-mixed-replace; boundary=""',
            "multipart/x-mixed-replace; boundary=" + "b" * 300,
            "multipart/x-mixed-replace; boundary=\xe9t\xe9",
            "text/html",
            "",
        ]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60),
)


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(parts(), max_size=5),
    status=statuses,
    content_type=content_types,
    transfer=st.sampled_from([None, "identity", "chunked", "gzip, chunked"]),
    edits=mutations,
    cuts=cut_lists,
)
def test_mjpeg_hostile_server_ends_in_sync_stream_error(
    parts: list[Part],
    status: str,
    content_type: str,
    transfer: str | None,
    edits: list[tuple[str, int, object]],
    cuts: list[int],
) -> None:
    """Any response (bad status, type, boundary; mutated parts) ends in a SyncStreamError."""
    head = f"HTTP/1.1 {status} Whatever\r\nContent-Type: {content_type}\r\n"
    if transfer is not None:
        head += f"Transfer-Encoding: {transfer}\r\n"
    body = b"".join(part.encode() for part in parts) + b"--" + TOKEN + b"--\r\n"
    data = mutate(head.encode("latin-1") + b"\r\n" + body, edits)
    source = MjpegHttpSource(source_config(MJPEG_URL))
    with peer_sending(split(data, cuts)), closing(source):
        frames, error = drain(source)
    assert error is not None  # the input is finite: it cannot end in a frame
    assert len(frames) <= len(parts) + len(edits)  # no pictures from nowhere
    assert source.buffer_high_water <= max(len(data), CAP + 2 * RECORD)


def test_mjpeg_refused_content_lengths_are_counted_not_raised() -> None:
    # Regression (found by the fuzzing above): str.isdigit() passes "²" and numbers of over
    # 4300 digits, which int() refuses with ValueError, raised out of read(). Minimal
    # examples: Content-Length "²" (b"\xb2" in latin-1) and "9" * 4301.
    stream = [Part(JPEGS[0], length, None, b"\r\n", b"") for length in ("\u00b2", "9" * 4301)]
    stream.append(Part(JPEGS[1], "padded", None, b"\r\n", b""))  # 5000 zeros, then a size
    source = MjpegHttpSource(source_config(MJPEG_URL))
    with peer_sending([mjpeg_stream(stream, TOKEN.decode(), b"")]), closing(source):
        frames, error = drain(source)
    assert [frame.width for frame in frames] == [WIDTHS[1]]  # leading zeros are fine
    assert source.counters.rejected == 2
    assert isinstance(error, SourceError)


def test_mjpeg_part_without_length_over_the_cap_is_refused_however_it_arrives() -> None:
    # Regression (found by the garbage flood below): a part without Content-Length over
    # max_frame_bytes was decoded when its boundary arrived in the same read as its end,
    # and refused otherwise. Minimal example: max_frame_bytes 1024, one part of 1025 bytes
    # (a JPEG padded with zeros) in one read; now refused and counted whatever the reads.
    body = JPEGS[0] + bytes(1025 - len(JPEGS[0]))
    data = mjpeg_stream(
        [Part(body, None, None, b"\r\n", b""), Part(JPEGS[1], None, None, b"\r\n", b"")],
        TOKEN.decode(),
        b"",
    )
    for chunks in ([data], split(data, range(0, len(data), 100))):
        config = StreamConfig(url=MJPEG_URL, max_frame_bytes=1024, stall_timeout=5.0)
        source = MjpegHttpSource(config)
        with peer_sending(chunks), closing(source):
            frames, error = drain(source)
        assert [frame.width for frame in frames] == [WIDTHS[1]]
        assert (source.counters.rejected, source.counters.decode_errors) == (1, 0)
        assert isinstance(error, SourceError)


@pytest.mark.parametrize("status", ["\u00b200", "2" * 4301], ids=["superscript", "4301-digits"])
def test_mjpeg_unparsable_status_code_is_a_source_error(status: str) -> None:
    # Regression (found by the fuzzing above): the status line had the same isdigit() hole.
    # httpx (h11) parses it now; its refusal must still arrive as a SourceError.
    source = MjpegHttpSource(source_config(MJPEG_URL))
    with peer_sending([mjpeg_head(status=status)]), closing(source):
        frames, error = drain(source)
    assert frames == []
    assert isinstance(error, SourceError) and "broken HTTP response" in str(error)


@pytest.mark.parametrize(
    "challenge",
    [
        "Digest",
        "Digest garbage",
        'Digest realm="camera"',  # no nonce
        'Digest realm="camera", nonce="n", algorithm=ROT13',
        'Digest realm="camera", nonce="n", qop="auth-int"',
        'Digest realm="camera", nonce="n", qop="weird"',
        'Digest realm="\u00e9", nonce="n", qop="auth", algorithm=MD5',
        "Negotiate abc",
    ],
)
def test_mjpeg_hostile_auth_challenge_is_a_source_error(challenge: str) -> None:
    """A challenge httpx cannot answer ends in a SourceError, never in KeyError & co."""
    head = f"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\n\r\n"
    source = MjpegHttpSource(source_config("http://viewer9:pw7x@camera.invalid/stream"))
    with peer_sending([head.encode("utf-8")]), closing(source):
        frames, error = drain(source)
    assert frames == []
    assert isinstance(error, SourceError)
    assert "viewer9" not in str(error) and "pw7x" not in str(error)


@pytest.mark.timeout(60)
def test_mjpeg_garbage_flood_is_counted_with_bounded_memory() -> None:
    """5 MiB of oversized and malformed parts: each refusal counted, memory a few caps."""
    rng = random.Random(7)

    def noise(size: int) -> bytes:  # no boundary token, no newline (nothing to resync on)
        return rng.randbytes(size).replace(b"\n", b"x").replace(TOKEN, b"x")

    blocks = []
    for _ in range(32):  # a part without Content-Length, longer than the cap
        blocks.append(b"--" + TOKEN + b"\r\nContent-Type: image/jpeg\r\n\r\n" + noise(CAP * 3 // 2))
    for _ in range(32):  # a Content-Length of 100 GB
        blocks.append(b"--" + TOKEN + b"\r\nContent-Length: 99999999999\r\n\r\n" + noise(CAP // 2))
    for _ in range(32):  # a header block over 16 KiB
        blocks.append(b"--" + TOKEN + b"\r\nX-Junk: " + noise(MAX_HEADER_BYTES * 2) + b"\r\n\r\n")
    good = Part(JPEGS[2], "exact", None, b"\r\n", b"").encode()
    data = mjpeg_head() + b"\r\n".join(blocks) + b"\r\n" + good + b"--" + TOKEN + b"--\r\n"
    assert len(data) > 64 * CAP  # 4 MiB
    chunks = split(data, range(0, len(data), RECORD))  # memoryviews would not be smaller
    source = MjpegHttpSource(source_config(MJPEG_URL))
    with peer_sending(chunks), closing(source):
        tracemalloc.start()
        try:
            frames, error = drain(source)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert [frame.width for frame in frames] == [WIDTHS[2]]  # resynchronised at the end
    assert source.counters.rejected == 3 * 32
    assert source.counters.decode_errors == 0
    assert isinstance(error, SourceError)
    assert source.buffer_high_water <= CAP + 2 * RECORD
    # httpcore and h11 hold up to four copies of the last record in flight: the received
    # bytes, h11's buffer, the event it extracts, and that event as bytes.
    assert peak < 8 * CAP + 4 * RECORD


# -- length-prefixed JPEG over TCP --------------------------------------------------------

TCP_URL = "tcp://camera.invalid:9000"


def expected_tcp(data: bytes) -> tuple[list[int], int, int, str]:
    """Oracle for the framing: widths of frames, decode errors, rejections, how it ends."""
    widths, decode_errors, pos = [], 0, 0
    while True:
        if len(data) - pos < 8:
            return widths, decode_errors, 0, "closed"
        length = int.from_bytes(data[pos : pos + 8], "big")
        pos += 8
        if not 0 < length <= CAP:
            return widths, decode_errors, 1, "refused"
        if len(data) - pos < length:
            return widths, decode_errors, 0, "closed"
        size = jpeg_size(data[pos : pos + length])
        if size is not None and size[0] * size[1] > MAX_PIXELS:
            return widths, decode_errors, 1, "too large"
        width = decoded_width(data[pos : pos + length])
        pos += length
        if width is None:
            decode_errors += 1
        else:
            widths.append(width)


@st.composite
def tcp_streams(draw: st.DrawFn) -> bytes:
    """Frames whose length field is right, zero, over the cap or anything; bodies good or not."""
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            body = JPEGS[draw(st.integers(0, len(JPEGS) - 1))]
        else:
            body = draw(st.binary(max_size=300))
        length = draw(
            st.one_of(
                st.just(len(body)),
                st.sampled_from([0, CAP, CAP + 1, 2**63, 2**64 - 1]),
                st.integers(0, len(body)),
                st.integers(0, 2**64 - 1),
            )
        )
        out += length.to_bytes(8, "big") + body
    return out


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(tcp_streams(), st.binary(max_size=600)),
    edits=mutations,
    cuts=cut_lists,
)
def test_tcp_framing_matches_the_oracle_for_any_bytes(
    data: bytes, edits: list[tuple[str, int, object]], cuts: list[int]
) -> None:
    """Frames, counts and the final error are exactly what the framing rules say."""
    data = mutate(data, edits)
    source = TcpFramedSource(source_config(TCP_URL))
    with peer_sending(split(data, cuts)), closing(source):
        frames, error = drain(source)
    widths, decode_errors, rejected, ending = expected_tcp(data)
    assert [frame.width for frame in frames] == widths
    assert source.counters.decode_errors == decode_errors
    assert source.counters.rejected == rejected
    if ending == "refused":
        assert isinstance(error, FrameDecodeError) and "cannot resynchronise" in str(error)
    elif ending == "too large":
        assert isinstance(error, PictureTooLarge) and "max_pixels" in str(error)
    else:
        assert isinstance(error, SourceError) and "closed by server" in str(error)
    assert source.buffer_high_water <= CAP + 8 + RECORD


@pytest.mark.timeout(60)
def test_tcp_garbage_frames_are_counted_with_bounded_memory() -> None:
    """Forty cap-sized undecodable frames: each counted, memory a few caps."""
    rng = random.Random(11)
    garbage = [CAP.to_bytes(8, "big") + rng.randbytes(CAP) for _ in range(40)]
    data = b"".join(garbage) + len(JPEGS[0]).to_bytes(8, "big") + JPEGS[0]
    source = TcpFramedSource(source_config(TCP_URL))
    with peer_sending(split(data, range(0, len(data), RECORD))), closing(source):
        tracemalloc.start()
        try:
            frames, error = drain(source)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert [frame.width for frame in frames] == [WIDTHS[0]]
    assert source.counters.decode_errors == 40
    assert isinstance(error, SourceError) and "closed by server" in str(error)
    assert source.buffer_high_water <= CAP + 8 + RECORD
    assert peak < 6 * CAP


# -- session files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("sessions")


def load(directory: pathlib.Path, content: bytes) -> SessionConfig | ConfigError:
    """Load ``content`` as a session file: a config, or a ConfigError with one line per problem."""
    path = directory / "session.toml"
    path.write_bytes(content)
    try:
        return load_session_config(path)
    except ConfigError as exc:
        message = str(exc)
        lines = message.split("\n")
        assert message.splitlines() == lines  # no \r, \x85, \u2028 ... inside a line
        cause = exc.__cause__ or exc.__context__  # pydantic's error: context, not cause
        if isinstance(cause, ValidationError):
            assert lines[0] == f"{path}: invalid session file"
            assert len(lines) == 1 + cause.error_count()
            assert all(line.startswith(f"  {path}") for line in lines[1:])
        else:
            assert len(lines) == 1 and lines[0].startswith(f"{path}: ")
        return exc


def toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string (\uXXXX escapes)


def toml_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


FIELD_NAMES = [
    "sync", "max_skew", "max_wait", "name", "port", "url", "sender", "input", "size", "fps",
    "host", "hostname", "username", "password", "tile_size", "columns", "gap", "snapshot",
    "seconds", "directory", "enabled", "clock_offset", "codec", "bogus",
]  # fmt: skip
toml_keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8).map(toml_string))
toml_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats().map(toml_float),
    st.text(max_size=20).map(toml_string),
    st.sampled_from(
        [
            "true", "false", "0x" + "f" * 4000, "1" * 4301, "1e400", "0b101", "0o17", "-0",
            "1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", '"udp://127.0.0.1:9"',
            '"testsrc"', "[640, 480]", "[]", "{}", '"a\\nb"', '"\\u2028"', "'''x\ny'''",
        ]
    ),
)  # fmt: skip
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(toml_keys, inner), max_size=3).map(
            lambda kvs: "{" + ", ".join(f"{k} = {v}" for k, v in kvs) + "}"
        ),
    ),
    max_leaves=6,
)
# What TOML allows in a comment: no control characters but tab. "\x85", "\u2028" and
# "\u2029" are allowed, and str.splitlines() breaks lines at them.
comment_text = st.text(
    st.one_of(
        st.sampled_from("\x85\u2028\u2029\t#=[]\"'"),
        st.characters(blacklist_categories=["Cs", "Cc"]),
    ),
    max_size=20,
)
toml_lines = st.one_of(
    st.tuples(toml_keys, toml_values).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.sampled_from(
        [
            "[[cameras]]", "[group]", "[wall]", "[web]", "[record]", "[speaker]", "[run]",
            "[hosts.cam1]", "[hosts]", "[cameras]", "[[group]]", "[[cameras.sender]]", "",
        ]
    ),
    comment_text.map(lambda text: "# " + text),
    st.text(max_size=30),
)  # fmt: skip


def key_lines(text: str) -> list[int]:
    """Indexes of the ``key = value`` lines of a TOML text (no comments, no tables)."""
    return [
        i
        for i, line in enumerate(text.split("\n"))
        if "=" in line and not line.lstrip().startswith(("#", "["))
    ]


SEED_LINES = SEED_SESSION.split("\n")
SEED_KEYS = key_lines(SEED_SESSION)


@pytest.mark.timeout(60)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode)))
def test_session_file_of_arbitrary_bytes_is_a_config_or_config_error(
    session_dir: pathlib.Path, content: bytes
) -> None:
    assert isinstance(load(session_dir, content), SessionConfig | ConfigError)


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.one_of(
            st.tuples(st.just("value"), st.sampled_from(SEED_KEYS), toml_values),
            st.tuples(st.just("line"), st.integers(0, len(SEED_LINES)), toml_lines),
            st.tuples(st.just("delete"), st.integers(0, len(SEED_LINES) - 1), st.just("")),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_mutated_example_session_is_a_config_or_config_error(
    session_dir: pathlib.Path, edits: list[tuple[str, int, str]]
) -> None:
    """Values replaced by any TOML value, lines inserted or deleted: no other exception."""
    lines = list(SEED_LINES)
    for kind, index, text in edits:
        index = min(index, len(lines) - 1)
        if kind == "value":
            key = lines[index].split("=", 1)[0] if "=" in lines[index] else "port "
            lines[index] = f"{key}= {text}"
        elif kind == "line":
            lines.insert(index, text)
        elif len(lines) > 1:
            del lines[index]
    load(session_dir, "\n".join(lines).encode("utf-8", "surrogatepass"))


@pytest.mark.timeout(60)
@settings(max_examples=100, deadline=None)
# Regression (found by this test): lines were counted with str.splitlines(), which also
# breaks at "\x85" and "\u2028"; every line after such a comment was reported too late.
@example(target=SEED_KEYS[0], noise=[(0, "#\x85")])
@given(
    target=st.sampled_from(SEED_KEYS),
    noise=st.lists(
        st.tuples(
            st.integers(0, len(SEED_LINES)), st.one_of(st.just(""), comment_text.map("#".__add__))
        ),
        max_size=6,
    ),
)
def test_each_problem_names_the_line_of_its_key(
    session_dir: pathlib.Path, target: int, noise: list[tuple[int, str]]
) -> None:
    """A bad value is reported at its own line, whatever comments come before it."""
    lines = list(SEED_LINES)
    key = lines[target].split("=", 1)[0]
    lines[target] = f"{key}= {{ bogus = 1 }}"  # invalid for every field of the seed
    marked = [(line, i == target) for i, line in enumerate(lines)]
    for index, text in sorted(noise, reverse=True):
        marked.insert(index, (text, False))
    line_number = 1 + [is_target for _, is_target in marked].index(True)
    result = load(session_dir, "\n".join(line for line, _ in marked).encode())
    assert isinstance(result, ConfigError)
    problems = str(result).split("\n")[1:]
    assert problems and all(f"session.toml:{line_number}: " in p for p in problems), problems


@pytest.mark.timeout(60)
@settings(max_examples=60, deadline=None)
@example(depth=497, kind="array")  # minimal in a bare interpreter: 497 arrays, 332 tables
@example(depth=332, kind="table")
@given(depth=st.integers(1, 3000), kind=st.sampled_from(["array", "table"]))
def test_deeply_nested_values_are_a_config_error(
    session_dir: pathlib.Path, depth: int, kind: str
) -> None:
    # Regression (found by this test): tomllib recurses once per level of nesting; its
    # RecursionError escaped. Minimal example: "x = " + "[" * 497 + "1" + "]" * 497 (fewer
    # levels under pytest, whose stack is deeper).
    opening, closing_ = ("[", "]") if kind == "array" else ("{a = ", "}")
    text = f"x = {opening * depth}1{closing_ * depth}\n"
    assert isinstance(load(session_dir, text.encode()), ConfigError)


@pytest.mark.parametrize(
    "value",
    ["1" * 4301, "0x" + "f" * 4000],
    ids=["4301-decimal-digits", "4000-hex-digits"],
)
@pytest.mark.parametrize("line", ['name = "door"', "port = 9101", 'sync = "nearest"'])
def test_huge_integers_are_a_config_error(session_dir: pathlib.Path, value: str, line: str) -> None:
    # Regression (found by the mutation test above): over 4300 decimal digits, tomllib's
    # int() raises ValueError; a hex integer parses, but repr() of it for "(got ...)"
    # raised the same ValueError. Minimal examples: `port = 1111...` (4301 ones) and
    # `port = 0xfff...` (3572 hex digits: 4302 decimal ones).
    text = SEED_SESSION.replace(line, line.split(" = ")[0] + " = " + value, 1)
    result = load(session_dir, text.encode())
    assert isinstance(result, ConfigError)
    assert len(str(result)) < 1000


HOST_SESSION = """
[hosts.cam1]
hostname = "cam1.local"
{key} = {value}

[[cameras]]
name = "yard"
host = {host}
port = 9103
sender = {{ input = "/dev/video0" }}
"""


@pytest.mark.timeout(60)
@settings(max_examples=100, deadline=None)
@example(key="password", value="123456", host='"cam1"')  # minimal examples of the two bugs
@example(key="password", value='"s3cret"', host='"a\\nb"')
@given(
    key=st.sampled_from(["password", "passphrase"]),
    value=toml_values,
    host=st.one_of(st.just('"cam1"'), st.text(max_size=10).map(toml_string)),
)
def test_errors_never_show_secrets_and_keep_one_line_per_problem(
    session_dir: pathlib.Path, key: str, value: str, host: str
) -> None:
    # Regressions: `password = 123456` was echoed as "(got 123456)"; `host = "a\nb"` (a
    # [hosts] table that does not exist) put a raw newline into its problem line.
    result = load(session_dir, HOST_SESSION.format(key=key, value=value, host=host).encode())
    if isinstance(result, ConfigError):
        for line in str(result).split("\n"):
            assert not (f"hosts.cam1.{key}:" in line and "(got" in line), line


def test_a_refused_session_file_keeps_its_secrets_out_of_the_traceback(
    session_dir: pathlib.Path,
) -> None:
    # pydantic's error repeats the tables as given: chained, a traceback printed them
    text = HOST_SESSION.format(key="password", value='"s3cret-9"', host='"a\\nb"')
    result = load(session_dir, text.encode())
    assert isinstance(result, ConfigError)
    assert "s3cret-9" not in "".join(traceback.format_exception(result))


# -- PTS unwrap and the capture-time check ------------------------------------------------

TICK = 1 / 90_000
HALF = MPEGTS_PTS_PERIOD / 2
# The first PTS wraps after 2023-11-14 (epoch 1.7e9): about every 26.5 hours.
WRAPS = [MPEGTS_PTS_PERIOD * (math.ceil(1.7e9 / MPEGTS_PTS_PERIOD) + k) for k in range(8)]


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None)
@given(
    start=st.one_of(
        st.floats(min_value=0.0, max_value=4e9),
        st.sampled_from(WRAPS).flatmap(lambda w: st.floats(w - 5.0, w + 5.0)),
    ),
    steps=st.lists(st.floats(min_value=-3.0, max_value=3.0), min_size=1, max_size=40),
    delays=st.lists(st.floats(min_value=-HALF + 60.0, max_value=HALF - 60.0), min_size=1),
    ffmpeg_turns=st.lists(st.integers(0, 1), min_size=1),
)
def test_unwrapped_33_bit_pts_is_the_capture_time(
    start: float, steps: list[float], delays: list[float], ffmpeg_turns: list[int]
) -> None:
    """Capture times that wrap, jitter or jump back are recovered from their 33-bit PTS.

    The contract of unwrap_pts_time: correct while |arrival - capture| (latency plus clock
    offset) is under half a period; the PTS may come partly unwrapped (FFmpeg adds a turn).
    """
    captures = list(itertools.accumulate(steps, initial=start))
    unwrapped = []
    for i, capture in enumerate(captures):
        ticks = round(capture * 90_000)
        pts_time = (ticks % 2**33) * TICK + ffmpeg_turns[i % len(ffmpeg_turns)] * 2**33 * TICK
        arrival = capture + delays[i % len(delays)]
        result = unwrap_pts_time(pts_time, arrival, MPEGTS_PTS_PERIOD)
        assert math.isfinite(result)
        assert result == pytest.approx(ticks * TICK, abs=1e-5)
        unwrapped.append(result)
    for (a, b), (ua, ub) in zip(
        itertools.pairwise(captures), itertools.pairwise(unwrapped), strict=True
    ):
        if b >= a:  # monotonic where the capture times are (up to rounding to ticks)
            assert ub >= ua - 1e-6
        if b - a >= 2 * TICK:
            assert ub > ua


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None)
@given(
    pts_time=st.floats(min_value=-1e12, max_value=1e12),
    reference=st.floats(min_value=-1e12, max_value=1e12),
)
def test_unwrap_lands_within_half_a_period_of_the_reference(
    pts_time: float, reference: float
) -> None:
    result = unwrap_pts_time(pts_time, reference, MPEGTS_PTS_PERIOD)
    slack = 1e-14 * (abs(pts_time) + abs(reference)) + 1e-6
    assert math.isfinite(result)
    assert abs(result - reference) <= HALF + slack
    assert abs(math.remainder(result - pts_time, MPEGTS_PTS_PERIOD)) <= slack


@pytest.mark.parametrize("period", [0.0, -1.0, math.inf, math.nan])
def test_unwrap_refuses_a_period_that_is_not_positive_and_finite(period: float) -> None:
    with pytest.raises(ValueError, match="period"):
        unwrap_pts_time(1.0, 2.0, period)


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None)
@given(
    sender_time=st.floats(),
    arrival_time=st.floats(),
    clock_offset=st.floats(),
    tolerance=st.floats(min_value=1e-6, max_value=1e6),
)
def test_plausible_capture_time_is_none_or_within_tolerance(
    sender_time: float, arrival_time: float, clock_offset: float, tolerance: float
) -> None:
    """Whatever the stamp (NaN, inf, absurd), the answer is None or a time near arrival."""
    result = plausible_capture_time(sender_time, arrival_time, clock_offset, tolerance)
    if result is not None:
        assert math.isfinite(result)
        assert abs(arrival_time - result) <= tolerance
        assert result == sender_time + clock_offset


# -- garbage datagrams into a UDP port ----------------------------------------------------


def garbage_datagrams(rng: random.Random) -> list[bytes]:
    """Datagrams that are not whole MPEG-TS packets: each must be refused and counted."""
    packet = b"G" + bytes(187)
    fixed = [
        b"", rng.randbytes(65507), b"G" * 65507, rng.randbytes(1), b"G", packet[:-1],
        packet + b"G", packet * 6 + b"\x00" + packet[1:], b"\x47" + rng.randbytes(186),
        (packet * 7)[:-1], b"\x00" * 1316,
    ]  # fmt: skip
    sizes = [rng.choice([rng.randrange(1, 2000), rng.randrange(1, 65508)]) for _ in range(300)]
    sized = [rng.randbytes(n) for n in sizes]
    # whole-sized datagrams with one packet not starting with 0x47
    for _ in range(100):
        packets = [b"G" + rng.randbytes(187) for _ in range(rng.randrange(1, 8))]
        bad = rng.randrange(len(packets))
        packets[bad] = bytes([rng.choice([0x00, 0x46, 0x48, 0xFF])]) + packets[bad][1:]
        sized.append(b"".join(packets))
    return fixed + [d for d in sized if len(d) % 188 or d[::188].count(0x47) != len(d) // 188]


@pytest.mark.timeout(90)
def test_udp_garbage_is_refused_and_counted_then_a_real_sender_gets_through(
    udp_sender: SenderFactory,
) -> None:
    rng = random.Random(2024)
    datagrams = garbage_datagrams(rng)
    # whole TS packets with random payloads pass the filter and reach the demuxer: survived
    lookalikes = [
        b"".join(b"G" + rng.randbytes(187) for _ in range(7)) for _ in range(200)
    ]  # PIDs, PAT and PMT included by chance
    port = free_udp_port()
    address = ("127.0.0.1", port)
    with (
        VideoStream(f"udp://127.0.0.1:{port}", stall_timeout=2.0, open_timeout=30.0) as stream,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        # the reader binds in its thread: probe with empty datagrams until one is counted
        wait_until(
            lambda: sock.sendto(b"", address) == 0 and stream.stats.rejected > 0, 10, "a rejection"
        )
        time.sleep(0.05)
        base = stream.stats.rejected
        sent = 0
        tracemalloc.start()
        try:
            for _round in range(3):  # about 20 MB of garbage
                batch = 0
                for datagram in datagrams:
                    sock.sendto(datagram, address)
                    sent += 1
                    batch += len(datagram) + 1024
                    if batch > 256 * 1024:  # stay under the receive buffer: nothing lost
                        count = base + sent
                        wait_until(lambda c=count: stream.stats.rejected >= c, 10, "rejections")
                        batch = 0
            wait_until(lambda: stream.stats.rejected >= base + sent, 10, "every datagram rejected")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert stream.stats.rejected == base + sent  # every one refused and counted, once
        assert peak < 4 * 1024 * 1024
        for datagram in lookalikes:
            sock.sendto(datagram, address)
            time.sleep(0.0005)
        udp_sender(port)
        frames = [stream.read(timeout=20) for _ in range(10)]
        for datagram in datagrams[:50]:  # and while the camera streams
            sock.sendto(datagram, address)
        frames += [stream.read(timeout=10) for _ in range(10)]
        stats = stream.stats
    assert all(frame.image.shape == (240, 320, 3) for frame in frames)
    assert all(frame.capture_time is not None for frame in frames)
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    assert stats.rejected >= base + sent
    assert stats.state is not StreamState.FAILED


# -- truncated and corrupted .ts files ----------------------------------------------------


def read_ts(path: pathlib.Path) -> tuple[list[Frame], SyncStreamError, StreamStats]:
    """Every frame of a file (converted to BGR), how it ended, the stats.

    ``max_reconnects=0``: a file that cannot be read fails at once instead of reopening.
    A ReadTimeout (the reader neither ends nor fails nor delivers) escapes: a hang.
    """
    frames = []
    with VideoStream(str(path), realtime=False, max_reconnects=0, open_timeout=5.0) as stream:
        while True:
            try:
                frame = stream.read(timeout=10)
            except (StreamEnded, StreamFailed) as exc:
                ending: SyncStreamError = exc
                break
            assert frame.image.ndim == 3  # converted without raising
            frames.append(frame)
            assert len(frames) <= 4 * 30  # duplicated packets give 67 of the 30 pictures
        stats = stream.stats
    if isinstance(ending, StreamFailed):  # a reader thread that crashed has a foreign cause
        assert isinstance(ending.__cause__, SyncStreamError), repr(ending.__cause__)
    assert [f.seq for f in frames] == list(range(len(frames)))  # lossless: nothing skipped
    return frames, ending, stats


@pytest.mark.timeout(60)
def test_truncated_ts_file_delivers_the_pictures_before_the_cut(tmp_path: pathlib.Path) -> None:
    size = len(TS_FILE)
    cuts = [0, 1, 187, 188, 189, 1000, 4096, size // 4, size // 2, 3 * size // 4, size - 1, size]
    counts = []
    for cut in cuts:
        path = tmp_path / f"cut-{cut}.ts"
        path.write_bytes(TS_FILE[:cut])
        frames, ending, _ = read_ts(path)
        if cut <= 189:  # not even two packets: nothing to open
            assert isinstance(ending, StreamFailed) and frames == []
        else:
            assert isinstance(ending, StreamEnded)
        counts.append(len(frames))
    assert counts == sorted(counts)  # a later cut never gives fewer pictures
    assert counts[-2:] == [30, 30]  # a cut inside the last packet loses no picture


def _flip(rate: float, seed: int) -> Callable[[bytes], bytes]:
    def corrupt(data: bytes) -> bytes:
        rng = random.Random(seed)
        buf = bytearray(data)
        for _ in range(max(1, int(len(buf) * rate))):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)

    return corrupt


def _packets(data: bytes) -> list[bytes]:
    return [data[i : i + 188] for i in range(0, len(data), 188)]


def _shuffle_middle(data: bytes) -> bytes:
    packets = _packets(data)
    third = len(packets) // 3
    middle = packets[third : 2 * third]
    random.Random(3).shuffle(middle)
    return b"".join(packets[:third] + middle + packets[2 * third :])


# Seeded damage. "noticed": the damage must show as counted decode errors or lost pictures
# (clearing sync bytes and a garbage head are absorbed silently by FFmpeg's demuxer).
TS_DAMAGE: dict[str, tuple[Callable[[bytes], bytes], bool]] = {
    "flipped-0.1%": (_flip(0.001, 1), False),
    "flipped-1%": (_flip(0.01, 2), True),
    "flipped-5%": (_flip(0.05, 3), True),
    "zeroed-middle-8KiB": (lambda d: d[:20000] + bytes(8192) + d[28192:], True),
    "sync-bytes-cleared": (lambda d: bytes(b if i % 188 else 0 for i, b in enumerate(d)), False),
    "packets-shuffled": (_shuffle_middle, True),
    "every-10th-packet-dropped": (
        lambda d: b"".join(p for i, p in enumerate(_packets(d)) if i % 10 != 9),
        True,
    ),
    "packets-duplicated": (lambda d: b"".join(p * 2 for p in _packets(d)), True),
    "random-bytes": (lambda d: random.Random(4).randbytes(len(d)), True),
    "head-is-garbage": (lambda d: random.Random(5).randbytes(4096) + d[4096:], True),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(TS_DAMAGE))
def test_corrupted_ts_file_ends_in_frames_and_counted_errors_or_a_sync_stream_error(
    tmp_path: pathlib.Path, case: str
) -> None:
    damage, noticed = TS_DAMAGE[case]
    path = tmp_path / f"{case}.ts"
    path.write_bytes(damage(TS_FILE))
    frames, ending, stats = read_ts(path)
    assert isinstance(ending, StreamEnded | StreamFailed)
    if noticed:
        assert stats.decode_errors > 0 or len(frames) < 30


def test_hostile_input_helpers_sanity() -> None:
    # The oracle and the feeder: a split covers the data exactly, records stay small.
    data = os.urandom(3 * RECORD + 5)
    pieces = split(data, [1, 1, 70000, 10**9])
    assert b"".join(pieces) == data and all(0 < len(p) <= RECORD for p in pieces)
    assert [decoded_width(j) for j in JPEGS] == WIDTHS
    assert expected_tcp(b"\x00" * 8) == ([], 0, 1, "refused")


def test_a_jpeg_that_claims_a_huge_picture_is_refused_without_decoding() -> None:
    """A decompression bomb: 900 bytes declaring 16000x16000 (768 MB once decoded)."""
    data = encode_jpeg(synthetic_image(0, 64, 48))
    assert jpeg_size(data) == (64, 48)
    assert decode_jpeg_frame(data, max_pixels=MAX_PIXELS) is not None
    sof = data.index(b"\xff\xc0")
    bomb = bytes(data[: sof + 5]) + (16000).to_bytes(2, "big") * 2 + data[sof + 9 :]
    assert jpeg_size(bomb) == (16000, 16000) and MAX_PIXELS < 16000 * 16000
    assert decode_jpeg_frame(bomb, max_pixels=MAX_PIXELS) is None
    assert decode_jpeg_frame(data, max_pixels=64 * 47) is None  # the cap is the setting's
    # a source refuses it, counted, with an error naming the size and the cap
    stream = len(data).to_bytes(8, "big") + data + len(bomb).to_bytes(8, "big") + bomb
    source = TcpFramedSource(source_config(TCP_URL))
    with peer_sending(split(stream, [])), closing(source):
        frames, error = drain(source)
    assert [frame.width for frame in frames] == [64]
    assert isinstance(error, PictureTooLarge)
    assert "16000x16000" in str(error) and str(MAX_PIXELS) in str(error)
    assert source.counters.rejected == 1 and source.counters.decode_errors == 0


@given(st.binary(max_size=512))
@settings(max_examples=300, deadline=None)
def test_jpeg_size_never_fails_on_any_bytes(data: bytes) -> None:
    size = jpeg_size(b"\xff\xd8" + data)
    assert size is None or (0 <= size[0] < 65536 and 0 <= size[1] < 65536)


@pytest.mark.parametrize("offset", [math.inf, -math.inf, math.nan])
def test_a_clock_offset_must_be_finite(offset: float) -> None:
    with pytest.raises(ConfigError, match="clock_offset"):
        StreamConfig(url="udp://127.0.0.1:9", clock_offset=offset)
    with pytest.raises(ConfigError, match="clock_offset"):
        Camera(name="a", url="udp://127.0.0.1:9", clock_offset=offset)


@given(position=st.integers(min_value=2, max_value=400), extra=st.binary(min_size=1, max_size=3))
@example(position=4, extra=b"\x00")  # APP0's length becomes 0: libjpeg reads on
@settings(max_examples=200, deadline=None)
def test_the_size_check_refuses_no_jpeg_the_decoder_takes(position: int, extra: bytes) -> None:
    """Bytes inserted in a JPEG's headers: libjpeg skips them to the next marker, and so
    does the size check, so a picture OpenCV decodes is never refused for its size."""
    data = encode_jpeg(synthetic_image(0, 64, 48))
    damaged = data[:position] + extra + data[position:]
    decoded = cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR)
    if decoded is not None:
        assert decode_jpeg_frame(damaged, max_pixels=MAX_PIXELS) is not None
