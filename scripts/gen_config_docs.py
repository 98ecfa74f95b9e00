"""Write docs/configuration.md from the pydantic models (a test checks it is current).

Run from the repository root: ``python3 scripts/gen_config_docs.py``.
"""

from __future__ import annotations

import pathlib
import sys
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402

from syncstream.config import (  # noqa: E402
    Camera,
    CameraStream,
    GroupConfig,
    RestartPolicy,
    SenderConfig,
    SenderOutput,
    SSHHost,
    StreamConfig,
)
from syncstream.senders.frame_sender import FrameSenderConfig  # noqa: E402
from syncstream.session_config import (  # noqa: E402
    ClusterSettings,
    RecordSettings,
    RunSettings,
    SessionConfig,
    SpeakerSettings,
    WallSettings,
    WebSettings,
)

TARGET = ROOT / "docs" / "configuration.md"
MODELS: list[type[BaseModel]] = [
    StreamConfig,
    Camera,
    CameraStream,
    GroupConfig,
    SenderConfig,
    SenderOutput,
    RestartPolicy,
    SSHHost,
    FrameSenderConfig,
]
#: The session file of ``syncstream run`` (its tables hold the models above).
SESSION_MODELS: list[type[BaseModel]] = [
    SessionConfig,
    WallSettings,
    SpeakerSettings,
    RecordSettings,
    WebSettings,
    RunSettings,
    ClusterSettings,
]


def _default(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return f"`{field.default_factory.__name__}()`"
    return f"`{field.default!r}`"


def _name(annotation: object) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:  # constraints are in the meaning
        return _name(args[0])
    if origin is Literal:
        return " | ".join(repr(value) for value in args)
    if origin in (Union, UnionType):
        return " | ".join(_name(arg) for arg in args)
    if origin is not None and args:
        inner = ", ".join("..." if arg is Ellipsis else _name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _type(model: type[BaseModel], name: str) -> str:
    return _name(model.model_fields[name].annotation).replace("|", "\\|")


def render() -> str:
    """The whole page as Markdown."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models by `python3 scripts/gen_config_docs.py`; do not",
        "edit by hand. Every model is frozen and refuses unknown fields: a bad value fails",
        "when the model is built with `ConfigError` (a `SyncStreamError` and a `ValueError`),",
        "one line per problem naming the field and what is allowed there (never a password's",
        "or token's value): `invalid SenderConfig:` / `  fps: Input should be greater than 0",
        "(got 0)`.",
        "",
    ]
    for model in MODELS:
        lines += _table(model)
    lines += [
        "# Session file (`syncstream run FILE`, `syncstream check FILE`)",
        "",
        "A TOML file whose tables are the models below: `[group]` is a GroupConfig,",
        "`[hosts.NAME]` an SSHHost, each `[[cameras]]` a Camera (whose `host` may name a",
        "`[hosts.NAME]` table), `sender` a SenderConfig. A bad field is reported with the",
        "file, the line, its path (`cameras[1].sender.codec`) and the allowed values or",
        "fields. `examples/session.toml` is a commented example.",
        "",
        "The file must be a regular file of at most 1 MiB: a FIFO, socket, device or",
        "directory is refused unread, naming what it is. A UDP port may serve one camera",
        "stream only: two streams read on one port (a `port`, a `udp://` URL, a role's",
        "`streams.NAME.port`), or two senders sending to one (`sender.destination`), are",
        "refused with the lines of both uses (their datagrams would mix). A sender sending",
        "to the `udp://` URL of another camera entry is how that entry gets its stream, and",
        "`[web] port` is a TCP port: neither clashes with a UDP port. The `[web] port` is",
        "refused, with its line and the camera's, when a camera's `tcp://`, `http(s)://`,",
        "`rtsp(s)://` or `rtmp://` URL names a server on this machine (a loopback address,",
        "or the `[web] host`) on that port (the scheme's own, such as 80 or 554, when the",
        "URL gives none): the view and that server could not both listen on it.",
        "",
        "With `[cluster]` the cameras are read on the nodes of a Ray cluster",
        "([cluster.md](cluster.md#session-files-and-cli)): `placement` may name only",
        "cameras of the file; `[speaker]` is refused (its view needs every camera's whole",
        'pictures in one process); `pictures = "none"` is refused while the wall is on;',
        "`[record]` records each node's cameras on that node, into `DIRECTORY/RESOURCE`.",
        "",
    ]
    for model in SESSION_MODELS:
        lines += _table(model)
    return "\n".join(lines)


def _table(model: type[BaseModel]) -> list[str]:
    doc = (model.__doc__ or "").strip().splitlines()[0]
    lines = [f"## {model.__name__}", "", doc, "", "| field | type | default | meaning |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    own = [name for name in model.__annotations__ if name in model.model_fields]
    ordered = own + [name for name in model.model_fields if name not in own]
    for name in ordered:
        field = model.model_fields[name]
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `{_type(model, name)}` | {_default(model, name)} | {meaning} |")
    lines.append("")
    return lines


def main() -> None:
    """Write the page."""
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
