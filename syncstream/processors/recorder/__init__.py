"""The recorder: each camera to segmented files, and an index of the frame sets.

- :mod:`~syncstream.processors.recorder.processor`: :class:`Recorder`, the processor.
- :mod:`~syncstream.processors.recorder.camera`: one camera's copy-or-encode choice and
  the segment each of its frames lands in.
- :mod:`~syncstream.processors.recorder.segments`: segment rotation and the writer thread.
- :mod:`~syncstream.processors.recorder.packets`: which packets MPEG-TS carries unchanged.

:class:`~syncstream.recording.Recording` reads what it wrote.
"""

from .camera import CameraRecordingStats
from .processor import Recorder, RecorderOptions, RecorderStats

__all__ = ["CameraRecordingStats", "Recorder", "RecorderOptions", "RecorderStats"]
