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
from typing import Annotated, Any, Literal

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
    "ClusterSettings",
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


class ClusterSettings(Model):
    """``[cluster]``: read the cameras on the nodes of a Ray cluster (``syncstream[cluster]``).

    The options of :class:`~syncstream.cluster.ClusterGroup`. The wall and the web view run
    in this process on the merged sets; ``[record]`` records each node's cameras on its disk.
    """

    address: str = Field(
        min_length=1,
        description="The Ray cluster's address: host:port of its head (6379 by default), "
        "or 'auto' for the cluster this machine is part of.",
    )
    placement: dict[str, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict,
        description="Camera name -> the custom resource of the node that reads it (start "
        "the node with ray start --resources='{\"node_a\": 1}'); cameras not named share "
        "one shard on any node.",
    )
    # ClusterGroup's PictureMode (not imported: syncstream.cluster is loaded when used)
    pictures: Literal["none", "sub", "full"] | None = Field(
        default=None,
        description="What a node sends with each frame: 'none' (timestamps only), 'sub' "
        "(the picture at most 160 pixels wide) or 'full'. None: 'sub' when the wall or the "
        "web view is on, else 'none'.",
    )
    max_restarts: int = Field(
        default=-1, ge=-1, description="Restarts of a shard whose process dies; -1: forever."
    )
    poll_timeout: float = Field(
        default=2.0, gt=0, description="Seconds each call to a shard may take."
    )
    connect_timeout: float = Field(
        default=3.0, gt=0, description="Seconds allowed to reach the address (TCP)."
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
    cluster: ClusterSettings | None = Field(
        default=None, description="`[cluster]`; off: the cameras are read here."
    )

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
            # where each use is, so that a session file's error names every line
            places = {
                name: [("cameras", i, "name") for i, used in enumerate(names) if used == name]
                for name in repeated
            }
            message = f"camera names must be unique; repeated: {', '.join(repeated)}"
            # the message goes in last: camera names may hold "{...}"
            raise PydanticCustomError(
                "repeated_name", "{message}", {"places": places, "message": message}
            )
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

    @model_validator(mode="after")
    def _check_cluster(self) -> SessionConfig:
        """``[cluster]`` names only cameras of the file, and the processors it runs suit it."""
        cluster = self.cluster
        if cluster is None:
            return self
        names = {camera.name for camera in self.cameras}
        unknown = [name for name in cluster.placement if name not in names]
        if unknown:
            raise _field_error(
                ("cluster", "placement", unknown[0]),
                f"no camera named {', '.join(map(repr, unknown))} in [[cameras]]",
            )
        if self.speaker is not None and self.speaker.enabled:
            raise _field_error(
                ("speaker",),
                "not with [cluster]: the speaker view needs every camera's whole pictures "
                "in one process (28 MB/s a 640x480 camera at 30 fps would cross the "
                "network) and its sub streams, which stay on the nodes; leave [speaker] out",
            )
        shows = self.wall.enabled or self.web is not None
        if cluster.pictures == "none" and shows:
            raise _field_error(
                ("cluster", "pictures"),
                "'none' leaves the wall nothing to show: 'sub' or 'full', or [wall] "
                "enabled = false",
            )
        return self

    @property
    def cluster_pictures(self) -> Literal["none", "sub", "full"]:
        """What the nodes send with each frame: ``[cluster] pictures``, else ``"sub"`` when
        the wall or the web view is on and ``"none"`` otherwise."""
        given = self.cluster.pictures if self.cluster is not None else None
        if given is not None:
            return given
        return "sub" if self.wall.enabled or self.web is not None else "none"

    @property
    def remote_hosts(self) -> dict[str, SSHHost]:
        """Every SSH host a camera uses, by display name (``user@host:port``)."""
        return {c.host.display_name: c.host for c in self.cameras if c.host is not None}


def _field_error(field: tuple[str, ...], message: str) -> PydanticCustomError:
    """An error of a whole-file check, reported at ``field`` (its path and line)."""
    # the message goes in last: camera names may hold "{...}"
    return PydanticCustomError("in_field", "{message}", {"field": field, "message": message})


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
