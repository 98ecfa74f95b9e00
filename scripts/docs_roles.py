"""A griffe extension for the API reference (mkdocs.yml): docstrings written for Sphinx.

syncstream documents attributes, dataclass fields and type aliases with ``#:`` comments
above the assignment (or after it on the same line), as Sphinx's autodoc reads them, and
names objects with roles such as :class:`~syncstream.frames.Frame`. griffe reads neither:
this extension turns the comments into the attributes' docstrings and each role into
inline code (```Frame```), while griffe reads the source without importing it.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

# :class:`~syncstream.frames.Frame` -> `Frame`; :meth:`StreamGroup.read` -> `StreamGroup.read`
_ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj|const):`(~?)([^`]+)`")
_TRAILING = re.compile(r"#:\s?(.*)$")


def _code(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _comment_doc(lines: list[str], node: ast.AST) -> str | None:
    """The ``#:`` comment lines just above ``node``, or its trailing ``#:`` comment."""
    lineno = getattr(node, "lineno", 0)
    above: list[str] = []
    index = lineno - 2  # the line above the assignment, 0-based
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        above.insert(0, lines[index].lstrip()[2:].removeprefix(" "))
        index -= 1
    if above:
        return "\n".join(above)
    if 0 < lineno <= len(lines):
        trailing = _TRAILING.search(lines[lineno - 1])
        if trailing and trailing.group(1).strip():
            return trailing.group(1).strip()
    return None


class SphinxRoles(griffe.Extension):
    """``#:`` comments become docstrings; Sphinx roles become inline code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value)

    def on_attribute_instance(
        self,
        *,
        node: ast.AST | griffe.ObjectNode,
        attr: griffe.Attribute,
        agent: Any,
        **kwargs: Any,
    ) -> None:
        if attr.docstring is not None or not isinstance(agent, griffe.Visitor):
            return
        if not isinstance(node, ast.AST):
            return
        text = _comment_doc(agent.code.splitlines(), node)
        if text:
            attr.docstring = griffe.Docstring(
                _ROLE.sub(_code, text), lineno=attr.lineno, endlineno=attr.lineno, parent=attr
            )
