"""A loopback stand-in for the Hugging Face Hub API, for tests that must not touch the network.

`HubServer` (standard library only) runs an `http.server.ThreadingHTTPServer` on 127.0.0.1 (port 0) in a
daemon thread and answers the endpoints that huggingface_hub 2.4 calls for

* downloads (`snapshot_download`, `hf_hub_download`, so `SentenceTransformer(name)` too):
  `GET /api/{models,datasets,spaces}/{repo}[/revision/{rev}]` (repo_info: the commit sha),
  `GET /api/{type}s/{repo}/tree/{rev}[/{path}]?recursive=` (file listing),
  `HEAD`/`GET /[{datasets,spaces}/]{repo}/resolve/{rev}/{path}` (X-Repo-Commit, ETag, Content-Length;
  X-Linked-Etag/X-Linked-Size and the sha256 as ETag for LFS-style files such as *.safetensors; Range);
* pushes (`create_repo`, `upload_folder`, `upload_file`, `create_commit`, `delete_repo`):
  `POST /api/repos/create`, `DELETE /api/repos/delete`, `PUT /api/{type}s/{repo}/settings`,
  `POST /api/{type}s/{repo}/preupload/{rev}` (every file is "regular", so the client sends its bytes base64
  inline in the commit; neither LFS nor Xet storage is involved), `POST /api/{type}s/{repo}/commit/{rev}`
  (NDJSON: file, deletedFile, deletedFolder), `POST /api/{type}s/{repo}/paths-info/{rev}`,
  `POST /api/validate-yaml` (README.md), `GET /api/whoami-v2`.

Errors look like the Hub's: 404 with `X-Error-Code: RepoNotFound` (unknown repo: the client raises
`RepositoryNotFoundError`), `RevisionNotFound`, `EntryNotFound`; 401 without a token on writes and on private repos.

Repos live in memory: `server.repos[(repo_type, repo_id)] = {"private": bool, "files": {path: bytes},
"sha": commit, "commits": [...]}`. Every request is recorded: `server.requests` holds `(method, path)` (path
without its query string) and `server.auth_headers` the Authorization header of the same request (None if absent).

huggingface_hub reads HF_ENDPOINT (and HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN_PATH) once, when it is
imported, into `huggingface_hub.constants`; in a process that has already imported it, setting the environment
variable is not enough. `point_hf_client_at(server, monkeypatch, home)` sets both the variables (for subprocesses)
and the constants (for this process).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .loopback import LoopbackServer

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.onnx", "*.h5", "*.msgpack", "*.ckpt", "*.gguf")
LFS_POINTER_SIZE = 134
DATE = "2024-01-01T00:00:00.000Z"


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)


def _commit_sha(repo_type: str, repo_id: str, parent: str, files: dict[str, bytes], message: str = "") -> str:
    """A fake but deterministic commit id: same repo, parent, message and content -> same sha."""
    h = hashlib.sha1(f"{repo_type}/{repo_id}\n{parent}\n{message}\n".encode())
    for path in sorted(files):
        h.update(f"{path}\0{git_blob_oid(files[path])}\n".encode())
    return h.hexdigest()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.body = body or {}


class HubServer(LoopbackServer):
    """In-memory Hub on http://127.0.0.1:<port>. Use as a context manager, or call start()/stop()."""

    def __init__(self, *, user: str = "test-user", valid_tokens: set[str] | None = None):
        self.user = user
        self.valid_tokens = valid_tokens  # None: any Bearer token is accepted
        self.repos: dict[tuple[str, str], dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: list[str | None] = []
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return self.address

    # ------------------------------------------------------------------ repos

    def add_repo(self, repo_id: str, files: dict[str, bytes] | str | Path, *, repo_type: str = "model",
                 private: bool = False) -> str:
        """Register a repo from {path: bytes} or a local folder (every file under it); returns its commit sha."""
        if not isinstance(files, dict):
            root = Path(files)
            files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        files = dict(files)
        sha = _commit_sha(repo_type, repo_id, "", files, "initial commit")
        with self.lock:
            self.repos[(repo_type, repo_id)] = {
                "private": private, "files": files, "sha": sha,
                "commits": [{"sha": sha, "summary": "initial commit", "description": "", "parent": None}],
            }
        return sha

    def add_model(self, repo_id: str, folder: str | Path, *, private: bool = False) -> str:
        """Serve a local folder as model repo `repo_id`; returns the (stable, fake) commit sha."""
        return self.add_repo(repo_id, folder, repo_type="model", private=private)

    def commit_sha(self, repo_id: str, repo_type: str = "model") -> str:
        return self.repos[(repo_type, repo_id)]["sha"]

    def dataset_files(self, repo_id: str) -> dict[str, bytes]:
        """The files of dataset repo `repo_id` as last committed: {path: bytes}."""
        with self.lock:
            return dict(self.repos[("dataset", repo_id)]["files"])

    def requests_to(self, fragment: str) -> list[tuple[str, str]]:
        """Recorded (method, path) whose path contains `fragment`."""
        return [r for r in self.requests if fragment in r[1]]


def point_hf_client_at(server: HubServer, monkeypatch, home: str | Path) -> Path:
    """Make huggingface_hub (in this process and in subprocesses) talk to `server` and cache under `home`.

    huggingface_hub 2.4 reads HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_TOKEN_PATH into
    `huggingface_hub.constants` at import time (ENDPOINT also into HUGGINGFACE_CO_URL_TEMPLATE, which
    `hf_hub_url` formats when no endpoint is passed), so the environment alone only reaches new processes:
    the constants are patched too. Any HF_TOKEN from the environment is dropped. hf_xet fixes its log folder
    (HF_XET_CACHE, else HF_HOME/xet) when it is first imported, which upload_folder does: call this before.
    Returns the hub cache folder.
    """
    from huggingface_hub import constants

    home = Path(home)
    hub_cache = home / "hub"
    token_path = home / "token"
    for name, value in {"HF_ENDPOINT": server.url, "HF_HOME": home, "HF_HUB_CACHE": hub_cache,
                        "HF_XET_CACHE": home / "xet", "HF_TOKEN_PATH": token_path, "HF_HUB_OFFLINE": "0"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HUGGINGFACE_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_path))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(home / "xet"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
    monkeypatch.setattr(constants, "CHECK_FOR_UPDATE_DONE_PATH", str(home / ".check_for_update_done"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return hub_cache


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer  # set on the subclass made by HubServer.start
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries a Content-Length
    server_version = "FakeHub/1.0"
    timeout = 30  # an idle keep-alive connection's thread ends after this

    def log_message(self, format, *args):  # quiet
        pass

    # ------------------------------------------------------------------ plumbing

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.body = self._read_body()
        hub = self.hub
        with hub.lock:
            hub.requests.append((method, split.path))
            hub.auth_headers.append(self.headers.get("Authorization"))
        try:
            self._route(method, split.path)
        except HubError as e:
            headers = dict(e.headers)
            if e.code:
                headers["X-Error-Code"] = e.code
            headers["X-Error-Message"] = e.message
            self._json({"error": e.message, **e.body}, status=e.status, headers=headers, method=method)
        except (BrokenPipeError, ConnectionResetError):  # the client went away mid-answer
            self.close_connection = True
        except Exception as e:  # a bug in the fake: answer 500 so the test sees it
            self._json({"error": f"fake hub: {type(e).__name__}: {e}"}, status=500, method=method)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict, method: str) -> None:
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **headers}
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if method != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, data, status: int = 200, headers: dict | None = None, method: str = "GET") -> None:
        body = json.dumps(data).encode()
        if method == "HEAD":  # error answers to HEAD carry no body, and say so
            body = b""
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})}, method)

    def _json_body(self):
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise HubError(400, "Invalid JSON body") from None

    # ------------------------------------------------------------------ auth and lookup

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        if not auth.startswith("Bearer ") or (
            self.hub.valid_tokens is not None and auth[len("Bearer "):] not in self.hub.valid_tokens
        ):
            raise HubError(401, "Invalid credentials in Authorization header")
        return auth[len("Bearer "):]

    def _require_token(self) -> str:
        token = self._token()
        if token is None:
            raise HubError(401, "Invalid username or password.")
        return token

    def _repo(self, repo_type: str, repo_id: str, revision: str | None = None, *, write: bool = False) -> dict:
        token = self._require_token() if write else self._token()
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo["private"] and token is None):
            raise HubError(401 if token is None else 404, "Repository not found", "RepoNotFound")
        if revision is not None and revision not in ("main", repo["sha"]) and not (
            len(revision) >= 7 and repo["sha"].startswith(revision.lower())
        ):
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound", {"X-Repo-Commit": repo["sha"]})
        return repo

    # ------------------------------------------------------------------ routing

    def _route(self, method: str, raw_path: str) -> None:
        parts = [unquote(p) for p in raw_path.strip("/").split("/")]
        if parts[:1] == ["api"]:
            return self._route_api(method, parts[1:])
        # /[datasets/|spaces/]{owner}/{name}/resolve/{rev}/{file...}
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = REPO_TYPES[parts[0]], parts[1:]
        if "resolve" in parts[1:3] and method in ("GET", "HEAD"):
            i = parts.index("resolve", 1)
            if len(parts) > i + 2:
                repo_id = "/".join(parts[:i])
                return self._resolve(method, repo_type, repo_id, parts[i + 1], "/".join(parts[i + 2:]))
        raise HubError(404, f"Not found: {method} {raw_path}")

    def _route_api(self, method: str, parts: list[str]) -> None:
        if parts == ["whoami-v2"] and method == "GET":
            self._require_token()
            return self._json({"type": "user", "name": self.hub.user, "fullname": "Test User", "orgs": [],
                               "auth": {"type": "access_token",
                                        "accessToken": {"displayName": "test", "role": "write"}}})
        if parts == ["validate-yaml"] and method == "POST":
            return self._json({"errors": [], "warnings": []})
        if parts == ["repos", "create"] and method == "POST":
            return self._create_repo()
        if parts == ["repos", "delete"] and method == "DELETE":
            return self._delete_repo()
        if not parts or parts[0] not in REPO_TYPES or len(parts) < 3:
            raise HubError(404, f"Not found: /api/{'/'.join(parts)}")
        repo_type, repo_id, rest = REPO_TYPES[parts[0]], f"{parts[1]}/{parts[2]}", parts[3:]
        action = rest[0] if rest else None
        revision = rest[1] if len(rest) > 1 else None
        if method == "GET" and (action is None or (action == "revision" and revision)):
            return self._repo_info(repo_type, repo_id, revision if action else None, method)
        if method == "GET" and action == "tree" and revision:
            return self._tree(repo_type, repo_id, revision, "/".join(rest[2:]))
        if method == "POST" and action == "preupload" and revision:
            return self._preupload(repo_type, repo_id, revision)
        if method == "POST" and action == "commit" and revision:
            return self._commit(repo_type, repo_id, revision)
        if method == "POST" and action == "paths-info" and revision:
            return self._paths_info(repo_type, repo_id, revision)
        if method == "PUT" and action == "settings":
            repo = self._repo(repo_type, repo_id, write=True)
            body = self._json_body()
            if "private" in body:
                repo["private"] = bool(body["private"])
            if "visibility" in body:
                repo["private"] = body["visibility"] == "private"
            return self._json({"private": repo["private"]})
        raise HubError(404, f"Not found: {method} /api/{'/'.join(parts)}")

    # ------------------------------------------------------------------ read endpoints

    def _file_entry(self, path: str, data: bytes) -> dict:
        entry = {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
        if _is_lfs(path):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "pointerSize": LFS_POINTER_SIZE}
        return entry

    def _repo_info(self, repo_type: str, repo_id: str, revision: str | None, method: str) -> None:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, revision)
            files = dict(repo["files"])
            sha, private = repo["sha"], repo["private"]
        blobs = self.query.get("blobs", "").lower() == "true"
        siblings = []
        for path in sorted(files):
            sib = {"rfilename": path}
            if blobs:
                entry = self._file_entry(path, files[path])
                sib.update(size=entry["size"], blobId=entry["oid"])
                if "lfs" in entry:
                    sib["lfs"] = {"sha256": entry["lfs"]["oid"], "size": entry["lfs"]["size"],
                                  "pointerSize": LFS_POINTER_SIZE}
            siblings.append(sib)
        info = {"_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": repo_id.split("/")[0],
                "sha": sha, "private": private, "gated": False, "disabled": False, "lastModified": DATE,
                "createdAt": DATE, "tags": [], "downloads": 0, "likes": 0, "siblings": siblings}
        if repo_type == "model":
            info["modelId"] = repo_id
            if "modules.json" in files:
                info["library_name"] = "sentence-transformers"
        self._json(info, method=method)

    def _tree(self, repo_type: str, repo_id: str, revision: str, sub: str) -> None:
        with self.hub.lock:
            files = dict(self._repo(repo_type, repo_id, revision)["files"])
        recursive = self.query.get("recursive", "false").lower() == "true"
        prefix = f"{sub.strip('/')}/" if sub.strip("/") else ""
        dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        if prefix and prefix[:-1] not in dirs:
            if prefix[:-1] in files:
                return self._json([self._file_entry(prefix[:-1], files[prefix[:-1]])])
            raise HubError(404, f"{sub} does not exist", "EntryNotFound")
        entries = []
        for d in sorted(dirs):
            if d.startswith(prefix) and (recursive or "/" not in d[len(prefix):]):
                entries.append({"type": "directory", "oid": hashlib.sha1(f"tree {d}".encode()).hexdigest(), "size": 0,
                                "path": d})
        for p in sorted(files):
            if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):]):
                entries.append(self._file_entry(p, files[p]))
        self._json(entries)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        with self.hub.lock:
            files = dict(self._repo(repo_type, repo_id, revision)["files"])
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = self._json_body().get("paths", [])
        else:
            paths = parse_qs(self.body.decode()).get("paths", [])
        out = []
        for p in paths if isinstance(paths, list) else [paths]:
            p = p.strip("/")
            if p in files:
                out.append(self._file_entry(p, files[p]))
            elif any(f.startswith(p + "/") for f in files):
                out.append({"type": "directory", "oid": hashlib.sha1(f"tree {p}".encode()).hexdigest(), "size": 0,
                            "path": p})
        self._json(out)

    def _resolve(self, method: str, repo_type: str, repo_id: str, revision: str, filename: str) -> None:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, revision)
            sha, data = repo["sha"], repo["files"].get(filename)
        if data is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", "X-Repo-Commit": sha,
                   "ETag": f'"{git_blob_oid(data)}"'}
        if _is_lfs(filename):  # what the Hub sends for LFS files: the sha256 is the etag (and the blob's name)
            sha256 = hashlib.sha256(data).hexdigest()
            headers.update({"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))})
        status, body = 200, data
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and "," not in rng:
            start_s, _, end_s = rng[len("bytes="):].partition("-")
            if start_s:
                start, end = int(start_s), int(end_s) if end_s else len(data) - 1
            else:  # suffix range: the last N bytes
                start, end = max(len(data) - int(end_s), 0), len(data) - 1
            end = min(end, len(data) - 1)
            if start >= len(data) and len(data) > 0:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return self._send(416, b"", headers, method)
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self._send(status, body, headers, method)

    # ------------------------------------------------------------------ write endpoints

    def _create_repo(self) -> None:
        self._require_token()
        body = self._json_body()
        repo_type = body.get("type") or "model"
        if repo_type not in URL_PREFIXES:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        repo_id = f"{body.get('organization') or self.hub.user}/{body['name']}"
        url = f"{self.hub.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        with self.hub.lock:
            if (repo_type, repo_id) in self.hub.repos:
                raise HubError(409, f"You already created this {repo_type} repo", body={"url": url})
            self.hub.add_repo(repo_id, {}, repo_type=repo_type, private=private)
        self._json({"url": url, "name": repo_id, "id": hashlib.md5(repo_id.encode()).hexdigest()[:24]})

    def _delete_repo(self) -> None:
        self._require_token()
        body = self._json_body()
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self.hub.user}/{body['name']}"
        with self.hub.lock:
            if self.hub.repos.pop((repo_type, repo_id), None) is None:
                raise HubError(404, "Repository not found", "RepoNotFound")
        self._json({})

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        with self.hub.lock:
            files = dict(self._repo(repo_type, repo_id, revision, write=True)["files"])
        out = []
        for f in self._json_body().get("files", []):
            entry = {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
            if f["path"] in files:  # lets the client skip unchanged files, like the Hub
                entry["oid"] = git_blob_oid(files[f["path"]])
            out.append(entry)
        self._json({"files": out})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        if self.query.get("create_pr") == "1":
            raise HubError(400, "The fake Hub does not support create_pr")
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, revision, write=True)
            parent = repo["sha"]
            wanted = header.get("parentCommit")
            if wanted and not parent.startswith(wanted.lower()):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo["files"])
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, f"File not found: {value['path']}", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].strip("/") + "/"
                    gone = [p for p in files if p.startswith(prefix)]
                    if not gone:
                        raise HubError(404, f"Folder not found: {value['path']}", "EntryNotFound")
                    for p in gone:
                        del files[p]
                elif key == "lfsFile":
                    raise HubError(422, "The fake Hub only takes regular files (preupload never asks for LFS)")
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}")
            sha = _commit_sha(repo_type, repo_id, parent, files, header.get("summary", ""))
            repo["files"], repo["sha"] = files, sha
            repo["commits"].append({"sha": sha, "summary": header.get("summary", ""),
                                    "description": header.get("description", ""), "parent": parent})
        url = f"{self.hub.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        self._json({"success": True, "commitOid": sha, "commitUrl": f"{url}/commit/{sha}", "pullRequestUrl": None,
                    "commitMessage": header.get("summary", "")})


__all__ = ["HubServer", "git_blob_oid", "point_hf_client_at"]


HubServer.handler_base, HubServer.state_name = _Handler, "hub"
