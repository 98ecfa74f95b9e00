"""The documentation site: every public name has a docstring and a place in the API reference.

The site is built with ``python3 -m mkdocs build --strict`` (a broken link or anchor fails
the build); scripts/test.sh builds it once and hands its folder over in
``SYNCSTREAM_DOCS_SITE``, otherwise the fixture builds it here. Docstrings are read the way
the reference reads them: by griffe, from the source, without importing anything, with the
``#:`` comments of attributes and type aliases as their docstrings (scripts/docs_roles.py).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import zlib
from types import ModuleType
from typing import Any

import pytest

import syncstream
import syncstream.cluster
import syncstream.processors

griffe = pytest.importorskip("griffe", reason="the docs extra: pip install -e '.[docs]'")
pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")

ROOT = pathlib.Path(__file__).resolve().parent.parent
PUBLIC_MODULES = [syncstream, syncstream.processors, syncstream.cluster]


def _public_names(module: ModuleType) -> list[str]:
    """The names a module exports, less dunder metadata such as ``__version__``."""
    names: list[str] = module.__all__
    return [name for name in names if not name.startswith("__")]


@pytest.fixture(scope="module")
def site() -> pathlib.Path:
    given = os.environ.get("SYNCSTREAM_DOCS_SITE")
    if given:
        return pathlib.Path(given)
    import tempfile

    folder = pathlib.Path(tempfile.mkdtemp(prefix="syncstream-docs-"))
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    return folder


def _inventory(site: pathlib.Path) -> set[str]:
    """The object names in the site's ``objects.inv`` (Sphinx inventory version 2)."""
    data = (site / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):  # four header lines, then the zlib-compressed entries
        header_end = data.index(b"\n", header_end) + 1
    assert data.startswith(b"# Sphinx inventory version 2")
    entries = zlib.decompress(data[header_end:]).decode()
    return {line.split(" ", 1)[0] for line in entries.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def source() -> Any:
    """The package as griffe reads it for the reference: every module, nothing imported."""
    return griffe.load(
        "syncstream",
        search_paths=[str(ROOT)],
        allow_inspection=False,
        resolve_aliases=True,
        extensions=griffe.load_extensions(str(ROOT / "scripts" / "docs_roles.py")),
    )


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_public_name_has_a_docstring_in_the_source(module: ModuleType, source: Any) -> None:
    package = source if module is syncstream else source[module.__name__.split(".", 1)[1]]
    undocumented = []
    for name in _public_names(module):
        obj = package[name]  # an alias resolves to where the name is defined
        if obj.docstring is None or not obj.docstring.value.strip():
            undocumented.append(f"{module.__name__}.{name} ({obj.canonical_path})")
    assert not undocumented, f"no docstring: {', '.join(undocumented)}"


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_public_name_is_in_the_api_reference(module: ModuleType, site: pathlib.Path) -> None:
    inventory = _inventory(site)
    missing = [
        f"{module.__name__}.{name}"
        for name in _public_names(module)
        if f"{module.__name__}.{name}" not in inventory
    ]
    assert not missing, f"not in the API reference (docs/reference/): {', '.join(missing)}"


def test_the_reference_pages_render_each_module() -> None:
    pages = (ROOT / "docs" / "reference").glob("*.md")
    directives = {
        line.removeprefix("::: ").strip()
        for page in pages
        for line in page.read_text().splitlines()
        if line.startswith("::: ")
    }
    assert {module.__name__ for module in PUBLIC_MODULES} <= directives
