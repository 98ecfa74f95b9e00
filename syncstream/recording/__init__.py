"""Recordings on disk: the layout and index format, and :class:`Recording`, which replays
a recording into the frame sets that were recorded.

- :mod:`~syncstream.recording.index`: file layout and the JSON-lines index schema.
- :mod:`~syncstream.recording.writer`: writing the index: whole lines, on disk before
  they count, an end line even on a full disk.
- :mod:`~syncstream.recording.reader`: :class:`Recording`.

:class:`~syncstream.processors.Recorder` writes them.
"""

from .reader import Recording

__all__ = ["Recording"]
