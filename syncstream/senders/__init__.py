"""ffmpeg senders: the low-delay MPEG-TS command, and the processes that run it.

- :mod:`~syncstream.senders.command`: :class:`~syncstream.SenderConfig` to an argv list;
- :class:`LocalSender`: ffmpeg on this machine;
- :class:`RemoteSender`: ffmpeg on a camera host over SSH;
- both share :class:`~syncstream.senders.base.Sender`: preflight, watcher, restarts, stop;
- :class:`SenderFleet`: the senders of a group's cameras, started in parallel;
- :class:`FrameSender`: a program's own numpy pictures, encoded by PyAV and sent the same
  way (MPEG-TS over UDP, the capture time in the timestamps), without an ffmpeg process.
"""

from .base import PreflightCheck, ProcessHandle, Sender, preflight_checks
from .command import (
    clock_text_filter,
    free_udp_port,
    input_args,
    mpegts_udp_output_args,
    receiver_address,
    sender_argv,
    simulated_camera_argv,
    testsrc_input_args,
)
from .fleet import SenderFleet, sender_config_for
from .frame_sender import FrameSender, FrameSenderConfig, FrameSenderStats
from .local import LocalSender
from .remote import RemoteSender

__all__ = [
    "FrameSender",
    "FrameSenderConfig",
    "FrameSenderStats",
    "LocalSender",
    "PreflightCheck",
    "ProcessHandle",
    "RemoteSender",
    "Sender",
    "SenderFleet",
    "clock_text_filter",
    "free_udp_port",
    "input_args",
    "mpegts_udp_output_args",
    "preflight_checks",
    "receiver_address",
    "sender_argv",
    "sender_config_for",
    "simulated_camera_argv",
    "testsrc_input_args",
]
