"""A session: a StreamGroup with the processors a :class:`SessionConfig` names.

What ``syncstream run FILE`` and ``syncstream demo`` run, usable from a script as well::

    with Session.from_file("cameras.toml") as session:
        print(session.web.url if session.web else "no web view")
        session.group.wait(timeout=60)
        session.snapshot("wall.png")
"""

from __future__ import annotations

import os
from types import TracebackType

import cv2

from .errors import SyncStreamError
from .group import StreamGroup
from .processors.recorder import Recorder
from .processors.speaker import SpeakerDetector
from .processors.wall import Wall
from .processors.web import WebView
from .session_config import SessionConfig, load_session_config

__all__ = ["Session"]


class Session:
    """Starts the cameras of a :class:`SessionConfig` and its wall, speaker detector,
    recorder and web view; :meth:`close` stops them all, remote senders included.

    Nothing runs before :meth:`start` (or ``with``). The parts the file leaves out are
    None: :attr:`wall`, :attr:`speaker`, :attr:`recorder`, :attr:`web`.
    """

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.group = StreamGroup(config.cameras, config.group)
        self.wall: Wall | None = None
        self.speaker: SpeakerDetector | None = None
        self.recorder: Recorder | None = None
        self.web: WebView | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Session:
        """A session from a TOML file; raises :class:`ConfigError` saying what and where."""
        return cls(load_session_config(path))

    def start(self) -> Session:
        """Start the group, then add the processors; on any failure everything is stopped.

        Raises :class:`~syncstream.errors.GroupStartError` naming every camera that did not
        start, or the processor's error (an occupied web port: :class:`WebViewError`).
        """
        config = self.config
        self.group.start()
        try:
            if config.wall.enabled:
                wall = config.wall
                self.wall = Wall(
                    [camera.name for camera in config.cameras],
                    tile_size=wall.tile_size,
                    columns=wall.columns,
                    rows=wall.rows,
                    gap=wall.gap,
                    labels=wall.labels,
                    status_bar=wall.status_bar,
                    stale_after=wall.stale_after,
                )
                self.group.add_processor(self.wall)
            if config.speaker is not None and config.speaker.enabled:
                speaker = config.speaker
                self.speaker = SpeakerDetector(
                    on_threshold=speaker.on_threshold,
                    off_threshold=speaker.off_threshold,
                    hold=speaker.hold,
                    switch_ratio=speaker.switch_ratio,
                    detect_every=speaker.detect_every,
                    view_size=speaker.view_size,
                    role=speaker.role,
                )
                self.group.add_processor(self.speaker)
            if config.record is not None:
                record = config.record
                self.recorder = Recorder(
                    record.directory,
                    segment_seconds=record.segment_seconds,
                    segment_bytes=record.segment_bytes,
                )
                self.group.add_processor(self.recorder)
            if config.web is not None:
                shown = {
                    name: part
                    for name, part in (("wall", self.wall), ("speaker", self.speaker))
                    if part is not None
                }
                web = config.web
                self.web = WebView(
                    shown,
                    host=web.host,
                    port=web.port,
                    jpeg_quality=web.jpeg_quality,
                    max_clients=web.max_clients,
                    client_timeout=web.client_timeout,
                    head_timeout=web.head_timeout,
                    max_connections=web.max_connections,
                    max_connections_per_address=web.max_connections_per_address,
                    title=web.title,
                    token=None if web.token is None else web.token.get_secret_value(),
                    username=web.username,
                    password=None if web.password is None else web.password.get_secret_value(),
                )
                self.group.add_processor(self.web)
        except BaseException:
            self.close()
            raise
        return self

    def snapshot(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """Write the wall's newest picture to ``path`` (PNG, JPEG, ... by its extension).

        Returns its (width, height). Raises :class:`SyncStreamError` without a wall or
        before its first picture, or when the file cannot be written.
        """
        if self.wall is None:
            raise SyncStreamError("no wall in this session: nothing to snapshot")
        latest = self.wall.output.latest()
        if latest is None:
            raise SyncStreamError("the wall has no picture yet: no frame set arrived")
        name = os.fspath(path)
        try:
            written = cv2.imwrite(name, latest.image)
        except cv2.error as exc:
            raise SyncStreamError(f"cannot write {name}: {exc}") from exc
        if not written:
            raise SyncStreamError(f"cannot write {name} (directory missing or bad extension)")
        height, width = latest.image.shape[:2]
        return width, height

    def close(self) -> None:
        """Stop everything: processors (closed by the group), readers and senders."""
        self.group.close()

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
