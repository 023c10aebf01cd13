"""A stand-in for the Hugging Face Hub: enough of its HTTP API for the real huggingface_hub client to download.

This is the one fake in these tests, because the real Hub cannot be reached here. It serves real files
(a tiny diffusers model saved to disk) with the Hub's headers, and records every request so tests can tell
what was downloaded. Endpoints: model info (`/api/models/ID[/revision/REV]`), the file tree
(`/api/models/ID/tree/REV`) and file downloads (`HEAD`/`GET /ID/resolve/REV/PATH`, with `Range` for resumes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False
    granted: tuple[str, ...] = ()  # tokens whose account accepted the licence
    declared_sizes: dict[str, int] = field(default_factory=dict)  # sizes the API claims (for the disk check)
    cut_once: dict[str, int] = field(default_factory=dict)  # file -> byte where its first download breaks off
    hold_once: dict[str, int] = field(default_factory=dict)  # file -> byte where its first download waits for
    # StandInHub.release (a slow network: the test can interrupt the client mid-file)
    sha: str = "0123456789abcdef0123456789abcdef01234567"

    @classmethod
    def from_folder(cls, folder: Path, **kwargs) -> Repo:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return cls(files, **kwargs)

    def size(self, name: str) -> int:
        return self.declared_sizes.get(name, len(self.files[name]))


class StandInHub:
    def __init__(self, repos: dict[str, Repo]) -> None:
        self.repos = repos
        self.release = threading.Event()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

            def do_GET(self) -> None:
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def downloads(self) -> list[str]:
        """Repo paths of every file body sent (GET on /resolve/)."""
        return [m.group(1) for method, path, _ in self.requests if method == "GET"
                for m in [re.match(r"^/[^/]+/[^/]+/resolve/[^/]+/(.+)$", path)] if m]

    # -- routing -------------------------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, head: bool) -> None:
        path = request.path.split("?", 1)[0]
        self.requests.append(("HEAD" if head else "GET", path, request.headers.get("Range", "")))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        info = re.match(r"^/api/models/([^/]+/[^/]+?)(?:/revision/[^/]+)?$", path)
        tree = re.match(r"^/api/models/([^/]+/[^/]+)/tree/[^/]+$", path)
        resolve = re.match(r"^/([^/]+/[^/]+)/resolve/[^/]+/(.+)$", path)
        repo_id = (info or tree or resolve).group(1) if (info or tree or resolve) else None
        repo = self.repos.get(repo_id) if repo_id else None
        if repo is None:
            return self._error(request, 404, "RepoNotFound", "Repository not found")
        if info:  # metadata is public, even for gated repos
            siblings = [{"rfilename": name, "size": repo.size(name), "blobId": _etag(data)}
                        for name, data in repo.files.items()]
            return self._json(request, {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False,
                                        "gated": "auto" if repo.gated else False, "siblings": siblings})
        if repo.gated and token not in repo.granted:
            return self._error(request, 403 if token else 401, "GatedRepo",
                               "Access to this model is restricted: accept its conditions first")
        if tree:
            return self._json(request, [{"type": "file", "path": name, "size": repo.size(name), "oid": _etag(data)}
                                        for name, data in repo.files.items()])
        name = resolve.group(2)
        if name not in repo.files:
            return self._error(request, 404, "EntryNotFound", f"{name} does not exist")
        self._file(request, repo, name, head)

    def _file(self, request: BaseHTTPRequestHandler, repo: Repo, name: str, head: bool) -> None:
        data = repo.files[name]
        start = 0
        ranged = re.match(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if ranged and not head:
            start = int(ranged.group(1))
        request.send_response(206 if start else 200)
        request.send_header("X-Repo-Commit", repo.sha)
        request.send_header("ETag", f'"{_etag(data)}"')
        request.send_header("Content-Length", str(len(data) - start))
        if start:
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        request.end_headers()
        if head:
            return
        if name in repo.cut_once and not start:
            request.wfile.write(data[: repo.cut_once.pop(name)])
            request.wfile.flush()
            request.close_connection = True
            request.connection.shutdown(2)  # the network drops half-way through
            return
        if name in repo.hold_once and not start:
            held = repo.hold_once.pop(name)
            request.wfile.write(data[:held])
            request.wfile.flush()
            self.release.wait(timeout=120)
            start = held
        with contextlib.suppress(OSError):  # the client is gone: an interrupted pull
            request.wfile.write(data[start:])

    @staticmethod
    def _json(request: BaseHTTPRequestHandler, body) -> None:
        data = json.dumps(body).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    @staticmethod
    def _error(request: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        data = json.dumps({"error": message}).encode()
        request.send_response(status)
        request.send_header("X-Error-Code", code)
        request.send_header("X-Error-Message", message)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
