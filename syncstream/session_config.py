"""The session file: cameras, hosts, alignment and processors in one TOML file.

``syncstream run FILE`` and :class:`~syncstream.session.Session` read it. A bad field is
a :class:`~syncstream.errors.ConfigError` that names the file, the line, the field's path
(``cameras[1].sender.codec``) and what is allowed there::

    [group]
    sync = "nearest"

    [hosts.cam1]
    hostname = "cam1.local"
    username = "pi"

    [[cameras]]
    name = "door"
    host = "cam1"          # a [hosts.NAME] table, or an inline table
    port = 9001
    sender = { input = "/dev/video0", size = [640, 480] }

    [wall]
    tile_size = [480, 270]

    [web]
    port = 8080
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .config import Camera, GroupConfig, Model, SSHHost
from .errors import ConfigError
from .files import read_regular_file
from .ports import PortClash, WebPortClash, port_clashes, web_port_clashes
from .processors.recorder import RecorderOptions
from .processors.speaker import SpeakerOptions
from .processors.wall import WallOptions
from .processors.web import WebViewOptions
from .validation import describe_validation_error

__all__ = [
    "MAX_SESSION_BYTES",
    "RecordSettings",
    "RunSettings",
    "SessionConfig",
    "SpeakerSettings",
    "WallSettings",
    "WebSettings",
    "describe_validation_error",
    "load_session_config",
]


class WallSettings(WallOptions):
    """``[wall]``: the CCTV wall every session composes (grid of letterboxed tiles).

    The options of :class:`~syncstream.processors.wall.Wall`, and whether to compose it.
    """

    enabled: bool = Field(default=True, description="Compose the wall (shown by the web view).")


class SpeakerSettings(SpeakerOptions):
    """``[speaker]``: speaker detection, with its view shown by the web view.

    The options of :class:`~syncstream.processors.speaker.SpeakerDetector`, and a switch.
    """

    enabled: bool = Field(default=True, description="Run the detector (present table: on).")


class RecordSettings(RecorderOptions):
    """``[record]``: record every camera (copied, not re-encoded) and an index of sets.

    The options of :class:`~syncstream.processors.recorder.Recorder`, and its directory.
    """

    directory: str = Field(min_length=1, description="Directory of the recording (created).")


class WebSettings(WebViewOptions):
    """``[web]``: serve the wall (and speaker view) and the stats to browsers.

    The options of :class:`~syncstream.processors.web.WebView`, at port 8080 by default.
    """

    # a session's page has a fixed address to open; the view alone picks a free port
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port; 0: a free one.")


class RunSettings(Model):
    """``[run]``: how ``syncstream run`` runs the session."""

    seconds: float | None = Field(
        default=None, gt=0, description="Stop after this long; None: until Ctrl-C or SIGTERM."
    )
    status_interval: float = Field(
        default=1.0, gt=0, description="Seconds between status lines in the terminal."
    )
    snapshot: str | None = Field(
        default=None, min_length=1, description="Write the last wall picture here (PNG) at the end."
    )


class SessionConfig(Model):
    """A whole session file: cameras, their hosts, alignment and processors."""

    group: GroupConfig = Field(default_factory=GroupConfig, description="`[group]`: alignment.")
    hosts: dict[str, SSHHost] = Field(
        default_factory=dict,
        description="`[hosts.NAME]`: SSH hosts, referred to by name from cameras.",
    )
    cameras: list[Camera] = Field(
        min_length=1, max_length=64, description="`[[cameras]]`: one table per camera."
    )
    wall: WallSettings = Field(default_factory=WallSettings, description="`[wall]`.")
    speaker: SpeakerSettings | None = Field(default=None, description="`[speaker]`; off.")
    record: RecordSettings | None = Field(default=None, description="`[record]`; off.")
    web: WebSettings | None = Field(default=None, description="`[web]`; off.")
    run: RunSettings = Field(default_factory=RunSettings, description="`[run]`.")

    @model_validator(mode="before")
    @classmethod
    def _resolve_hosts(cls, data: Any) -> Any:
        """A camera's ``host = "NAME"`` becomes the ``[hosts.NAME]`` table."""
        if not isinstance(data, Mapping):
            return data
        hosts, cameras = data.get("hosts", {}), data.get("cameras")
        if not isinstance(cameras, list) or not isinstance(hosts, Mapping):
            return data
        resolved = []
        for camera in cameras:
            name = camera.get("host") if isinstance(camera, Mapping) else None
            if isinstance(name, str) and name in hosts:
                try:
                    host = SSHHost.model_validate(hosts[name])
                except ConfigError:  # reported once, under hosts.NAME
                    host = SSHHost(hostname="unchecked")
                camera = {**camera, "host": host}
            resolved.append(camera)  # an unknown name fails as host, with its path
        return {**data, "cameras": resolved}

    @model_validator(mode="after")
    def _check_names(self) -> SessionConfig:
        names = [camera.name for camera in self.cameras]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"camera names must be unique; repeated: {', '.join(repeated)}")
        speaker = self.speaker is not None and self.speaker.enabled
        if self.web is not None and not (self.wall.enabled or speaker):
            raise ValueError("[web] has nothing to show: enable [wall] or [speaker]")
        return self

    @model_validator(mode="after")
    def _check_ports(self) -> SessionConfig:
        """A UDP port read (or sent to) by two camera streams, or the web view's TCP port
        also a camera's on this machine: see :mod:`syncstream.ports`.

        The error carries the clashes, so that a session file's error names both lines.
        """
        clashes: list[PortClash | WebPortClash] = [*port_clashes(self.cameras)]
        if self.web is not None:
            clashes += web_port_clashes(self.cameras, self.web.host, self.web.port)
        if clashes:
            message = "; ".join(clash.describe() for clash in clashes)
            # the message goes in last: camera names may hold "{...}"
            raise PydanticCustomError(
                "port_clash", "{message}", {"clashes": clashes, "message": message}
            )
        return self

    @property
    def remote_hosts(self) -> dict[str, SSHHost]:
        """Every SSH host a camera uses, by display name (``user@host:port``)."""
        return {c.host.display_name: c.host for c in self.cameras if c.host is not None}


#: Largest session file read (bytes); a longer one is refused unread.
MAX_SESSION_BYTES = 1024 * 1024


def load_session_config(path: str | os.PathLike[str]) -> SessionConfig:
    """Read and check a session file; raises :class:`ConfigError` saying what and where.

    Only a regular file of at most :data:`MAX_SESSION_BYTES` is read: a FIFO, socket,
    device or directory is refused without blocking, naming what it is.
    """
    name = os.fspath(path)
    raw = read_regular_file(name, "session file", limit=MAX_SESSION_BYTES)
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text: {exc}") from exc
    except ValueError as exc:  # TOMLDecodeError, or int() of over 4300 digits
        raise ConfigError(f"{name}: not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses once per level of nesting
        raise ConfigError(f"{name}: not valid TOML: arrays or tables nested too deeply") from exc
    try:
        # pydantic's own error, for the locations: SessionConfig.model_validate has none
        return TypeAdapter(SessionConfig).validate_python(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc, SessionConfig, text=text, filename=name)
        # not chained: pydantic's error repeats the tables as given, passwords and tokens
        # included, and a traceback would print them; the problems say all of it
        raise ConfigError("\n".join([f"{name}: invalid session file", *problems])) from None
