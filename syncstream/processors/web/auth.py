"""Credentials: who may see the web view, a token, a user name and password, or both.

A request proves itself with the token (``?token=``, ``Authorization: Bearer``), the user
name and password (HTTP Basic) or the cookie the page's answer set when it was opened with
``?token=``: the cookie lets the page's own requests (the stream, ``/stats``) through
without the token in their addresses. The cookie holds an HMAC of the token, not the
token. Secrets are compared with :func:`hmac.compare_digest` and never shown: not in
``repr``, logs or errors.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re

from ...errors import ConfigError
from .http import Request

__all__ = ["MIN_TOKEN_LENGTH", "Access", "Credentials", "check_credentials"]

#: Shortest token accepted (``secrets.token_urlsafe()`` gives 43 characters).
MIN_TOKEN_LENGTH = 16
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: fits a header, a query and a cookie
_USERNAME = re.compile(r"[^:\x00-\x1f\x7f]+")  # Basic splits at the first colon
_COOKIE_CONTEXT = b"syncstream web view cookie"
_REALM = "syncstream"


class Access(enum.Enum):
    """How a request was let in."""

    #: No credentials are configured.
    OPEN = "open"
    QUERY_TOKEN = "query token"
    BEARER = "bearer token"
    COOKIE = "cookie"
    BASIC = "basic"


def check_credentials(token: str | None, username: str | None, password: str | None) -> None:
    """Raise ``ValueError`` naming the field (never its value) for bad credentials."""
    if token is not None:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"token must have at least {MIN_TOKEN_LENGTH} characters")
        if not _TOKEN.fullmatch(token):
            raise ValueError("token must be visible ASCII characters (no spaces)")
    if (username is None) != (password is None):
        raise ValueError("username and password go together: set both or neither")
    if username is not None and not _USERNAME.fullmatch(username):
        raise ValueError("username must be non-empty, without ':' or control characters")
    if password is not None and not password:
        raise ValueError("password must not be empty")


def _same(supplied: str, expected: bytes) -> bool:
    return hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"), expected)


class Credentials:
    """The token and/or user name and password a request must show; see the module."""

    def __init__(
        self, *, token: str | None = None, username: str | None = None, password: str | None = None
    ) -> None:
        """Raises :class:`ConfigError` for bad or no credentials."""
        try:
            check_credentials(token, username, password)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if token is None and username is None:
            raise ConfigError("credentials: set a token, or a username and password")
        self._token = None if token is None else token.encode()
        self._cookie = (
            None
            if self._token is None
            else hmac.new(self._token, _COOKIE_CONTEXT, hashlib.sha256).hexdigest().encode()
        )
        self._basic = (
            None if username is None or password is None else (username.encode(), password.encode())
        )

    def check(self, request: Request, cookie_name: str) -> Access | None:
        """How ``request`` proves itself; None when it does not."""
        if self._token is not None:
            if any(_same(value, self._token) for value in request.query.get("token", ())):
                return Access.QUERY_TOKEN
            if self._cookie is not None and self._cookie_matches(request, cookie_name):
                return Access.COOKIE
        scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and self._token is not None and _same(value, self._token):
            return Access.BEARER
        if scheme == "basic" and self._basic is not None and self._basic_matches(value):
            return Access.BASIC
        return None

    def _cookie_matches(self, request: Request, cookie_name: str) -> bool:
        assert self._cookie is not None
        for item in request.headers.get("cookie", "").split(";"):
            name, _, value = item.strip().partition("=")
            if name == cookie_name and _same(value, self._cookie):
                return True
        return False

    def _basic_matches(self, value: str) -> bool:
        assert self._basic is not None
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        username, sep, password = decoded.partition(b":")
        # both compared, so the time taken does not tell whether the user name was right
        user_ok = hmac.compare_digest(username, self._basic[0])
        password_ok = hmac.compare_digest(password, self._basic[1])
        return bool(sep) and user_ok and password_ok

    def set_cookie(self, cookie_name: str, path: str = "/") -> tuple[str, ...]:
        """The header that keeps a page opened with ``?token=`` let in (none without a
        token), sent for ``path`` (where the view is mounted). HttpOnly: no script reads
        it; SameSite=Strict: no other site's page sends it."""
        if self._cookie is None:
            return ()
        value = self._cookie.decode()
        return (f"Set-Cookie: {cookie_name}={value}; Path={path}; HttpOnly; SameSite=Strict",)

    def challenges(self) -> tuple[str, ...]:
        """The ``WWW-Authenticate`` headers of a 401: Basic first, so browsers ask for
        the user name and password."""
        headers = []
        if self._basic is not None:
            headers.append(f'WWW-Authenticate: Basic realm="{_REALM}", charset="UTF-8"')
        if self._token is not None:
            headers.append(f'WWW-Authenticate: Bearer realm="{_REALM}"')
        return tuple(headers)

    def __repr__(self) -> str:
        kinds = [k for k, v in (("token", self._token), ("basic", self._basic)) if v is not None]
        return f"Credentials({', '.join(kinds)})"
