"""The web view's page: the live picture of an output or of one camera, a chart per
camera and the tables of the stats.

One self-contained HTML document (no external scripts, styles or fonts, so it works
offline and leaks nothing; its Content-Security-Policy forbids them). The picture is an
``<img>`` on ``stream.mjpg``; the page fetches ``stats`` about once a second, keeps each
camera's fps, latency and skew of the last minute and draws them on a canvas per camera,
and writes every value with ``textContent``, never as HTML, since camera and processor
names come from configuration files. One column on a narrow (phone) screen, two on a
wider one.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Sequence
from importlib import resources

__all__ = ["page_template", "render_page"]


@functools.cache
def page_template() -> str:
    """The page (``page.html`` beside this module), with ``$title`` and ``$outputs`` (a
    JSON list of output names) to fill in; read once."""
    return (resources.files(__package__) / "page.html").read_text(encoding="utf-8")


def render_page(title: str, outputs: Sequence[str]) -> bytes:
    """The page for ``outputs`` (the first shown by default), as UTF-8."""
    # "<" escaped inside the script, so a name cannot close the <script> element
    values = {
        "title": html.escape(title),
        "outputs": json.dumps(list(outputs)).replace("<", "\\u003c"),
    }
    page = re.sub(r"\$(title|outputs)", lambda match: values[match.group(1)], page_template())
    return page.encode("utf-8")
