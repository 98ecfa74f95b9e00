"""pydantic's validation errors as syncstream's messages: one line per problem.

Each line names the field (``cameras[1].port``), says what is wrong and, for an unknown
field, which fields are allowed; the value given is shown unless it is a secret
(passwords, passphrases, tokens) and with credentials cut out of URLs. Given the TOML text
of a session file, each line starts with ``FILE:LINE``. The one place where pydantic's
errors are turned into ours: :class:`syncstream.config.Model` and the session file use it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from .urls import redact_url

__all__ = ["Loc", "Where", "describe_validation_error", "key_line"]

Loc = tuple[int | str, ...]
#: Where a field is in a session file: ``(FILE:LINE or FILE or "", "cameras[1].port")``.
Where = Callable[[Loc], tuple[str, str]]
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
        if error["type"] == "in_field":  # a check of a whole model, about one of its fields
            loc = (*loc, *error.get("ctx", {}).get("field", ()))
        message = str(error["msg"]).removeprefix("Value error, ")
        where = _format_loc(loc) or "(top level)"
        if error["type"] == "port_clash" and filename is not None:
            # ports.PortClash and WebPortClash objects: each says where its uses are

            def at(loc: Loc) -> tuple[str, str]:
                line = _line_for(lines_of, loc)
                return f"{filename}:{line}" if line else filename or "", _format_loc(loc)

            out += [
                f"  {clash.describe_at(at)}" for clash in error.get("ctx", {}).get("clashes", [])
            ]
            continue
        if error["type"] == "repeated_name" and filename is not None:
            # each repeated camera name, at every line that uses it
            for name, places in error.get("ctx", {}).get("places", {}).items():
                lines = [_line_for(lines_of, place) or "?" for place in places]
                uses = ", ".join(f"line {line}" for line in lines)
                out.append(
                    f"  {filename}:{lines[0]}: camera name {name!r} is used "
                    f"{len(places)} times: {uses}"
                )
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
    if typing.get_origin(current) in (typing.Union, types.UnionType):  # an optional table
        current = next((arg for arg in typing.get_args(current) if _is_model(arg)), None)
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


def key_line(text: str, loc: Loc) -> int | None:
    """The line (1-based) of the TOML ``text`` where the field at ``loc`` is given, or of
    its nearest enclosing table; None when neither is found."""
    return _line_for(_key_lines(text), loc)


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
