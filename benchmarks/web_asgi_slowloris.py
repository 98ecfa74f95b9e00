"""Slowloris against the web view served by uvicorn (its ASGI app) and by its own server.

Per round and server, ``--connections`` connections (:class:`~syncstream.testing.slowloris.
Slowloris`, from 127.0.0.2 and up) each send one byte of a request head that never ends
every 0.5-0.8 s for ``--seconds``, while a legitimate client on 127.0.0.1 asks for
``/stats`` over and over. Reported per server: how many dripping connections the server
closed (each is opened again at once), and the ``/stats`` requests answered and refused.
The servers: the view's own (default limits), uvicorn with its defaults, and uvicorn with
``--limit-concurrency`` (``--limit``), the mounted view in a Starlette program each time.

Run: ``python3 benchmarks/web_asgi_slowloris.py`` (``--rounds``, ``--seconds``,
``--connections``, ``--limit``); needs the test extra (uvicorn, starlette).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from syncstream.processors.output import ImageOutput
from syncstream.processors.web import WebView
from syncstream.testing.slowloris import Slowloris


@contextlib.contextmanager
def _uvicorn(view: WebView, limit: int | None) -> Iterator[int]:
    """uvicorn serving a Starlette program that mounts ``view`` at /cams; yields its port."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = Starlette(routes=[Mount("/cams", app=view.asgi_app())])
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="critical", limit_concurrency=limit, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def _get(port: int, path: str) -> int:
    """GET ``path`` on a new connection; the answer's status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


def _round(kind: str, seconds: float, connections: int, limit: int) -> dict[str, int]:
    output = ImageOutput("wall")
    output.publish(np.zeros((480, 640, 3), np.uint8))
    with contextlib.ExitStack() as stack:
        if kind == "own":
            view = stack.enter_context(WebView(output))
            port, path = view.address[1], "/stats"
        else:
            view = stack.enter_context(WebView(output, listen=False))
            port = stack.enter_context(_uvicorn(view, limit if kind == "limited" else None))
            path = "/cams/stats"
        answered = refused = failed = 0
        with Slowloris(port, count=connections, per_source=10) as dripper:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    status = _get(port, path)
                except OSError:  # reset, refused, or no answer within 5 s
                    failed += 1
                    continue
                answered += status == 200
                refused += status == 503
            closed = dripper.closed_by_server
    return {"answered": answered, "refused": refused, "failed": failed, "closed": closed}


def main(argv: list[str] | None = None) -> None:
    """Run the rounds and print the medians per server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--limit", type=int, default=64, help="uvicorn --limit-concurrency")
    args = parser.parse_args(argv)
    kinds = {
        "own": "the view's own server",
        "uvicorn": "uvicorn, defaults",
        "limited": f"uvicorn --limit-concurrency {args.limit}",
    }
    results: dict[str, list[dict[str, int]]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            results[kind].append(_round(kind, args.seconds, args.connections, args.limit))
    print(
        f"{args.connections} dripping connections for {args.seconds:.0f} s, "
        f"medians of {args.rounds} rounds"
    )
    for kind, label in kinds.items():
        median: dict[str, Any] = {
            key: statistics.median(r[key] for r in results[kind]) for key in results[kind][0]
        }
        print(
            f"{label:<32} dripping connections closed {median['closed']:>6.0f}  "
            f"/stats answered {median['answered']:>6.0f}  refused (503) "
            f"{median['refused']:>6.0f}  failed {median['failed']:>4.0f}"
        )


if __name__ == "__main__":
    main()
