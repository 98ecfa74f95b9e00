"""The package surface: exports, the error tree, generated docs, the demo command."""

from __future__ import annotations

import inspect
import os
import pathlib
import subprocess
import sys

import pytest

import syncstream
from syncstream import errors
from syncstream.config import StreamConfig
from syncstream.stream import StreamOptions

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_all_names_exist_and_are_documented() -> None:
    assert sorted(syncstream.__all__) == sorted(set(syncstream.__all__))
    for name in syncstream.__all__:
        obj = getattr(syncstream, name)
        if name != "__version__":
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_every_error_derives_from_the_root_and_a_builtin() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SyncStreamError)
        if cls is not errors.SyncStreamError:
            builtin_bases = [b for b in cls.__mro__ if b.__module__ == "builtins"]
            assert len(builtin_bases) > 2, f"{name} adds no builtin besides Exception"
    assert issubclass(errors.ReadTimeout, TimeoutError)
    assert issubclass(errors.StreamEnded, EOFError)


def test_stream_options_mirror_the_config_fields() -> None:
    assert set(StreamOptions.__annotations__) == set(StreamConfig.model_fields) - {"url"}


def test_display_name_hides_credentials() -> None:
    assert StreamConfig(url="http://u:pw@cam:8080/v").display_name == "http://cam:8080/v"
    assert StreamConfig(url="udp://1.2.3.4:5", name="door").display_name == "door"


def test_configuration_reference_is_current() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_config_docs
    finally:
        sys.path.pop(0)
    on_disk = (ROOT / "docs" / "configuration.md").read_text()
    assert on_disk == gen_config_docs.render(), "run python3 scripts/gen_config_docs.py"


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")))
def test_examples_run_with_simulated_cameras(script: pathlib.Path, tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [sys.executable, str(script), "--local", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # what an example writes stays in tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
