"""``syncstream check FILE``: preflight of every sender host, as a table.

For each SSH host a camera uses: the SSH port answers, its host key is known (and equal to
the known one), login works, ffmpeg is there, each camera's device or file is there, and
the clock offset. Cameras whose sender runs on this machine get a "this machine" row.
Cameras read from a URL or file (no sender) are checked first: a scheme syncstream reads,
and a file or device that exists, each problem named with its line in the session file.
Nothing is started and nothing is written (known_hosts included).
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO
from urllib.parse import urlsplit

from ..config import Camera, ReaderSettings, SSHHost, StreamConfig
from ..errors import (
    AuthenticationFailed,
    ConfigError,
    HostKeyError,
    SSHError,
    SyncStreamError,
)
from ..senders import preflight_checks
from ..session_config import SessionConfig
from ..socket_words import plain_socket_error
from ..sources import create_source
from ..ssh import SSHSession
from ..validation import key_line

__all__ = [
    "HostCheck",
    "check_host",
    "check_local",
    "check_sources",
    "print_table",
    "run_check",
    "write_table",
]

SKIPPED = "-"


@dataclass
class HostCheck:
    """One row of the table. Each cell is text; ``failed`` names the cells that failed."""

    host: str
    cameras: list[str]
    cells: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    #: Cameras whose own input is missing (the ``devices`` check).
    failed_cameras: list[str] = field(default_factory=list)

    def ok(self, column: str, text: str) -> None:
        self.cells[column] = text

    def fail(self, column: str, text: str) -> None:
        self.cells[column] = f"FAIL {text}"
        self.failed.append(column)

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def cameras_failed(self) -> list[str]:
        """The cameras a failure stops: those with a missing input, or every camera of the
        host when a check of the host itself (ssh, login, ffmpeg, ...) failed."""
        if set(self.failed) <= {"devices"}:
            return self.failed_cameras
        return self.cameras


#: Runs a command on the checked host: its exit status and output.
Runner = Callable[[list[str]], tuple[int, str]]

COLUMNS = ("host", "ssh", "host key", "login", "ffmpeg", "devices", "clock offset")


def _host_key(host: SSHHost, row: HostCheck) -> None:
    """Ask the server for its key (no login) and compare it with the known ones."""
    try:
        key = SSHSession(host).server_key()
    except ConfigError as exc:  # a known_hosts file that is not a regular file
        row.fail("host key", f"cannot read known hosts: {exc}")
        return
    except SSHError as exc:
        row.fail("host key", str(exc).removeprefix(f"{host.display_name}: "))
        return
    description = f"{key.kind} {key.fingerprint}"
    if key.status == "known":
        row.ok("host key", f"known {key.kind.removeprefix('ssh-')}")
    elif key.status == "differs":
        row.fail("host key", f"DIFFERS from the known one ({description})")
    elif host.trust_unknown_hosts:
        row.ok("host key", f"unknown, trusted by config ({description})")
    else:
        row.fail("host key", f"unknown ({description})")


def check_host(host: SSHHost, cameras: list[Camera], clock_rounds: int) -> HostCheck:
    """Every check of one SSH host; a check that cannot run after a failure is skipped."""
    row = HostCheck(host=host.display_name, cameras=[camera.name for camera in cameras])
    try:
        socket.create_connection((host.hostname, host.port), timeout=host.connect_timeout).close()
    except OSError as exc:
        row.fail("ssh", plain_socket_error(exc) or exc.strerror or str(exc))
        return row
    row.ok("ssh", "ok")
    _host_key(host, row)
    session = SSHSession(host)
    try:
        try:
            session.connect()
        except HostKeyError:
            row.fail("login", "refused: host key not trusted")
            return row
        except AuthenticationFailed as exc:
            row.fail("login", str(exc).removeprefix(f"{host.display_name}: "))
            return row
        except SSHError as exc:
            row.fail("login", str(exc).removeprefix(f"{host.display_name}: "))
            return row
        row.ok("login", "ok")  # as the user in the host column

        def run(argv: list[str]) -> tuple[int, str]:
            result = session.run(argv, timeout=host.connect_timeout)
            return result.returncode, (result.stdout + result.stderr).strip()

        _check_programs(row, cameras, run)
        try:
            offset = session.measure_clock_offset(clock_rounds)
            row.ok(
                "clock offset",
                f"{offset.offset * 1e3:+.1f} ms ±{offset.uncertainty * 1e3:.1f}",
            )
        except SSHError as exc:
            row.fail("clock offset", str(exc).removeprefix(f"{host.display_name}: "))
    except SSHError as exc:
        row.fail("login", f"connection lost: {exc}")
    finally:
        session.close()
    return row


def check_local(cameras: list[Camera]) -> HostCheck:
    """The checks of senders that run on this machine (no SSH, no clock offset)."""
    row = HostCheck(host="this machine", cameras=[camera.name for camera in cameras])
    row.ok("ssh", SKIPPED)
    row.ok("host key", SKIPPED)
    row.ok("login", SKIPPED)

    def run(argv: list[str]) -> tuple[int, str]:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except OSError as exc:
            return 127, str(exc)
        return result.returncode, (result.stdout + result.stderr).strip()

    _check_programs(row, cameras, run)
    row.ok("clock offset", "0 (same)")
    return row


def _check_programs(row: HostCheck, cameras: list[Camera], run: Runner) -> None:
    """ffmpeg (and its version) once per program path, then each camera's input."""
    programs: dict[str, str] = {}
    devices: list[str] = []
    device_failed = False
    for camera in cameras:
        assert camera.sender is not None
        ffmpeg_check, *input_checks = preflight_checks(camera.sender)
        program = camera.sender.ffmpeg
        if program not in programs:
            status, _ = run(ffmpeg_check.argv)
            if status != 0:
                programs[program] = "missing"
                row.fail("ffmpeg", f"{program!r} not found")
            else:
                status, output = run([program, "-hide_banner", "-version"])
                version = output.splitlines()[0].split()[2] if status == 0 and output else "?"
                version = version.split("-")[0]  # 5.1.6-0+deb12u1: the upstream release
                programs[program] = version
        for check in input_checks:
            status, _ = run(check.argv)
            if status != 0:
                devices.append(f"{camera.name}: missing {camera.sender.input}")
                device_failed = True
                if camera.name not in row.failed_cameras:
                    row.failed_cameras.append(camera.name)
            else:
                devices.append(f"{camera.name}: {camera.sender.input}")
    if "ffmpeg" not in row.failed:
        row.ok("ffmpeg", ", ".join(f"{version}" for version in programs.values()))
    text = "; ".join(devices) or "test patterns"
    if device_failed:
        row.fail("devices", text)
    else:
        row.ok("devices", text)


def source_problem(camera: Camera) -> str | None:
    """What is wrong with the URL or file ``camera`` is read from, or None; no I/O but a
    look at the file system: the backend is chosen as a stream would choose it."""
    assert camera.url is not None
    url = camera.url.strip()
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    path = (
        urlsplit(url).path
        if scheme == "file"
        else f"/dev/video{url}"
        if url.isdigit()
        else None
        if scheme
        else url
    )
    if path is not None and not os.path.exists(path):
        return f"no such {'device' if path.startswith('/dev/') else 'file'}: {path}"
    settings = camera.model_dump(include=set(ReaderSettings.model_fields))
    try:
        create_source(StreamConfig(url=url, name=camera.name, **settings))
    except SyncStreamError as exc:  # UnsupportedSource: a scheme or file type not read
        return str(exc)
    return None


def check_sources(config: SessionConfig, text: str | None = None) -> list[str]:
    """A line per camera read from a URL or file (no sender) whose source cannot be read,
    ``LINE: cameras[i].url: camera 'NAME': what is wrong`` (the line from the session
    file's ``text``, when given)."""
    problems = []
    for index, camera in enumerate(config.cameras):
        if camera.sender is not None or camera.url is None:
            continue
        problem = source_problem(camera)
        if problem is not None:
            line = key_line(text, ("cameras", index, "url")) if text is not None else None
            where = f"{line}: " if line is not None else ""
            problems.append(f"{where}cameras[{index}].url: camera {camera.name!r}: {problem}")
    return problems


def check_session(config: SessionConfig) -> list[HostCheck]:
    """Check every host of ``config`` in parallel, in the order of their first camera."""
    local: list[Camera] = []
    remote: dict[str, tuple[SSHHost, list[Camera]]] = {}
    for camera in config.cameras:
        if camera.sender is None:
            continue
        if camera.host is None:
            local.append(camera)
        else:
            remote.setdefault(camera.host.display_name, (camera.host, []))[1].append(camera)
    rounds = config.group.clock_rounds
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(remote)))) as pool:
        futures = [pool.submit(check_host, host, cams, rounds) for host, cams in remote.values()]
        rows = [future.result() for future in futures]
    if local:
        rows.insert(0, check_local(local))
    return rows


#: The widest the table gets (characters); longer cells are cut and given in full below it.
TABLE_WIDTH = 100
_MIN_CELL = 10  # a cut cell keeps at least this much: a few characters and its "… [n]" mark


def print_table(rows: list[HostCheck], out: TextIO, width: int = TABLE_WIDTH) -> None:
    """The rows as a plain-text table, a column per check, at most ``width`` wide: a cell
    that does not fit is cut, marked ``… [n]`` and printed in full as note ``[n]`` below."""
    body = [[row.host, *(row.cells.get(column, SKIPPED) for column in COLUMNS[1:])] for row in rows]
    limits = _fit(
        [max(len(line[i]) for line in [list(COLUMNS), *body]) for i in range(len(COLUMNS))], width
    )
    notes: list[str] = []
    for row, line in zip(rows, body, strict=True):
        for index, (cell, limit) in enumerate(zip(line, limits, strict=True)):
            if len(cell) > limit:
                notes.append(f"[{len(notes) + 1}] {row.host}: {COLUMNS[index]}: {cell}")
                mark = f"… [{len(notes)}]"
                line[index] = cell[: max(0, limit - len(mark))] + mark
    write_table(COLUMNS, body, out)
    for note in notes:
        out.write(note + "\n")


def _fit(widths: list[int], total: int) -> list[int]:
    """Column widths whose sum with two-space gaps is at most ``total``: the widest column
    is narrowed first, none below its header's width or ``_MIN_CELL``; the host column is
    cut only beyond 40 characters (it names the row)."""
    widths = list(widths)
    floors = [max(len(name), _MIN_CELL) for name in COLUMNS]
    floors[0] = min(widths[0], 40)
    while sum(widths) + 2 * (len(widths) - 1) > total:
        narrowable = [i for i, w in enumerate(widths) if w > floors[i]]
        if not narrowable:
            break
        widest = max(narrowable, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def write_table(header: Sequence[str], body: list[list[str]], out: TextIO) -> None:
    """``header`` and ``body`` as plain-text columns two spaces apart, the header underlined."""
    table = [list(header), *body]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for index, line in enumerate(table):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        out.write("  ".join(cells).rstrip())
        out.write("\n")
        if index == 0:
            out.write("  ".join("-" * width for width in widths) + "\n")
    out.flush()


def run_check(config: SessionConfig, out: TextIO = sys.stdout, *, path: str | None = None) -> int:
    """Print the source problems and the preflight table; exit status 0 when every check
    passed, 1 otherwise. ``path``: the session file, for the line numbers.

    With ``[cluster]`` the cameras' senders start on the cluster's nodes: the cluster's
    nodes and placement are checked instead
    (:func:`~syncstream.cli.cluster_check.run_cluster_check`).
    """
    if config.cluster is not None:
        from .cluster_check import run_cluster_check

        return run_cluster_check(config, out)
    text = None
    if path is not None:
        try:
            text = pathlib.Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeError):  # read once already; without it, no line numbers
            text = None
    sources = check_sources(config, text)
    for problem in sources:
        out.write(f"{path}:{problem}\n" if path is not None else f"{problem}\n")
    rows = check_session(config)
    if not rows:
        if sources:
            out.write(f"{len(sources)} cameras cannot be read\n")
            return 1
        out.write("no camera has a sender to start: sources checked, no host to check\n")
        return 0
    print_table(rows, out)
    failed = [row for row in rows if not row.passed]
    for row in failed:
        cameras = ", ".join(row.cameras_failed)
        out.write(f"{row.host}: failed: {', '.join(row.failed)} (cameras {cameras})\n")
    if not failed and not sources:
        out.write("all checks passed\n")
        return 0
    if failed:
        out.write(f"{len(failed)} of {len(rows)} hosts failed\n")
    if sources:
        out.write(f"{len(sources)} cameras cannot be read\n")
    return 1
