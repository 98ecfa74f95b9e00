"""Start/stop the loopback RTSP test server (``tests/rtsp_server.py``).

The server is GStreamer's RTSP server driven through PyGObject, which normally
lives only in Debian's system interpreter (``/usr/bin/python3`` + the
``python3-gi`` package), not in the pyenv/venv interpreter running the tests.
So the server runs as a subprocess of *that* interpreter, and this module only
needs the standard library.

Usage::

    from rtsp_fixture import rtsp_server, rtsp_server_available  # tests/ is on sys.path

    reason = rtsp_server_available()
    if reason is not None:
        pytest.skip(reason)
    with rtsp_server() as url:          # e.g. "rtsp://127.0.0.1:41234/test"
        container = av.open(url, options={"rtsp_transport": "tcp"})
        ...

The interpreter can be forced with the ``SYNCSTREAM_RTSP_PYTHON`` environment
variable; otherwise ``/usr/bin/python3`` and then the current interpreter are
tried.  See ``tests/RTSP_NOTES.md`` for the packages needed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SERVER_SCRIPT = Path(__file__).resolve().with_name("rtsp_server.py")
PYTHON_ENV_VAR = "SYNCSTREAM_RTSP_PYTHON"
SYSTEM_PYTHON = "/usr/bin/python3"
HOST = "127.0.0.1"

READY_TIMEOUT_S = 20.0
TERMINATE_GRACE_S = 3.0
# The first ``--check`` on a machine may have to build GStreamer's plugin
# registry (well under a second here, but allow for slow CI machines).
CHECK_TIMEOUT_S = 60.0


class RtspServerError(RuntimeError):
    """The RTSP test server could not be started."""


def _candidate_pythons() -> list[str]:
    forced = os.environ.get(PYTHON_ENV_VAR)
    if forced:
        return [forced]
    candidates = [SYSTEM_PYTHON, sys.executable]
    return [c for i, c in enumerate(candidates) if c and c not in candidates[:i]]


def _child_env() -> dict[str, str]:
    # ``-I`` already makes the child ignore PYTHON* variables and user site
    # dirs; also drop the pyenv/venv markers so nothing leaks into it.
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def _server_command(python: str, args: Sequence[str]) -> list[str]:
    return [python, "-I", str(SERVER_SCRIPT), *args]


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[str | None, str]:
    """Return ``(python, "")`` for a usable interpreter or ``(None, reason)``."""
    if not SERVER_SCRIPT.is_file():
        return None, f"RTSP server script not found: {SERVER_SCRIPT}"
    reasons: list[str] = []
    for python in _candidate_pythons():
        if shutil.which(python) is None:
            reasons.append(f"{python}: not found")
            continue
        try:
            result = subprocess.run(
                _server_command(python, ["--check"]),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT_S,
                env=_child_env(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{python}: {exc}")
            continue
        if result.returncode == 0 and result.stdout.strip() == "OK":
            return python, ""
        detail = " ".join(result.stderr.split())[-400:] or f"exit status {result.returncode}"
        reasons.append(f"{python}: {detail}")
    return None, ("RTSP test server unavailable (see tests/RTSP_NOTES.md): " + "; ".join(reasons))


def rtsp_server_available() -> str | None:
    """Return None if the RTSP test server can run here, else the reason why not.

    The result is cached for the life of the process.
    """
    python, reason = _probe()
    return None if python is not None else reason


def _tail(path: Path, max_lines: int = 25, max_chars: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<stderr unavailable>"
    tail = "\n".join(text.rstrip().splitlines()[-max_lines:])[-max_chars:]
    return tail or "<empty>"


def _terminate(proc: subprocess.Popen[str]) -> None:
    """End ``proc``: SIGTERM, then SIGKILL after a grace period; reap it."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the server also treats stdin EOF as "stop"
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stop(proc: subprocess.Popen[str], reader: threading.Thread) -> None:
    """End ``proc`` and release its pipes once ``reader`` has drained stdout."""
    _terminate(proc)
    reader.join(timeout=1.0)  # sees EOF now that the server is gone
    if reader.is_alive():
        return  # leave stdout to the daemon thread rather than race it
    if proc.stdout is not None:
        with contextlib.suppress(OSError):
            proc.stdout.close()


@contextlib.contextmanager
def rtsp_server(
    port: int | None = None,
    *,
    path: str = "/test",
    width: int = 640,
    height: int = 480,
    fps: int = 25,
    extra_args: Sequence[str] = (),
    ready_timeout: float = READY_TIMEOUT_S,
) -> Iterator[str]:
    """Run the RTSP test server on 127.0.0.1 and yield its ``rtsp://`` URL.

    ``port=None`` lets the server bind a free port itself (no race between
    picking a port and binding it); the real port is in the yielded URL.
    ``extra_args`` are passed to ``tests/rtsp_server.py`` (e.g.
    ``["--pattern", "smpte", "--bitrate", "500"]``).

    Raises RtspServerError if the server is unavailable or not ready within
    ``ready_timeout`` seconds. On exit the server is stopped (SIGTERM, then
    SIGKILL after 3 s); it also exits by itself if this process dies, because
    it watches its stdin pipe.
    """
    python, reason = _probe()
    if python is None:
        raise RtspServerError(reason)

    args = [
        "--host",
        HOST,
        "--port",
        str(port if port is not None else 0),
        "--path",
        path,
        "--width",
        str(width),
        "--height",
        str(height),
        "--fps",
        str(fps),
        "--exit-on-stdin-eof",
        *extra_args,
    ]
    with tempfile.TemporaryDirectory(prefix="syncstream-rtsp-") as tmp:
        stderr_path = Path(tmp) / "stderr.log"
        with stderr_path.open("w") as stderr_file:
            proc = subprocess.Popen(
                _server_command(python, args),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr_file,
                text=True,
                env=_child_env(),
                start_new_session=True,
            )  # keep terminal Ctrl-C to ourselves
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(
            target=_pump, args=(proc, lines), daemon=True, name="rtsp-server-stdout"
        )
        reader.start()
        try:
            url = _wait_ready(proc, lines, ready_timeout, stderr_path)
            yield url
        finally:
            _stop(proc, reader)


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    """Copy the server's stdout lines to ``lines`` until EOF (then None).

    Reading until EOF also means the server can never block on a full pipe.
    """
    assert proc.stdout is not None
    with contextlib.suppress(OSError, ValueError):
        for line in proc.stdout:
            lines.put(line)
    lines.put(None)


def _wait_ready(
    proc: subprocess.Popen[str], lines: queue.Queue[str | None], timeout: float, stderr_path: Path
) -> str:
    """Wait for the server's ``READY <url>`` line and return the URL."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            problem = f"not ready after {timeout:.0f} s"
            break
        try:
            line = lines.get(timeout=min(remaining, 0.25))
        except queue.Empty:
            continue
        if line is None:  # stdout closed: the server exited
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1.0)
            problem = f"exited with status {proc.returncode}"
            break
        seen.append(line.rstrip())
        if line.startswith("READY "):
            return line.split(None, 1)[1].strip()
    _terminate(proc)  # stderr is complete only once the server has exited
    stdout = "\n".join(seen[-10:])
    raise RtspServerError(
        f"RTSP test server {problem}.\n"
        f"command: {' '.join(proc.args)}\n"  # type: ignore[arg-type]
        + (f"stdout:\n{stdout}\n" if stdout else "")
        + f"stderr (tail):\n{_tail(stderr_path)}"
    )
