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


def _module_imports() -> dict[str, set[str]]:
    """Each syncstream module to the syncstream modules it imports at module level, those
    imported for type checking only included (imports inside functions are not)."""
    import ast

    root = pathlib.Path(syncstream.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = ["syncstream", *path.relative_to(root).with_suffix("").parts]
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        statements = list(ast.parse(path.read_text()).body)
        found: set[str] = set()
        for node in statements:
            if isinstance(node, ast.If):  # if TYPE_CHECKING:
                statements += node.body
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                for alias in node.names:
                    qualified = f"{module}.{alias.name}"  # a submodule, or a name in module
                    found.add(qualified if qualified in modules else module)
        graph[name] = found & modules.keys()
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for module in graph[todo.pop()] - seen:
            seen.add(module)
            todo.append(module)
    return seen


def test_processors_know_a_group_view_not_the_group_and_stats_not_streams() -> None:
    graph = _module_imports()
    processors = [name for name in graph if name.startswith("syncstream.processors")]
    assert "syncstream.processors.wall" in processors
    for name in processors:
        assert "syncstream.group" not in _reachable(graph, name), name
    assert "syncstream.stats" not in _reachable(graph, "syncstream.stream")
    assert "syncstream.group" in _reachable(graph, "syncstream.session")  # it sees imports


def test_examples_import_the_library_from_its_public_api() -> None:
    """What a program needs (cameras, sessions, a free port) comes from ``syncstream``; the
    examples reach elsewhere only for argument parsing and the session file's tables."""
    import ast

    allowed = {"syncstream", "syncstream.cli.args", "syncstream.session_config"}
    for script in sorted((ROOT / "examples").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("syncstream"):
                assert node.module in allowed, f"{script.name}: from {node.module} import"
                if node.module == "syncstream":
                    for alias in node.names:
                        assert alias.name in syncstream.__all__, f"{script.name}: {alias.name}"
    for name in ("CameraStream", "Session", "SessionConfig", "free_udp_port"):
        assert name in syncstream.__all__
