"""A minimal Alertmanager webhook receiver: prints each notification and keeps them for inspection.

The compose stack runs it as `alert-webhook` (the receivers in deploy/alertmanager/alertmanager.yml
point at it); the end-to-end test and `make demo` start it in a thread. Standard library only, so it
runs in any Python image. Replace it with your chat or paging bridge in a real deployment.

    python deploy/alert_webhook.py --port 8080        # POST / (any path) to deliver, GET /alerts to read
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1 << 20  # Alertmanager batches are small; anything bigger is not from it


class Inbox:
    """Notifications received so far, safe to read from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []

    def add(self, path: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._items.append({"path": path, "payload": payload})

    def notifications(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every alert of every notification (with the receiver path), optionally only one status."""
        out = []
        for item in self.notifications():
            for alert in item["payload"].get("alerts") or []:
                if status is None or alert.get("status") == status:
                    out.append({**alert, "receiver_path": item["path"]})
        return out


def summarize(payload: dict[str, Any]) -> list[str]:
    lines = []
    for alert in payload.get("alerts") or []:
        labels = alert.get("labels") or {}
        summary = (alert.get("annotations") or {}).get("summary", "")
        where = f" topic={labels['topic']!r}" if "topic" in labels else ""
        lines.append(f"[{alert.get('status', '?')}] {labels.get('alertname', '?')}{where}: {summary}")
    return lines


def make_server(host: str, port: int, inbox: Inbox, *, echo: bool = True) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413, "body too large")
                return
            try:
                payload = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self.send_error(400, "body is not JSON")
                return
            if not isinstance(payload, dict):
                self.send_error(400, "body is not a JSON object")
                return
            inbox.add(self.path, payload)
            if echo:
                for line in summarize(payload):
                    print(f"alert-webhook {self.path}: {line}", flush=True)
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps(inbox.notifications()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one line per alert (above) is the useful log, not one per request

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, Inbox())
    print(f"alert-webhook listening on {args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
