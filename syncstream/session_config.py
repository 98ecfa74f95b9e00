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
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .config import Camera, GroupConfig, Model, SSHHost
from .errors import ConfigError
from .files import read_regular_file
from .ports import PortClash, WebPortClash, port_clashes, web_port_clashes
from .processors.recorder import RecorderOptions
from .processors.speaker import SpeakerOptions
from .processors.wall import WallOptions
from .processors.web import WebViewOptions
from .urls import redact_url

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


# -- error messages ------------------------------------------------------------------------

Loc = tuple[int | str, ...]
_SECRET_FIELDS = frozenset({"password", "passphrase", "token"})


def describe_validation_error(
    exc: ValidationError,
    model: type[BaseModel],
    *,
    text: str | None = None,
    filename: str | None = None,
) -> list[str]:
    """One line per problem: ``FILE:LINE: path.to[0].field: message (allowed: ...)``.

    ``text`` (the TOML source) gives line numbers; ``model`` gives the allowed field names
    for an unknown field. Literal fields already list their values in pydantic's message.
    """
    lines_of = _key_lines(text) if text is not None else {}
    out = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        where = _format_loc(loc) or "(top level)"
        if error["type"] == "port_clash" and filename is not None:
            clashes: list[PortClash | WebPortClash] = error.get("ctx", {}).get("clashes", [])
            out += [_describe_clash(clash, lines_of, filename) for clash in clashes]
            continue
        if (
            error["type"] == "model_type"
            and loc[-1:] == ("host",)
            and isinstance(error.get("input"), str)
        ):
            message = f"no [{_format_loc(('hosts', error['input']))}] table in the file"
        elif error["type"] == "extra_forbidden":
            fields = _fields_at(model, loc[:-1])
            message = "unknown field" + (f"; allowed: {', '.join(fields)}" if fields else "")
        elif error["type"] == "missing":
            message = "required field missing"
        elif (
            "input" in error
            and not isinstance(error["input"], dict | list)
            and not _SECRET_FIELDS.intersection(loc)  # never echo a password
        ):
            message += f" (got {_shown(error['input'])})"
        line = _line_for(lines_of, loc)
        prefix = (
            f"{filename}:{line}: " if filename and line else f"{filename}: " if filename else ""
        )
        out.append(f"  {prefix}{where}: {message}")
    return out


def _describe_clash(
    clash: PortClash | WebPortClash, lines_of: dict[Loc, int], filename: str | None
) -> str:
    """``FILE:LINE: cameras[1].port: UDP port 9001 is also read at FILE:LINE (...)``, or
    ``FILE:LINE: web.port: TCP port 8554 is also that of camera 'a' at FILE:LINE (...)``."""

    def at(loc: Loc) -> tuple[str, str]:
        line = _line_for(lines_of, loc)
        where = f"{filename}:{line}" if filename and line else filename or ""
        return where, _format_loc(loc)

    if isinstance(clash, WebPortClash):
        web_at, web_field = at(("web", "port"))
        camera_at, camera_field = at(("cameras", clash.camera.index, *clash.camera.loc))
        camera = f"{camera_field}, camera {clash.camera.camera!r}"
        prefix = f"{web_at}: " if web_at else ""
        return (
            f"  {prefix}{web_field}: TCP port {clash.port} is also that of a server on this "
            f"machine at {camera_at or 'the camera'} ({camera}): {clash.effect}"
        )
    first_at, first_field = at(("cameras", clash.first.index, *clash.first.loc))
    repeat_at, repeat_field = at(("cameras", clash.repeat.index, *clash.repeat.loc))
    prefix = f"{repeat_at}: " if repeat_at else ""
    camera = f"camera {clash.first.camera!r}"
    first = f"{first_at} ({first_field}, {camera})" if first_at else f"{first_field} ({camera})"
    return (
        f"  {prefix}{repeat_field}: UDP port {clash.first.port} is also {clash.verb} at "
        f"{first}: {clash.effect}"
    )


def _shown(value: object) -> str:
    try:
        return repr(redact_url(value) if isinstance(value, str) else value)
    except ValueError:  # an int of over 4300 digits (sys.get_int_max_str_digits)
        return f"{type(value).__name__} too long to show"


def _format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the model found at ``loc`` under ``model`` (empty if none)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return []
    return list(current.model_fields) if _is_model(current) else []


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap(annotation: Any, part: int | str) -> Any:
    """The type one step (field, list item, dict value) into ``annotation``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            found = _unwrap(option, part)
            if found is not None:
                return found
        return None
    if _is_model(annotation):
        field = annotation.model_fields.get(str(part))
        return None if field is None else field.annotation
    args = typing.get_args(annotation)
    if origin is list and isinstance(part, int) and args:
        return args[0]
    if origin is dict and isinstance(part, str) and len(args) == 2:
        return args[1]
    return None


def _line_for(lines_of: dict[Loc, int], loc: Loc) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines_of:
            return lines_of[loc[:end]]
    return None


def _split_key(text: str) -> tuple[str, ...]:
    """``a."b.c" . d`` -> ("a", "b.c", "d")."""
    parts, current, quote = [], "", ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
            else:
                current += char
        elif char in "\"'":
            quote = char
        elif char == ".":
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return tuple(parts)


def _key_lines(text: str) -> dict[Loc, int]:
    """Where each table and key of a TOML text starts (1-based lines), by its path.

    Enough TOML for locating errors: tables, arrays of tables, dotted and quoted keys.
    Keys inside inline tables and multi-line values map to the line of their outer key.
    """
    where: dict[Loc, int] = {}
    counts: dict[Loc, int] = {}
    table: Loc = ()

    def resolve(name: tuple[str, ...]) -> Loc:
        path: Loc = ()
        for part in name:
            path = (*path, part)
            if path in counts:
                path = (*path, counts[path])
        return path

    # Not splitlines(): TOML lines end with LF (or CRLF) only; "\x85" and "\u2028", which
    # splitlines() also breaks at, are ordinary characters in TOML strings and comments.
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[[") and "]]" in line:
            name = _split_key(line[2 : line.index("]]")])
            parent = resolve(name[:-1])
            array = (*parent, name[-1])
            counts[array] = counts.get(array, -1) + 1
            table = (*array, counts[array])
            where.setdefault(array, number)
            where[table] = number
        elif line.startswith("[") and "]" in line:
            table = resolve(_split_key(line[1 : line.index("]")]))
            where.setdefault(table, number)
        elif "=" in line and not line.startswith(("]", "}")):
            key = line.split("=", 1)[0]
            if key.strip() and not any(c in key for c in "[{,"):
                where.setdefault((*table, *_split_key(key)), number)
    return where
