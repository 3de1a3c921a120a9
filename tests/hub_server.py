"""A stand-in for the Hugging Face hub on 127.0.0.1: the endpoints huggingface_hub downloads through.

`GET /api/models/{id}[/revision/{rev}]` (the file list with sizes and SHA-256s) and `HEAD`/`GET
/{id}/resolve/{rev}/{file}` with Range requests, the headers the library reads (X-Repo-Commit, ETag,
X-Linked-Size). Tests give it the files of a checkpoint they built; it records every request, can slow
its replies down (to cancel mid-file), can serve other bytes than it lists (a corrupted download), and
answers as an HTTP proxy too (a request for an absolute URL), for the proxy settings' test.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_FROM = 1024  # files at least this big are "git-lfs" files: listed with their SHA-256, as weights are


class HubServer:
    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.delay = 0.0  # seconds between 64 KiB pieces of a file
        self.corrupt: set[str] = set()  # file names served with their last byte changed
        self.proxied: list[str] = []  # URLs asked of it as an HTTP proxy
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def add_folder(self, repo_id: str, folder: Path) -> None:
        self.repos[repo_id] = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args) -> None:  # quiet
            return None

        def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
            self._serve(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = self.path.split("?")[0]
            if path.startswith("http://"):  # asked as a proxy: "GET http://host/path" (absolute form)
                hub.proxied.append(path)
                path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
            hub.requests.append((self.command, path, self.headers.get("Range")))
            if path.startswith("/api/models/"):
                return self._info(path[len("/api/models/"):])
            if "/resolve/" in path:
                repo_id, rest = path[1:].split("/resolve/", 1)
                name = rest.split("/", 1)[1] if "/" in rest else ""
                files = hub.repos.get(repo_id)
                if files is None or name not in files:
                    return self._send(404, b'{"error": "Entry not found"}', {"X-Error-Code": "EntryNotFound"})
                return self._file(name, files[name], body)
            self._send(404, b"{}")

        def _info(self, rest: str) -> None:
            repo_id = rest.split("/revision/")[0]
            files = hub.repos.get(repo_id)
            if files is None:
                return self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            siblings = []
            for name, data in files.items():
                entry = {"rfilename": name, "size": len(data), "blobId": hashlib.sha1(data).hexdigest()}
                if len(data) >= LFS_FROM:
                    entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                    "pointerSize": 134}
                siblings.append(entry)
            info = {"id": repo_id, "modelId": repo_id, "sha": COMMIT, "siblings": siblings, "private": False,
                    "tags": [], "downloads": 0, "likes": 0}
            self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})

        def _file(self, name: str, data: bytes, body: bool) -> None:
            etag = hashlib.sha256(data).hexdigest() if len(data) >= LFS_FROM else hashlib.sha1(data).hexdigest()
            if name in hub.corrupt:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            start = 0
            wanted = self.headers.get("Range")
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                       "Content-Type": "application/octet-stream"}
            if len(data) >= LFS_FROM:
                headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
            status = 200
            if wanted and wanted.startswith("bytes=") and body:
                start = int(wanted[len("bytes="):].split("-")[0])
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            part = data[start:]
            headers["Content-Length"] = str(len(part) if body else len(data))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if not body:
                return
            try:
                for offset in range(0, len(part), 64 * 1024):
                    self.wfile.write(part[offset:offset + 64 * 1024])
                    self.wfile.flush()
                    if hub.delay:
                        time.sleep(hub.delay)
            except (BrokenPipeError, ConnectionResetError):  # the client cancelled
                return

        def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
