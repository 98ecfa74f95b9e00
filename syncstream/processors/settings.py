"""The base of every processor's settings model, and how a constructor checks with it.

Each processor module owns one frozen pydantic model of its options (:class:`WallOptions`,
:class:`SpeakerOptions`, :class:`RecorderOptions`, :class:`WebViewOptions`). The
processor's constructor checks its keyword arguments with it, and the session file's table
for that processor is the same model (plus an ``enabled`` switch or a directory), so a
value is refused with the same limits, and the same message, in code and in a file.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import TypeAdapter, ValidationError

from ..config import Model
from ..errors import ConfigError

__all__ = ["ProcessorSettings"]

_SECRET_FIELDS = frozenset({"password", "token"})


class ProcessorSettings(Model):
    """A processor's options: frozen, unknown fields refused, a description per field."""

    @classmethod
    def check(cls, owner: str, **values: Any) -> Self:
        """The settings of ``values``; :class:`ConfigError` naming ``owner`` and each bad
        field (never a secret's value) when one is refused."""
        try:
            return TypeAdapter(cls).validate_python(values)  # pydantic's error, not Model's
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False):
                where = ".".join(str(part) for part in error["loc"])
                message = str(error["msg"]).removeprefix("Value error, ")
                secret = _SECRET_FIELDS.intersection(str(part) for part in error["loc"])
                if where and not secret and "input" in error:
                    message += f" (got {error['input']!r})"
                problems.append(f"{where}: {message}" if where else message)
            raise ConfigError(f"{owner}: " + "; ".join(problems)) from None
