"""A Hugging Face Hub-compatible HTTP server on loopback, for driving the real huggingface_hub client.

It serves dataset repos made of commits (git-style blob oids, branch and tag refs), checks bearer tokens
on private repos, and answers errors the way the Hub does (status plus X-Error-Code).
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubRepo:
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit sha

    def commit(self, files: dict[str, bytes], branch: str = "main", replace: bool = False) -> str:
        """Add a commit on `branch` updating (or, with replace, replacing) the tree; returns its sha."""
        base = {} if replace or branch not in self.refs else dict(self.commits[self.refs[branch]])
        base.update(files)
        sha = hashlib.sha1(json.dumps([self.refs.get(branch), sorted(
            (p, git_blob_oid(b)) for p, b in base.items())]).encode()).hexdigest()
        self.commits[sha] = base
        self.refs[branch] = sha
        return sha

    def resolve(self, rev: str) -> str | None:
        if rev in self.refs:
            return self.refs[rev]
        return rev if rev in self.commits else None


class HubServer:
    def __init__(self, tokens: set[str] | None = None):
        self.repos: dict[str, HubRepo] = {}
        self.tokens = tokens or set()
        self.requests: list[tuple[str, str, dict]] = []  # method, path, headers (for assertions)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_HEAD(self):
                server._handle(self, "HEAD")

            def do_POST(self):
                server._handle(self, "POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- protocol -------------------------------------------------------------------------------------

    def _send(self, h, status: int, body: bytes = b"", headers: dict | None = None, method: str = "GET"):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)

    def _error(self, h, status: int, code: str, message: str, method: str):
        self._send(h, status, json.dumps({"error": message}).encode(),
                   {"X-Error-Code": code, "Content-Type": "application/json"}, method)

    def _json(self, h, obj, method: str = "GET"):
        self._send(h, 200, json.dumps(obj).encode(), {"Content-Type": "application/json"}, method)

    def _authorised(self, h, repo: HubRepo) -> bool:
        auth = h.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if token is not None and token not in self.tokens:
            return False  # the Hub rejects an invalid token even on public repos
        return not repo.private or token is not None

    def _handle(self, h, method: str):
        parsed = urllib.parse.urlsplit(h.path)
        path, query = parsed.path, urllib.parse.parse_qs(parsed.query)
        self.requests.append((method, path, {k.lower(): v for k, v in h.headers.items()}))
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        m = re.match(r"^/api/datasets/([^/]+)/([^/]+)(/.*)?$", path) or \
            re.match(r"^/datasets/([^/]+)/([^/]+)(/resolve/.*)$", path)
        if not m:
            return self._error(h, 404, "EntryNotFound", "unknown route", method)
        repo_id = f"{m.group(1)}/{m.group(2)}"
        rest = m.group(3) or ""
        repo = self.repos.get(repo_id)
        auth = h.headers.get("Authorization", "")
        valid_token = auth.startswith("Bearer ") and auth[7:] in self.tokens
        if repo is None or not self._authorised(h, repo):
            # Like the Hub: 404 only to a valid token; otherwise 401, which hides whether it exists.
            status = 404 if repo is None and valid_token else 401
            return self._error(h, status, "RepoNotFound", "Repository not found", method)
        if path.startswith("/datasets/"):
            return self._resolve(h, repo, rest[len("/resolve/"):], method)
        if rest == "" or rest.startswith("/revision/"):
            rev = urllib.parse.unquote(rest[len("/revision/"):]) if rest else "main"
            return self._info(h, repo_id, repo, rev, method)
        if rest.startswith("/tree/"):
            return self._tree(h, repo, rest[len("/tree/"):], query, method)
        if rest.startswith("/paths-info/"):
            return self._paths_info(h, repo, rest[len("/paths-info/"):], body, method)
        if rest == "/refs":
            return self._json(h, {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s}
                                               for b, s in repo.refs.items()], "tags": [], "converts": []})
        return self._error(h, 404, "EntryNotFound", "unknown route", method)

    def _commit(self, h, repo: HubRepo, rev: str, method: str):
        sha = repo.resolve(urllib.parse.unquote(rev))
        if sha is None:
            self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}", method)
        return sha

    def _info(self, h, repo_id, repo, rev, method):
        sha = self._commit(h, repo, rev, method)
        if sha:
            self._json(h, {"id": repo_id, "sha": sha, "private": repo.private,
                           "lastModified": "2026-01-01T00:00:00.000Z",
                           "siblings": [{"rfilename": p} for p in sorted(repo.commits[sha])]}, method)

    def _entry(self, path: str, data: bytes) -> dict:
        return {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}

    def _tree(self, h, repo, rest, query, method):
        rev, _, sub = rest.partition("/")
        sha = self._commit(h, repo, rev, method)
        if not sha:
            return
        sub = urllib.parse.unquote(sub).strip("/")
        files = repo.commits[sha]
        if sub and not any(p.startswith(sub + "/") for p in files):
            return self._error(h, 404, "EntryNotFound", f"{sub} does not exist", method)
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries, dirs = [], set()
        prefix = sub + "/" if sub else ""
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            rest_path = p[len(prefix):]
            if "/" in rest_path and not recursive:
                dirs.add(prefix + rest_path.split("/", 1)[0])
                continue
            parts = rest_path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add(prefix + "/".join(parts[:i]))
            entries.append(self._entry(p, files[p]))
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(dirs)]
        self._json(h, entries, method)

    def _paths_info(self, h, repo, rev, body, method):
        sha = self._commit(h, repo, rev, method)
        if sha:
            wanted = urllib.parse.parse_qs(body.decode()).get("paths", [])
            files = repo.commits[sha]
            self._json(h, [self._entry(p, files[p]) for p in wanted if p in files], method)

    def _resolve(self, h, repo, rest, method):
        rev, _, file_path = rest.partition("/")
        sha = self._commit(h, repo, rev, method)
        if not sha:
            return
        data = repo.commits[sha].get(urllib.parse.unquote(file_path))
        if data is None:
            return self._error(h, 404, "EntryNotFound", f"{file_path} does not exist", method)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_oid(data)}"',
                   "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        rng = h.headers.get("Range")
        if rng and method == "GET":
            start, _, end = rng.removeprefix("bytes=").partition("-")
            start = int(start or 0)
            end = int(end) if end else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(h, 206, data[start:end + 1], headers, method)
        self._send(h, 200, data, headers, method)
