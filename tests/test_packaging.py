"""The sdist: it carries the tests and everything they read, so its tests run as they are."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# what setuptools puts in every sdist: the package, readme, license, project file, manifest
IN_EVERY_SDIST = {"syncstream", "README.md", "LICENSE", "pyproject.toml", "MANIFEST.in"}
# the only top-level paths of the repository that stay out of the sdist
LEFT_OUT = {".ci", ".gitignore"}


def _manifest() -> set[str]:
    """The top-level paths MANIFEST.in grafts or includes."""
    named: set[str] = set()
    for line in (ROOT / "MANIFEST.in").read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[0] in ("graft", "include"):
            named.update(words[1:])
    return named


def test_the_sdist_carries_every_top_level_path_but_ci() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("a git checkout lists the repository's files (an sdist has no .git)")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    top_level = {path.split("/", 1)[0] for path in listed}
    shipped = IN_EVERY_SDIST | _manifest()
    assert top_level - LEFT_OUT <= shipped, f"add to MANIFEST.in: {top_level - LEFT_OUT - shipped}"
    assert all((ROOT / path).exists() for path in _manifest())


def test_the_license_is_an_spdx_expression_with_its_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert all((ROOT / name).is_file() for name in project["license-files"])
    # PEP 639: a license expression replaces the license classifiers
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
