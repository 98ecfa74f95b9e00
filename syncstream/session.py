"""A session: a StreamGroup with the processors a :class:`SessionConfig` names.

What ``syncstream run FILE`` and ``syncstream demo`` run, usable from a script as well::

    with Session.from_file("cameras.toml") as session:
        print(session.web.url if session.web else "no web view")
        session.group.wait(timeout=60)
        session.snapshot("wall.png")

With ``[cluster]`` the group is a :class:`~syncstream.cluster.ClusterGroup`: the cameras are
read on the nodes of a Ray cluster, the wall and web view run here on the merged sets, and
``[record]`` records each node's cameras on that node (:class:`ShardRecorder`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from .errors import SyncStreamError
from .group import StreamGroup
from .processors.recorder import Recorder
from .processors.speaker import SpeakerDetector
from .processors.wall import Wall
from .processors.web import WebView
from .recording.index import INDEX_NAME
from .session_config import RecordSettings, SessionConfig, load_session_config

if TYPE_CHECKING:
    from .cluster import ClusterGroup

__all__ = ["UNPLACED_SHARD", "Session", "ShardRecorder"]

#: The folder of a cluster recording that holds the cameras of the shard without placement.
UNPLACED_SHARD = "unplaced"


@dataclass(frozen=True)
class ShardRecorder:
    """Makes the recorder of one shard of a cluster session (a shard processor factory,
    pickled to the nodes): the shard's cameras are recorded into ``directory/SHARD`` on the
    disk of the node that reads them (``directory/unplaced`` for cameras without placement).

    A shard started again after its process died finds its recording there and records
    into ``SHARD.2`` (``.3``, ...) instead: each life of a shard is one recording.
    """

    directory: str
    options: RecordSettings

    def __call__(self, shard: str) -> Recorder:
        """The recorder of shard ``shard`` (its placement resource, "" when unplaced)."""
        base = os.path.join(self.directory, shard or UNPLACED_SHARD)
        folder, life = base, 1
        while os.path.lexists(os.path.join(folder, INDEX_NAME)):
            life += 1
            folder = f"{base}.{life}"
        return Recorder.from_options(folder, self.options)


class Session:
    """Starts the cameras of a :class:`SessionConfig` and its wall, speaker detector,
    recorder and web view; :meth:`close` stops them all, remote senders included.

    Nothing runs before :meth:`start` (or ``with``). The parts the file leaves out are
    None: :attr:`wall`, :attr:`speaker`, :attr:`recorder`, :attr:`web`. With ``[cluster]``,
    :attr:`group` is a :class:`~syncstream.cluster.ClusterGroup` and :attr:`recorder` None
    (each node records its own cameras).
    """

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.group: StreamGroup | ClusterGroup = (
            StreamGroup(config.cameras, config.group)
            if config.cluster is None
            else _cluster_group(config)
        )
        self.wall: Wall | None = None
        self.speaker: SpeakerDetector | None = None
        self.recorder: Recorder | None = None
        self.web: WebView | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Session:
        """A session from a TOML file; raises :class:`ConfigError` saying what and where."""
        return cls(load_session_config(path))

    def start(self) -> Session:
        """Make the processors, start the group, then add them; on any failure everything
        is stopped. A processor that refuses its settings (a grid too small for the
        cameras) fails before any camera starts.

        Raises :class:`~syncstream.errors.GroupStartError` naming every camera that did not
        start, or the processor's error (an occupied web port: :class:`WebViewError`); with
        ``[cluster]``, :class:`~syncstream.errors.ClusterError` when the cluster cannot be
        reached and :class:`~syncstream.errors.MissingDependency` without Ray.
        """
        config = self.config
        names = [camera.name for camera in config.cameras]
        try:
            if config.wall.enabled:
                self.wall = Wall.from_options(config.wall, names)
            if config.speaker is not None and config.speaker.enabled:
                self.speaker = SpeakerDetector.from_options(config.speaker)
            if config.record is not None and config.cluster is None:
                self.recorder = Recorder.from_options(config.record.directory, config.record)
            if config.web is not None:
                shown = {
                    name: part
                    for name, part in (("wall", self.wall), ("speaker", self.speaker))
                    if part is not None
                }
                self.web = WebView.from_options(shown, config.web)
            self.group.start()
            for processor in (self.wall, self.speaker, self.recorder, self.web):
                if processor is not None:
                    self.group.add_processor(processor)
        except BaseException:
            self.close()
            raise
        return self

    def snapshot(self, path: str | os.PathLike[str], output: str = "wall") -> tuple[int, int]:
        """Write the newest picture of the ``"wall"`` or the ``"speaker"`` view to ``path``
        (PNG, JPEG, ... by its extension).

        Returns its (width, height). Raises :class:`SyncStreamError` when the session has
        no such processor, before its first picture, or when the file cannot be written.
        """
        processors = {"wall": self.wall, "speaker": self.speaker}
        if output not in processors:
            raise SyncStreamError(f"snapshot of {output!r}: 'wall' or 'speaker'")
        processor = processors[output]
        if processor is None:
            raise SyncStreamError(f"no {output} in this session: nothing to snapshot")
        return processor.output.write(path)

    def close(self) -> None:
        """Stop everything: processors, readers and senders; idempotent."""
        self.group.close()
        for processor in (self.wall, self.speaker, self.recorder, self.web):
            if processor is not None:  # made but not yet given to the group
                processor.close()

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _cluster_group(config: SessionConfig) -> ClusterGroup:
    """The :class:`~syncstream.cluster.ClusterGroup` of a session with ``[cluster]``; its
    ``[record]`` becomes a shard processor. Ray is imported when the group starts."""
    from .cluster import ClusterGroup  # only here: a session without [cluster] needs no Ray

    cluster = config.cluster
    assert cluster is not None
    record = config.record
    factories = {}
    if record is not None:  # a relative directory: the driver's, the same path on every node
        factories["record"] = ShardRecorder(os.path.abspath(record.directory), record)
    return ClusterGroup(
        config.cameras,
        address=cluster.address,
        placement=cluster.placement,
        pictures=config.cluster_pictures,
        max_restarts=cluster.max_restarts,
        poll_timeout=cluster.poll_timeout,
        connect_timeout=cluster.connect_timeout,
        config=config.group,
        shard_processors=factories,
    )
