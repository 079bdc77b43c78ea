"""A minimal Alertmanager webhook receiver: prints each notification and keeps them for inspection.

A firing alert with a `headlines` annotation (the spike alerts: a link to the daemon's
/spikes/topic/<topic> or /spikes/ticker/<ticker>) has its headlines fetched and printed under it (score,
id, source, text); a failed fetch prints one line saying why. The fetched list is kept on the alert (`headlines`, or
`headlines_error`), with the printed lines (`headline_lines`).

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
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1 << 20  # Alertmanager batches are small; anything bigger is not from it
FETCH_TIMEOUT_S = 3.0  # the daemon answers from memory; a slow answer means it is not there
MAX_TEXT = 160  # characters of a headline printed on its line


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


def fetch_headlines(url: str, timeout_s: float = FETCH_TIMEOUT_S) -> tuple[list[dict[str, Any]] | None, str]:
    """The headlines of the spike at `url` (the daemon's /spikes/<key_type>/<key>), or None and a
    one-line reason. Never raises: a receiver that crashes on a bad link loses the alert itself."""
    if not url.startswith(("http://", "https://")):
        return None, f"no headlines link ({url!r})"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = resp.read(MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None, f"no active spike at {url} any more (the daemon's detector has let it go)"
        return None, f"{url} answered HTTP {exc.code}"
    except Exception as exc:  # URLError, timeouts, resets, bad status lines: all one line
        reason = getattr(exc, "reason", None) or exc
        return None, f"cannot fetch {url}: {reason}"
    try:
        doc = json.loads(body) if len(body) <= MAX_BODY else None
    except ValueError:
        doc = None
    items = doc.get("headlines") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return None, f"{url} did not answer with a spike's headlines"
    return [h for h in items if isinstance(h, dict)], ""


def headline_lines(headlines: list[dict[str, Any]]) -> list[str]:
    """One line per headline: score, id, source, text (cut to MAX_TEXT characters)."""
    if not headlines:
        return ["(no headlines recorded for this spike)"]
    lines = []
    for h in headlines:
        score = h.get("score")
        text = " ".join(str(h.get("text") or "").split())
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 1] + "…"
        shown = f"{score:+.3f}" if isinstance(score, (int, float)) else "    ? "
        lines.append(f"{shown}  {h.get('id')}  [{h.get('source') or '-'}]  {text}")
    return lines


def attach_headlines(payload: dict[str, Any], timeout_s: float = FETCH_TIMEOUT_S) -> None:
    """Fetch the headlines of every firing alert that links to them, onto the alert itself."""
    for alert in payload.get("alerts") or []:
        if not isinstance(alert, dict) or alert.get("status") != "firing":
            continue
        url = (alert.get("annotations") or {}).get("headlines")
        if not isinstance(url, str):
            continue
        headlines, error = fetch_headlines(url, timeout_s)
        if headlines is None:
            alert["headlines_error"] = error
            alert["headline_lines"] = [error]
        else:
            alert["headlines"] = headlines
            alert["headline_lines"] = headline_lines(headlines)


def summarize(payload: dict[str, Any]) -> list[str]:
    lines = []
    for alert in payload.get("alerts") or []:
        labels = alert.get("labels") or {}
        summary = (alert.get("annotations") or {}).get("summary", "")
        where = "".join(f" {name}={labels[name]!r}" for name in ("topic", "ticker") if name in labels)
        lines.append(f"[{alert.get('status', '?')}] {labels.get('alertname', '?')}{where}: {summary}")
        lines += [f"    {line}" for line in alert.get("headline_lines") or []]
    return lines


def make_server(
    host: str, port: int, inbox: Inbox, *, echo: bool = True, fetch_timeout_s: float = FETCH_TIMEOUT_S
) -> ThreadingHTTPServer:
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
            # Before answering, so that what was received is in the inbox once Alertmanager hears back
            # (a fetch waits FETCH_TIMEOUT_S at most).
            attach_headlines(payload, fetch_timeout_s)
            inbox.add(self.path, payload)
            if echo:
                for line in summarize(payload):
                    print(f"alert-webhook {self.path}: {line}", flush=True)
            self.send_response(200)
            self.send_header("Content-Length", "0")
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
