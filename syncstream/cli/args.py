"""Argument types shared by the ``syncstream`` command and the example scripts."""

from __future__ import annotations

import argparse
import itertools
import math
import pathlib
from collections.abc import Iterator

import cv2

from ..senders import free_udp_port

__all__ = ["address_arg", "image_path_arg", "port_arg", "positive_arg", "size_arg", "udp_ports"]


def size_arg(text: str) -> tuple[int, int]:
    """``WxH`` in even pixels, as ffmpeg's encoder wants them."""
    width, sep, height = text.partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f"size must look like 640x480, not {text!r}")
    size = int(width), int(height)
    if not all(2 <= side <= 8192 and side % 2 == 0 for side in size):
        raise argparse.ArgumentTypeError(f"width and height must be even, 2 to 8192: {text!r}")
    return size


def address_arg(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6addr]:PORT``) for the web view; port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not (sep and host and port.isdigit() and int(port) <= 65535):
        raise argparse.ArgumentTypeError(f"address must look like 127.0.0.1:8080, not {text!r}")
    return host.strip("[]"), int(port)


def port_arg(text: str) -> int:
    """A UDP or TCP port number, 1 to 65535."""
    if not (text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"port must be 1 to 65535, not {text!r}")
    return int(text)


def udp_ports(base: int | None, host: str = "127.0.0.1") -> Iterator[int]:
    """Ports for cameras, one per ``next()``: ``base``, ``base + 1``, ... (a firewall's open
    range, from ``--port-base``), or a free one on ``host`` each time when ``base`` is None."""
    if base is not None:
        return iter(range(base, 65536))
    return (free_udp_port(host) for _ in itertools.count())


def positive_arg(text: str) -> float:
    """A finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def image_path_arg(text: str) -> str:
    """A picture file to write: its directory exists and OpenCV writes its type."""
    folder = pathlib.Path(text).parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"no directory {str(folder)!r}")
    if not cv2.haveImageWriter(text):
        raise argparse.ArgumentTypeError(f"cannot write that image type: {text!r}")
    return text
