"""JpegFeed and stream_mjpeg: one processor's pictures as MJPEG, encoded once for all clients.

The encoder thread waits for the output's next picture only while somebody watches, encodes
it once and keeps the newest JPEG; each client takes the newest JPEG when it is ready for
one. A client that is still sending an earlier picture misses the ones in between (its
gaps in :attr:`Jpeg.number`), so no client waits for another and none holds up the encoder
or the processor that publishes.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2

from ...errors import ReadTimeout, StreamClosed
from ...frames import BGRImage
from ...slot import LatestSlot
from ..output import ImageOutput
from .http import peer_closed, response_head, send_all

__all__ = [
    "MJPEG_CONTENT_TYPE",
    "PART_START",
    "Jpeg",
    "JpegFeed",
    "StreamCounters",
    "WebOutputStats",
    "stream_mjpeg",
]

logger = logging.getLogger(__name__)

# ImageOutput wakes its readers only when it publishes or closes, and the output is its
# processor's to close: the encoder waits in steps of this long to notice close().
_ENCODER_STEP = 0.2
_BOUNDARY = "syncstream-picture"
# Chromium shows a part only once the next part's headers have arrived, so they are sent
# right after each picture. That is also why parts carry no Content-Length: it is not
# known before the next picture; clients find the end of a part by its boundary.
PART_START = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\n".encode()
#: The content type of a stream: JPEG parts, each followed by the next part's headers.
MJPEG_CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={_BOUNDARY}"
# While no new picture comes, a stream looks this often whether its client hung up.
_HANGUP_CHECK = 1.0


@dataclass(frozen=True)
class WebOutputStats:
    """One output: what its encoder did. Times in seconds."""

    name: str
    #: Pictures the output has published.
    published: int
    #: Pictures encoded to JPEG, each once however many clients watch.
    encoded: int
    #: Pictures that could not be made or encoded (logged).
    encode_errors: int
    encode_time_mean: float | None
    #: The newest JPEG's size in bytes, and its picture's size; None before the first.
    jpeg_bytes: int | None
    width: int | None
    height: int | None
    #: Clients watching its stream now.
    viewers: int
    #: The bug that stopped its encoder (logged with a traceback), else None.
    failure: str | None


@dataclass(slots=True)
class StreamCounters:
    """One client's stream: pictures sent, and missed while it was busy with an earlier one."""

    sent: int = 0
    #: Pictures skipped when the client took a newer one (see :meth:`dropped_by`).
    dropped: int = 0
    #: The number of the JPEG it took last (-1: none yet).
    number: int = -1

    def dropped_by(self, newest: int) -> int:
        """Pictures missed by now, when ``newest`` is the feed's newest JPEG: also those
        encoded after the one it is still sending, except the newest (it may get that)."""
        return self.dropped + (max(0, newest - self.number - 1) if self.number >= 0 else 0)


@dataclass(frozen=True, slots=True)
class Jpeg:
    """One encoded picture of a feed."""

    #: Its number in the feed, from 0: a client's gaps are the pictures it dropped.
    number: int
    #: The picture's ``seq`` in its output.
    picture_seq: int
    data: bytes


class JpegFeed:
    """Encodes one output's new pictures to JPEG, once each, and keeps the newest.

    The encoder thread runs while somebody watches (:meth:`watch`); :meth:`snapshot`
    serves one picture without it. When the output is closed, its last picture is still
    delivered, then :meth:`next_jpeg` raises ``StreamClosed``.
    """

    def __init__(self, name: str, output: ImageOutput, quality: int) -> None:
        self.name = name
        self.output = output
        self._params = [cv2.IMWRITE_JPEG_QUALITY, quality]
        self._cond = threading.Condition()
        # the newest JPEG; after close() the last one is still delivered
        self._jpegs: LatestSlot[Jpeg] = LatestSlot(
            f"output {name}", noun="picture", cond=self._cond
        )
        self._viewers = 0
        self._encoded = 0
        self._errors = 0
        self._encode_time = 0.0
        self._shape: tuple[int, int] | None = None
        self._failure: str | None = None
        self._thread: threading.Thread | None = None
        # called (on the encoder's thread, or close()'s) after each new JPEG and at the end
        self._wakers: list[Callable[[], None]] = []

    def start(self) -> None:
        """Start the encoder thread (once)."""
        with self._cond:
            if self._thread is None and not self._jpegs.closed:
                self._thread = threading.Thread(
                    target=self._run, name=f"syncstream-web-encoder:{self.name}", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """End the encoder and every stream of this output; idempotent."""
        self._jpegs.close()
        self._wake()

    def add_waker(self, waker: Callable[[], None]) -> None:
        """Call ``waker()`` after each new JPEG and when the feed ends, from the thread
        that made the change: for a reader that cannot block on :meth:`next_jpeg` (an
        asyncio task). It must return at once and not raise."""
        with self._cond:
            self._wakers.append(waker)

    def remove_waker(self, waker: Callable[[], None]) -> None:
        """Stop calling ``waker``."""
        with self._cond:
            self._wakers.remove(waker)

    def _wake(self) -> None:
        with self._cond:
            wakers = list(self._wakers)
        for waker in wakers:
            waker()

    def count_error(self) -> None:
        """Count a picture that could not be made for this feed (logged by the caller)."""
        with self._cond:
            self._errors += 1

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the encoder thread after :meth:`close`."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("web view: output %s: encoder still running", self.name)

    def encode(self, image: BGRImage) -> bytes:
        """``image`` as JPEG bytes."""
        ok, buffer = cv2.imencode(".jpg", image, self._params)
        if not ok:
            raise ValueError(f"output {self.name}: OpenCV could not encode the picture")
        return bytes(buffer.tobytes())

    def _run(self) -> None:
        try:
            self._encode_loop()
        except BaseException as exc:  # a bug: end this output's streams and say why
            logger.exception("web view: output %s: encoder crashed", self.name)
            with self._cond:
                self._failure = repr(exc)
            self.close()

    def _encode_loop(self) -> None:
        last = -1
        while True:
            with self._cond:
                while self._viewers == 0 and not self._jpegs.closed:
                    self._cond.wait()
                if self._jpegs.closed:
                    return
            try:
                picture = self.output.wait_newer(last, timeout=_ENCODER_STEP)
            except ReadTimeout:
                continue
            except StreamClosed:  # its processor is done: deliver its last picture, then end
                final = self.output.latest()
                if final is None or final.seq <= last:
                    self.close()
                    return
                picture = final
            last = picture.seq
            started = time.monotonic()
            try:
                data = self.encode(picture.image)
            except Exception:  # a bad picture (not HxWx3 uint8?) is skipped, not fatal
                logger.exception("web view: output %s: picture %d not encoded", self.name, last)
                with self._cond:
                    self._errors += 1
                continue
            with self._cond:
                self._jpegs.put(Jpeg(self._jpegs.next_seq, picture.seq, data))
                self._encoded += 1
                self._encode_time += time.monotonic() - started
                self._shape = (picture.image.shape[1], picture.image.shape[0])
            self._wake()

    def watch(self, change: int) -> None:
        """Count a viewer in (+1) or out (-1); the encoder works while there are any."""
        with self._cond:
            self._viewers += change
            self._cond.notify_all()

    @property
    def watched(self) -> bool:
        """Whether somebody watches the stream now."""
        return self._viewers > 0

    def newest_number(self) -> int:
        """The newest JPEG's number, -1 before the first."""
        return self._jpegs.seq

    def next_jpeg(self, number: int, timeout: float | None = None) -> Jpeg:
        """The newest JPEG numbered above ``number`` (-1: any). Raises ``ReadTimeout``
        when none comes within ``timeout`` seconds, ``StreamClosed`` at the end."""
        return self._jpegs.get(number, timeout)

    def snapshot(self) -> bytes | None:
        """The newest picture as JPEG (encoded here unless the encoder has it); None if none."""
        picture = self.output.latest()
        if picture is None:
            return None
        jpeg = self._jpegs.latest()
        if jpeg is not None and jpeg.picture_seq == picture.seq:
            return jpeg.data
        return self.encode(picture.image)

    def stats(self) -> WebOutputStats:
        """A snapshot of the counters."""
        latest = self.output.latest()
        with self._cond:
            jpeg, shape, count = self._jpegs.latest(), self._shape, self._encoded
            return WebOutputStats(
                name=self.name,
                published=0 if latest is None else latest.seq + 1,
                encoded=count,
                encode_errors=self._errors,
                encode_time_mean=self._encode_time / count if count else None,
                jpeg_bytes=None if jpeg is None else len(jpeg.data),
                width=None if shape is None else shape[0],
                height=None if shape is None else shape[1],
                viewers=self._viewers,
                failure=self._failure,
            )

    def __repr__(self) -> str:
        return f"JpegFeed({self.name!r}, encoded={self._encoded})"


def stream_mjpeg(sock: socket.socket, feed: JpegFeed, counters: StreamCounters) -> None:
    """Send ``feed``'s pictures to ``sock`` as ``multipart/x-mixed-replace`` until it ends.

    Each part is the newest JPEG when the client is ready for one. Returns when the feed
    ends or the client hangs up; raises ``OSError`` when sending fails, ``TimeoutError``
    when the client accepts nothing for the socket's timeout.
    """
    send_all(sock, response_head(200, MJPEG_CONTENT_TYPE, None) + PART_START)
    feed.watch(+1)
    try:
        while True:
            try:
                jpeg = feed.next_jpeg(counters.number, timeout=_HANGUP_CHECK)
            except ReadTimeout:
                if peer_closed(sock):
                    return
                continue
            except StreamClosed:
                return
            if counters.number >= 0:
                counters.dropped += jpeg.number - counters.number - 1
            counters.number = jpeg.number
            send_all(sock, jpeg.data + b"\r\n" + PART_START)
            counters.sent += 1
    finally:
        feed.watch(-1)
        counters.dropped = counters.dropped_by(feed.newest_number())
