"""A process's output cut into lines of bounded length, in time linear in its size.

A sender's ffmpeg (or anything run in its place) may write megabytes without a newline.
:class:`LineSplitter` holds at most one line of ``max_line`` bytes: a longer line is cut
there and marked, and the rest of it, up to its newline, is dropped and counted. Each
chunk is looked at once, never the bytes held before it, so a flood costs no more CPU
than its size.
"""

from __future__ import annotations

__all__ = ["MAX_LINE", "LineSplitter", "shorten"]

#: Longest line handed on (bytes); what a splitter holds at most.
MAX_LINE = 64 * 1024


class LineSplitter:
    """Feed it chunks of output; it returns the complete lines (without their newline).

    >>> splitter = LineSplitter(max_line=8)
    >>> splitter.feed(b"short\\nand a long one\\nend")
    [b'short', b'and a lo [... line cut at 8 bytes]']
    >>> splitter.flush(), splitter.dropped_bytes
    ([b'end'], 6)
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line}")
        self.max_line = max_line
        self._marker = f" [... line cut at {max_line} bytes]".encode()
        self._pending = bytearray()
        self._cutting = False  # inside a line already cut: drop up to its newline
        #: Bytes of cut lines that were dropped.
        self.dropped_bytes = 0
        #: The most bytes ever held (at most ``max_line``).
        self.high_water = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """Take the next chunk; return the lines it completes (cut lines end in a marker)."""
        lines: list[bytes] = []
        pending = self._pending
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end
            size = stop - start
            if self._cutting:
                self.dropped_bytes += size
            elif size > self.max_line - len(pending):
                room = self.max_line - len(pending)
                pending += chunk[start : start + room]
                self.dropped_bytes += size - room
                self.high_water = max(self.high_water, len(pending))
                lines.append(bytes(pending) + self._marker)
                pending.clear()
                self._cutting = True
            else:
                pending += chunk[start:stop]
                self.high_water = max(self.high_water, len(pending))
            if end < 0:
                break
            if not self._cutting:
                lines.append(bytes(pending))
            pending.clear()
            self._cutting = False
            start = end + 1
        return lines

    def flush(self) -> list[bytes]:
        """At the end of the output: its last line, if it had no newline."""
        line = bytes(self._pending)
        cutting, self._cutting = self._cutting, False
        self._pending.clear()
        return [line] if line and not cutting else []


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [... {len(text) - limit} more characters]"
