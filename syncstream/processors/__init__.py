"""Processing of frame sets: each processor runs on its own worker with a slot of one.

- :mod:`syncstream.processors.base`: the :class:`Processor` protocol and
  :class:`ProcessorWorker`, which runs any callable taking a
  :class:`~syncstream.FrameSet`.
"""

from .base import ErrorPolicy, Processor, ProcessorStats, ProcessorWorker, SupportsClose

__all__ = ["ErrorPolicy", "Processor", "ProcessorStats", "ProcessorWorker", "SupportsClose"]
