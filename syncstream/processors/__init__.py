"""Processing of frame sets: each processor runs on its own worker with a slot of one.

- :mod:`syncstream.processors.base`: the :class:`Processor` protocol and
  :class:`ProcessorWorker`, which runs any callable taking a
  :class:`~syncstream.FrameSet`.
- :mod:`syncstream.processors.output`: :class:`ImageOutput`, the newest picture a
  processor drew, for viewers, writers and the web view.
- :mod:`syncstream.processors.overlay`: text, clock, latency and face-box drawing.
"""

from .base import (
    ErrorPolicy,
    Processor,
    ProcessorStats,
    ProcessorWorker,
    SupportsAttach,
    SupportsClose,
)
from .output import HasOutput, ImageOutput, OutputImage

__all__ = [
    "ErrorPolicy",
    "HasOutput",
    "ImageOutput",
    "OutputImage",
    "Processor",
    "ProcessorStats",
    "ProcessorWorker",
    "SupportsAttach",
    "SupportsClose",
]
