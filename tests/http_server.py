"""A real HTTP server on 127.0.0.1 standing in for the remote weight hosts.

It serves files from a dict, honours ``Range`` requests, and can be told to cut a response off
after some bytes, to answer with an error status, or to count requests. ``tokens`` makes a path
gated as the Hugging Face hub does (no ``Authorization: Bearer`` header: 401; another token: 403);
``redirects`` answers a path with a 302 to another URL; ``auth_seen`` records each request's
``Authorization`` header.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, list[int]] = {}  # path -> byte counts at which to drop, per request
        self.status: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.tokens: dict[str, str] = {}
        self.redirects: dict[str, str] = {}
        self.auth_seen: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                path = self.path
                server.requests.append((path, self.headers.get("Range")))
                auth = self.headers.get("Authorization")
                server.auth_seen.append((path, auth))
                if path in server.tokens and auth != f"Bearer {server.tokens[path]}":
                    self.send_error(401 if auth is None else 403)
                    return
                if path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path in server.status:
                    self.send_error(server.status[path])
                    return
                if path not in server.files:
                    self.send_error(404)
                    return
                data = server.files[path]
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cuts = server.cut_after.get(path)
                if cuts:
                    n = cuts.pop(0)
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
