"""Typed configuration: frozen pydantic models that fail on a bad value, naming the field."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .urls import parse_udp_destination, redact_url
from .validation import describe_validation_error

__all__ = [
    "DEVICE_PREFIXES",
    "MAIN_ROLE",
    "TEST_PATTERNS",
    "Backend",
    "Camera",
    "CameraStream",
    "CaptureClock",
    "ClockFix",
    "Codec",
    "ConvertPolicy",
    "Encoding",
    "GroupConfig",
    "InputKind",
    "MissingPolicy",
    "Model",
    "ReaderSettings",
    "RestartPolicy",
    "RtspTransport",
    "SSHHost",
    "SenderConfig",
    "SenderEncoding",
    "SenderOutput",
    "StreamConfig",
    "SyncPolicy",
    "is_device_url",
]

Backend = Literal["auto", "pyav", "opencv", "mjpeg_http", "tcp_framed"]
CaptureClock = Literal["auto", "sender", "none"]
#: How a camera whose clock is off by more than ``clock_warning`` is aligned: "none" by its
#: capture times as they are, "correct" by them corrected by the measured error, "arrival"
#: by arrival time.
ClockFix = Literal["none", "correct", "arrival"]
#: How RTP reaches us from an rtsp:// camera: "auto" is FFmpeg's choice (UDP, then TCP).
RtspTransport = Literal["auto", "udp", "tcp"]
#: Encoders a sender may use. Each must be carried in MPEG-TS so that FFmpeg demuxes and
#: decodes it again: MJPEG is not (its demuxer sees a data stream), so it is not offered.
Codec = Literal["libx264", "mpeg2video"]
InputKind = Literal["pattern", "device", "file"]
SyncPolicy = Literal["latest", "nearest", "exact"]
MissingPolicy = Literal["partial", "wait"]
ConvertPolicy = Literal["auto", "reader", "lazy"]

#: The role of a camera's own stream: full resolution, for display and recording.
MAIN_ROLE = "main"
_ROLE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

#: ffmpeg lavfi sources a :class:`SenderConfig` accepts as a simulated camera.
TEST_PATTERNS = frozenset(
    {
        "testsrc", "testsrc2", "smptebars", "smptehdbars", "rgbtestsrc", "yuvtestsrc",
        "pal75bars", "pal100bars", "cellauto", "colorspectrum", "gradients", "sierpinski",
        "life", "mandelbrot",
    }
)  # fmt: skip


class Model(BaseModel):
    """The base of syncstream's settings models: frozen, unknown fields refused.

    Building one (``Model(...)``, :meth:`model_validate`) with a bad value raises
    :class:`ConfigError` (a ``ValueError``), one line per problem naming the field and what
    is allowed there, never a secret's value; pydantic's ``ValidationError``, which repeats
    the input as given, is its suppressed ``__context__``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc, type(self)) from None

    # pydantic's own marker (RootModel sets it too): validation, nested models included,
    # goes on building models without calling this __init__, so inner errors keep their path
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Check ``obj`` (a mapping, say); :class:`ConfigError` for a bad value."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise config_error(exc, cls) from None


def config_error(exc: ValidationError, model: type[BaseModel]) -> ConfigError:
    """pydantic's error as a :class:`ConfigError`: ``invalid MODEL:`` and a line per problem
    (see :func:`~syncstream.validation.describe_validation_error`)."""
    problems = describe_validation_error(exc, model)
    return ConfigError("\n".join([f"invalid {model.__name__}:", *problems]))


#: The reader settings that only a webcam (V4L2 device) takes.
_DEVICE_FIELDS = ("size", "fps", "input_format")


#: Where V4L2 devices (webcams) live: /dev/videoN and udev's /dev/v4l/by-id/... links.
DEVICE_PREFIXES = ("/dev/video", "/dev/v4l/")


def is_device_url(url: str) -> bool:
    """Whether ``url`` names a webcam: an index (``"0"``) or a V4L2 device path."""
    url = url.strip()
    return url.isdigit() or url.startswith(DEVICE_PREFIXES)


def _ffmpeg_input_format(name: str) -> bool:
    """Whether FFmpeg knows ``name`` as a pixel format or a decoder (its V4L2 reader's
    ``input_format`` takes either)."""
    import av  # the reader's library; imported here, when a webcam format is checked

    try:
        av.VideoFormat(name)
    except ValueError:
        pass
    else:
        return True
    try:
        av.Codec(name, "r")
    except ValueError:  # UnknownCodecError
        return False
    return True


def _even_size(value: tuple[int, int]) -> tuple[int, int]:
    width, height = value
    if not (2 <= width <= 8192 and 2 <= height <= 8192) or width % 2 or height % 2:
        raise ValueError(f"size must be even numbers from 2 to 8192, got {value!r}")
    return value


def _check_roles(roles: list[str]) -> None:
    for role in roles:
        if role == MAIN_ROLE:
            raise ValueError(
                f"role {MAIN_ROLE!r} is the camera's own stream; name further streams otherwise"
            )
        if not _ROLE_PATTERN.match(role):
            raise ValueError(
                f"role {role!r}: lower-case letters, digits and '_', starting with a letter"
            )


class ReaderSettings(Model):
    """How a stream is read: the settings :class:`StreamConfig` and :class:`Camera` share."""

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
    clock_tolerance: float = Field(
        default=60.0,
        gt=0,
        description="'auto' capture clock: largest |arrival - capture| taken as plausible (s).",
    )
    clock_warning: float = Field(
        default=1.0,
        gt=0,
        allow_inf_nan=False,
        description="Warn, naming the stream, when its clock error (the lowest arrival minus "
        "capture time over the last 10 s: path delay plus the sender clock's error) is "
        "beyond this many seconds either way; it is back to normal below half of it.",
    )
    clock_fix: ClockFix = Field(
        default="none",
        description="While the clock error is beyond clock_warning: 'none' keeps the "
        "capture times as they are ('auto' still refuses those beyond clock_tolerance); "
        "'correct' adds the clock error to them, so the fastest recent frame counts as "
        "captured when it arrived; 'arrival' drops them (the frames go by arrival).",
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
    max_pixels: int = Field(
        default=7680 * 4320,
        ge=64 * 64,
        le=2**31 - 1,
        description="Largest picture (width x height) decoded; default 8K UHD. A stream "
        "whose pictures are larger fails (PictureTooLarge) and is reopened with backoff: "
        "refused from its header (JPEG) or codec parameters before decoding where known.",
    )
    max_history_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Decoded pictures kept for the stream's history and for alignment, at "
        "most this many bytes each (a picture counts width x height x 3); beyond it the "
        "oldest go first (alignment counts them as dropped, reason 'memory').",
    )
    udp_buffer_bytes: int = Field(
        default=4 * 1024 * 1024, ge=65536, description="Socket receive buffer for udp:// (bytes)."
    )
    allowed_senders: tuple[str, ...] = Field(
        default=(),
        description="udp://: the IP addresses or networks (192.0.2.7, 10.1.0.0/16, ::1) "
        "datagrams are taken from; others are dropped and counted (stats.foreign_datagrams). "
        "Empty: from anywhere, except that a Camera whose sender the group starts takes "
        "only that sender's host (loopback for a local one).",
    )
    parse_frames: bool = Field(
        default=False,
        description="udp:// MPEG-TS: let FFmpeg's parser find where frames end, which waits "
        "for the next frame to start. False: each PES packet is one whole frame (as ffmpeg, "
        "GStreamer and every syncstream sender write it) and is decoded as soon as it is in, "
        "a frame interval sooner; the end of a PES of unknown length (ffmpeg's default "
        "muxing) is found on the wire (stats.frame_ends_found). Set it for a sender that "
        "splits or merges frames across PES packets.",
    )
    rtsp_transport: RtspTransport = Field(
        default="auto",
        description="rtsp://: 'udp' or 'tcp' (RTP interleaved in the RTSP connection, for "
        "networks that drop or block UDP); 'auto' lets FFmpeg try UDP, then TCP.",
    )
    size: tuple[int, int] | None = Field(
        default=None,
        description="Webcams (an index or /dev/videoN): the picture size (width, height) to "
        "ask the device for; None: the device's choice.",
    )
    fps: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Webcams: the frame rate to ask the device for; None: the device's choice.",
    )
    input_format: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]+$",
        description="Webcams: the pixel format or codec to ask the device for, by FFmpeg's "
        "name ('mjpeg', 'yuyv422', 'h264'); None: the device's choice.",
    )

    @field_validator("allowed_senders")
    @classmethod
    def _check_senders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        networks = []
        for text in value:
            try:
                networks.append(str(ipaddress.ip_network(text.strip(), strict=False)))
            except ValueError:
                raise ValueError(
                    f"{text!r} is not an IP address or network (192.0.2.7, 10.1.0.0/16)"
                ) from None
        return tuple(networks)

    @field_validator("size")
    @classmethod
    def _check_device_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(1 <= side <= 8192 for side in value):
            raise ValueError("size must be width and height from 1 to 8192")
        return value

    @field_validator("input_format")
    @classmethod
    def _check_input_format(cls, value: str | None) -> str | None:
        if value is not None and not _ffmpeg_input_format(value):
            raise ValueError(
                f"{value!r} is neither a pixel format nor a decoder FFmpeg knows "
                "(mjpeg, yuyv422, h264, ...)"
            )
        return value

    @model_validator(mode="after")
    def _check_backoff(self) -> ReaderSettings:
        if self.reconnect_max_delay < self.reconnect_delay:
            raise ValueError("reconnect_max_delay must be >= reconnect_delay")
        return self

    def _check_device_settings(self, url: str | None) -> None:
        """Refuse ``size``, ``fps`` and ``input_format`` for a source that is no webcam."""
        given = [name for name in _DEVICE_FIELDS if getattr(self, name) is not None]
        if given and (url is None or not is_device_url(url)):
            where = "no url" if url is None else f"url {redact_url(url)!r}"
            raise ValueError(
                f"{', '.join(given)}: for webcams only (url: an index such as '0' or "
                f"/dev/videoN), not for {where}"
            )


class StreamConfig(ReaderSettings):
    """Everything one :class:`~syncstream.VideoStream` needs to know about its source."""

    url: str = Field(
        min_length=1,
        description="Source: udp://, rtsp://, http(s):// (MJPEG), tcp:// (framed JPEG), "
        "a file path, /dev/videoN or a webcam index.",
    )
    name: str | None = Field(
        default=None, description="Name used in thread names, logs and stats; default: the URL."
    )
    role: str = Field(
        default=MAIN_ROLE,
        pattern=_ROLE_PATTERN.pattern,
        description="Which of its camera's streams this is ('main', 'sub', ...); its frames "
        "carry it as Frame.role.",
    )
    clock_offset: float = Field(
        default=0.0,
        allow_inf_nan=False,
        description="Our clock minus the sender's clock, in seconds.",
    )

    @model_validator(mode="after")
    def _check_device(self) -> StreamConfig:
        self._check_device_settings(self.url)
        return self

    @property
    def display_name(self) -> str:
        """The stream's name (with its role unless main), or its URL without credentials."""
        if self.name is None:
            return redact_url(self.url)
        return self.name if self.role == MAIN_ROLE else f"{self.name}:{self.role}"


class RestartPolicy(Model):
    """How a sender whose ffmpeg exits is started again: doubling backoff, optional budget."""

    enabled: bool = Field(default=True, description="Restart ffmpeg when it exits on its own.")
    delay: float = Field(default=0.5, gt=0, description="First wait before a restart (s).")
    max_delay: float = Field(default=10.0, gt=0, description="Longest wait between restarts (s).")
    max_restarts: int | None = Field(
        default=None,
        ge=0,
        description="Restarts in a row (without a stable run between) before the sender "
        "gives up; None restarts forever.",
    )
    stable_after: float = Field(
        default=10.0,
        gt=0,
        description="A run at least this long (s) resets the backoff and the restart count.",
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> RestartPolicy:
        if self.max_delay < self.delay:
            raise ValueError("max_delay must be >= delay")
        return self


class Encoding(Model):
    """A further encoding of a camera's captured frames; a field left None is the main's."""

    size: tuple[int, int] | None = Field(
        default=None, description="Width and height (even numbers); None: the main stream's."
    )
    fps: float | None = Field(
        default=None,
        gt=0,
        le=240,
        description="Frames per second, at most the main stream's (frames are taken from it, "
        "keeping their capture times); None: the main stream's.",
    )
    codec: Codec | None = Field(default=None, description="None: the main stream's codec.")
    bitrate: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+)?[kKmM]?$",
        description="Target bitrate such as '400k'; None: the encoder's default.",
    )
    gop: int | None = Field(
        default=None, ge=1, le=600, description="Frames between keyframes; None: one second."
    )

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        return None if value is None else _even_size(value)

    @property
    def encodes(self) -> bool:
        """True when any encoding field is set."""
        fields = (self.size, self.fps, self.codec, self.bitrate, self.gop)
        return any(value is not None for value in fields)


class SenderOutput(Encoding):
    """One further output of a sender: the same captured frames, encoded again, sent to
    ``destination``. A sender with outputs reads its input once."""

    destination: str = Field(description="udp://host:port of this output's receiver.")

    @field_validator("destination")
    @classmethod
    def _check_destination(cls, value: str) -> str:
        parse_udp_destination(value)
        return value


class SenderEncoding(Model):
    """The encoding settings every sender of MPEG-TS over UDP has: the ffmpeg senders'
    (:class:`SenderConfig`) and a program's own (:class:`~syncstream.FrameSenderConfig`)."""

    fps: float = Field(
        default=30.0,
        gt=0,
        le=240,
        description="Frames per second: the rate the camera captures at (a FrameSender: about "
        "how many pictures a second the program sends); the encoder's rate control and the "
        "default keyframe interval go by it, the timestamps are the capture times.",
    )
    bitrate: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+)?[kKmM]?$",
        description="Target bitrate such as '2M' or '800k'; None: the encoder's default.",
    )
    gop: int | None = Field(
        default=None,
        ge=1,
        le=600,
        description="Frames between keyframes (a receiver that joins waits for one); None: "
        "one second's worth at fps.",
    )
    pkt_size: int = Field(
        default=1316,
        ge=188,
        le=65424,
        description="UDP payload size: a multiple of the 188-byte TS packet (1316 = 7).",
    )

    @field_validator("pkt_size")
    @classmethod
    def _check_pkt_size(cls, value: int) -> int:
        if value % 188:
            raise ValueError(f"pkt_size must be a multiple of 188, got {value}")
        return value

    @property
    def effective_gop(self) -> int:
        """The keyframe interval in frames: ``gop`` or one second's worth."""
        return self.gop if self.gop is not None else max(1, round(self.fps))


class SenderConfig(SenderEncoding):
    """One camera's ffmpeg sender: input, encoding and the UDP destination of its MPEG-TS."""

    destination: str | None = Field(
        default=None,
        description="Where the MPEG-TS goes: udp://host:port (the receiver's address as the "
        "sender's host sees it; see syncstream.senders.receiver_address). A StreamGroup "
        "fills it in from the camera's port.",
    )
    input: str = Field(
        default="testsrc",
        min_length=1,
        description="A test pattern name (testsrc, testsrc2, smptebars, ...) for a simulated "
        "camera, a V4L2 device path (/dev/videoN), or a video file on the sender's host.",
    )
    input_format: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]+$",
        description="V4L2 devices: the pixel format to ask for (mjpeg, yuyv422, ...).",
    )
    size: tuple[int, int] = Field(
        default=(640, 480), description="Width and height in pixels (even numbers)."
    )
    codec: Codec = Field(
        default="libx264",
        description="libx264 (ultrafast, zerolatency) or mpeg2video (no B-frames, low delay).",
    )
    clock_text: bool = Field(
        default=False,
        description="Burn the sender's wall clock into the picture (top right), to see skew.",
    )
    loop: bool = Field(default=True, description="File input: start again at its end.")
    outputs: dict[str, SenderOutput] = Field(
        default_factory=dict,
        description="Further streams by role ('sub', ...): one ffmpeg reads the input once "
        "and sends each its own encoding of the same frames, with the same capture times. "
        "A StreamGroup fills them in from Camera.streams.",
    )
    ffmpeg: str = Field(
        default="ffmpeg",
        min_length=1,
        description="The ffmpeg program on the sender's host: a name looked up in PATH or a path.",
    )
    restart: RestartPolicy = Field(
        default_factory=RestartPolicy, description="Restarting an ffmpeg that exits."
    )
    stop_timeout: float = Field(
        default=2.0, gt=0, description="Seconds between SIGTERM and SIGKILL when stopping."
    )
    startup_wait: float = Field(
        default=0.5,
        ge=0,
        description="Seconds start() watches a new ffmpeg: one that exits within it makes "
        "start() raise with its exit code and last stderr lines.",
    )

    @field_validator("destination")
    @classmethod
    def _check_destination(cls, value: str | None) -> str | None:
        if value is not None:
            parse_udp_destination(value)
        return value

    @field_validator("input", "ffmpeg")
    @classmethod
    def _check_word(cls, value: str) -> str:
        if value.startswith("-") or any(ch in value for ch in "\0\n\r"):
            raise ValueError(f"must not start with '-' or hold NUL or newlines: {value!r}")
        return value

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        return _even_size(value)

    @model_validator(mode="after")
    def _check_outputs(self) -> SenderConfig:
        _check_roles(list(self.outputs))
        for role, output in self.outputs.items():
            if output.fps is not None and output.fps > self.fps:
                raise ValueError(
                    f"outputs.{role}.fps {output.fps:g} is above the input's {self.fps:g}: "
                    "an output can only take frames the camera captured"
                )
        return self

    @property
    def input_kind(self) -> InputKind:
        """What ``input`` names: a test ``pattern``, a V4L2 ``device`` or a ``file``."""
        if self.input in TEST_PATTERNS:
            return "pattern"
        if self.input.startswith("/dev/"):
            return "device"
        return "file"


class SSHHost(Model):
    """A sender host reached over SSH, and how to trust and log in to it."""

    hostname: str = Field(min_length=1, description="Host name or address.")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    username: str | None = Field(default=None, description="Login name; None: our user name.")
    key_filename: str | None = Field(default=None, description="Private key file to log in with.")
    passphrase: SecretStr | None = Field(
        default=None, description="Passphrase of an encrypted key_filename."
    )
    password: SecretStr | None = Field(default=None, description="Password to log in with.")
    allow_agent: bool = Field(default=True, description="Try the keys of a running SSH agent.")
    look_for_keys: bool = Field(
        default=True, description="Try the user's default keys (~/.ssh/id_*)."
    )
    known_hosts_file: str | None = Field(
        default=None,
        description="Extra known_hosts file, read besides ~/.ssh/known_hosts (never written).",
    )
    trust_unknown_hosts: bool = Field(
        default=False,
        description="Accept a host whose key is not known (logged as a warning). Off: such a "
        "host is refused with HostKeyError.",
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds allowed for each of TCP connect, banner and auth."
    )

    @field_validator("hostname")
    @classmethod
    def _check_hostname(cls, value: str) -> str:
        if value.startswith("-") or any(ch.isspace() for ch in value):
            raise ValueError(f"hostname must not start with '-' or hold spaces: {value!r}")
        return value

    @classmethod
    def from_target(cls, target: str, **fields: object) -> SSHHost:
        """``[user@]host[:port]`` (``[v6addr]:port`` for IPv6) plus any other field.

        Raises :class:`ConfigError` for a target that does not parse.
        """
        user, _, rest = target.rpartition("@")
        if rest.startswith("["):
            hostname, _, tail = rest[1:].partition("]")
            port = tail.removeprefix(":") if tail.startswith(":") or not tail else "x"
        elif rest.count(":") == 1:
            hostname, _, port = rest.partition(":")
        else:
            hostname, port = rest, ""
        if not hostname or (port and not port.isdigit()):
            raise ConfigError(f"SSH target must be [user@]host[:port], got {target!r}")
        values: dict[str, object] = {"hostname": hostname, "username": user or None, **fields}
        if port:
            values["port"] = int(port)
        try:
            return cls.model_validate(values)
        except ValueError as exc:
            raise ConfigError(f"SSH target {target!r}: {exc}") from exc

    @property
    def display_name(self) -> str:
        """``user@host:port`` for logs and errors (never the password)."""
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.hostname}:{self.port}"


class CameraStream(Encoding):
    """A further stream of a camera, by role: e.g. ``sub``, small, for detection.

    With the camera's ``sender``, the same ffmpeg encodes it from the frames it captures
    for the main stream (size, fps, codec, ... default to the main's) and sends it to
    ``port``. A camera that streams already (an IP camera's sub stream) gives its ``url``.
    """

    port: int | None = Field(
        default=None, ge=1, le=65535, description="UDP port the sender streams this role to."
    )
    url: str | None = Field(
        default=None,
        min_length=1,
        description="Where to read this stream; None with a sender: from port, like the "
        "camera's own.",
    )


class Camera(ReaderSettings):
    """One camera of a StreamGroup: where its video is read, and which sender to start.

    The sender (ffmpeg) runs on this machine, or on ``host`` over SSH. With a ``url`` and
    no ``sender`` the camera is already streaming. With a ``sender`` the group starts it,
    sending to ``port``. The reader settings (backend, stall_timeout, capture_clock,
    history, ...) are those of :class:`StreamConfig`.
    """

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[^\s/\\]+$",
        description="The camera's name: the key of its frame in every FrameSet (no spaces).",
    )
    url: str | None = Field(
        default=None,
        min_length=1,
        description="Where to read the camera (any VideoStream source). None with a sender: "
        "udp://127.0.0.1:PORT for a local sender, udp://0.0.0.0:PORT for a remote one.",
    )
    sender: SenderConfig | None = Field(
        default=None, description="The ffmpeg sender to start; None: the camera already streams."
    )
    host: SSHHost | None = Field(
        default=None, description="Run the sender on this host over SSH; None: on this machine."
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="UDP port the sender streams to (with sender)."
    )
    receiver_host: str | None = Field(
        default=None,
        min_length=1,
        pattern=r"^([A-Za-z0-9._-]+|[0-9A-Fa-f:.]+)$",
        description="Our address (a host name, IPv4 or IPv6 address) as the sender's host "
        "sees it; None: 127.0.0.1 for a local "
        "sender, the address of our route to the host for a remote one.",
    )
    clock_offset: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Our clock minus the sender's, in seconds. None: measured over SSH for a "
        "remote sender (a host whose cameras all have one given is not measured), 0 otherwise.",
    )
    arrival_delay: float | None = Field(
        default=None,
        ge=0,
        le=60,
        allow_inf_nan=False,
        description="For a camera whose frames carry no capture time (MJPEG, an RTSP camera "
        "without sender reports): how long before its arrival a frame counts as captured, "
        "when aligned with cameras that have capture times (s). None: the median delay "
        "(arrival minus capture time) of those cameras.",
    )
    streams: dict[str, CameraStream] = Field(
        default_factory=dict,
        description="Further streams by role, e.g. sub = {port = 9101, size = [320, 240], "
        "fps = 10}: one sender encodes them all from the same captured frames; each is read "
        "beside the main stream and aligned into frame sets of its role.",
    )

    @model_validator(mode="after")
    def _check_roles(self) -> Camera:
        self._check_device_settings(self.url)
        if self.streams and any(getattr(self, name) is not None for name in _DEVICE_FIELDS):
            raise ValueError(f"camera {self.name!r}: a webcam read directly has no further streams")
        if self.sender is None:
            if self.url is None:
                raise ValueError(f"camera {self.name!r} needs a url or a sender")
            if self.host is not None or self.port is not None:
                raise ValueError(f"camera {self.name!r}: host and port need a sender")
        elif self.sender.destination is None and self.port is None:
            raise ValueError(f"camera {self.name!r}: a sender needs a port to stream to")
        _check_roles(list(self.streams))
        for role, stream in self.streams.items():
            if self.sender is None:
                if stream.url is None:
                    raise ValueError(f"camera {self.name!r}: stream {role!r} needs a url")
                if stream.port is not None or stream.encodes:
                    raise ValueError(
                        f"camera {self.name!r}: stream {role!r}: port, size, fps, codec, "
                        "bitrate and gop need the camera's sender"
                    )
                continue
            if stream.port is None:
                raise ValueError(
                    f"camera {self.name!r}: stream {role!r} needs a port for the sender"
                )
            if stream.fps is not None and stream.fps > self.sender.fps:
                raise ValueError(
                    f"camera {self.name!r}: stream {role!r}: fps {stream.fps:g} is above the "
                    f"sender's {self.sender.fps:g}"
                )
            if self.sender.outputs:
                raise ValueError(
                    f"camera {self.name!r}: give further streams in Camera.streams or in "
                    "sender.outputs, not both"
                )
        return self

    @property
    def roles(self) -> tuple[str, ...]:
        """``"main"`` and the roles of :attr:`streams`."""
        return (MAIN_ROLE, *self.streams)

    @property
    def listen_url(self) -> str:
        """The URL the group's reader opens for this camera's main stream."""
        return self.listen_url_for(MAIN_ROLE)

    def listen_url_for(self, role: str) -> str:
        """The URL the group's reader opens for the camera's stream of ``role``."""
        if role == MAIN_ROLE:
            url, port = self.url, self.port
        else:
            try:
                stream = self.streams[role]
            except KeyError:
                raise KeyError(f"camera {self.name!r} has no {role!r} stream") from None
            url, port = stream.url, stream.port
        if url is not None:
            return url
        bind = "0.0.0.0" if self.host is not None else "127.0.0.1"  # remote: any interface
        return f"udp://{bind}:{port}"


class GroupConfig(Model):
    """How a :class:`~syncstream.StreamGroup` aligns its cameras into frame sets."""

    sync: SyncPolicy = Field(
        default="nearest",
        description="'nearest': frames with the closest capture times, each used once; "
        "'latest': the newest frame of each camera; 'exact': equal timestamps.",
    )
    max_skew: float | None = Field(
        default=0.05,
        gt=0,
        description="'nearest': widest set emitted, in seconds; None: no limit.",
    )
    max_wait: float = Field(
        default=0.5,
        gt=0,
        description="Seconds a set waits for a camera; a camera silent this long is missing.",
    )
    on_missing: MissingPolicy = Field(
        default="partial",
        description="'partial': emit sets without a silent camera (named in FrameSet.missing); "
        "'wait': only complete sets.",
    )
    exact_tolerance: float = Field(
        default=1e-4, ge=0, description="'exact': largest difference taken as equal (s)."
    )
    first_frame_wait: float = Field(
        default=5.0,
        ge=0,
        description="Seconds after start a camera may take to deliver its first frame before "
        "sets are emitted without it (at least max_wait); once every other camera "
        "delivers, it holds sets two keyframe intervals plus max_wait at most.",
    )
    clock_rounds: int = Field(
        default=10, ge=1, le=1000, description="SSH round trips per remote host to measure offset."
    )
    convert: ConvertPolicy = Field(
        default="auto",
        description="Where frames become BGR pictures. 'reader': in each camera's reader "
        "thread, right after the frame goes to alignment, so a set's pictures are converted "
        "in parallel and ready when it is emitted; 'lazy': on first access of Frame.image; "
        "'auto': 'reader' once a processor that uses pictures is added, else 'lazy'.",
    )
