"""Write the small recordings under tests/data/ that the test suite replays.

Run from the repository root: ``python3 scripts/make_test_media.py``. Needs the ffmpeg
CLI. Every file is made from ffmpeg's lavfi test patterns, so nothing is downloaded.

- ``testsrc_wallclock.ts``: 2 s of 320x240 at 15 fps, H.264, MPEG-TS, recorded with the
  syncstream sender recipe (the sender's wall clock in the PTS), as a camera would send it;
- ``testsrc.mp4``: 2 s of 320x240 at 15 fps, H.264 in MP4, ordinary timestamps from zero;
- ``testsrc_mpeg2.ts``: 1 s of 320x240 at 15 fps, MPEG-2 video in MPEG-TS.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syncstream.senders import mpegts_udp_output_args  # noqa: E402

DATA = ROOT / "tests" / "data"
SIZE = "320x240"
FPS = 15


def _lavfi(seconds: float, pattern: str = "testsrc") -> list[str]:
    return ["-f", "lavfi", "-i", f"{pattern}=size={SIZE}:rate={FPS}:duration={seconds}"]


def make_wallclock_ts(path: pathlib.Path) -> None:
    """A .ts as a syncstream sender produces it: the same arguments, a file instead of UDP."""
    args = mpegts_udp_output_args("udp://127.0.0.1:9", gop=FPS, bitrate="200k")
    args = [*args[:-1], str(path)]  # the last argument is the UDP destination
    _ffmpeg(["-re", *_lavfi(2.0), *args])


def make_mp4(path: pathlib.Path) -> None:
    """A plain MP4 with timestamps from zero."""
    _ffmpeg([*_lavfi(2.0, "testsrc2"), "-c:v", "libx264", "-preset", "ultrafast",
             "-pix_fmt", "yuv420p", "-g", str(FPS), "-b:v", "200k", str(path)])  # fmt: skip


def make_mpeg2_ts(path: pathlib.Path) -> None:
    """MPEG-2 video in MPEG-TS, the codec of many older encoders."""
    _ffmpeg([*_lavfi(1.0, "smptebars"), "-c:v", "mpeg2video", "-b:v", "300k",
             "-f", "mpegts", str(path)])  # fmt: skip


def _ffmpeg(args: list[str]) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def main() -> None:
    """Write every file; existing ones are replaced."""
    DATA.mkdir(parents=True, exist_ok=True)
    make_wallclock_ts(DATA / "testsrc_wallclock.ts")
    make_mp4(DATA / "testsrc.mp4")
    make_mpeg2_ts(DATA / "testsrc_mpeg2.ts")
    for path in sorted(DATA.iterdir()):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
