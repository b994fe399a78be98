"""A Hugging Face Hub stand-in on 127.0.0.1: the HTTP endpoints huggingface_hub and transformers call to create
repositories, upload (regular and LFS files), commit, and download by branch, pull-request ref or commit.

Tests point `HF_ENDPOINT` at it, so the real client code paths run over real HTTP. Commits are immutable
snapshots; `requests` records every call so tests can check what went over the wire.
"""

import base64
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml

# What the Hub stores through LFS; everything else is a regular git blob.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt")


@dataclass
class Repo:
    private: bool
    commits: dict[str, dict[str, tuple[bytes, bool]]] = field(default_factory=dict)  # oid -> path -> (data, lfs)
    refs: dict[str, str] = field(default_factory=dict)  # branch or refs/pr/N -> commit oid
    messages: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class HubState:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def uploaded(self, repo_id: str, revision: str = "main") -> dict[str, tuple[bytes, bool]]:
        repo = self.repos[repo_id]
        return repo.commits[repo.resolve(revision)]


def _blob_etag(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState
    endpoint: str

    def log_message(self, format, *args):  # keep test output clean
        pass

    # -- helpers ---------------------------------------------------------------------------------------------
    def _reply(self, status: int, payload=None, headers: dict | None = None, body: bytes | None = None) -> None:
        if body is None:
            body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        content_type = "application/json" if payload is not None else "application/octet-stream"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._reply(status, {"error": message}, headers={"X-Error-Code": code, "X-Error-Message": message})

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def _authorised(self) -> bool:
        return self.headers.get("Authorization", "").startswith("Bearer ") or self.path == "/api/validate-yaml"

    def _revision(self, repo_id: str, revision: str) -> tuple[Repo | None, str | None]:
        """The repository and the commit a revision names, or an error reply and None."""
        repo = self._repo(repo_id)
        oid = repo.resolve(revision) if repo is not None else None
        if repo is not None and oid is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo, oid

    def _dispatch(self, routes: list[tuple[str, object]]) -> None:
        # Read every request body, used or not, so the kept-alive connection stays in step.
        self.body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        url = urlparse(self.path)
        path = unquote(url.path)
        with self.state.lock:
            self.state.requests.append((self.command, path))
        if self.command == "POST" and not self._authorised():
            return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
        for pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match:
                with self.state.lock:
                    handler(*match.groups(), query=parse_qs(url.query))
                return
        self._error(404, "NotFound", f"No route for {self.command} {path}")

    # -- routes ----------------------------------------------------------------------------------------------
    def do_POST(self):
        self._dispatch(
            [
                (r"/api/repos/create", self.create_repo),
                (r"/api/validate-yaml", self.validate_yaml),
                (r"/api/models/([^/]+/[^/]+)/preupload/(.+)", self.preupload),
                (r"/api/models/([^/]+/[^/]+)/commit/(.+)", self.commit),
                (r"/api/models/([^/]+/[^/]+)/branch/(.+)", self.create_branch),
                (r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", self.lfs_batch),
            ]
        )

    def do_PUT(self):
        self._dispatch([(r"/lfs-upload/([0-9a-f]{64})", self.lfs_upload)])

    def do_GET(self):
        self._dispatch(
            [
                (r"/api/models/([^/]+/[^/]+)/revision/(.+)", self.model_info),
                (r"/api/models/([^/]+/[^/]+)", lambda repo_id, query: self.model_info(repo_id, "main", query)),
                (r"/api/models/([^/]+/[^/]+)/tree/(refs/pr/\d+|[^/]+)(?:/(.*))?", self.tree),
                (r"/([^/]+/[^/]+)/resolve/(refs/pr/\d+|[^/]+)/(.+)", self.resolve),
            ]
        )

    do_HEAD = do_GET

    def create_repo(self, query):
        request = json.loads(self.body)
        repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
        if repo_id in self.state.repos:
            message = "You already created this model repo"
            return self._reply(
                409, {"error": message, "url": f"{self.endpoint}/{repo_id}"}, {"X-Error-Message": message}
            )
        repo = Repo(private=bool(request.get("private")) or request.get("visibility") == "private")
        initial = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        repo.commits[initial] = {".gitattributes": (b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n", False)}
        repo.refs["main"] = initial
        self.state.repos[repo_id] = repo
        self._reply(200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id})

    def validate_yaml(self, query):
        # The Hub's metadata check: front matter that parses, with a model-index in the documented shape.
        content = json.loads(self.body)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        errors = []
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as error:
            metadata, errors = {}, [{"message": f"invalid YAML: {error}"}]
        for entry in metadata.get("model-index", []):
            for result in entry.get("results", []):
                if not {"task", "dataset", "metrics"} <= set(result) or "type" not in result["task"]:
                    errors.append({"message": f"model-index result lacks task, dataset or metrics: {result}"})
        if errors:
            return self._reply(400, {"errors": errors, "error": errors[0]["message"]})
        self._reply(200, {"errors": [], "warnings": []})

    def create_branch(self, repo_id, branch, query):
        repo = self._repo(repo_id)
        if repo is None:
            return
        if branch in repo.refs:
            return self._error(409, "BranchExists", f"Branch {branch} already exists")
        repo.refs[branch] = repo.refs["main"]
        self._reply(200, {})

    def preupload(self, repo_id, revision, query):
        if self._repo(repo_id) is None:
            return
        files = json.loads(self.body)["files"]
        modes = [
            {"path": file["path"], "uploadMode": "lfs" if file["path"].endswith(LFS_SUFFIXES) else "regular"}
            | {"shouldIgnore": False}
            for file in files
        ]
        self._reply(200, {"files": modes})

    def lfs_batch(self, repo_id, query):
        request = json.loads(self.body)
        objects = []
        for obj in request["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.state.lfs:
                entry["actions"] = {"upload": {"href": f"{self.endpoint}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        self._reply(200, {"transfer": "basic", "objects": objects})

    def lfs_upload(self, oid, query):
        data = self.body
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, "BadRequest", "LFS object does not match its oid")
        self.state.lfs[oid] = data
        self._reply(200, {})

    def commit(self, repo_id, revision, query):
        repo, parent = self._revision(repo_id, revision)
        if parent is None:
            return
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        files = dict(repo.commits[parent])
        header = {}
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "header":
                header = value
            elif key == "file":
                files[value["path"]] = (base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                if value["oid"] not in self.state.lfs:
                    return self._error(400, "BadRequest", f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = (self.state.lfs[value["oid"]], True)
            elif key in ("deletedFile", "deletedFolder"):
                files = {path: blob for path, blob in files.items() if not path.startswith(value["path"])}
        oid = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        repo.commits[oid] = files
        repo.messages[oid] = header.get("summary", "")
        response = {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid}
        if query.get("create_pr") == ["1"]:
            number = 1 + sum(ref.startswith("refs/pr/") for ref in repo.refs)
            repo.refs[f"refs/pr/{number}"] = oid
            response["pullRequestUrl"] = f"{self.endpoint}/{repo_id}/discussions/{number}"
        else:
            repo.refs[revision] = oid
        self._reply(200, response)

    def model_info(self, repo_id, revision, query):
        repo, oid = self._revision(repo_id, revision)
        if oid is None:
            return
        siblings = [{"rfilename": path} for path in sorted(repo.commits[oid])]
        self._reply(
            200, {"id": repo_id, "modelId": repo_id, "sha": oid, "private": repo.private, "siblings": siblings}
        )

    def tree(self, repo_id, revision, folder, query):
        repo, oid = self._revision(repo_id, revision)
        if oid is None:
            return
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        entries = []
        for path, (data, lfs) in sorted(repo.commits[oid].items()):
            if path.startswith(prefix):
                entry = {"type": "file", "path": path, "size": len(data), "oid": _blob_etag(data)}
                if lfs:
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(entry)
        self._reply(200, entries)

    def resolve(self, repo_id, revision, path, query):
        repo, oid = self._revision(repo_id, revision)
        if oid is None:
            return
        if path not in repo.commits[oid]:
            return self._error(404, "EntryNotFound", f"{path} does not exist at {revision}")
        data, lfs = repo.commits[oid][path]
        headers = {"X-Repo-Commit": oid, "ETag": f'"{_blob_etag(data)}"'}
        if lfs:
            headers |= {"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))}
        self._reply(200, headers=headers, body=data)


class LocalHub:
    """Run the stand-in in a background thread: `with LocalHub() as hub: ... hub.endpoint ...`."""

    def __init__(self):
        self.state = HubState()
        handler = type("Handler", (HubHandler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint = handler.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalHub":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
