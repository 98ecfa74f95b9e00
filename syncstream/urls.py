"""URLs as syncstream reads them: a sender's ``udp://host:port`` destination, and any URL
with its user name and password removed before it reaches a log, an error or the stats."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError

__all__ = ["parse_udp_destination", "redact_text", "redact_url"]

_UDP_DESTINATION = re.compile(r"^udp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def parse_udp_destination(url: str, what: str = "destination") -> tuple[str, int]:
    """Host (IPv6 without brackets) and port of ``udp://host:port``, where a sender sends.

    Raises :class:`ConfigError` naming ``what`` for anything else (no user, path or query).
    """
    match = _UDP_DESTINATION.match(url)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ConfigError(f"{what} must be udp://host:port, got {url!r}")
    return match.group(1).strip("[]"), int(match.group(2))


def redact_url(url: str) -> str:
    """``url`` without its user name and password, for logs, errors and stats."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and parts.username is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def redact_text(text: str, url: str) -> str:
    """``text`` (an error from FFmpeg, say) with ``url`` replaced by its redacted form."""
    shown = redact_url(url)
    return text if shown == url else text.replace(url, shown)
