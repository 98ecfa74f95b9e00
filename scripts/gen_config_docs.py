"""Write docs/configuration.md from the pydantic models (a test checks it is current).

Run from the repository root: ``python3 scripts/gen_config_docs.py``.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Literal, get_args, get_origin

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402

from syncstream.config import (  # noqa: E402
    Camera,
    GroupConfig,
    RestartPolicy,
    SenderConfig,
    SSHHost,
    StreamConfig,
)

TARGET = ROOT / "docs" / "configuration.md"
MODELS: list[type[BaseModel]] = [
    StreamConfig,
    Camera,
    GroupConfig,
    SenderConfig,
    RestartPolicy,
    SSHHost,
]


def _default(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return f"`{field.default_factory.__name__}()`"
    return f"`{field.default!r}`"


def _type(model: type[BaseModel], name: str) -> str:
    annotation = model.model_fields[name].annotation
    if get_origin(annotation) is Literal:
        text = " | ".join(repr(value) for value in get_args(annotation))
    else:
        text = getattr(annotation, "__name__", None) or str(annotation)
        if text in ("Optional", "UnionType", "Union"):
            text = str(annotation)
    return text.replace("typing.", "").replace("pydantic.types.", "").replace("|", "\\|")


def render() -> str:
    """The whole page as Markdown."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models by `python3 scripts/gen_config_docs.py`; do not",
        "edit by hand. Every model is frozen and refuses unknown fields: a bad value fails",
        "when the model is built, with a message naming the field.",
        "",
    ]
    for model in MODELS:
        doc = (model.__doc__ or "").strip().splitlines()[0]
        lines += [f"## {model.__name__}", "", doc, "", "| field | type | default | meaning |",
                  "| --- | --- | --- | --- |"]  # fmt: skip
        own = [name for name in model.__annotations__ if name in model.model_fields]
        ordered = own + [name for name in model.model_fields if name not in own]
        for name in ordered:
            field = model.model_fields[name]
            meaning = (field.description or "").replace("|", "\\|")
            lines.append(
                f"| `{name}` | `{_type(model, name)}` | {_default(model, name)} | {meaning} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    """Write the page."""
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
