"""Typed configuration: frozen pydantic models that fail on a bad value, naming the field."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Backend", "CaptureClock", "StreamConfig"]

Backend = Literal["auto", "pyav", "opencv", "mjpeg_http", "tcp_framed"]
CaptureClock = Literal["auto", "sender", "none"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StreamConfig(_Model):
    """Everything one :class:`~syncstream.VideoStream` needs to know about its source."""

    url: str = Field(
        min_length=1,
        description="Source: udp://, rtsp://, http(s):// (MJPEG), tcp:// (framed JPEG), "
        "a file path, /dev/videoN or a webcam index.",
    )
    name: str | None = Field(
        default=None, description="Name used in thread names, logs and stats; default: the URL."
    )
    backend: Backend = Field(
        default="auto",
        description="Reader: 'auto' picks by URL (pyav, or mjpeg_http / tcp_framed by scheme).",
    )
    realtime: bool = Field(
        default=True,
        description="Files: replay at the pace of their timestamps. False delivers every "
        "frame as fast as the reader takes them.",
    )
    loop: bool = Field(default=False, description="Files: start again at the end.")
    stall_timeout: float = Field(
        default=5.0, gt=0, description="Seconds without a frame before the stream is STALE."
    )
    open_timeout: float = Field(default=10.0, gt=0, description="Seconds allowed to open.")
    reconnect_delay: float = Field(
        default=0.25, gt=0, description="First wait before reopening a failed source (s)."
    )
    reconnect_max_delay: float = Field(
        default=5.0, gt=0, description="Longest wait between reopen attempts (doubling backoff)."
    )
    max_reconnects: int | None = Field(
        default=None,
        ge=0,
        description="Consecutive failed reopen attempts before FAILED; None retries forever.",
    )
    capture_clock: CaptureClock = Field(
        default="auto",
        description="'auto': use sender timestamps when they are a plausible wall clock; "
        "'sender': always; 'none': never (capture_time stays None).",
    )
    clock_offset: float = Field(
        default=0.0, description="Our clock minus the sender's clock, in seconds."
    )
    clock_tolerance: float = Field(
        default=60.0,
        gt=0,
        description="'auto' capture clock: largest |arrival - capture| taken as plausible (s).",
    )
    history: int = Field(default=8, ge=1, le=1024, description="Recent frames kept for alignment.")
    decoder_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Slice-decoding threads (0 = FFmpeg's choice). Frame threading is never "
        "used: it delays every frame by one per thread.",
    )
    max_frame_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest encoded frame accepted from MJPEG and TCP sources (bytes).",
    )
    udp_buffer_bytes: int = Field(
        default=4 * 1024 * 1024, ge=65536, description="Socket receive buffer for udp:// (bytes)."
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> StreamConfig:
        if self.reconnect_max_delay < self.reconnect_delay:
            raise ValueError("reconnect_max_delay must be >= reconnect_delay")
        return self

    @property
    def display_name(self) -> str:
        """The stream's name, or its URL without credentials when none was given."""
        if self.name is not None:
            return self.name
        parts = urlsplit(self.url)
        if parts.password is not None or parts.username is not None:
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=host))
        return self.url
