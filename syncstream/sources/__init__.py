"""Source backends behind one Protocol, and the choice of backend from a URL."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..config import StreamConfig, redact_url
from ..errors import UnsupportedSource
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
    if backend == "opencv":
        from .opencv import OpenCVSource

        return OpenCVSource(config, location)

    from .pyav import PyAVSource

    if isinstance(location, int):
        location = f"/dev/video{location}"
    if not scheme and not location.startswith("/dev/") and not os.path.exists(location):
        raise UnsupportedSource(
            f"{redact_url(url)!r} is neither an existing file nor a URL; supported sources: "
            + "; ".join(SUPPORTED_SOURCES)
        )
    return PyAVSource(config, location)


def _unsupported(url: str) -> UnsupportedSource:
    return UnsupportedSource(
        f"unsupported source {redact_url(url)!r}; supported: " + "; ".join(SUPPORTED_SOURCES)
    )
