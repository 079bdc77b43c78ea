"""The daemon's HTTP endpoint: Prometheus metrics and the active spikes with their headlines, one port.

    GET /metrics                       the registry, in the format the scraper asks for (as
                                       prometheus_client's own server does: text or OpenMetrics, gzip)
    GET /spikes                        every active spike, highest score first (pipeline.alert_feed)
    GET /spikes/<key_type>/<key>       one (`topic` or `ticker`; the key percent-encoded), 404 if not active
    GET /healthz                       200 while the process serves

prometheus_client's `start_http_server` serves only its registry, hence a small server of our own. A
handler's error is answered with a 500 and logged; it never reaches the daemon's threads.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from pipeline.alert_feed import AlertFeed

log = logging.getLogger(__name__)

KEY_TYPES = ("topic", "ticker")
REQUEST_TIMEOUT_S = 10  # a client that stops sending does not hold a thread for longer


def make_server(
    registry: CollectorRegistry, feed: AlertFeed | None, host: str, port: int
) -> ThreadingHTTPServer:
    """A bound (not yet serving) server; `serve_forever()` it in a thread, `shutdown()` to stop."""

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            try:
                self._route(urlsplit(self.path).path)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client left; nothing to answer
            except Exception as exc:  # a bug here must cost one request, never the daemon
                log.exception("http endpoint: GET %s failed", self.path)
                with contextlib.suppress(OSError):  # the client may have left meanwhile
                    self._json(500, {"error": f"internal error: {type(exc).__name__}"})

        def _route(self, path: str) -> None:
            if path == "/metrics":
                self._metrics()
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path in ("/spikes", "/spikes/"):
                self._json(200, feed.snapshot() if feed is not None else _empty())
            elif path.startswith("/spikes/"):
                self._one(path[len("/spikes/") :])
            else:
                self._json(404, {"error": f"no such path {path!r}; try /metrics, /spikes, /healthz"})

        def _one(self, rest: str) -> None:
            key_type, _, raw_key = rest.partition("/")
            # Split before decoding, so an encoded "/" (%2F) stays inside the key.
            key = unquote(raw_key, errors="replace")
            if key_type not in KEY_TYPES or not key:
                self._json(404, {"error": f"use /spikes/<key_type>/<key>, key_type one of {list(KEY_TYPES)}"})
                return
            found = feed.get(key_type, key) if feed is not None else None
            if found is None:
                self._json(404, {"error": f"no active spike for {key_type} {key!r}", "key_type": key_type,
                                 "key": key})  # fmt: skip
            else:
                self._json(200, found)

        def _metrics(self) -> None:
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(registry)
            extra: dict[str, str] = {}
            if gzip_accepted(self.headers.get("Accept-Encoding", "")):
                body, extra = gzip.compress(body), {"Content-Encoding": "gzip"}
            self._send(200, body, content_type, extra)

        def _json(self, status: int, doc: Any) -> None:
            self._send(
                status, json.dumps(doc, ensure_ascii=False).encode(), "application/json; charset=utf-8", {}
            )

        def _send(
            self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("http endpoint: " + format, *args)  # a scrape a second is not news

    # Like prometheus_client's own server: the address family from the host (`::` works, not just IPv4).
    family, _, _, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingHTTPServer):  # daemon threads already: a stuck client never holds an exit
        address_family = family

    return Server((str(address[0]), int(address[1])), Handler)


def _empty() -> dict[str, Any]:
    return {"updated_at": None, "count": 0, "spikes": []}


def start(registry: CollectorRegistry, feed: AlertFeed | None, host: str, port: int) -> ThreadingHTTPServer:
    """`make_server` serving in a daemon thread; OSError when the address cannot be bound."""
    server = make_server(registry, feed, host, port)
    threading.Thread(target=server.serve_forever, name="http-endpoint", daemon=True).start()
    return server
