"""The web view: an HTTP server for processors' pictures (MJPEG) and the group's stats.

- :mod:`~syncstream.processors.web.view`: :class:`WebView`: its life cycle, stats, and its
  place in a group.
- :mod:`~syncstream.processors.web.routes`: what a request is answered, for both transports.
- :mod:`~syncstream.processors.web.asgi`: the routes as an ASGI app (``view.asgi_app()``).
- :mod:`~syncstream.processors.web.feed`: one JPEG encoder per output, the MJPEG writer.
- :mod:`~syncstream.processors.web.cameras`: a feed per camera, fed while it is watched.
- :mod:`~syncstream.processors.web.clients`: the clients watching streams, for the stats.
- :mod:`~syncstream.processors.web.connections`: the one thread that accepts connections,
  reads requests under a deadline and writes short answers; streams get their own threads.
- :mod:`~syncstream.processors.web.exchange`: one connection: its state and socket steps.
- :mod:`~syncstream.processors.web.answers`: what a handler answers, and the worker and
  stream threads that carry the answers that leave the loop.
- :mod:`~syncstream.processors.web.limits`: the caps on connections, and their counts.
- :mod:`~syncstream.processors.web.auth`: the optional token or user name and password.
- :mod:`~syncstream.processors.web.options`: :class:`WebViewOptions`, the view's settings.
- :mod:`~syncstream.processors.web.http`: request parsing with size caps, response heads.
- :mod:`~syncstream.processors.web.page`: the HTML page (``page.html``): the picture, a
  chart per camera, the tables.
"""

from .asgi import AsgiApp
from .feed import WebOutputStats
from .options import WebViewOptions
from .view import Showable, WebClientStats, WebView, WebViewStats

__all__ = [
    "AsgiApp",
    "Showable",
    "WebClientStats",
    "WebOutputStats",
    "WebView",
    "WebViewOptions",
    "WebViewStats",
]
