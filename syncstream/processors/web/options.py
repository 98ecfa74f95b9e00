"""The options of a :class:`~syncstream.processors.web.WebView`: one model for the view's
constructor and the session file's ``[web]`` table."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from ..settings import ProcessorSettings
from .auth import check_credentials

__all__ = ["WebViewOptions"]


class WebViewOptions(ProcessorSettings):
    """What a web view serves and how: address, limits, page title and credentials."""

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address to bind; anything but loopback exposes the cameras to whoever "
        "reaches it, unless token or username and password are set.",
    )
    port: int = Field(default=0, ge=0, le=65535, description="TCP port; 0: a free one.")
    jpeg_quality: int = Field(default=80, ge=1, le=100, description="JPEG quality of pictures.")
    max_clients: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="Requests served at once (streams, page, stats, snapshots); 503 beyond.",
    )
    client_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a client may accept no data before it is dropped."
    )
    head_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds from connecting to the end of the request head (408 after).",
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="Connections open at once, also those still sending their request; a new "
        "one beyond them closes the one that has waited longest for its request.",
    )
    max_connections_per_address: int = Field(
        default=16,
        ge=1,
        description="Connections open at once from one address (an IPv6 /64); 503 beyond.",
    )
    title: str = Field(default="syncstream", description="The page title.")
    token: SecretStr | None = Field(
        default=None,
        description="Token every request must show (?token=, Authorization: Bearer, or the "
        "cookie of a page opened with ?token=); at least 16 visible ASCII characters.",
    )
    username: str | None = Field(
        default=None, description="HTTP Basic user name every request must show, with password."
    )
    password: SecretStr | None = Field(default=None, description="HTTP Basic password.")
    listen: bool = Field(
        default=True,
        description="Run the view's own server on host:port; false: serve only through "
        "WebView.asgi_app() mounted in an ASGI server (uvicorn, a FastAPI program).",
    )

    @model_validator(mode="after")
    def _check_credentials(self) -> WebViewOptions:
        """The rules of :func:`~syncstream.processors.web.auth.check_credentials`; its
        messages never hold a secret."""
        check_credentials(self.token_value, self.username, self.password_value)
        return self

    @property
    def token_value(self) -> str | None:
        """The token itself (None without one)."""
        return None if self.token is None else self.token.get_secret_value()

    @property
    def password_value(self) -> str | None:
        """The password itself (None without one)."""
        return None if self.password is None else self.password.get_secret_value()
