"""Source backends behind one Protocol, and the choice of backend from a URL."""

from __future__ import annotations

import os
import stat
from urllib.parse import urlsplit

from ..config import StreamConfig
from ..errors import UnsupportedSource
from ..urls import redact_url
from .base import Source, SourceCounters, SourceFrame

__all__ = ["SUPPORTED_SOURCES", "Source", "SourceCounters", "SourceFrame", "create_source"]

#: What :func:`create_source` accepts, for error messages and docs.
SUPPORTED_SOURCES = (
    "udp://host:port (MPEG-TS)",
    "rtsp://... (and rtsps://)",
    "http(s)://... (MJPEG multipart)",
    "tcp://host:port (8-byte length-prefixed JPEG)",
    "a file path (.ts, .mp4, .mkv, ...)",
    "/dev/videoN or a webcam index",
)
_PYAV_SCHEMES = {"udp", "rtsp", "rtsps", "rtmp", "srt", "file"}
_V4L2_MAJOR = 81  # Linux's device number of video4linux devices (/dev/videoN)


def create_source(config: StreamConfig) -> Source:
    """Build the backend that reads ``config.url``; no I/O happens until ``open()``."""
    url = config.url.strip()
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    backend = config.backend
    location: str | int = url
    if url.isdigit():
        location = int(url)
    elif scheme == "file":
        location = urlsplit(url).path
    elif scheme and scheme not in _PYAV_SCHEMES | {"http", "https", "tcp"}:
        raise _unsupported(url)
    if backend == "auto":
        if scheme in ("http", "https"):
            backend = "mjpeg_http"
        elif scheme == "tcp":
            backend = "tcp_framed"
        else:
            backend = "pyav"

    if backend == "mjpeg_http":
        if scheme not in ("http", "https"):
            raise UnsupportedSource(
                f"backend 'mjpeg_http' reads http(s):// URLs, not {redact_url(url)!r}"
            )
        from .mjpeg_http import MjpegHttpSource

        mjpeg: Source = MjpegHttpSource(config)
        return mjpeg
    if backend == "tcp_framed":
        if scheme != "tcp":
            raise UnsupportedSource(
                f"backend 'tcp_framed' reads tcp:// URLs, not {redact_url(url)!r}"
            )
        from .tcp_framed import TcpFramedSource

        framed: Source = TcpFramedSource(config)
        return framed
    kind = _path_kind(location) if isinstance(location, str) and not scheme else "file"
    if backend == "opencv":
        from .opencv import OpenCVSource

        if kind == "fifo":  # OpenCV's open would block until a writer comes
            raise UnsupportedSource(
                f"{location!r} is a FIFO, which the 'opencv' backend cannot read; "
                "use backend 'pyav'"
            )
        return OpenCVSource(config, location)

    from .pyav import PyAVSource

    if isinstance(location, int):
        location = f"/dev/video{location}"
    if not scheme and not location.startswith("/dev/") and not os.path.exists(location):
        raise UnsupportedSource(
            f"{redact_url(url)!r} is neither an existing file nor a URL; supported sources: "
            + "; ".join(SUPPORTED_SOURCES)
        )
    return PyAVSource(config, location, fifo=kind == "fifo")


def _path_kind(path: str) -> str:
    """``"fifo"``, or ``"file"`` for anything else a source may read (a missing path is
    left to the backend to report). Raises :class:`UnsupportedSource` for a device
    other than a V4L2 camera and for a socket: reading one could block or never end."""
    try:
        info = os.stat(path)
    except OSError:
        return "file"
    mode = info.st_mode
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode):
        if os.major(info.st_rdev) == _V4L2_MAJOR:
            return "file"
        what = "a character device"
    elif stat.S_ISBLK(mode):
        what = "a block device"
    elif stat.S_ISSOCK(mode):
        what = "a socket"
    else:
        return "file"
    raise UnsupportedSource(
        f"{path!r} is {what}: only V4L2 cameras (/dev/videoN), files and FIFOs are read"
    )


def _unsupported(url: str) -> UnsupportedSource:
    return UnsupportedSource(
        f"unsupported source {redact_url(url)!r}; supported: " + "; ".join(SUPPORTED_SOURCES)
    )
