"""``syncstream check FILE``: preflight of every sender host, as a table.

For each SSH host a camera uses: the SSH port answers, its host key is known (and equal to
the known one), login works, ffmpeg is there, each camera's device or file is there, and
the clock offset. Cameras whose sender runs on this machine get a "this machine" row.
Nothing is started and nothing is written (known_hosts included).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

from ..config import Camera, SSHHost
from ..errors import AuthenticationFailed, ConfigError, HostKeyError, SSHError
from ..senders import preflight_checks
from ..session_config import SessionConfig
from ..ssh import SSHSession

__all__ = ["HostCheck", "check_host", "check_local", "print_table", "run_check"]

SKIPPED = "-"


@dataclass
class HostCheck:
    """One row of the table. Each cell is text; ``failed`` names the cells that failed."""

    host: str
    cameras: list[str]
    cells: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def ok(self, column: str, text: str) -> None:
        self.cells[column] = text

    def fail(self, column: str, text: str) -> None:
        self.cells[column] = f"FAIL {text}"
        self.failed.append(column)

    @property
    def passed(self) -> bool:
        return not self.failed


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
        row.ok("host key", f"known ({key.kind})")
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
        row.fail("ssh", f"unreachable: {exc.strerror or exc}")
        return row
    row.ok("ssh", "reachable")
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
        row.ok("login", f"as {host.username or 'default user'}")

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
    row.ok("clock offset", "0 (same clock)")
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
                programs[program] = version
        for check in input_checks:
            status, _ = run(check.argv)
            if status != 0:
                devices.append(f"{camera.name}: missing {camera.sender.input}")
                device_failed = True
            else:
                devices.append(f"{camera.name}: {camera.sender.input}")
    if "ffmpeg" not in row.failed:
        row.ok("ffmpeg", ", ".join(f"{version}" for version in programs.values()))
    text = "; ".join(devices) or "test patterns"
    if device_failed:
        row.fail("devices", text)
    else:
        row.ok("devices", text)


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


def print_table(rows: list[HostCheck], out: TextIO) -> None:
    """The rows as a plain-text table, a column per check."""
    table = [list(COLUMNS)]
    for row in rows:
        table.append([row.host, *(row.cells.get(column, SKIPPED) for column in COLUMNS[1:])])
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for index, line in enumerate(table):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        out.write("  ".join(cells).rstrip())
        out.write("\n")
        if index == 0:
            out.write("  ".join("-" * width for width in widths) + "\n")
    out.flush()


def run_check(config: SessionConfig, out: TextIO = sys.stdout) -> int:
    """Print the preflight table; exit status 0 when every check passed, 1 otherwise."""
    rows = check_session(config)
    if not rows:
        out.write("no camera has a sender to start: nothing to check\n")
        return 0
    print_table(rows, out)
    failed = [row for row in rows if not row.passed]
    for row in failed:
        out.write(
            f"{row.host}: failed: {', '.join(row.failed)} (cameras {', '.join(row.cameras)})\n"
        )
    out.write(
        "all checks passed\n" if not failed else f"{len(failed)} of {len(rows)} hosts failed\n"
    )
    return 1 if failed else 0
